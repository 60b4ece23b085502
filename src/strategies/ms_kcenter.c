/* ms_kcenter.c: the kcenter strategy, k-center greedy ("Coreset", Sener & Savarese 2018).
 *
 * Distance: Euclidean on the pool's unit rows (compared as squared distances, which orders
 * the same). The first item is uniform from the seed; then d(i) = distance from item i to
 * its nearest chosen item is kept up to date and the unchosen item with the largest d(i)
 * (lowest index on ties) is added, K - 1 times. Each step costs one (1, n) distance row
 * from sgemm: O(n K d) time, O(n) memory, no (n, n) matrix. The greedy covering radius is
 * at most twice the optimal K-center radius. No options.
 */
#include <string.h>

#include "strategies/ms_strategies_internal.h"

static ms_status kcenter_select(const ms_strategy *s, const ms_pool *pool, int k, uint64_t seed,
                                int *out, ms_arena *ws) {
    ms_status st = ms_strategy_check_k(s, pool, k);
    if (st || k == 0) return st;
    int n = pool->n, d = pool->d;
    const float *x = pool->x;
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_STRATEGY, 0);
    float *xsq = MS_ARENA_NEW(ws, float, n);
    float *mind = MS_ARENA_NEW(ws, float, n);
    float *row = MS_ARENA_NEW(ws, float, n);
    unsigned char *chosen = MS_ARENA_NEW(ws, unsigned char, n);
    ms_rows_sqnorm(xsq, x, n, d);
    memset(chosen, 0, (size_t)n);
    int c = (int)ms_rng_below(&r, (uint32_t)n);
    for (int t = 0;; t++) {
        out[t] = c;
        chosen[c] = 1;
        if (t == k - 1) break;
        ms_sqdist_gemm_par(row, x + (size_t)c * d, xsq + c, 1, x, xsq, n, d);
        if (t == 0) memcpy(mind, row, sizeof(float) * (size_t)n);
        else
            for (int i = 0; i < n; i++)
                if (row[i] < mind[i]) mind[i] = row[i];
        c = -1;
        for (int i = 0; i < n; i++)
            if (!chosen[i] && (c < 0 || mind[i] > mind[c])) c = i;
    }
    return MS_OK;
}

ms_status ms_kcenter_create(ms_strategy *s, const char *opts) {
    static const char *const known[] = {NULL};
    ms_status st = ms_opt_check("kcenter", opts, known);
    if (st) return st;
    s->select = kcenter_select;
    s->ranking = 1;
    return MS_OK;
}
