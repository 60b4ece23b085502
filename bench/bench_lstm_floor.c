/* bench_lstm_floor.c: the floor of the selector's training step under its current
 * formulation: the matrix products that ms_lstm_forward and ms_lstm_backward make (model.h,
 * deduplication off, as at the reference configuration), through the same gemm.h entry points
 * with the same shapes, strides and threading, back to back with no gate math; and the same
 * products at oneDNN's best rate for those shapes.
 *
 * Usage: bench_lstm_floor [B T D H [threads [iters]]]   (default 64 1000 512 256, 2, 3)
 *
 * Phases (BT = B*T rows; "per direction" products run one per thread, as in ms_lstm.c):
 *   proj     x (BT, D) W_ih^T -> (BT, 8H): one ms_gemm / ms_gemm_bf16 over both directions
 *   rec_fwd  per direction, T-1 steps of (B, H) x (H, 4H), W_hh^T packed (ms_gemm_packed_run)
 *   rec_bwd  per direction, T-1 steps of (B, 4H) x (4H, H), W_hh packed; f32 reads the rows
 *            of dG in place (row stride T*8H), bf16 a dense (B, 4H) copy
 *   wgrad    f32: dW_ih (8H, D) = dG^T x, one ms_gemm, then per direction dW_hh (4H, H) over
 *            BT-1 rows; bf16: per direction one ms_gemm_bf16_1t (4H, D+H) over BT rows
 * oneDNN's best, each phase alone, 2 threads inside oneDNN:
 *   proj and wgrad through dnnl_sgemm / dnnl_gemm_bf16bf16f32 (its own threading; wgrad as
 *   one (8H, D) product and the two (4H, H) products in turn);
 *   rec_fwd / rec_bwd through the matmul primitive with weights in its own packed layout
 *   (format_tag_any, reordered once), either per direction in turn (2(T-1) calls) or both
 *   directions batched as one (2, B, K) x (2, K, N) matmul (T-1 calls).
 * GFLOP/s by the FLOP model of bench/README.md (a phase's share of it). Medians of `iters`
 * runs after one warm-up. Operands hold random values; the speed does not depend on them.
 */
#define _POSIX_C_SOURCE 200809L
#include "medselect/gemm.h"
#include "medselect/model.h"

#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"

/* oneDNN's bf16 GEMM (exported, not declared by the 2.x header; see ms_gemm.c) */
dnnl_status_t dnnl_gemm_bf16bf16f32(char transa, char transb, dnnl_dim_t M, dnnl_dim_t N,
                                    dnnl_dim_t K, float alpha, const ms_bf16 *A, dnnl_dim_t lda,
                                    const ms_bf16 *B, dnnl_dim_t ldb, float beta, float *C,
                                    dnnl_dim_t ldc);

static void *xalloc(size_t bytes) {
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench_lstm_floor: out of memory\n");
        exit(2);
    }
    return p;
}

static void fill(float *a, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        a[i] = (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
}

static int B, T, D, H, iters;

/* ---- medselect's calls ----------------------------------------------------------------- */
typedef struct {
    ms_precision prec;
    float *x, *w_ih, *w_hh, *gates, *h, *S, *dh, *hp, *gw, *dw;
    ms_bf16 *x_bf, *w_ih_bf, *z_bf, *dg_bf, *step_bf;
    ms_gemm_packed *pf[2], *pb[2];
} ms_side;

static void ms_side_init(ms_side *s, ms_precision prec) {
    size_t BT = (size_t)B * T, H4 = 4 * (size_t)H, lz = (size_t)D + 2 * H;
    memset(s, 0, sizeof *s);
    s->prec = prec;
    s->x = xalloc(sizeof(float) * BT * D);
    s->w_ih = xalloc(sizeof(float) * 2 * H4 * D);
    s->w_hh = xalloc(sizeof(float) * 2 * H4 * H);
    s->gates = xalloc(sizeof(float) * BT * 2 * H4);
    s->h = xalloc(sizeof(float) * BT * 2 * H);
    s->S = xalloc(sizeof(float) * 2 * B * H4);
    s->dh = xalloc(sizeof(float) * 2 * B * H);
    s->hp = xalloc(sizeof(float) * 2 * B * H);
    s->gw = xalloc(sizeof(float) * 2 * H4 * (D + H));
    s->dw = xalloc(sizeof(float) * 2 * H4 * (D + H));
    fill(s->x, BT * D, 1);
    fill(s->w_ih, 2 * H4 * D, 2);
    fill(s->w_hh, 2 * H4 * H, 3);
    fill(s->gates, BT * 2 * H4, 4);
    fill(s->h, BT * 2 * H, 5);
    fill(s->hp, 2 * (size_t)B * H, 6);
    memset(s->gw, 0, sizeof(float) * 2 * H4 * (D + H));
    if (prec == MS_PREC_BF16) {
        s->x_bf = xalloc(sizeof(ms_bf16) * BT * lz);
        s->z_bf = s->x_bf; /* rows [h_prev | x | h_next] as the cache's z_bf; x at z_bf + H */
        s->w_ih_bf = xalloc(sizeof(ms_bf16) * 2 * H4 * D);
        s->dg_bf = xalloc(sizeof(ms_bf16) * BT * 2 * H4);
        s->step_bf = xalloc(sizeof(ms_bf16) * 2 * B * H4);
        float *tmp = xalloc(sizeof(float) * BT * lz);
        fill(tmp, BT * lz, 7);
        ms_bf16_from_f32(s->z_bf, tmp, BT * lz);
        free(tmp);
        ms_bf16_from_f32(s->w_ih_bf, s->w_ih, 2 * H4 * D);
        ms_bf16_from_f32(s->dg_bf, s->gates, BT * 2 * H4);
        ms_bf16_from_f32(s->step_bf, s->gates, 2 * (size_t)B * H4);
    }
    for (int d = 0; d < 2; d++) {
        const float *W = s->w_hh + (size_t)d * H4 * H;
        s->pf[d] = ms_gemm_pack('T', 4 * H, H, W, H, prec);
        s->pb[d] = ms_gemm_pack('N', H, 4 * H, W, H, prec);
    }
}

static void ms_side_free(ms_side *s) {
    float *f[] = {s->x, s->w_ih, s->w_hh, s->gates, s->h, s->S, s->dh, s->hp, s->gw, s->dw};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) free(f[i]);
    free(s->x_bf), free(s->w_ih_bf), free(s->dg_bf), free(s->step_bf);
    for (int d = 0; d < 2; d++) ms_gemm_packed_free(s->pf[d]), ms_gemm_packed_free(s->pb[d]);
}

static int dir_threads(void) { return omp_get_max_threads() >= 2 ? 2 : 1; }

static void ms_proj(ms_side *s) {
    int BT = B * T, lz = D + 2 * H;
    if (s->prec == MS_PREC_BF16)
        ms_gemm_bf16('N', 'T', BT, 8 * H, D, 1.0f, s->z_bf + H, lz, s->w_ih_bf, D, 0.0f, s->gates, 8 * H);
    else
        ms_gemm('N', 'T', BT, 8 * H, D, 1.0f, s->x, D, s->w_ih, D, 0.0f, s->gates, 8 * H, MS_PREC_F32);
}

static void ms_rec_fwd(ms_side *s) {
    int H4 = 4 * H;
#pragma omp parallel num_threads(dir_threads())
    for (int d = omp_get_thread_num(); d < 2; d += omp_get_num_threads()) {
        float *S = s->S + (size_t)d * B * H4;
        for (int t = 1; t < T; t++) {
            if (s->prec == MS_PREC_BF16)
                ms_gemm_packed_run_bf16(s->pf[d], B, s->step_bf + (size_t)d * B * H4, H, S, H4);
            else
                ms_gemm_packed_run(s->pf[d], B, s->hp + (size_t)d * B * H, H, S, H4);
        }
    }
}

static void ms_rec_bwd(ms_side *s) {
    int H4 = 4 * H;
#pragma omp parallel num_threads(dir_threads())
    for (int d = omp_get_thread_num(); d < 2; d += omp_get_num_threads()) {
        float *dh = s->dh + (size_t)d * B * H;
        for (int t = T - 1; t >= 1; t--) {
            if (s->prec == MS_PREC_BF16)
                ms_gemm_packed_run_bf16(s->pb[d], B, s->step_bf + (size_t)d * B * H4, H4, dh, H);
            else
                ms_gemm_packed_run(s->pb[d], B, s->gates + (size_t)t * 8 * H + (size_t)d * H4,
                                   T * 8 * H, dh, H);
        }
    }
}

static void ms_wgrad(ms_side *s) {
    int BT = B * T, H4 = 4 * H, lz = D + 2 * H;
    if (s->prec == MS_PREC_BF16) {
#pragma omp parallel num_threads(dir_threads())
        for (int d = omp_get_thread_num(); d < 2; d += omp_get_num_threads())
            ms_gemm_bf16_1t('T', 'N', H4, D + H, BT, 1.0f, s->dg_bf + (size_t)d * H4, 8 * H,
                            s->z_bf + (d ? H : 0), lz, 0.0f, s->dw + (size_t)d * H4 * (D + H), D + H);
        return;
    }
    ms_gemm('T', 'N', 8 * H, D, BT, 1.0f, s->gates, 8 * H, s->x, D, 1.0f, s->gw, D, MS_PREC_F32);
#pragma omp parallel num_threads(dir_threads())
    for (int d = omp_get_thread_num(); d < 2; d += omp_get_num_threads())
        ms_gemm('T', 'N', H4, H, BT - 1, 1.0f, s->gates + (size_t)(d ? H4 : 8 * H), 8 * H,
                s->h + (d ? 3 * (size_t)H : 0), 2 * H, 1.0f, s->dw + (size_t)d * H4 * H, H,
                MS_PREC_F32);
}

/* ---- oneDNN's best --------------------------------------------------------------------- */
static dnnl_engine_t eng;
static dnnl_stream_t strm;

/* A (batch, M, K) x (batch, K, N) -> (batch, M, N) f32 matmul primitive with weights in
 * its preferred layout; src of type dt. */
typedef struct {
    dnnl_primitive_t mm;
    dnnl_memory_t src, wei, dst;
} mm_t;

static void mm_init(mm_t *m, int batch, int M, int K, int N, dnnl_data_type_t dt) {
    dnnl_memory_desc_t sd, wd, dd, wu;
    dnnl_dims_t s3 = {batch, M, K}, w3 = {batch, K, N}, d3 = {batch, M, N};
    CK(dnnl_memory_desc_init_by_tag(&sd, 3, s3, dt, dnnl_abc));
    CK(dnnl_memory_desc_init_by_tag(&wd, 3, w3, dt, dnnl_format_tag_any));
    CK(dnnl_memory_desc_init_by_tag(&dd, 3, d3, dnnl_f32, dnnl_abc));
    dnnl_matmul_desc_t desc;
    CK(dnnl_matmul_desc_init(&desc, &sd, &wd, NULL, &dd));
    dnnl_primitive_desc_t pd;
    CK(dnnl_primitive_desc_create(&pd, &desc, NULL, eng, NULL));
    CK(dnnl_primitive_create(&m->mm, pd));
    CK(dnnl_memory_create(&m->src, &sd, eng, DNNL_MEMORY_ALLOCATE));
    CK(dnnl_memory_create(&m->dst, &dd, eng, DNNL_MEMORY_ALLOCATE));
    CK(dnnl_memory_create(&m->wei, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0),
                          eng, DNNL_MEMORY_ALLOCATE));
    /* weights from a plain (batch, K, N) f32 array into the primitive's layout */
    CK(dnnl_memory_desc_init_by_tag(&wu, 3, w3, dnnl_f32, dnnl_abc));
    dnnl_memory_t wm;
    CK(dnnl_memory_create(&wm, &wu, eng, DNNL_MEMORY_ALLOCATE));
    void *wp;
    CK(dnnl_memory_get_data_handle(wm, &wp));
    fill(wp, (size_t)batch * K * N, 8);
    dnnl_primitive_desc_t rpd;
    dnnl_primitive_t r;
    const dnnl_memory_desc_t *wmd;
    CK(dnnl_memory_get_memory_desc(m->wei, &wmd));
    CK(dnnl_reorder_primitive_desc_create(&rpd, &wu, eng, wmd, eng, NULL));
    CK(dnnl_primitive_create(&r, rpd));
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, wm}, {DNNL_ARG_TO, m->wei}};
    CK(dnnl_primitive_execute(r, strm, 2, a));
    dnnl_primitive_destroy(r);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_destroy(wm);
    dnnl_primitive_desc_destroy(pd);
    void *sp;
    CK(dnnl_memory_get_data_handle(m->src, &sp));
    memset(sp, 0x3c, dnnl_memory_desc_get_size(&sd)); /* some finite value in f32 and bf16 */
}

static void mm_run(mm_t *m) {
    dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, m->src}, {DNNL_ARG_WEIGHTS, m->wei}, {DNNL_ARG_DST, m->dst}};
    CK(dnnl_primitive_execute(m->mm, strm, 3, a));
}

static void mm_free(mm_t *m) {
    dnnl_primitive_destroy(m->mm);
    dnnl_memory_destroy(m->src);
    dnnl_memory_destroy(m->wei);
    dnnl_memory_destroy(m->dst);
}

typedef struct {
    ms_side *s;
    mm_t one[2], two[2]; /* [0] forward step, [1] backward step; one: per direction, two: batched */
} dn_side;

static void dn_proj(dn_side *q) {
    ms_side *s = q->s;
    int BT = B * T, lz = D + 2 * H;
    if (s->prec == MS_PREC_BF16)
        CK(dnnl_gemm_bf16bf16f32('N', 'T', BT, 8 * H, D, 1.0f, s->z_bf + H, lz, s->w_ih_bf, D, 0.0f,
                                 s->gates, 8 * H));
    else
        CK(dnnl_sgemm('N', 'T', BT, 8 * H, D, 1.0f, s->x, D, s->w_ih, D, 0.0f, s->gates, 8 * H));
}

static void dn_wgrad(dn_side *q) {
    ms_side *s = q->s;
    int BT = B * T, H4 = 4 * H, lz = D + 2 * H;
    if (s->prec == MS_PREC_BF16) {
        for (int d = 0; d < 2; d++)
            CK(dnnl_gemm_bf16bf16f32('T', 'N', H4, D + H, BT, 1.0f, s->dg_bf + (size_t)d * H4, 8 * H,
                                     s->z_bf + (d ? H : 0), lz, 0.0f, s->dw + (size_t)d * H4 * (D + H),
                                     D + H));
        return;
    }
    CK(dnnl_sgemm('T', 'N', 8 * H, D, BT, 1.0f, s->gates, 8 * H, s->x, D, 1.0f, s->gw, D));
    for (int d = 0; d < 2; d++)
        CK(dnnl_sgemm('T', 'N', H4, H, BT - 1, 1.0f, s->gates + (size_t)(d ? H4 : 8 * H), 8 * H,
                      s->h + (d ? 3 * (size_t)H : 0), 2 * H, 1.0f, s->dw + (size_t)d * H4 * H, H));
}

static void dn_rec(dn_side *q, int pass, int batched) {
    for (int t = 1; t < T; t++) {
        if (batched) mm_run(&q->two[pass]);
        else mm_run(&q->one[pass]), mm_run(&q->one[pass]);
    }
}

/* ---- timing ------------------------------------------------------------------------------ */
typedef void (*phase_fn)(void *ctx, int arg);
static void call_ms(void *c, int a) {
    ms_side *s = c;
    if (a == 0) ms_proj(s);
    else if (a == 1) ms_rec_fwd(s);
    else if (a == 2) ms_rec_bwd(s);
    else ms_wgrad(s);
}
static void call_dn(void *c, int a) {
    dn_side *q = c;
    if (a == 0) dn_proj(q);
    else if (a == 1) dn_rec(q, 0, 0);
    else if (a == 2) dn_rec(q, 1, 0);
    else if (a == 3) dn_wgrad(q);
    else if (a == 4) dn_rec(q, 0, 1);
    else dn_rec(q, 1, 1);
}

/* median wall seconds; *cpu = median CPU seconds */
static double timed(phase_fn f, void *ctx, int arg, double *cpu) {
    double t[64], u[64];
    for (int i = 0; i <= iters; i++) {
        double t0 = ms_now(), u0 = cpu_now();
        f(ctx, arg);
        if (i > 0) t[i - 1] = ms_now() - t0, u[i - 1] = cpu_now() - u0;
    }
    *cpu = median(u, iters);
    return median(t, iters);
}

/* the whole ms_lstm_forward + ms_lstm_backward, for comparison with the floor */
typedef struct {
    ms_lstm_params p, g;
    ms_lstm_cache cache;
    float *x, *logits, *dlog;
} step_side;

static void call_step(void *c, int a) {
    step_side *st = c;
    (void)a;
    ms_lstm_forward(st->logits, &st->cache, st->x, &st->p, B, T);
    ms_lstm_params_zero(&st->g);
    ms_lstm_backward(&st->g, st->dlog, &st->cache, st->x, &st->p);
}

int main(int argc, char **argv) {
    int threads = 2;
    B = 64, T = 1000, D = 512, H = 256, iters = 3;
    if (argc >= 5) B = atoi(argv[1]), T = atoi(argv[2]), D = atoi(argv[3]), H = atoi(argv[4]);
    if (argc >= 6) threads = atoi(argv[5]);
    if (argc >= 7) iters = atoi(argv[6]);
    if (B < 1 || T < 2 || D < 1 || H < 1 || threads < 1 || iters < 1 || iters > 64) {
        fprintf(stderr, "usage: bench_lstm_floor [B T D H [threads [iters]]]\n");
        return 2;
    }
    ms_set_threads(threads);
    CK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CK(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags));
    double BT = (double)B * T;
    /* the FLOP model's share of each phase (bench/README.md) */
    double fl[4] = {2 * BT * D * 8 * H, 2 * BT * H * 8 * H, 2 * BT * H * 8 * H,
                    2 * BT * D * 8 * H + 2 * BT * H * 8 * H};
    const char *name[4] = {"proj", "rec_fwd", "rec_bwd", "wgrad"};
    printf("bench_lstm_floor: B=%d T=%d D=%d H=%d, %d threads, medians of %d; FLOP model %.1f GFLOP"
           " per step\n", B, T, D, H, threads, iters, (fl[0] + fl[1] + fl[2] + fl[3]) * 1e-9);
    for (int pi = 0; pi < 2; pi++) {
        ms_precision prec = pi ? MS_PREC_BF16 : MS_PREC_F32;
        if (pi && ms_precision_check(prec)) break;
        ms_side s;
        ms_side_init(&s, prec);
        dn_side q = {.s = &s};
        dnnl_data_type_t dt = pi ? dnnl_bf16 : dnnl_f32;
        mm_init(&q.one[0], 1, B, H, 4 * H, dt);
        mm_init(&q.one[1], 1, B, 4 * H, H, dt);
        mm_init(&q.two[0], 2, B, H, 4 * H, dt);
        mm_init(&q.two[1], 2, B, 4 * H, H, dt);
        double tm[4], td[6], um[4], ud[6], sm = 0, sd = 0, usm = 0, usd = 0;
        for (int k = 0; k < 4; k++) tm[k] = timed(call_ms, &s, k, &um[k]), sm += tm[k], usm += um[k];
        for (int k = 0; k < 6; k++) td[k] = timed(call_dn, &q, k, &ud[k]);
        step_side st;
        size_t nbt = (size_t)B * T;
        ms_lstm_params_init(&st.p, D, H);
        ms_lstm_params_init(&st.g, D, H);
        ms_lstm_params_randomize(&st.p, 1);
        ms_lstm_cache_init(&st.cache, D, H, B, T);
        ms_lstm_cache_set_precision(&st.cache, prec);
        st.x = s.x;
        st.logits = xalloc(sizeof(float) * nbt);
        st.dlog = xalloc(sizeof(float) * nbt);
        fill(st.dlog, nbt, 9);
        double ustep, tstep = timed(call_step, &st, 0, &ustep);
        free(st.logits), free(st.dlog);
        ms_lstm_cache_free(&st.cache);
        ms_lstm_params_free(&st.p), ms_lstm_params_free(&st.g);
        const char *pn = ms_precision_name(prec);
        for (int k = 0; k < 4; k++) {
            double best = td[k];
            if (k == 1 && td[4] < best) best = td[4];
            if (k == 2 && td[5] < best) best = td[5];
            sd += best;
            if (k == 1 && ud[4] < ud[1]) usd += ud[4];
            else if (k == 2 && ud[5] < ud[2]) usd += ud[5];
            else usd += ud[k];
            printf("%-4s %-8s medselect %.3f s %6.1f GFLOP/s %.3f CPU-s | oneDNN %.3f s %6.1f %.3f CPU-s",
                   pn, name[k], tm[k], fl[k] / tm[k] * 1e-9, um[k], td[k], fl[k] / td[k] * 1e-9, ud[k]);
            if (k == 1 || k == 2)
                printf(" (per direction), batched %.3f s %6.1f %.3f CPU-s", td[k + 3],
                       fl[k] / td[k + 3] * 1e-9, ud[k + 3]);
            printf("\n");
        }
        double tot = fl[0] + fl[1] + fl[2] + fl[3];
        printf("%-4s floor    medselect %.3f s %6.1f GFLOP/s %.3f CPU-s (forward %.3f, backward %.3f) |"
               " oneDNN best per phase %.3f s %6.1f %.3f CPU-s\n", pn, sm, tot / sm * 1e-9, usm,
               tm[0] + tm[1], tm[2] + tm[3], sd, tot / sd * 1e-9, usd);
        printf("%-4s step     ms_lstm_forward+backward %.3f s %6.1f GFLOP/s %.3f CPU-s; floor / step:"
               " wall %.2f, CPU %.2f\n", pn, tstep, tot / tstep * 1e-9, ustep, sm / tstep, usm / ustep);
        fflush(stdout);
        for (int k = 0; k < 2; k++) mm_free(&q.one[k]), mm_free(&q.two[k]);
        ms_side_free(&s);
    }
    dnnl_stream_destroy(strm);
    dnnl_engine_destroy(eng);
    return 0;
}
