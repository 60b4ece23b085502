/* ms_selector.c: a trained selector as a selection strategy ("medselect"). Each thread keeps
 * its own LSTM cache in the strategy, created on the thread's first call and grown only when
 * a longer pool arrives, so repeated selections allocate nothing. For evaluation, score()
 * runs many pools through one batched forward pass, which keeps the matrix products large. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/train.h"

#define MAX_THREADS 256

typedef struct {
    ms_selector sel;
    ms_lstm_cache cache[MAX_THREADS]; /* per OpenMP thread; zeroed until first use */
    ms_lstm_cache batch_cache;        /* for selector_score (B pools at once) */
    float *batch_x;                   /* (B, T, Din) input of selector_score */
} selector_ctx;

static void selector_free(void *p) {
    selector_ctx *c = p;
    for (int i = 0; i < MAX_THREADS; i++)
        if (c->cache[i].memory) ms_lstm_cache_free(&c->cache[i]);
    if (c->batch_cache.memory) ms_lstm_cache_free(&c->batch_cache);
    free(c->batch_x);
    ms_lstm_params_free(&c->sel.params);
    free(c);
}

/* Greedy top-K, or a draw without replacement, from one pool's logits (n). */
static ms_status selector_pick(const ms_strategy *s, const float *logits, int n, int k,
                               uint64_t seed, int *out, ms_arena *ws) {
    const selector_ctx *c = s->ctx;
    if (!c->sel.sample) {
        ms_policy_topk(out, logits, n, k, ws);
        return MS_OK;
    }
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_POLICY, 0);
    double logp;
    int got = ms_policy_sample(out, &logp, NULL, MS_SAMPLER_WOR, logits, n, k, &r, ws);
    MS_CHECK(got == k);
    return MS_OK;
}

static ms_status check_pool(const ms_strategy *s, const ms_pool *pool, int k) {
    const ms_selector *sel = &((const selector_ctx *)s->ctx)->sel;
    int Din = sel->params.D;
    if (k > pool->n)
        return ms_fail(MS_ERR_DATA, "strategy %s: K = %d is larger than the pool (%d items)", s->name, k, pool->n);
    if (Din != pool->d + (sel->clinical ? MS_NCLIN : 0))
        return ms_fail(MS_ERR_DATA, "the selector expects %d-dimensional input but the pool has %d-dimensional embeddings%s",
                       Din, pool->d, sel->clinical ? " plus 3 clinical features" : "");
    if (sel->clinical && !pool->clin)
        return ms_fail(MS_ERR_DATA, "the selector uses clinical features but the pool has none");
    return MS_OK;
}

/* x (n, Din): the pool's raw rows, followed by its clinical features when the selector uses
 * them. */
static void pool_input(float *x, const ms_pool *pool, int clinical) {
    int D = pool->d, Din = D + (clinical ? MS_NCLIN : 0);
    for (int i = 0; i < pool->n; i++) {
        memcpy(x + (size_t)i * Din, pool->raw + (size_t)i * D, sizeof(float) * (size_t)D);
        if (clinical) memcpy(x + (size_t)i * Din + D, pool->clin + (size_t)i * MS_NCLIN, sizeof(float) * MS_NCLIN);
    }
}

static ms_status selector_select(const ms_strategy *s, const ms_pool *pool, int k, uint64_t seed,
                                 int *out, ms_arena *ws) {
    selector_ctx *c = s->ctx;
    const ms_selector *sel = &c->sel;
    ms_status st = check_pool(s, pool, k);
    if (st) return st;
    int n = pool->n, Din = sel->params.D;
    int tid = omp_get_thread_num();
    MS_CHECK(tid < MAX_THREADS);
    ms_lstm_cache *cache = &c->cache[tid];
    if (!cache->memory || cache->Tmax < n) {
        if (cache->memory) ms_lstm_cache_free(cache);
        ms_lstm_cache_init(cache, Din, sel->params.H, 1, n);
    }
    float *x = MS_ARENA_NEW(ws, float, (size_t)n * Din);
    pool_input(x, pool, sel->clinical);
    float *logits = MS_ARENA_NEW(ws, float, n);
    ms_lstm_forward(logits, cache, x, &sel->params, 1, n);
    return selector_pick(s, logits, n, k, seed, out, ws);
}

/* Batched scoring: all pools through one forward pass (B = n), with a cache kept in the
 * strategy (slot 0 of the per-thread caches belongs to the calling thread's serial phase,
 * so a separate batch cache is used). */
static ms_status selector_score(const ms_strategy *s, const ms_pool *pools, int n, float *scores) {
    selector_ctx *c = s->ctx;
    const ms_selector *sel = &c->sel;
    int T = pools[0].n, Din = sel->params.D;
    for (int b = 0; b < n; b++) {
        MS_CHECK(pools[b].n == T);
        ms_status st = check_pool(s, &pools[b], 1);
        if (st) return st;
    }
    if (!c->batch_cache.memory || c->batch_cache.Bmax < n || c->batch_cache.Tmax < T) {
        if (c->batch_cache.memory) ms_lstm_cache_free(&c->batch_cache);
        ms_lstm_cache_init(&c->batch_cache, Din, sel->params.H, n, T);
        free(c->batch_x);
        c->batch_x = ms_xmalloc(sizeof(float) * (size_t)n * T * Din);
    }
    for (int b = 0; b < n; b++) pool_input(c->batch_x + (size_t)b * T * Din, &pools[b], sel->clinical);
    ms_lstm_forward(scores, &c->batch_cache, c->batch_x, &sel->params, n, T);
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
    s->score = selector_score;
    s->select_scored = selector_pick;
    /* 32 pools: at pool 1000 and H 256 the batch cache is about 400 MB */
    s->score_batch = 32;
    s->ctx = c;
    s->free_ctx = selector_free;
    return s;
}
