/* ms_random.c: the random strategy: K distinct pool items uniformly at random (partial
 * Fisher-Yates from the seed). The reference point every other strategy is compared with. */
#include "medselect/strategy.h"
#include "strategies/ms_strategies_internal.h"

static ms_status random_select(const ms_strategy *s, const ms_pool *pool, int k, uint64_t seed,
                               int *out, ms_arena *ws) {
    if (k > pool->n)
        return ms_fail(MS_ERR_DATA, "strategy %s: K = %d is larger than the pool (%d items)",
                       s->name, k, pool->n);
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_STRATEGY, 0);
    int *scratch = MS_ARENA_NEW(ws, int, pool->n);
    ms_rng_choose(&r, pool->n, k, out, scratch);
    return MS_OK;
}

ms_status ms_random_create(ms_strategy *s, const char *opts) {
    static const char *const known[] = {NULL};
    ms_status st = ms_opt_check("random", opts, known);
    if (st) return st;
    s->select = random_select;
    s->ranking = 1;
    return MS_OK;
}
