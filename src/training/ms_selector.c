/* ms_selector.c: a trained selector as a selection strategy ("medselect"). Each thread keeps
 * its own LSTM cache in the strategy, created on the thread's first call and grown only when
 * a longer pool arrives, so repeated selections allocate nothing. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/train.h"

#define MAX_THREADS 256

typedef struct {
    ms_selector sel;
    ms_lstm_cache cache[MAX_THREADS]; /* per OpenMP thread; zeroed until first use */
} selector_ctx;

static void selector_free(void *p) {
    selector_ctx *c = p;
    for (int i = 0; i < MAX_THREADS; i++)
        if (c->cache[i].memory) ms_lstm_cache_free(&c->cache[i]);
    ms_lstm_params_free(&c->sel.params);
    free(c);
}

static ms_status selector_select(const ms_strategy *s, const ms_pool *pool, int k, uint64_t seed,
                                 int *out, ms_arena *ws) {
    selector_ctx *c = s->ctx;
    const ms_selector *sel = &c->sel;
    int n = pool->n, D = pool->d, Din = sel->params.D;
    if (k > n)
        return ms_fail(MS_ERR_DATA, "strategy %s: K = %d is larger than the pool (%d items)", s->name, k, n);
    if (Din != D + (sel->clinical ? MS_NCLIN : 0))
        return ms_fail(MS_ERR_DATA, "the selector expects %d-dimensional input but the pool has %d-dimensional embeddings%s",
                       Din, D, sel->clinical ? " plus 3 clinical features" : "");
    if (sel->clinical && !pool->clin)
        return ms_fail(MS_ERR_DATA, "the selector uses clinical features but the pool has none");
    int tid = omp_get_thread_num();
    MS_CHECK(tid < MAX_THREADS);
    ms_lstm_cache *cache = &c->cache[tid];
    if (!cache->memory || cache->Tmax < n) {
        if (cache->memory) ms_lstm_cache_free(cache);
        ms_lstm_cache_init(cache, Din, sel->params.H, 1, n);
    }
    float *x = MS_ARENA_NEW(ws, float, (size_t)n * Din);
    for (int i = 0; i < n; i++) {
        memcpy(x + (size_t)i * Din, pool->raw + (size_t)i * D, sizeof(float) * (size_t)D);
        if (sel->clinical) memcpy(x + (size_t)i * Din + D, pool->clin + (size_t)i * MS_NCLIN, sizeof(float) * MS_NCLIN);
    }
    float *logits = MS_ARENA_NEW(ws, float, n);
    ms_lstm_forward(logits, cache, x, &sel->params, 1, n);
    if (!sel->sample) {
        ms_policy_topk(out, logits, n, k, ws);
        return MS_OK;
    }
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_POLICY, 0);
    double logp;
    float *dl = MS_ARENA_NEW(ws, float, n);
    int got = ms_policy_sample(out, &logp, dl, MS_SAMPLER_WOR, logits, n, k, &r, ws);
    MS_CHECK(got == k);
    return MS_OK;
}

ms_strategy *ms_selector_strategy(ms_selector *sel) {
    ms_strategy *s = ms_xcalloc(1, sizeof *s);
    selector_ctx *c = ms_xcalloc(1, sizeof *c);
    c->sel = *sel;
    memset(sel, 0, sizeof *sel);
    snprintf(s->name, sizeof s->name, "medselect");
    snprintf(s->label, sizeof s->label, "medselect%s", c->sel.sample ? " (sampled)" : "");
    s->select = selector_select;
    s->ctx = c;
    s->free_ctx = selector_free;
    return s;
}
