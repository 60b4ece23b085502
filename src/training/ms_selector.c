/* ms_selector.c: a trained selector of any architecture (arch.h) as a selection strategy
 * ("medselect"). Each thread keeps its own work object in the strategy, created on the
 * thread's first call and grown only when a longer pool or a larger K arrives, so repeated
 * selections allocate nothing. For evaluation, architectures that score every item once
 * (not sequential) also get the batched score hook: many pools through one forward pass,
 * which keeps the matrix products large. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/train.h"

#define MAX_THREADS 256

typedef struct {
    void *work;
    int B, T, K;
} work_slot;

typedef struct {
    ms_selector sel;
    work_slot slot[MAX_THREADS]; /* per OpenMP thread; zeroed until first use */
    work_slot batch;             /* for selector_score (B pools at once) */
    work_slot rows;              /* for selector_score_rows, freed after each call */
    float *batch_x;              /* (B, T, Din) input of selector_score */
    int *batch_k, *batch_n, *batch_picks;
    double *batch_logp;
} selector_ctx;

static void slot_free(const ms_selector *sel, work_slot *w) {
    if (w->work) sel->net.arch->work_free(w->work);
    memset(w, 0, sizeof *w);
}

/* Makes sure w fits B pools of T items and budgets up to K. */
static void slot_fit(const ms_selector *sel, work_slot *w, int B, int T, int K) {
    if (w->work && w->B >= B && w->T >= T && w->K >= K) return;
    int nb = B > w->B ? B : w->B, nt = T > w->T ? T : w->T, nk = K > w->K ? K : w->K;
    slot_free(sel, w);
    w->work = sel->net.arch->work_new(&sel->net, nb, nt, nk);
    w->B = nb, w->T = nt, w->K = nk;
}

static void selector_free(void *p) {
    selector_ctx *c = p;
    for (int i = 0; i < MAX_THREADS; i++) slot_free(&c->sel, &c->slot[i]);
    slot_free(&c->sel, &c->batch);
    slot_free(&c->sel, &c->rows);
    free(c->batch_x);
    free(c->batch_k);
    free(c->batch_n);
    free(c->batch_picks);
    free(c->batch_logp);
    ms_net_free(&c->sel.net);
    free(c);
}

/* out (k): the selection from one pool's logits (n) under the selector's decoding rule (the
 * static architectures' selection from their one logit per item). */
static ms_status selector_pick(const ms_strategy *s, const float *logits, int n, int k,
                               uint64_t seed, int *out, ms_arena *ws) {
    const selector_ctx *c = s->ctx;
    if (c->sel.decode == MS_DECODE_GREEDY) {
        ms_policy_topk(out, logits, n, k, ws);
        return MS_OK;
    }
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_POLICY, 0);
    if (c->sel.decode == MS_DECODE_SAMPLE) {
        ms_policy_sample_wor(out, logits, n, k, &r, ws);
        return MS_OK;
    }
    /* multinomial: the distinct draws, each repeated as often as it was drawn */
    int *items = MS_ARENA_NEW(ws, int, k), *counts = MS_ARENA_NEW(ws, int, n);
    int m = ms_policy_sample_multinomial(items, counts, logits, n, k, &r, ws), j = 0;
    for (int i = 0; i < m; i++)
        for (int c2 = 0; c2 < counts[items[i]]; c2++) out[j++] = items[i];
    MS_CHECK(j == k);
    return MS_OK;
}

static ms_status check_pool(const ms_strategy *s, const ms_pool *pool, int k) {
    const ms_selector *sel = &((const selector_ctx *)s->ctx)->sel;
    int Din = sel->net.D;
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
        if (clinical) ms_clin_to_input(x + (size_t)i * Din + D, pool->clin + (size_t)i * MS_NCLIN);
    }
}

ms_status ms_selector_run(const ms_strategy *s, const ms_pool *pool, int k, uint64_t seed,
                          int *out, float *logits0, ms_arena *ws) {
    selector_ctx *c = s->ctx;
    const ms_selector *sel = &c->sel;
    ms_status st = check_pool(s, pool, k);
    if (st) return st;
    int n = pool->n, Din = sel->net.D;
    int tid = omp_get_thread_num();
    MS_CHECK(tid < MAX_THREADS);
    work_slot *w = &c->slot[tid];
    slot_fit(sel, w, 1, n, k);
    const float *x = pool->raw; /* (n, D): used in place unless clinical columns join */
    if (sel->clinical) {
        float *xc = MS_ARENA_NEW(ws, float, (size_t)n * Din);
        pool_input(xc, pool, sel->clinical);
        x = xc;
    }
    int got;
    double logp;
    if (!sel->net.arch->sequential) {
        /* one logit per item: the selection follows from them under the decoding rule */
        float *l = logits0 ? logits0 : MS_ARENA_NEW(ws, float, n);
        int one = 1, first;
        ms_net_mode gm = {.sampler = MS_SAMPLER_WOR, .greedy = 1};
        sel->net.arch->run(&sel->net, w->work, x, 1, n, &one, 1, gm, NULL, &first, &got, &logp, l);
        return selector_pick(s, l, n, k, seed, out, ws);
    }
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_POLICY, 0);
    ms_net_mode mode = {.sampler = MS_SAMPLER_WOR, .greedy = sel->decode == MS_DECODE_GREEDY};
    sel->net.arch->run(&sel->net, w->work, x, 1, n, &k, k, mode, &r, out, &got, &logp, logits0);
    MS_CHECK(got == k);
    return MS_OK;
}

static ms_status selector_select(const ms_strategy *s, const ms_pool *pool, int k, uint64_t seed,
                                 int *out, ms_arena *ws) {
    return ms_selector_run(s, pool, k, seed, out, NULL, ws);
}

/* Batched scoring of a static architecture: all pools through one pass (B = n), the first
 * step's logits being every item's score. */
static ms_status selector_score(const ms_strategy *s, const ms_pool *pools, int n, float *scores) {
    selector_ctx *c = s->ctx;
    const ms_selector *sel = &c->sel;
    int T = pools[0].n, Din = sel->net.D;
    for (int b = 0; b < n; b++) {
        MS_CHECK(pools[b].n == T);
        ms_status st = check_pool(s, &pools[b], 1);
        if (st) return st;
    }
    if (!c->batch.work || c->batch.B < n || c->batch.T < T) {
        slot_fit(sel, &c->batch, n, T, 1);
        free(c->batch_x);
        free(c->batch_k);
        free(c->batch_n);
        free(c->batch_picks);
        free(c->batch_logp);
        c->batch_x = ms_xmalloc(sizeof(float) * (size_t)c->batch.B * c->batch.T * Din);
        c->batch_k = ms_xmalloc(sizeof(int) * (size_t)c->batch.B);
        c->batch_n = ms_xmalloc(sizeof(int) * (size_t)c->batch.B);
        c->batch_picks = ms_xmalloc(sizeof(int) * (size_t)c->batch.B);
        c->batch_logp = ms_xmalloc(sizeof(double) * (size_t)c->batch.B);
    }
    /* pools whose raw rows already lie one after the other (as the evaluation gathers
     * them) are read in place: no copy of the (n, T, D) batch */
    int contiguous = !sel->clinical;
    for (int b = 1; b < n && contiguous; b++)
        contiguous = pools[b].raw == pools[0].raw + (size_t)b * T * Din;
    for (int b = 0; b < n; b++) {
        if (!contiguous) pool_input(c->batch_x + (size_t)b * T * Din, &pools[b], sel->clinical);
        c->batch_k[b] = 1;
    }
    const float *x = contiguous ? pools[0].raw : c->batch_x;
    ms_net_mode mode = {.sampler = MS_SAMPLER_WOR, .greedy = 1};
    sel->net.arch->run(&sel->net, c->batch.work, x, n, T, c->batch_k, 1, mode, NULL,
                       c->batch_picks, c->batch_n, c->batch_logp, scores);
    return MS_OK;
}

/* Pools per run_rows call: the recurrent product of a step is (B, H) x (H, 4H), and larger
 * B amortises streaming W_hh once per step (no input batch is held: only indices). */
enum { ROWS_BATCH = 64 };

/* Pools given as rows of one matrix: the architecture prepares the rows once (the bilstm:
 * their input projections) and runs the pools in batches of ROWS_BATCH; when it cannot
 * (no hook, or the rows too many for its budget) the pools are gathered and scored by
 * selector_score (ms_strategy_score_gathered). */
static ms_status selector_score_rows(const ms_strategy *s, const float *x, const float *clin,
                                     int N, int d, const int *rows, int n, int T, float *scores,
                                     ms_progress *prog) {
    selector_ctx *c = s->ctx;
    const ms_selector *sel = &c->sel;
    const ms_arch *a = sel->net.arch;
    ms_pool probe = {.n = T, .d = d, .x = NULL, .raw = x, .clin = clin};
    ms_status st = check_pool(s, &probe, 1);
    if (st) return st;
    for (size_t r = 0; r < (size_t)n * T; r++) MS_CHECK(rows[r] >= 0 && rows[r] < N);
    const int Din = sel->net.D;
    float *xc = NULL;
    if (sel->clinical) { /* the selector's input rows, once for the N rows */
        xc = ms_xmalloc(sizeof(float) * (size_t)N * Din);
        ms_pool all = {.n = N, .d = d, .x = NULL, .raw = x, .clin = clin};
        pool_input(xc, &all, 1);
    }
    slot_fit(sel, &c->rows, ROWS_BATCH, T, 1);
    int ready = a->prepare_rows && a->run_rows &&
                a->prepare_rows(&sel->net, c->rows.work, xc ? xc : x, N);
    free(xc);
    if (ready) {
        for (int c0 = 0; c0 < n && !st; c0 += ROWS_BATCH) {
            int nb = n - c0 < ROWS_BATCH ? n - c0 : ROWS_BATCH;
            a->run_rows(&sel->net, c->rows.work, rows + (size_t)c0 * T, nb, T, scores + (size_t)c0 * T);
            if (prog) ms_progress_add(prog, nb);
            if (ms_progress_cancelled(prog)) st = ms_fail(MS_ERR_CANCELLED, "cancelled");
        }
        slot_free(sel, &c->rows);
        return st;
    }
    slot_free(sel, &c->rows);
    return ms_strategy_score_gathered(s, x, clin, d, rows, n, T, scores, prog);
}

ms_strategy *ms_selector_strategy(ms_selector *sel) {
    ms_strategy *s = ms_xcalloc(1, sizeof *s);
    selector_ctx *c = ms_xcalloc(1, sizeof *c);
    c->sel = *sel;
    memset(sel, 0, sizeof *sel);
    snprintf(s->name, sizeof s->name, "medselect");
    /* a sequential architecture decodes greedily or draws without replacement only */
    MS_CHECK(!c->sel.net.arch->sequential || c->sel.decode != MS_DECODE_MULTINOMIAL);
    int def = c->sel.net.arch == ms_arch_default();
    char dec[48] = "";
    if (c->sel.decode != MS_DECODE_GREEDY) snprintf(dec, sizeof dec, " (%s)", ms_decode_name(c->sel.decode));
    snprintf(s->label, sizeof s->label, "medselect%s%s%s", def ? "" : " ", def ? "" : c->sel.net.arch->name, dec);
    s->select = selector_select;
    /* greedy decoding and seeded draws without replacement are prefixes of one order (step t
     * of a draw does not depend on K); K multinomial draws are not, so they run once per K */
    s->ranking = c->sel.decode != MS_DECODE_MULTINOMIAL;
    if (!c->sel.net.arch->sequential) {
        /* one logit per item: a selection is the top K (or a draw) of the batched scores */
        s->score = selector_score;
        s->select_scored = selector_pick;
        /* 32 pools: at pool 1000 and H 256 the bilstm's batch cache is about 400 MB */
        s->score_batch = 32;
        s->score_rows = selector_score_rows;
    }
    s->ctx = c;
    s->free_ctx = selector_free;
    return s;
}
