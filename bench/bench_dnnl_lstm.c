/* bench_dnnl_lstm.c: oneDNN's own LSTM primitive against medselect's BiLSTM (model.h) at the
 * selector's training shape, forward (training) + backward with the weight gradients, in the
 * same run and interleaved, so that both see the same load.
 *
 * Usage: bench_dnnl_lstm [B T D H [threads [iters]]]   (default 64 1000 512 256, 2, 5)
 *
 * What each side does per iteration (x and dlogits fixed, parameters in PyTorch's layout):
 *   medselect   ms_lstm_forward + ms_lstm_params_zero + ms_lstm_backward (cache in f32 or
 *               bf16, model.h), i.e. exactly what a training step runs.
 *   oneDNN      the same work through dnnl_lstm_{forward,backward}_desc_init, direction
 *               bidirectional_concat, zero initial states, data (T, N, C) in the batch-major
 *               "ntc" layout (= x as medselect stores it): reorders of the PyTorch weights
 *               (ldgoi, [W; W_reverse] adjacent as in ms_lstm_params) into the primitives'
 *               layouts (and to bf16), for bf16 a reorder of x to bf16, the forward, the
 *               linear layer (logits, its gradient, dL/dh) as plain loops, the backward, and
 *               reorders of the weight gradients back to ldgoi f32. The backward primitive
 *               always computes dL/dx as well (diff_src_layer cannot be omitted): 2*B*T*D*8H
 *               FLOP that medselect does not do and the FLOP model below does not count.
 *
 * FLOP model (bench/README.md, the same as bench_lstm and bench_train):
 *   forward  = 2*B*T*(D*8H + H*8H),  backward = 2*B*T*(D*8H + 2*H*8H)   (no dx)
 * Medians over `iters` timed iterations after one warm-up, wall seconds per phase.
 *
 * Checks printed before the timing (f32): the primitive's logits and weight gradients
 * against medselect's (max |diff| / max |ref|; this also checks that PyTorch's gate order
 * i, f, g, o is oneDNN's), and whether the primitive's f32 results are bitwise the same on 1
 * and on `threads` threads (the primitive is built and run under each thread count).
 */
#define _POSIX_C_SOURCE 200809L
#include "medselect/model.h"

#include "medselect/gemm.h"
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"

static dnnl_engine_t eng;
static dnnl_stream_t strm;

static dnnl_memory_desc_t md_tag(int nd, const dnnl_dims_t dims, dnnl_data_type_t dt,
                                 dnnl_format_tag_t tag) {
    dnnl_memory_desc_t md;
    CK(dnnl_memory_desc_init_by_tag(&md, nd, dims, dt, tag));
    return md;
}

static dnnl_memory_t mem(const dnnl_memory_desc_t *md, void *handle) {
    dnnl_memory_t m;
    CK(dnnl_memory_create(&m, md, eng, handle ? handle : DNNL_MEMORY_ALLOCATE));
    return m;
}

static const dnnl_memory_desc_t *mem_md(dnnl_memory_t m) {
    const dnnl_memory_desc_t *md;
    CK(dnnl_memory_get_memory_desc(m, &md));
    return md;
}

static void *mem_ptr(dnnl_memory_t m) {
    void *p;
    CK(dnnl_memory_get_data_handle(m, &p));
    return p;
}

/* A reorder src -> dst (layout and/or data type); NULL when both are the same. */
static dnnl_primitive_t reorder(dnnl_memory_t src, dnnl_memory_t dst) {
    if (dnnl_memory_desc_equal(mem_md(src), mem_md(dst))) return NULL;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
    CK(dnnl_reorder_primitive_desc_create(&pd, mem_md(src), eng, mem_md(dst), eng, NULL));
    CK(dnnl_primitive_create(&p, pd));
    CK(dnnl_primitive_desc_destroy(pd));
    return p;
}

static void run_reorder(dnnl_primitive_t r, dnnl_memory_t src, dnnl_memory_t dst) {
    if (!r) {
        if (src != dst) memcpy(mem_ptr(dst), mem_ptr(src), dnnl_memory_desc_get_size(mem_md(src)));
        return;
    }
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
    CK(dnnl_primitive_execute(r, strm, 2, a));
}

/* One configuration of the primitive pair, built under the current OpenMP thread count. */
typedef struct {
    int B, T, D, H;
    dnnl_data_type_t dt;
    dnnl_primitive_t fwd, bwd;
    /* user (f32, PyTorch layouts) */
    dnnl_memory_t x_user, wl_user, wi_user, dwl_user, dwi_user, h_user, dh_user;
    /* the primitives' */
    dnnl_memory_t x, wl_f, wi_f, wl_b, wi_b, bias, h, ws, dx, dh, dwl, dwi, dbias;
    dnnl_memory_t pad_f, pad_b; /* scratchpads, allocated once (user mode) */
    double t_fexec, t_bexec;    /* seconds inside the two primitives, summed */
    dnnl_primitive_t r_x, r_wl_f, r_wi_f, r_wl_b, r_wi_b, r_h, r_dh, r_dwl, r_dwi;
    float *bias_sum; /* (2, 4H) b_ih + b_hh */
    double *acc;     /* (2H + 1) the linear layer's gradient sums */
} dlstm;

static const char *dt_name(dnnl_data_type_t dt) { return dt == dnnl_bf16 ? "bf16" : "f32"; }

/* Builds the primitives; returns 0, or non-zero when oneDNN refuses these data types. */
static int dlstm_init(dlstm *L, int B, int T, int D, int H, dnnl_data_type_t dt,
                      dnnl_data_type_t ddt, const float *x, ms_lstm_params *p, ms_lstm_params *g) {
    memset(L, 0, sizeof *L);
    L->B = B, L->T = T, L->D = D, L->H = H, L->dt = dt;
    dnnl_dims_t src_d = {T, B, D}, dst_d = {T, B, 2 * H};
    dnnl_dims_t wl_d = {1, 2, D, 4, H}, wi_d = {1, 2, H, 4, H}, b_d = {1, 2, 4, H};
    dnnl_memory_desc_t src = md_tag(3, src_d, dt, dnnl_ntc), dst = md_tag(3, dst_d, dt, dnnl_ntc);
    dnnl_memory_desc_t wl = md_tag(5, wl_d, dt, dnnl_format_tag_any);
    dnnl_memory_desc_t wi = md_tag(5, wi_d, dt, dnnl_format_tag_any);
    dnnl_memory_desc_t bias = md_tag(4, b_d, dnnl_f32, dnnl_ldgo);
    dnnl_rnn_desc_t fd, bd;
    CK(dnnl_lstm_forward_desc_init(&fd, dnnl_forward_training, dnnl_bidirectional_concat, &src,
                                   NULL, NULL, &wl, &wi, &bias, &dst, NULL, NULL, 0));
    dnnl_primitive_desc_t fpd, bpd;
    dnnl_primitive_attr_t attr;
    CK(dnnl_primitive_attr_create(&attr));
    CK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (dnnl_primitive_desc_create(&fpd, &fd, attr, eng, NULL) != dnnl_success) {
        dnnl_primitive_attr_destroy(attr);
        return 1;
    }
    dnnl_memory_desc_t dsrc = md_tag(3, src_d, ddt, dnnl_ntc), ddst = md_tag(3, dst_d, ddt, dnnl_ntc);
    dnnl_memory_desc_t dwl = md_tag(5, wl_d, dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_t dwi = md_tag(5, wi_d, dnnl_f32, dnnl_format_tag_any);
    if (dnnl_lstm_backward_desc_init(&bd, dnnl_backward, dnnl_bidirectional_concat, &src, NULL,
                                     NULL, &wl, &wi, &bias, &dst, NULL, NULL, &dsrc, NULL, NULL,
                                     &dwl, &dwi, &bias, &ddst, NULL, NULL, 0) != dnnl_success ||
        dnnl_primitive_desc_create(&bpd, &bd, attr, eng, fpd) != dnnl_success) {
        dnnl_primitive_desc_destroy(fpd);
        dnnl_primitive_attr_destroy(attr);
        return 2;
    }
    CK(dnnl_primitive_attr_destroy(attr));
    CK(dnnl_primitive_create(&L->fwd, fpd));
    L->pad_f = mem(dnnl_primitive_desc_query_md(fpd, dnnl_query_scratchpad_md, 0), NULL);
    L->pad_b = mem(dnnl_primitive_desc_query_md(bpd, dnnl_query_scratchpad_md, 0), NULL);
    CK(dnnl_primitive_create(&L->bwd, bpd));

    /* user memories: x (B, T, D) = ntc f32; [W_ih; W_ih_reverse] (2, 4H, D) = ldgoi */
    dnnl_memory_desc_t x_u = md_tag(3, src_d, dnnl_f32, dnnl_ntc);
    dnnl_memory_desc_t h_u = md_tag(3, dst_d, dnnl_f32, dnnl_ntc);
    dnnl_memory_desc_t wl_u = md_tag(5, wl_d, dnnl_f32, dnnl_ldgoi);
    dnnl_memory_desc_t wi_u = md_tag(5, wi_d, dnnl_f32, dnnl_ldgoi);
    L->acc = ms_xmalloc(sizeof(double) * (size_t)(2 * H + 1));
    L->x_user = mem(&x_u, (void *)x);
    L->wl_user = mem(&wl_u, p->t[MS_LSTM_W_IH]);
    L->wi_user = mem(&wi_u, p->t[MS_LSTM_W_HH]);
    L->dwl_user = mem(&wl_u, g->t[MS_LSTM_W_IH]);
    L->dwi_user = mem(&wi_u, g->t[MS_LSTM_W_HH]);
    L->h_user = mem(&h_u, NULL);
    L->dh_user = mem(&h_u, NULL);
    L->x = dt == dnnl_f32 ? L->x_user : mem(&src, NULL);
    L->h = mem(&dst, NULL);
    L->dh = ddt == dnnl_f32 ? L->dh_user : mem(&ddst, NULL);
    L->dx = mem(&dsrc, NULL);
    L->wl_f = mem(dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0), NULL);
    L->wi_f = mem(dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 1), NULL);
    L->wl_b = mem(dnnl_primitive_desc_query_md(bpd, dnnl_query_weights_md, 0), NULL);
    L->wi_b = mem(dnnl_primitive_desc_query_md(bpd, dnnl_query_weights_md, 1), NULL);
    L->dwl = mem(dnnl_primitive_desc_query_md(bpd, dnnl_query_diff_weights_md, 0), NULL);
    L->dwi = mem(dnnl_primitive_desc_query_md(bpd, dnnl_query_diff_weights_md, 1), NULL);
    L->dbias = mem(&bias, NULL);
    L->bias_sum = mem_ptr(L->bias = mem(&bias, NULL));
    L->ws = mem(dnnl_primitive_desc_query_md(fpd, dnnl_query_workspace_md, 0), NULL);
    L->r_x = dt == dnnl_f32 ? NULL : reorder(L->x_user, L->x);
    L->r_wl_f = reorder(L->wl_user, L->wl_f);
    L->r_wi_f = reorder(L->wi_user, L->wi_f);
    L->r_wl_b = reorder(L->wl_user, L->wl_b);
    L->r_wi_b = reorder(L->wi_user, L->wi_b);
    L->r_h = dt == dnnl_f32 ? NULL : reorder(L->h, L->h_user);
    L->r_dh = ddt == dnnl_f32 ? NULL : reorder(L->dh_user, L->dh);
    L->r_dwl = reorder(L->dwl, L->dwl_user);
    L->r_dwi = reorder(L->dwi, L->dwi_user);
    CK(dnnl_primitive_desc_destroy(fpd));
    CK(dnnl_primitive_desc_destroy(bpd));
    return 0;
}

static void dlstm_free(dlstm *L) {
    dnnl_primitive_t prims[] = {L->fwd, L->bwd, L->r_x, L->r_wl_f, L->r_wi_f, L->r_wl_b,
                                L->r_wi_b, L->r_h, L->r_dh, L->r_dwl, L->r_dwi};
    for (size_t i = 0; i < sizeof prims / sizeof *prims; i++)
        if (prims[i]) dnnl_primitive_destroy(prims[i]);
    dnnl_memory_t mems[] = {L->x_user, L->wl_user, L->wi_user, L->dwl_user, L->dwi_user,
                            L->h_user, L->dh_user, L->wl_f, L->wi_f, L->wl_b, L->wi_b, L->bias,
                            L->h, L->ws, L->dx, L->dwl, L->dwi, L->dbias, L->pad_f, L->pad_b};
    for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    if (L->x != L->x_user) dnnl_memory_destroy(L->x);
    if (L->dh != L->dh_user) dnnl_memory_destroy(L->dh);
    free(L->acc);
    memset(L, 0, sizeof *L);
}

/* Forward: weights to the primitive's layout, x to its type, the LSTM, the linear layer. */
static void dlstm_forward(dlstm *L, float *logits, const ms_lstm_params *p) {
    int H = L->H;
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 4 * H; k++)
            L->bias_sum[d * 4 * H + k] = p->t[d ? MS_LSTM_B_IH_R : MS_LSTM_B_IH][k] +
                                         p->t[d ? MS_LSTM_B_HH_R : MS_LSTM_B_HH][k];
    run_reorder(L->r_wl_f, L->wl_user, L->wl_f);
    run_reorder(L->r_wi_f, L->wi_user, L->wi_f);
    if (L->r_x) run_reorder(L->r_x, L->x_user, L->x);
    dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC_LAYER, L->x},     {DNNL_ARG_WEIGHTS_LAYER, L->wl_f},
                           {DNNL_ARG_WEIGHTS_ITER, L->wi_f}, {DNNL_ARG_BIAS, L->bias},
                           {DNNL_ARG_DST_LAYER, L->h},       {DNNL_ARG_WORKSPACE, L->ws},
                           {DNNL_ARG_SCRATCHPAD, L->pad_f}};
    double t0 = ms_now();
    CK(dnnl_primitive_execute(L->fwd, strm, (int)(sizeof a / sizeof *a), a));
    L->t_fexec += ms_now() - t0;
    if (L->r_h) run_reorder(L->r_h, L->h, L->h_user);
    const float *h = mem_ptr(L->r_h ? L->h_user : L->h), *w = p->t[MS_LSTM_LIN_W];
    long n = (long)L->B * L->T;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < n; r++) {
        float s = p->t[MS_LSTM_LIN_B][0];
        for (int k = 0; k < 2 * H; k++) s += h[r * 2 * H + k] * w[k];
        logits[r] = s;
    }
}

/* Backward: dL/dh = dlogits w, the linear layer's gradients, the LSTM's, gradients to ldgoi. */
static void dlstm_backward(dlstm *L, ms_lstm_params *g, const float *dlogits,
                           const ms_lstm_params *p) {
    int H = L->H;
    long n = (long)L->B * L->T;
    const float *h = mem_ptr(L->r_h ? L->h_user : L->h), *w = p->t[MS_LSTM_LIN_W];
    float *dh = mem_ptr(L->dh_user);
#pragma omp parallel for schedule(static)
    for (long r = 0; r < n; r++)
        for (int k = 0; k < 2 * H; k++) dh[r * 2 * H + k] = dlogits[r] * w[k];
    /* linear weight and bias: sums over the rows in row order (acc: 2H + 1 doubles) */
    double *acc = L->acc;
    memset(acc, 0, sizeof(double) * (size_t)(2 * H + 1));
    for (long r = 0; r < n; r++) {
        double d = dlogits[r];
        for (int k = 0; k < 2 * H; k++) acc[k] += d * h[r * 2 * H + k];
        acc[2 * H] += d;
    }
    for (int k = 0; k < 2 * H; k++) g->t[MS_LSTM_LIN_W][k] += (float)acc[k];
    g->t[MS_LSTM_LIN_B][0] += (float)acc[2 * H];
    if (L->r_dh) run_reorder(L->r_dh, L->dh_user, L->dh);
    run_reorder(L->r_wl_b, L->wl_user, L->wl_b);
    run_reorder(L->r_wi_b, L->wi_user, L->wi_b);
    /* the primitive accumulates into its gradients */
    memset(mem_ptr(L->dwl), 0, dnnl_memory_desc_get_size(mem_md(L->dwl)));
    memset(mem_ptr(L->dwi), 0, dnnl_memory_desc_get_size(mem_md(L->dwi)));
    memset(mem_ptr(L->dbias), 0, dnnl_memory_desc_get_size(mem_md(L->dbias)));
    dnnl_exec_arg_t a[] = {
        {DNNL_ARG_SRC_LAYER, L->x},          {DNNL_ARG_WEIGHTS_LAYER, L->wl_b},
        {DNNL_ARG_WEIGHTS_ITER, L->wi_b},    {DNNL_ARG_BIAS, L->bias},
        {DNNL_ARG_DST_LAYER, L->h},          {DNNL_ARG_WORKSPACE, L->ws},
        {DNNL_ARG_DIFF_SRC_LAYER, L->dx},    {DNNL_ARG_DIFF_WEIGHTS_LAYER, L->dwl},
        {DNNL_ARG_DIFF_WEIGHTS_ITER, L->dwi}, {DNNL_ARG_DIFF_BIAS, L->dbias},
        {DNNL_ARG_DIFF_DST_LAYER, L->dh},    {DNNL_ARG_SCRATCHPAD, L->pad_b}};
    double t0 = ms_now();
    CK(dnnl_primitive_execute(L->bwd, strm, (int)(sizeof a / sizeof *a), a));
    L->t_bexec += ms_now() - t0;
    run_reorder(L->r_dwl, L->dwl, L->dwl_user);
    run_reorder(L->r_dwi, L->dwi, L->dwi_user);
    const float *db = mem_ptr(L->dbias); /* one bias gradient serves b_ih and b_hh */
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 4 * H; k++) {
            g->t[d ? MS_LSTM_B_IH_R : MS_LSTM_B_IH][k] += db[d * 4 * H + k];
            g->t[d ? MS_LSTM_B_HH_R : MS_LSTM_B_HH][k] += db[d * 4 * H + k];
        }
}

/* max |a - b| / max |b| */
static double rel_diff(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md) md = d;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return mb > 0 ? md / mb : md;
}

int main(int argc, char **argv) {
    int B = 64, T = 1000, D = 512, H = 256, threads = 2, iters = 5;
    if (argc >= 5) B = atoi(argv[1]), T = atoi(argv[2]), D = atoi(argv[3]), H = atoi(argv[4]);
    if (argc >= 6) threads = atoi(argv[5]);
    if (argc >= 7) iters = atoi(argv[6]);
    if (B < 1 || T < 1 || D < 1 || H < 1 || threads < 1 || iters < 1 || iters > 64) {
        fprintf(stderr, "usage: bench_dnnl_lstm [B T D H [threads [iters]]]\n");
        return 2;
    }
    CK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CK(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags));
    const dnnl_version_t *v = dnnl_version();
    printf("bench_dnnl_lstm: B=%d T=%d D=%d H=%d, %d threads, oneDNN %d.%d.%d (%s)\n", B, T, D,
           H, threads, v->major, v->minor, v->patch, v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other");
    double fw_flop = 2.0 * B * T * ((double)D * 8 * H + (double)H * 8 * H);
    double bw_flop = 2.0 * B * T * ((double)D * 8 * H + 2.0 * H * 8 * H);
    double dx_flop = 2.0 * B * T * (double)D * 8 * H;
    printf("FLOP model: forward %.1f GFLOP, backward %.1f GFLOP (no dx); the primitive's dx adds"
           " %.1f GFLOP not counted\n", fw_flop * 1e-9, bw_flop * 1e-9, dx_flop * 1e-9);

    ms_lstm_params p, g_ms, g_dn;
    ms_lstm_params_init(&p, D, H);
    ms_lstm_params_init(&g_ms, D, H);
    ms_lstm_params_init(&g_dn, D, H);
    ms_lstm_params_randomize(&p, 1);
    size_t BT = (size_t)B * T;
    float *x = ms_xmalloc(sizeof(float) * BT * D), *dlog = ms_xmalloc(sizeof(float) * BT);
    float *lg_ms = ms_xmalloc(sizeof(float) * BT), *lg_dn = ms_xmalloc(sizeof(float) * BT);
    ms_rng r;
    ms_rng_init(&r, 2, 0, 0);
    for (size_t i = 0; i < BT * D; i++) x[i] = (float)ms_rng_normal(&r);
    for (size_t i = 0; i < BT; i++) dlog[i] = (float)ms_rng_normal(&r) / (float)BT;

    /* --- f32 agreement and the primitive's thread-count determinism --------------------- */
    {
        ms_set_threads(threads);
        ms_lstm_cache cache;
        ms_lstm_cache_init(&cache, D, H, B, T);
        ms_lstm_forward(lg_ms, &cache, x, &p, B, T);
        ms_lstm_params_zero(&g_ms);
        ms_lstm_backward(&g_ms, dlog, &cache, x, &p);
        ms_lstm_cache_free(&cache);
        float *lg1 = ms_xmalloc(sizeof(float) * BT), *g1 = ms_xmalloc(sizeof(float) * p.count);
        for (int pass = 0; pass < 2; pass++) {
            ms_set_threads(pass == 0 ? 1 : threads);
            dlstm L;
            if (dlstm_init(&L, B, T, D, H, dnnl_f32, dnnl_f32, x, &p, &g_dn)) {
                fprintf(stderr, "bench_dnnl_lstm: oneDNN refused the f32 LSTM\n");
                return 3;
            }
            ms_lstm_params_zero(&g_dn);
            dlstm_forward(&L, lg_dn, &p);
            dlstm_backward(&L, &g_dn, dlog, &p);
            dlstm_free(&L);
            if (pass == 0) {
                memcpy(lg1, lg_dn, sizeof(float) * BT);
                memcpy(g1, g_dn.memory, sizeof(float) * p.count);
            }
        }
        printf("f32 primitive vs medselect (max|diff|/max|ref|): logits %.2e", rel_diff(lg_dn, lg_ms, BT));
        for (int i = 0; i < MS_LSTM_NTENSORS; i++)
            if (i == MS_LSTM_W_IH || i == MS_LSTM_W_HH || i == MS_LSTM_B_IH || i == MS_LSTM_LIN_W)
                printf(", %s %.2e", ms_lstm_tensor_name(i),
                       rel_diff(g_dn.t[i], g_ms.t[i], p.size[i] * (i < MS_LSTM_B_IH ? 2 : 1)));
        printf("\n");
        int same_l = !memcmp(lg1, lg_dn, sizeof(float) * BT);
        int same_g = !memcmp(g1, g_dn.memory, sizeof(float) * p.count);
        printf("f32 primitive, 1 vs %d threads: logits %s (max rel %.2e), gradients %s (max rel %.2e)\n",
               threads, same_l ? "bitwise equal" : "DIFFER", rel_diff(lg1, lg_dn, BT),
               same_g ? "bitwise equal" : "DIFFER", rel_diff(g1, g_dn.memory, p.count));
        free(lg1);
        free(g1);
    }

    /* --- timing, per precision: medselect and the primitive alternate ------------------- */
    ms_set_threads(threads);
    for (int pi = 0; pi < 2; pi++) {
        dnnl_data_type_t dt = pi ? dnnl_bf16 : dnnl_f32;
        ms_precision prec = pi ? MS_PREC_BF16 : MS_PREC_F32;
        if (pi && ms_precision_check(prec)) {
            printf("bf16: %s\n", ms_last_error());
            break;
        }
        dlstm L;
        /* bf16: try bf16 gradients of the data first, then f32 */
        int bad = dlstm_init(&L, B, T, D, H, dt, dt, x, &p, &g_dn);
        if (bad && pi) bad = dlstm_init(&L, B, T, D, H, dt, dnnl_f32, x, &p, &g_dn);
        if (!bad) printf("%s: gradients of x and h in %s\n", dt_name(dt), dt_name(L.dh == L.dh_user ? dnnl_f32 : dt));
        if (bad) {
            printf("%s: oneDNN refused the LSTM (step %d)\n", dt_name(dt), bad);
            continue;
        }
        ms_lstm_cache cache;
        ms_lstm_cache_init(&cache, D, H, B, T);
        ms_lstm_cache_set_precision(&cache, prec);
        double mf[64], mb[64], df[64], db[64], cm[64], cd[64], ef[64], eb[64];
        double cmf[64], cmb[64], cdf[64], cdb[64]; /* CPU seconds per phase */
        for (int it = 0; it <= iters; it++) {
            double u0 = cpu_now(), t0 = ms_now();
            ms_lstm_forward(lg_ms, &cache, x, &p, B, T);
            double t1 = ms_now(), u1 = cpu_now();
            ms_lstm_params_zero(&g_ms);
            ms_lstm_backward(&g_ms, dlog, &cache, x, &p);
            double t2 = ms_now(), u2 = cpu_now();
            L.t_fexec = L.t_bexec = 0;
            dlstm_forward(&L, lg_dn, &p);
            double t3 = ms_now(), u3 = cpu_now();
            ms_lstm_params_zero(&g_dn);
            dlstm_backward(&L, &g_dn, dlog, &p);
            double t4 = ms_now(), u4 = cpu_now();
            if (it > 0) {
                mf[it - 1] = t1 - t0, mb[it - 1] = t2 - t1, df[it - 1] = t3 - t2, db[it - 1] = t4 - t3;
                cm[it - 1] = u2 - u0, cd[it - 1] = u4 - u2;
                cmf[it - 1] = u1 - u0, cmb[it - 1] = u2 - u1, cdf[it - 1] = u3 - u2, cdb[it - 1] = u4 - u3;
                ef[it - 1] = L.t_fexec, eb[it - 1] = L.t_bexec;
            }
        }
        double tm[64], td[64];
        for (int i = 0; i < iters; i++) tm[i] = mf[i] + mb[i], td[i] = df[i] + db[i];
        double a = median(mf, iters), b = median(mb, iters), c = median(tm, iters);
        double e = median(df, iters), f = median(db, iters), h = median(td, iters);
        printf("%s medselect  forward %.3f s %6.1f GFLOP/s  backward %.3f s %6.1f  total %.3f s %6.1f\n",
               dt_name(dt), a, fw_flop / a * 1e-9, b, bw_flop / b * 1e-9, c, (fw_flop + bw_flop) / c * 1e-9);
        printf("%s oneDNN     forward %.3f s %6.1f GFLOP/s  backward %.3f s %6.1f  total %.3f s %6.1f"
               "  (with dx: backward %.1f GFLOP/s)\n", dt_name(dt), e, fw_flop / e * 1e-9, f,
               bw_flop / f * 1e-9, h, (fw_flop + bw_flop) / h * 1e-9, (bw_flop + dx_flop) / f * 1e-9);
        printf("%s oneDNN     inside the primitives: forward %.3f s, backward %.3f s (the rest: reorders,"
               " linear layer)\n", dt_name(dt), median(ef, iters), median(eb, iters));
        printf("%s CPU seconds, forward / backward / both: medselect %.3f / %.3f / %.3f, oneDNN %.3f /"
               " %.3f / %.3f (ratio %.2f / %.2f / %.2f)\n", dt_name(dt), median(cmf, iters),
               median(cmb, iters), median(cm, iters), median(cdf, iters), median(cdb, iters),
               median(cd, iters), median(cdf, iters) / median(cmf, iters),
               median(cdb, iters) / median(cmb, iters), median(cd, iters) / median(cm, iters));
        printf("%s oneDNN / medselect time: forward %.2f, backward %.2f, total %.2f; logits rel diff %.2e\n",
               dt_name(dt), e / a, f / b, h / c, rel_diff(lg_dn, lg_ms, BT));
        fflush(stdout);
        ms_lstm_cache_free(&cache);
        dlstm_free(&L);
    }
    free(x);
    free(dlog);
    free(lg_ms);
    free(lg_dn);
    ms_lstm_params_free(&p);
    ms_lstm_params_free(&g_ms);
    ms_lstm_params_free(&g_dn);
    dnnl_stream_destroy(strm);
    dnnl_engine_destroy(eng);
    return 0;
}
