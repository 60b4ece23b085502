/* ms_arch_bilstm.c: the paper's BiLSTM selector (model.h) as an architecture (arch.h). The
 * net's tensors are the LSTM's, in the same order and layout, so a view of the net's memory
 * is an ms_lstm_params; the policy (policy.h) turns each pool's fixed logits into a draw
 * (Plackett-Luce or multinomial) or the greedy top-K. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/arch.h"
#include "model/ms_arch_bilstm.h"

static ms_status bilstm_layout(ms_net *net) {
    net->ntensors = MS_LSTM_NTENSORS;
    for (int i = 0; i < MS_LSTM_NTENSORS; i++) {
        ms_net_tensor *t = &net->tensor[i];
        snprintf(t->name, sizeof t->name, "%s", ms_lstm_tensor_name(i));
        t->ndim = ms_lstm_tensor_shape(i, net->D, net->H, t->shape);
    }
    return MS_OK;
}

void ms_net_lstm_view(const ms_net *net, float *memory, ms_lstm_params *view) {
    MS_CHECK(net->arch == &ms_arch_bilstm);
    memset(view, 0, sizeof *view);
    view->D = net->D;
    view->H = net->H;
    view->count = net->count;
    view->memory = memory;
    for (int i = 0; i < MS_LSTM_NTENSORS; i++) {
        view->size[i] = net->tensor[i].size;
        view->offset[i] = net->tensor[i].offset;
        view->t[i] = memory + view->offset[i];
    }
}

void ms_net_from_lstm(ms_net *net, const ms_lstm_params *p) {
    ms_status st = ms_net_init(net, &ms_arch_bilstm, p->D, p->H);
    MS_CHECK(st == MS_OK && net->count == p->count);
    memcpy(net->params, p->memory, sizeof(float) * p->count);
}

static void bilstm_randomize(ms_net *net, uint64_t seed, const char *opts) {
    (void)opts;
    ms_lstm_params v;
    ms_net_lstm_view(net, net->params, &v);
    ms_lstm_params_randomize(&v, seed);
}

typedef struct {
    int Bmax, Tmax, Kmax, nthreads;
    ms_lstm_cache cache; /* created by the first sampled run: greedy runs need no cache */
    void *infer;     /* ms_lstm_infer's workspace (greedy runs), grown to the largest need */
    size_t infer_bytes;
    float *logits;   /* (Bmax, Tmax) */
    float *dlogits;  /* (Bmax, Tmax): d logp_b / d logits of the last draw */
    int B, T;
    ms_arena *arenas; /* (nthreads) */
    float *proj;      /* prepare_rows: (2, projN, 4H) input projections, in proj_prec */
    int projN;
    ms_precision proj_prec;
} bilstm_work;

static void *bilstm_work_new(const ms_net *net, int Bmax, int Tmax, int Kmax) {
    (void)net; /* the LSTM cache is created by the first sampled run */
    bilstm_work *w = ms_xcalloc(1, sizeof *w);
    w->Bmax = Bmax, w->Tmax = Tmax, w->Kmax = Kmax;
    w->logits = ms_xmalloc(sizeof(float) * (size_t)Bmax * Tmax);
    w->dlogits = ms_xmalloc(sizeof(float) * (size_t)Bmax * Tmax);
    w->nthreads = omp_get_max_threads();
    w->arenas = ms_xcalloc((size_t)w->nthreads, sizeof(ms_arena));
    return w;
}

static void bilstm_work_free(void *p) {
    bilstm_work *w = p;
    if (!w) return;
    if (w->cache.memory) ms_lstm_cache_free(&w->cache);
    free(w->infer);
    free(w->proj);
    for (int i = 0; i < w->nthreads; i++) ms_arena_free(&w->arenas[i]);
    free(w->arenas);
    free(w->logits);
    free(w->dlogits);
    free(w);
}

/* Grows the forward-only workspace to `bytes`. */
static void infer_fit(bilstm_work *w, size_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    if (bytes <= w->infer_bytes) return;
    free(w->infer);
    w->infer = aligned_alloc(64, bytes);
    if (!w->infer) ms_abort_at(__FILE__, __LINE__, "out of memory");
    w->infer_bytes = bytes;
}

/* The projection table of prepare_rows is 2 * N * 4H floats: at most this many bytes. */
size_t ms_bilstm_proj_budget = (size_t)512 << 20;

static int bilstm_prepare_rows(const ms_net *net, void *work, const float *x, int N) {
    bilstm_work *w = work;
    MS_CHECK(x && N >= 1);
    size_t bytes = sizeof(float) * (size_t)N * 8 * (size_t)net->H;
    free(w->proj);
    w->proj = NULL;
    w->projN = 0;
    if (bytes > ms_bilstm_proj_budget) return 0;
    w->proj = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!w->proj) ms_abort_at(__FILE__, __LINE__, "out of memory");
    ms_lstm_params v;
    ms_net_lstm_view(net, net->params, &v);
    w->proj_prec = ms_get_precision();
    ms_lstm_project(w->proj, x, N, &v, w->proj_prec);
    w->projN = N;
    return 1;
}

static void bilstm_run_rows(const ms_net *net, void *work, const int *rows, int B, int T,
                            float *logits) {
    bilstm_work *w = work;
    MS_CHECK(w->proj && B <= w->Bmax && T <= w->Tmax);
    MS_CHECK(w->proj_prec == ms_get_precision());
    ms_lstm_params v;
    ms_net_lstm_view(net, net->params, &v);
    infer_fit(w, ms_lstm_infer_rows_bytes(net->H, B, T, w->proj_prec));
    ms_lstm_infer_rows(logits, w->infer, w->proj, w->projN, rows, &v, B, T, w->proj_prec);
}

static void bilstm_run(const ms_net *net, void *work, const float *x, int B, int T, const int *k,
                       int kstride, ms_net_mode mode, ms_rng *rng, int *picks, int *n, double *logp,
                       float *logits0) {
    bilstm_work *w = work;
    MS_CHECK(B <= w->Bmax && T <= w->Tmax);
    ms_lstm_params v;
    ms_net_lstm_view(net, net->params, &v);
    if (mode.greedy) {
        /* forward only (selection, validation): no backward follows, so no cache; a cache
         * a sampled run left for its backward stays untouched */
        ms_precision prec = ms_get_precision();
        infer_fit(w, ms_lstm_infer_bytes(net->D, net->H, B, T, prec));
        ms_lstm_infer(w->logits, w->infer, x, &v, B, T, prec);
    } else {
        if (!w->cache.memory) ms_lstm_cache_init(&w->cache, net->D, net->H, w->Bmax, w->Tmax);
        ms_lstm_forward(w->logits, &w->cache, x, &v, B, T);
        w->B = B, w->T = T;
    }
    int nth = w->nthreads;
#pragma omp parallel for schedule(static) num_threads(nth)
    for (int b = 0; b < B; b++) {
        ms_arena *ws = &w->arenas[omp_get_thread_num()];
        ms_arena_reset(ws);
        const float *l = w->logits + (size_t)b * T;
        int *out = picks + (size_t)b * kstride;
        if (mode.greedy) {
            ms_policy_topk(out, l, T, k[b], ws);
            n[b] = k[b];
            logp[b] = 0;
        } else {
            n[b] = ms_policy_sample(out, &logp[b], w->dlogits + (size_t)b * T, mode.sampler, l, T, k[b],
                                    &rng[b], ws);
        }
    }
    if (logits0) memcpy(logits0, w->logits, sizeof(float) * (size_t)B * T);
}

static void bilstm_backward(const ms_net *net, void *work, const float *x, const double *scale,
                            float *grads) {
    bilstm_work *w = work;
    MS_CHECK(w->B > 0);
    for (int b = 0; b < w->B; b++) {
        float s = (float)scale[b];
        float *dl = w->dlogits + (size_t)b * w->T;
        for (int t = 0; t < w->T; t++) dl[t] *= s;
    }
    ms_lstm_params v, g;
    ms_net_lstm_view(net, net->params, &v);
    ms_net_lstm_view(net, grads, &g);
    ms_lstm_backward(&g, w->dlogits, &w->cache, x, &v);
    w->B = 0;
}

/* LSTM.weight_ih_l0 is (4H, D). */
static int bilstm_sizes(const int64_t *shape, int ndim, int *D, int *H) {
    if (ndim != 2 || shape[0] <= 0 || shape[0] % 4 || shape[1] <= 0 || shape[0] > ((int64_t)1 << 30) ||
        shape[1] > ((int64_t)1 << 30))
        return 0;
    *D = (int)shape[1];
    *H = (int)(shape[0] / 4);
    return 1;
}

const ms_arch ms_arch_bilstm = {
    .name = "bilstm",
    .summary = "the paper's bidirectional LSTM over the pool, one logit per item (default)",
    .sequential = 0,
    .default_hidden = 256,
    .size_tensor = "LSTM.weight_ih_l0",
    .sizes_from = bilstm_sizes,
    .layout = bilstm_layout,
    .randomize = bilstm_randomize,
    .work_new = bilstm_work_new,
    .work_free = bilstm_work_free,
    .run = bilstm_run,
    .backward = bilstm_backward,
    .prepare_rows = bilstm_prepare_rows,
    .run_rows = bilstm_run_rows,
};
