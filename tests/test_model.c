/* test_model.c: the selector network (fast batched kernel, reference kernel, PyTorch
 * parity, finite differences, thread independence), the selection policies, safetensors
 * and checkpoints. Reference values come from tests/fixtures/gen_model.py. */
#define _POSIX_C_SOURCE 200809L
#include "medselect/checkpoint.h"
#include "medselect/model.h"
#include "medselect/policy.h"
#include "medselect/safetensors.h"
#include "ms_test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers --------------------------------------------------------------------------- */

static const char *fx(const char *fmt, const char *a, const char *b) {
    static char buf[8][512];
    static int slot = 0;
    char name[400];
    snprintf(name, sizeof name, fmt, a, b);
    char *out = buf[slot++ & 7];
    snprintf(out, 512, "%s", ms_fixture(name));
    return out;
}

/* Loads a fixture into a malloc'd float array; checks the element count when n > 0. */
static float *load_f(const char *path, size_t n) {
    int nd;
    long sh[4];
    double *d = ms_load_npy_d(path, &nd, sh);
    size_t total = 1;
    for (int i = 0; i < nd; i++) total *= (size_t)sh[i];
    if (n && total != n) {
        fprintf(stderr, "%s: %zu values, expected %zu\n", path, total, n);
        abort();
    }
    float *f = malloc(sizeof(float) * (total ? total : 1));
    for (size_t i = 0; i < total; i++) f[i] = (float)d[i];
    free(d);
    return f;
}

static void fill_normal(float *a, size_t n, uint64_t seed, double scale) {
    ms_rng r;
    ms_rng_init(&r, seed, 99, 0);
    for (size_t i = 0; i < n; i++) a[i] = (float)(scale * ms_rng_normal(&r));
}

/* The integer-hash parameters of the "big" fixture (gen_model.py: hash_params). */
static uint64_t splitmix_fin(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void hash_params(ms_lstm_params *p) {
    for (int i = 0; i < MS_LSTM_NTENSORS; i++) {
        double k = i < 8 ? 1.0 / sqrt((double)p->H) : 1.0 / sqrt(2.0 * p->H);
        for (size_t j = 0; j < p->size[i]; j++) {
            double u = (double)(splitmix_fin(((uint64_t)i << 32) | j) >> 40) / 16777216.0;
            p->t[i][j] = (float)(k * (2.0 * u - 1.0));
        }
    }
}

/* ---- PyTorch parity ------------------------------------------------------------------- */

static void test_pytorch_case(const char *tag, int B, int T, int D, int H, int hashed) {
    printf("-- PyTorch parity %s (B=%d T=%d D=%d H=%d)\n", tag, B, T, D, H);
    ms_lstm_params p, g;
    ms_lstm_params_init(&p, D, H);
    ms_lstm_params_init(&g, D, H);
    if (hashed) hash_params(&p);
    else
        for (int i = 0; i < MS_LSTM_NTENSORS; i++) {
            float *v = load_f(fx("model/%s_p_%s.npy", tag, ms_lstm_tensor_name(i)), p.size[i]);
            memcpy(p.t[i], v, sizeof(float) * p.size[i]);
            free(v);
        }
    size_t BT = (size_t)B * T;
    float *x = load_f(fx("model/%s_%s.npy", tag, "x"), BT * D);
    float *R = load_f(fx("model/%s_%s.npy", tag, "R"), BT);
    float *ref_logits = load_f(fx("model/%s_%s.npy", tag, "logits"), BT);
    float *logits = malloc(sizeof(float) * BT);
    ms_lstm_cache cache;
    ms_lstm_cache_init(&cache, D, H, B + 1, T + 3); /* larger than needed on purpose */
    ms_lstm_forward(logits, &cache, x, &p, B, T);
    ms_expect_close_f("logits vs PyTorch", logits, ref_logits, BT, 1e-5, 1e-4);
    ms_expect_relerr_f("logits vs PyTorch (relerr)", logits, ref_logits, BT, 1e-4);
    ms_lstm_backward(&g, R, &cache, x, &p);

    /* the double-precision reference kernel, task by task, on the same fixtures */
    double *rl = malloc(sizeof(double) * T), *rc = malloc(sizeof(double) * ms_lstm_ref_cache_size(T, H));
    double *rg = calloc(p.count, sizeof(double)), *dl = malloc(sizeof(double) * T);
    float *rlf = malloc(sizeof(float) * BT);
    for (int b = 0; b < B; b++) {
        ms_lstm_forward_ref(rl, rc, x + (size_t)b * T * D, &p, T);
        for (int t = 0; t < T; t++) {
            rlf[(size_t)b * T + t] = (float)rl[t];
            dl[t] = R[(size_t)b * T + t];
        }
        ms_lstm_backward_ref(rg, dl, rc, x + (size_t)b * T * D, &p, T);
    }
    ms_expect_relerr_f("reference logits vs PyTorch", rlf, ref_logits, BT, 1e-4);

    for (int i = 0; i < MS_LSTM_NTENSORS; i++) {
        const char *name = ms_lstm_tensor_name(i);
        char what[160];
        float *rgf = malloc(sizeof(float) * p.size[i]);
        for (size_t j = 0; j < p.size[i]; j++) rgf[j] = (float)rg[p.offset[i] + j];
        if (hashed && p.size[i] > 4096) {
            size_t n;
            double *idx = ms_load_npy_all(fx("model/%s_i_%s.npy", tag, name), &n);
            float *ref = load_f(fx("model/%s_g_%s.npy", tag, name), n);
            float *got = malloc(sizeof(float) * n), *got_ref = malloc(sizeof(float) * n);
            for (size_t k = 0; k < n; k++) {
                got[k] = g.t[i][(size_t)idx[k]];
                got_ref[k] = rgf[(size_t)idx[k]];
            }
            snprintf(what, sizeof what, "grad %s vs PyTorch (%zu sampled entries)", name, n);
            ms_expect_relerr_f(what, got, ref, n, 1e-4);
            snprintf(what, sizeof what, "reference grad %s vs PyTorch (sampled)", name);
            ms_expect_relerr_f(what, got_ref, ref, n, 1e-4);
            free(idx);
            free(ref);
            free(got);
            free(got_ref);
        } else {
            float *ref = load_f(fx("model/%s_g_%s.npy", tag, name), p.size[i]);
            snprintf(what, sizeof what, "grad %s vs PyTorch", name);
            ms_expect_relerr_f(what, g.t[i], ref, p.size[i], 1e-4);
            snprintf(what, sizeof what, "reference grad %s vs PyTorch", name);
            ms_expect_relerr_f(what, rgf, ref, p.size[i], 1e-4);
            free(ref);
        }
        free(rgf);
    }
    free(rl);
    free(rc);
    free(rg);
    free(dl);
    free(rlf);
    free(x);
    free(R);
    free(ref_logits);
    free(logits);
    ms_lstm_cache_free(&cache);
    ms_lstm_params_free(&p);
    ms_lstm_params_free(&g);
}

/* ---- finite differences in double on the reference kernel ------------------------------ */

static double ref_loss(const ms_lstm_params *p, const float *x, const double *R, int T,
                       double *logits, double *cache) {
    ms_lstm_forward_ref(logits, cache, x, p, T);
    double L = 0;
    for (int t = 0; t < T; t++) L += R[t] * logits[t];
    return L;
}

static void test_finite_differences(void) {
    printf("-- finite differences (D=3 H=2 T=4)\n");
    enum { D = 3, H = 2, T = 4 };
    ms_lstm_params p;
    ms_lstm_params_init(&p, D, H);
    ms_lstm_params_randomize(&p, 11);
    for (size_t i = 0; i < p.count; i++) p.memory[i] *= 2.0f; /* larger weights: livelier */
    float x[T * D];
    fill_normal(x, (size_t)T * D, 12, 1.0);
    double R[T] = {0.7, -1.3, 0.4, 2.0}, logits[T];
    double *cache = malloc(sizeof(double) * ms_lstm_ref_cache_size(T, H));
    double *grad = calloc(p.count, sizeof(double)), *fd = calloc(p.count, sizeof(double));
    ref_loss(&p, x, R, T, logits, cache);
    ms_lstm_backward_ref(grad, R, cache, x, &p, T);
    for (size_t k = 0; k < p.count; k++) {
        float v = p.memory[k];
        float up = v + 1e-3f, dn = v - 1e-3f;
        p.memory[k] = up;
        double Lu = ref_loss(&p, x, R, T, logits, cache);
        p.memory[k] = dn;
        double Ld = ref_loss(&p, x, R, T, logits, cache);
        p.memory[k] = v;
        fd[k] = (Lu - Ld) / ((double)up - (double)dn);
    }
    ms_expect_close_d("reference gradient vs central differences", grad, fd, p.count, 1e-7, 1e-5);
    /* the fast kernel on the same problem (float32) */
    ms_lstm_params g;
    ms_lstm_params_init(&g, D, H);
    ms_lstm_cache c;
    ms_lstm_cache_init(&c, D, H, 1, T);
    float lf[T], Rf[T];
    for (int t = 0; t < T; t++) Rf[t] = (float)R[t];
    ms_lstm_forward(lf, &c, x, &p, 1, T);
    ms_lstm_backward(&g, Rf, &c, x, &p);
    float *fdf = malloc(sizeof(float) * p.count);
    for (size_t k = 0; k < p.count; k++) fdf[k] = (float)fd[k];
    ms_expect_close_f("fast gradient vs central differences", g.memory, fdf, p.count, 1e-5, 1e-4);
    free(fdf);
    free(cache);
    free(grad);
    free(fd);
    ms_lstm_cache_free(&c);
    ms_lstm_params_free(&g);
    ms_lstm_params_free(&p);
}

/* ---- fast vs reference ----------------------------------------------------------------- */

/* dup > 0: the rows of x are drawn from `dup` distinct rows (pools from one small split),
 * which takes the forward's and backward's repeated-row path. */
static void test_fast_vs_ref(int B, int T, int D, int H, uint64_t seed, int dup) {
    printf("-- fast vs reference (B=%d T=%d D=%d H=%d%s)\n", B, T, D, H, dup ? ", repeated rows" : "");
    ms_lstm_params p, g;
    ms_lstm_params_init(&p, D, H);
    ms_lstm_params_init(&g, D, H);
    ms_lstm_params_randomize(&p, seed);
    size_t BT = (size_t)B * T;
    float *x = malloc(sizeof(float) * BT * D), *dlog = malloc(sizeof(float) * BT);
    float *logits = malloc(sizeof(float) * BT), *rlf = malloc(sizeof(float) * BT);
    fill_normal(x, BT * D, seed + 1, 1.0);
    fill_normal(dlog, BT, seed + 2, 1.0);
    for (size_t r = 0; dup && r < BT; r++) /* row r := distinct row (7r + 3) mod dup */
        memcpy(x + r * D, x + ((7 * r + 3) % (size_t)dup) * D, sizeof(float) * (size_t)D);
    ms_lstm_cache c;
    ms_lstm_cache_init(&c, D, H, B + 2, T + 5);
    ms_lstm_forward(logits, &c, x, &p, B, T);
    MS_EXPECT(dup ? c.U > 0 && c.U <= dup : c.U == 0);
    ms_lstm_backward(&g, dlog, &c, x, &p);
    double *rl = malloc(sizeof(double) * T), *rc = malloc(sizeof(double) * ms_lstm_ref_cache_size(T, H));
    double *rg = calloc(p.count, sizeof(double)), *dl = malloc(sizeof(double) * T);
    for (int b = 0; b < B; b++) {
        ms_lstm_forward_ref(rl, rc, x + (size_t)b * T * D, &p, T);
        for (int t = 0; t < T; t++) {
            rlf[(size_t)b * T + t] = (float)rl[t];
            dl[t] = dlog[(size_t)b * T + t];
        }
        ms_lstm_backward_ref(rg, dl, rc, x + (size_t)b * T * D, &p, T);
    }
    ms_expect_close_f("fast logits vs reference", logits, rlf, BT, 1e-5, 1e-4);
    for (int i = 0; i < MS_LSTM_NTENSORS; i++) {
        float *r = malloc(sizeof(float) * p.size[i]);
        for (size_t j = 0; j < p.size[i]; j++) r[j] = (float)rg[p.offset[i] + j];
        char what[128];
        snprintf(what, sizeof what, "fast grad %s vs reference", ms_lstm_tensor_name(i));
        ms_expect_relerr_f(what, g.t[i], r, p.size[i], 1e-4);
        free(r);
    }
    /* backward accumulates: a second forward/backward doubles the gradient */
    ms_lstm_params g2;
    ms_lstm_params_init(&g2, D, H);
    ms_lstm_params_copy(&g2, &g);
    ms_lstm_forward(logits, &c, x, &p, B, T);
    ms_lstm_backward(&g2, dlog, &c, x, &p);
    for (size_t k = 0; k < p.count; k++) g.memory[k] *= 2.0f;
    ms_expect_close_f("backward accumulates (+=)", g2.memory, g.memory, p.count, 1e-6, 1e-5);
    ms_lstm_params_free(&g2);
    free(rl);
    free(rc);
    free(rg);
    free(dl);
    free(x);
    free(dlog);
    free(logits);
    free(rlf);
    ms_lstm_cache_free(&c);
    ms_lstm_params_free(&p);
    ms_lstm_params_free(&g);
}

/* The repeated-row search with colliding hashes (only 3 bits kept): as many distinct rows,
 * logits and gradients, bitwise, as with the full hash. */
static void test_dedupe_collisions(void) {
    const int B = 6, T = 30, D = 12, H = 16, dup = 40;
    printf("-- repeated rows with colliding hashes (B=%d T=%d, %d distinct)\n", B, T, dup);
    ms_lstm_params p, g[2];
    ms_lstm_params_init(&p, D, H);
    ms_lstm_params_randomize(&p, 51);
    size_t BT = (size_t)B * T;
    float *x = malloc(sizeof(float) * BT * D), *dlog = malloc(sizeof(float) * BT);
    float *logits[2] = {malloc(sizeof(float) * BT), malloc(sizeof(float) * BT)};
    fill_normal(x, BT * D, 52, 1.0);
    fill_normal(dlog, BT, 53, 1.0);
    for (size_t r = 0; r < BT; r++) memcpy(x + r * D, x + ((7 * r + 3) % (size_t)dup) * D, sizeof(float) * (size_t)D);
    int U[2];
    for (int k = 0; k < 2; k++) {
        ms_lstm_row_hash_mask = k ? 7 : ~(uint64_t)0;
        ms_lstm_params_init(&g[k], D, H);
        ms_lstm_cache c;
        ms_lstm_cache_init(&c, D, H, B, T);
        ms_lstm_forward(logits[k], &c, x, &p, B, T);
        U[k] = c.U;
        ms_lstm_backward(&g[k], dlog, &c, x, &p);
        ms_lstm_cache_free(&c);
    }
    ms_lstm_row_hash_mask = ~(uint64_t)0;
    MS_EXPECT(U[0] > 0 && U[0] <= dup && U[1] == U[0]);
    MS_EXPECT(memcmp(logits[0], logits[1], sizeof(float) * BT) == 0);
    MS_EXPECT(memcmp(g[0].memory, g[1].memory, sizeof(float) * p.count) == 0);
    for (int k = 0; k < 2; k++) free(logits[k]), ms_lstm_params_free(&g[k]);
    free(x);
    free(dlog);
    ms_lstm_params_free(&p);
}

/* ---- bf16 against f32 ------------------------------------------------------------------
 * The paper's layer sizes (D 512, H 256) on unit-scale embeddings. bf16 keeps 8 significant
 * bits of each operand (relative rounding error <= 2^-9), the products accumulate in fp32,
 * and the recurrence feeds rounded states back for T steps. Stated tolerance, as the
 * whole-tensor relative error max|bf16 - f32| / max|f32|: 2e-2 for the logits and for every
 * gradient tensor. With `dup` > 0 the rows repeat (dup distinct ones), which takes the
 * repeated-row path: projection and dW_ih over the distinct rows. */
static void run_threads(int nthreads, float *logits, ms_lstm_params *g, const float *x,
                        const float *dlog, const ms_lstm_params *p, int B, int T,
                        ms_precision prec);

static void test_bf16_vs_f32(int B, int T, int dup) {
    const int D = 512, H = 256;
    printf("-- bf16 vs f32 (B=%d T=%d D=%d H=%d%s)\n", B, T, D, H, dup ? ", repeated rows" : "");
    ms_lstm_params p, gf, gb;
    ms_lstm_params_init(&p, D, H);
    ms_lstm_params_init(&gf, D, H);
    ms_lstm_params_init(&gb, D, H);
    ms_lstm_params_randomize(&p, 41);
    size_t BT = (size_t)B * T;
    float *x = malloc(sizeof(float) * BT * D), *dlog = malloc(sizeof(float) * BT);
    float *lf = malloc(sizeof(float) * BT), *lb = malloc(sizeof(float) * BT);
    fill_normal(x, BT * D, 42, 1.0 / sqrt((double)D));
    fill_normal(dlog, BT, 43, 1.0);
    for (size_t r = 0; dup && r < BT; r++)
        memcpy(x + r * D, x + ((7 * r + 3) % (size_t)dup) * D, sizeof(float) * (size_t)D);
    run_threads(2, lf, &gf, x, dlog, &p, B, T, MS_PREC_F32);
    run_threads(2, lb, &gb, x, dlog, &p, B, T, MS_PREC_BF16);
    ms_set_threads(0);
    ms_expect_relerr_f("bf16 logits vs f32", lb, lf, BT, 2e-2);
    double worst = 0;
    for (int i = 0; i < MS_LSTM_NTENSORS; i++) {
        char what[128];
        snprintf(what, sizeof what, "bf16 grad %s vs f32", ms_lstm_tensor_name(i));
        ms_expect_relerr_f(what, gb.t[i], gf.t[i], p.size[i], 2e-2);
        double md = 0, mr = 0;
        for (size_t j = 0; j < p.size[i]; j++) {
            md = fmax(md, fabs((double)gb.t[i][j] - gf.t[i][j]));
            mr = fmax(mr, fabs((double)gf.t[i][j]));
        }
        worst = fmax(worst, mr > 0 ? md / mr : md);
    }
    double ml = 0, mlr = 0;
    for (size_t j = 0; j < BT; j++) {
        ml = fmax(ml, fabs((double)lb[j] - lf[j]));
        mlr = fmax(mlr, fabs((double)lf[j]));
    }
    printf("   relative error: logits %.2e, worst gradient tensor %.2e\n", ml / mlr, worst);
    /* it really ran in bf16 */
    MS_EXPECT(ml > 0);
    free(x);
    free(dlog);
    free(lf);
    free(lb);
    ms_lstm_params_free(&p);
    ms_lstm_params_free(&gf);
    ms_lstm_params_free(&gb);
}

/* A cache that ran a longer batch first gives bitwise the results of a fresh one: nothing
 * of the earlier batch (states past a task's ends, rounded copies) leaks into the next. */
static void test_cache_reuse(ms_precision prec) {
    const int D = 64, H = 32, B0 = 4, T0 = 50, B = 3, T = 13;
    printf("-- %s: reused cache vs fresh cache\n", ms_precision_name(prec));
    ms_lstm_params p, g0, g1, g2;
    ms_lstm_params_init(&p, D, H);
    ms_lstm_params_init(&g0, D, H);
    ms_lstm_params_init(&g1, D, H);
    ms_lstm_params_init(&g2, D, H);
    ms_lstm_params_randomize(&p, 61);
    size_t n0 = (size_t)B0 * T0, n = (size_t)B * T;
    float *x = malloc(sizeof(float) * n0 * D), *dlog = malloc(sizeof(float) * n0);
    float *l = malloc(sizeof(float) * n0), *l1 = malloc(sizeof(float) * n), *l2 = malloc(sizeof(float) * n);
    fill_normal(x, n0 * D, 62, 1.0);
    fill_normal(dlog, n0, 63, 1.0);
    ms_set_threads(2);
    ms_lstm_cache c;
    ms_lstm_cache_init(&c, D, H, B0, T0);
    ms_lstm_cache_set_precision(&c, prec);
    ms_lstm_forward(l, &c, x, &p, B0, T0);
    ms_lstm_backward(&g0, dlog, &c, x, &p);
    ms_lstm_forward(l1, &c, x + n * D, &p, B, T); /* other rows, a shorter batch */
    ms_lstm_backward(&g1, dlog, &c, x + n * D, &p);
    ms_lstm_cache_free(&c);
    run_threads(2, l2, &g2, x + n * D, dlog, &p, B, T, prec);
    ms_set_threads(0);
    MS_EXPECT(memcmp(l1, l2, sizeof(float) * n) == 0);
    int same = memcmp(g1.memory, g2.memory, sizeof(float) * p.count) == 0;
    if (!same) ms_expect_relerr_f("reused cache gradients vs fresh", g1.memory, g2.memory, p.count, 0.0);
    MS_EXPECT(same);
    free(x);
    free(dlog);
    free(l);
    free(l1);
    free(l2);
    ms_lstm_params_free(&p);
    ms_lstm_params_free(&g0);
    ms_lstm_params_free(&g1);
    ms_lstm_params_free(&g2);
}

/* ---- forward-only scoring ------------------------------------------------------------
 * ms_lstm_infer against ms_lstm_forward: pools long enough for several chunks (and a
 * partial last one), one and several tasks, 1 and 2 threads (bitwise), both precisions. */
static void test_infer(int B, int T, int D, int H, ms_precision prec, int dup) {
    printf("-- infer vs forward, %s (B=%d T=%d D=%d H=%d%s)\n", ms_precision_name(prec), B, T, D, H,
           dup ? ", repeated rows" : "");
    ms_lstm_params p;
    ms_lstm_params_init(&p, D, H);
    ms_lstm_params_randomize(&p, 51);
    size_t BT = (size_t)B * T;
    float *x = malloc(sizeof(float) * BT * D);
    float *lf = malloc(sizeof(float) * BT), *l1 = malloc(sizeof(float) * BT),
          *l2 = malloc(sizeof(float) * BT);
    fill_normal(x, BT * D, 52, 1.0 / sqrt((double)D));
    for (size_t r = 0; dup && r < BT; r++)
        memcpy(x + r * D, x + ((3 * r + 2) % (size_t)dup) * D, sizeof(float) * (size_t)D);
    ms_lstm_cache c;
    ms_lstm_cache_init(&c, D, H, B, T);
    ms_lstm_cache_set_precision(&c, prec);
    ms_lstm_forward(lf, &c, x, &p, B, T);
    ms_lstm_cache_free(&c);
    size_t bytes = ms_lstm_infer_bytes(D, H, B, T, prec);
    void *work = aligned_alloc(64, (bytes + 63) / 64 * 64);
    ms_set_threads(1);
    ms_lstm_infer(l1, work, x, &p, B, T, prec);
    ms_set_threads(2);
    ms_lstm_infer(l2, work, x, &p, B, T, prec);
    ms_set_threads(0);
    /* the same operands in the same precision: only the products' blocking differs */
    ms_expect_relerr_f("infer vs forward logits", l2, lf, BT, 1e-5);
    MS_EXPECT(memcmp(l1, l2, sizeof(float) * BT) == 0);
    printf("   workspace %.2f MB vs cache %.2f MB\n", bytes / 1e6,
           ms_lstm_cache_bytes(D, H, B, T) / 1e6);
    MS_EXPECT(bytes < ms_lstm_cache_bytes(D, H, B, T));
    free(work);
    free(x);
    free(lf);
    free(l1);
    free(l2);
    ms_lstm_params_free(&p);
}

/* A pool's forward-only logits do not depend on the batch it is scored in (the trainer
 * validates in batches larger than its training batch and relies on it): 40 pools with
 * repeated rows scored at once and in 4 batches of 10 give the same bits. */
static void test_infer_batches(int D, int H, ms_precision prec) {
    const int B = 40, T = 30, nb = 10, dup = 50;
    printf("-- infer, %s: one batch vs batches of %d (B=%d T=%d D=%d H=%d, repeated rows)\n",
           ms_precision_name(prec), nb, B, T, D, H);
    ms_lstm_params p;
    ms_lstm_params_init(&p, D, H);
    ms_lstm_params_randomize(&p, 61);
    size_t BT = (size_t)B * T;
    float *x = malloc(sizeof(float) * BT * D), *l1 = malloc(sizeof(float) * BT),
          *l2 = malloc(sizeof(float) * BT);
    fill_normal(x, BT * D, 62, 1.0 / sqrt((double)D));
    for (size_t r = 0; r < BT; r++)
        memcpy(x + r * D, x + ((7 * r + 5) % (size_t)dup) * D, sizeof(float) * (size_t)D);
    size_t bytes = ms_lstm_infer_bytes(D, H, B, T, prec);
    void *work = aligned_alloc(64, (bytes + 63) / 64 * 64);
    ms_lstm_infer(l1, work, x, &p, B, T, prec);
    for (int b0 = 0; b0 < B; b0 += nb)
        ms_lstm_infer(l2 + (size_t)b0 * T, work, x + (size_t)b0 * T * D, &p, nb, T, prec);
    size_t bad = BT;
    for (size_t r = 0; r < BT && bad == BT; r++)
        if (memcmp(&l1[r], &l2[r], sizeof(float))) bad = r;
    if (bad < BT) fprintf(stderr, "   row %zu: %.9g in one batch, %.9g in batches\n", bad, l1[bad], l2[bad]);
    MS_EXPECT(bad == BT);
    free(work);
    free(x);
    free(l1);
    free(l2);
    ms_lstm_params_free(&p);
}

/* Pools given as rows of one table (ms_lstm_project + ms_lstm_infer_rows) against
 * ms_lstm_infer on the gathered pools and against the double reference (pool 0); 1 vs 2
 * threads bitwise. */
static void test_infer_rows(int B, int T, int D, int H, int N, ms_precision prec) {
    printf("-- infer_rows vs infer, %s (B=%d T=%d D=%d H=%d N=%d)\n", ms_precision_name(prec), B, T,
           D, H, N);
    ms_lstm_params p;
    ms_lstm_params_init(&p, D, H);
    ms_lstm_params_randomize(&p, 71);
    size_t BT = (size_t)B * T;
    float *x = malloc(sizeof(float) * (size_t)N * D), *xg = malloc(sizeof(float) * BT * D);
    float *proj = malloc(sizeof(float) * (size_t)N * 8 * H);
    float *l0 = malloc(sizeof(float) * BT), *l1 = malloc(sizeof(float) * BT),
          *l2 = malloc(sizeof(float) * BT);
    int *rows = malloc(sizeof(int) * BT);
    fill_normal(x, (size_t)N * D, 72, 1.0 / sqrt((double)D));
    ms_rng r;
    ms_rng_init(&r, 73, 0, 0);
    for (size_t i = 0; i < BT; i++) {
        rows[i] = (int)ms_rng_below(&r, (uint32_t)N);
        memcpy(xg + i * D, x + (size_t)rows[i] * D, sizeof(float) * (size_t)D);
    }
    size_t bytes = ms_lstm_infer_bytes(D, H, B, T, prec);
    size_t rbytes = ms_lstm_infer_rows_bytes(H, B, T, prec);
    void *work = aligned_alloc(64, (bytes + 63) / 64 * 64);
    void *rwork = aligned_alloc(64, (rbytes + 63) / 64 * 64);
    ms_lstm_infer(l0, work, xg, &p, B, T, prec);
    ms_set_threads(1);
    ms_lstm_project(proj, x, N, &p, prec);
    ms_lstm_infer_rows(l1, rwork, proj, N, rows, &p, B, T, prec);
    ms_set_threads(2);
    ms_lstm_project(proj, x, N, &p, prec);
    ms_lstm_infer_rows(l2, rwork, proj, N, rows, &p, B, T, prec);
    ms_set_threads(0);
    ms_expect_relerr_f("infer_rows vs infer logits", l2, l0, BT, prec == MS_PREC_F32 ? 1e-5 : 1e-3);
    printf("   bitwise the same as infer: %s\n", memcmp(l0, l2, sizeof(float) * BT) ? "no" : "yes");
    MS_EXPECT(memcmp(l1, l2, sizeof(float) * BT) == 0);
    if (prec == MS_PREC_F32) {
        double *ref = malloc(sizeof(double) * (size_t)T), *cache = malloc(sizeof(double) * ms_lstm_ref_cache_size(T, H));
        float *rf = malloc(sizeof(float) * (size_t)T);
        ms_lstm_forward_ref(ref, cache, xg, &p, T);
        for (int t = 0; t < T; t++) rf[t] = (float)ref[t];
        ms_expect_close_f("infer_rows vs double reference (pool 0)", l2, rf, (size_t)T, 1e-5, 1e-4);
        free(ref), free(cache), free(rf);
    }
    MS_EXPECT(rbytes < bytes);
    free(work), free(rwork), free(x), free(xg), free(proj), free(l0), free(l1), free(l2), free(rows);
    ms_lstm_params_free(&p);
}

/* The small-batch recurrent kernels against a plain double loop over the same operands
 * (bf16: the rounded ones). */
static void test_recur_small(int B, int H) {
    printf("-- recurrent matrix-vector kernels (B=%d H=%d)\n", B, H);
    const int H4 = 4 * H, ldg = H4 + 3;
    float *W = malloc(sizeof(float) * H4 * H), *wt = malloc(sizeof(float) * H4 * H);
    float *h = malloc(sizeof(float) * B * H), *G0 = malloc(sizeof(float) * B * ldg);
    float *G = malloc(sizeof(float) * B * ldg), *R = malloc(sizeof(float) * B * ldg);
    ms_bf16 *wp = malloc(sizeof(ms_bf16) * H4 * (H + 1));
    fill_normal(W, (size_t)H4 * H, 61, 0.2);
    fill_normal(h, (size_t)B * H, 62, 0.5);
    fill_normal(G0, (size_t)B * ldg, 63, 1.0);
    for (int prec = 0; prec < 1 + ms_bf16_supported(); prec++) {
        for (int b = 0; b < B; b++)
            for (int r = 0; r < ldg; r++) {
                double a = G0[b * ldg + r];
                if (r < H4)
                    for (int j = 0; j < H; j++) {
                        float hv = h[b * H + j], wv = W[(size_t)r * H + j];
                        if (prec) hv = ms_bf16_to_f32(ms_bf16_round(hv)), wv = ms_bf16_to_f32(ms_bf16_round(wv));
                        a += (double)hv * wv;
                    }
                R[b * ldg + r] = (float)a;
            }
        memcpy(G, G0, sizeof(float) * B * ldg);
        if (prec) {
            ms_lstm_pack_pairs(wp, W, H);
            ms_lstm_recur_small_bf16(G, ldg, h, wp, B, H);
        } else {
            ms_lstm_pack_panels(wt, W, H);
            ms_lstm_recur_small(G, ldg, h, wt, B, H);
        }
        ms_expect_close_f(prec ? "recur_small_bf16 vs plain" : "recur_small vs plain", G, R, (size_t)B * ldg,
                          1e-5, 1e-5);
    }
    free(W), free(wt), free(h), free(G0), free(G), free(R), free(wp);
}

/* ---- 1 versus 2 threads --------------------------------------------------------------- */

static void run_threads(int nthreads, float *logits, ms_lstm_params *g, const float *x,
                        const float *dlog, const ms_lstm_params *p, int B, int T,
                        ms_precision prec) {
    ms_set_threads(nthreads);
    ms_lstm_cache c;
    ms_lstm_cache_init(&c, p->D, p->H, B, T);
    ms_lstm_cache_set_precision(&c, prec);
    ms_lstm_params_zero(g);
    ms_lstm_forward(logits, &c, x, p, B, T);
    ms_lstm_backward(g, dlog, &c, x, p);
    ms_lstm_cache_free(&c);
}

static void test_threads(ms_precision prec, int dup) {
    const int B = 16, T = 64, D = 128, H = 64;
    printf("-- %s: 1 vs 2 and 3 threads (B=%d T=%d D=%d H=%d%s)\n", ms_precision_name(prec), B, T,
           D, H, dup ? ", repeated rows" : "");
    ms_lstm_params p, g1, g2;
    ms_lstm_params_init(&p, D, H);
    ms_lstm_params_init(&g1, D, H);
    ms_lstm_params_init(&g2, D, H);
    ms_lstm_params_randomize(&p, 21);
    size_t BT = (size_t)B * T;
    float *x = malloc(sizeof(float) * BT * D), *dlog = malloc(sizeof(float) * BT);
    float *l1 = malloc(sizeof(float) * BT), *l2 = malloc(sizeof(float) * BT);
    fill_normal(x, BT * D, 22, 1.0);
    fill_normal(dlog, BT, 23, 1.0);
    for (size_t r = 0; dup && r < BT; r++)
        memcpy(x + r * D, x + ((5 * r + 1) % (size_t)dup) * D, sizeof(float) * (size_t)D);
    run_threads(1, l1, &g1, x, dlog, &p, B, T, prec);
    run_threads(2, l2, &g2, x, dlog, &p, B, T, prec);
    ms_expect_relerr_f("logits 2 threads vs 1", l2, l1, BT, 1e-6);
    for (int i = 0; i < MS_LSTM_NTENSORS; i++) {
        char what[128];
        snprintf(what, sizeof what, "grad %s 2 threads vs 1", ms_lstm_tensor_name(i));
        ms_expect_relerr_f(what, g2.t[i], g1.t[i], p.size[i], 1e-6);
    }
    int identical = memcmp(l1, l2, sizeof(float) * BT) == 0 &&
                    memcmp(g1.memory, g2.memory, sizeof(float) * p.count) == 0;
    run_threads(3, l2, &g2, x, dlog, &p, B, T, prec);
    ms_set_threads(0);
    identical &= memcmp(l1, l2, sizeof(float) * BT) == 0 &&
                 memcmp(g1.memory, g2.memory, sizeof(float) * p.count) == 0;
    printf("   1, 2 and 3 threads bitwise identical: %s\n", identical ? "yes" : "no");
    /* every product goes through ms_gemm's shape-only blocking, every reduction has a fixed
     * order: the results must not depend on the thread count at all */
    MS_EXPECT(identical);
    free(x);
    free(dlog);
    free(l1);
    free(l2);
    ms_lstm_params_free(&p);
    ms_lstm_params_free(&g1);
    ms_lstm_params_free(&g2);
}

/* ---- parameters ----------------------------------------------------------------------- */

static void test_params(void) {
    printf("-- parameter table and initialisation\n");
    ms_lstm_params p;
    ms_lstm_params_init(&p, 512, 256);
    MS_EXPECT(p.count == 2 * (1024 * 512 + 1024 * 256 + 2 * 1024) + 512 + 1);
    MS_EXPECT(p.t[MS_LSTM_W_IH_R] == p.t[MS_LSTM_W_IH] + 1024 * 512); /* (8H, D) together */
    MS_EXPECT(ms_lstm_tensor_find("LSTM.bias_hh_l0_reverse") == MS_LSTM_B_HH_R);
    MS_EXPECT(ms_lstm_tensor_find("linear.weight") == MS_LSTM_LIN_W);
    MS_EXPECT(ms_lstm_tensor_find("LSTM.weight") == -1);
    int64_t sh[2];
    MS_EXPECT(ms_lstm_tensor_shape(MS_LSTM_LIN_W, 512, 256, sh) == 2 && sh[0] == 1 && sh[1] == 512);
    ms_lstm_params_randomize(&p, 5);
    /* bounds and spread: U(-k, k) has mean 0 and variance k^2 / 3 */
    for (int i = 0; i < MS_LSTM_NTENSORS; i++) {
        double k = i < MS_LSTM_LIN_W ? 1.0 / 16.0 : 1.0 / sqrt(512.0);
        double m = 0, v = 0, mx = 0;
        for (size_t j = 0; j < p.size[i]; j++) {
            double a = p.t[i][j];
            m += a;
            v += a * a;
            if (fabs(a) > mx) mx = fabs(a);
        }
        m /= (double)p.size[i];
        v /= (double)p.size[i];
        MS_EXPECT(mx <= k);
        if (p.size[i] > 1000) {
            /* 5 standard errors: sd(mean) = k / sqrt(3n), sd(v / (k^2/3)) = sqrt(0.8 / n) */
            double n = (double)p.size[i];
            MS_EXPECT(fabs(m) < 5.0 * k / sqrt(3.0 * n));
            MS_EXPECT(fabs(v / (k * k / 3.0) - 1.0) < 5.0 * sqrt(0.8 / n));
        }
    }
    ms_lstm_params q;
    ms_lstm_params_init(&q, 512, 256);
    ms_lstm_params_randomize(&q, 5);
    MS_EXPECT(memcmp(p.memory, q.memory, sizeof(float) * p.count) == 0);
    ms_lstm_params_randomize(&q, 6);
    MS_EXPECT(memcmp(p.memory, q.memory, sizeof(float) * p.count) != 0);
    ms_lstm_params_free(&p);
    ms_lstm_params_free(&q);
}

/* ---- policy --------------------------------------------------------------------------- */

static int *load_i(const char *path, size_t *n) {
    double *d = ms_load_npy_all(path, n);
    int *v = malloc(sizeof(int) * (*n ? *n : 1));
    for (size_t i = 0; i < *n; i++) v[i] = (int)d[i];
    free(d);
    return v;
}

/* Central differences of f(logits) in double, with the float-rounded step. */
typedef double (*logp_fn)(float *dl, const float *l, int T, const int *a, int K, ms_arena *ws);

static double logp_mn(float *dl, const float *l, int T, const int *counts, int K, ms_arena *ws) {
    (void)K;
    return ms_policy_logp_multinomial(dl, l, T, counts, ws);
}

static void fd_check(const char *what, logp_fn f, const float *l0, int T, const int *a, int K) {
    ms_arena ws;
    ms_arena_init(&ws);
    float *l = malloc(sizeof(float) * T), *g = malloc(sizeof(float) * T), *fd = malloc(sizeof(float) * T);
    memcpy(l, l0, sizeof(float) * T);
    f(g, l, T, a, K, &ws);
    for (int i = 0; i < T; i++) {
        float v = l[i], up = v + 1e-2f, dn = v - 1e-2f;
        l[i] = up;
        double fu = f(NULL, l, T, a, K, &ws);
        l[i] = dn;
        double fdn = f(NULL, l, T, a, K, &ws);
        l[i] = v;
        fd[i] = (float)((fu - fdn) / ((double)up - (double)dn));
        ms_arena_reset(&ws);
    }
    ms_expect_close_f(what, g, fd, (size_t)T, 1e-5, 1e-3);
    free(l);
    free(g);
    free(fd);
    ms_arena_free(&ws);
}

static void test_policy_fixtures(void) {
    printf("-- policy log-probabilities vs PyTorch\n");
    ms_arena ws;
    ms_arena_init(&ws);
    const char *mn[] = {"mn1", "mn2"}, *pl[] = {"pl1", "pl2"};
    for (int c = 0; c < 2; c++) {
        size_t T, nc;
        double *ld = ms_load_npy_all(fx("model/%s_%s.npy", mn[c], "logits"), &T);
        float *l = load_f(fx("model/%s_%s.npy", mn[c], "logits"), T);
        int *counts = load_i(fx("model/%s_%s.npy", mn[c], "counts"), &nc);
        double *ref = ms_load_npy_all(fx("model/%s_%s.npy", mn[c], "logp"), NULL);
        double *refg = ms_load_npy_all(fx("model/%s_%s.npy", mn[c], "grad"), NULL);
        float *g = malloc(sizeof(float) * T), *rg = malloc(sizeof(float) * T);
        int K = 0;
        for (size_t i = 0; i < T; i++) K += counts[i], rg[i] = (float)refg[i];
        double lp = ms_policy_logp_multinomial(g, l, (int)T, counts, &ws);
        ms_expect_close_d("multinomial logp vs torch.distributions.Multinomial", &lp, ref, 1,
                          1e-10, 1e-10);
        ms_expect_close_f("multinomial dlogp/dlogits vs autograd", g, rg, T, 1e-6, 1e-6);
        fd_check("multinomial dlogp/dlogits vs central differences", logp_mn, l, (int)T, counts, K);
        ms_arena_reset(&ws);
        free(ld), free(l), free(counts), free(ref), free(refg), free(g), free(rg);
    }
    for (int c = 0; c < 2; c++) {
        size_t T, K;
        float *l = load_f(fx("model/%s_%s.npy", pl[c], "logits"), 0);
        double *ld = ms_load_npy_all(fx("model/%s_%s.npy", pl[c], "logits"), &T);
        int *order = load_i(fx("model/%s_%s.npy", pl[c], "order"), &K);
        double *ref = ms_load_npy_all(fx("model/%s_%s.npy", pl[c], "logp"), NULL);
        double *refg = ms_load_npy_all(fx("model/%s_%s.npy", pl[c], "grad"), NULL);
        float *g = malloc(sizeof(float) * T), *rg = malloc(sizeof(float) * T);
        for (size_t i = 0; i < T; i++) rg[i] = (float)refg[i];
        double lp = ms_policy_logp_wor(g, l, (int)T, order, (int)K, &ws);
        ms_expect_close_d("Plackett-Luce logp vs explicit formula", &lp, ref, 1, 1e-10, 1e-10);
        ms_expect_close_f("Plackett-Luce dlogp/dlogits vs autograd", g, rg, T, 1e-6, 1e-6);
        if (c == 0) /* pl2's logits span +-60: differences of size 1e-2 are not small there */
            fd_check("Plackett-Luce dlogp/dlogits vs central differences", ms_policy_logp_wor,
                     l, (int)T, order, (int)K);
        ms_arena_reset(&ws);
        free(ld), free(l), free(order), free(ref), free(refg), free(g), free(rg);
    }
    /* stability: huge logits must not overflow */
    float big[4] = {1000.0f, -1000.0f, 999.0f, 0.0f};
    int ord[2] = {2, 0}, cnt[4] = {1, 0, 2, 0};
    double lp = ms_policy_logp_wor(NULL, big, 4, ord, 2, &ws);
    double want = (999.0 - (1000.0 + log1p(exp(-1.0)))) + 0.0; /* second draw: l0 is the max left */
    ms_expect_close_d("Plackett-Luce logp with logits of size 1000", &lp, &want, 1, 1e-9, 1e-9);
    lp = ms_policy_logp_multinomial(NULL, big, 4, cnt, &ws);
    double lse = 1000.0 + log1p(exp(-1.0));
    want = lgamma(4.0) - lgamma(3.0) + (1000.0 - lse) + 2.0 * (999.0 - lse);
    ms_expect_close_d("multinomial logp with logits of size 1000", &lp, &want, 1, 1e-9, 1e-9);
    ms_arena_free(&ws);
}

static void test_policy_sampling(void) {
    printf("-- policy sampling frequencies\n");
    /* Ordered pairs without replacement (T=4, K=2) and count vectors with replacement
     * (T=3, K=2) against their exact probabilities: every frequency within 5 standard
     * errors of exp(logp). */
    const float l[4] = {0.5f, -1.0f, 1.2f, 0.1f};
    ms_arena ws;
    ms_arena_init(&ws);
    ms_rng r;
    ms_rng_init(&r, 77, MS_STREAM_POLICY, 0);
    const int N = 200000;
    int freq[4][4] = {{0}};
    for (int n = 0; n < N; n++) {
        int it[2];
        ms_policy_sample_wor(it, l, 4, 2, &r, &ws);
        ms_arena_reset(&ws);
        MS_CHECK(it[0] != it[1]);
        freq[it[0]][it[1]]++;
    }
    int ok = 1;
    double worst = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            if (a == b) {
                ok &= freq[a][b] == 0;
                continue;
            }
            int ord[2] = {a, b};
            double p = exp(ms_policy_logp_wor(NULL, l, 4, ord, 2, &ws));
            double z = fabs(freq[a][b] / (double)N - p) / sqrt(p * (1 - p) / N);
            if (z > worst) worst = z;
            ok &= z < 5.0;
        }
    printf("   without replacement: largest deviation %.2f standard errors\n", worst);
    MS_EXPECT(ok);
    int cf[3][3] = {{0}}; /* counts (c0, c1) determine c2 = 2 - c0 - c1 */
    int maxn = 0, minn = 99;
    for (int n = 0; n < N; n++) {
        int it[2], c[3];
        int k = ms_policy_sample_multinomial(it, c, l, 3, 2, &r, &ws);
        ms_arena_reset(&ws);
        MS_CHECK(c[0] + c[1] + c[2] == 2 && k >= 1 && k <= 2 && c[it[0]] > 0);
        if (k == 2) MS_CHECK(it[0] != it[1] && c[it[1]] > 0);
        if (k > maxn) maxn = k;
        if (k < minn) minn = k;
        cf[c[0]][c[1]]++;
    }
    MS_EXPECT(maxn == 2 && minn == 1); /* duplicates happen, distinct count reported */
    ok = 1;
    worst = 0;
    for (int a = 0; a <= 2; a++)
        for (int b = 0; a + b <= 2; b++) {
            int c[3] = {a, b, 2 - a - b};
            double p = exp(ms_policy_logp_multinomial(NULL, l, 3, c, &ws));
            double z = fabs(cf[a][b] / (double)N - p) / sqrt(p * (1 - p) / N);
            if (z > worst) worst = z;
            ok &= z < 5.0;
        }
    printf("   multinomial: largest deviation %.2f standard errors\n", worst);
    MS_EXPECT(ok);
    /* the probabilities of all ordered pairs / all count vectors sum to 1 */
    double s = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            if (a != b) {
                int ord[2] = {a, b};
                s += exp(ms_policy_logp_wor(NULL, l, 4, ord, 2, &ws));
            }
    double one = 1.0;
    ms_expect_close_d("Plackett-Luce probabilities sum to 1", &s, &one, 1, 1e-12, 0);

    /* same seed, same draw; the dispatcher agrees with the parts */
    float lg[50];
    fill_normal(lg, 50, 5, 2.0);
    int a1[10], a2[10], a3[10];
    float d1[50], d2[50];
    double lp1, lp2;
    ms_rng_init(&r, 9, MS_STREAM_POLICY, 3);
    int n1 = ms_policy_sample(a1, &lp1, d1, MS_SAMPLER_WOR, lg, 50, 10, &r, &ws);
    ms_rng_init(&r, 9, MS_STREAM_POLICY, 3);
    ms_policy_sample_wor(a2, lg, 50, 10, &r, &ws);
    lp2 = ms_policy_logp_wor(d2, lg, 50, a2, 10, &ws);
    MS_EXPECT(n1 == 10 && memcmp(a1, a2, sizeof a1) == 0 && lp1 == lp2 &&
              memcmp(d1, d2, sizeof d1) == 0);
    ms_rng_init(&r, 9, MS_STREAM_POLICY, 3);
    int n3 = ms_policy_sample(a3, &lp1, d1, MS_SAMPLER_MULTINOMIAL, lg, 50, 10, &r, &ws);
    MS_EXPECT(n3 >= 1 && n3 <= 10);
    double gsum = 0;
    for (int i = 0; i < 50; i++) gsum += d1[i]; /* c - K softmax sums to 0 */
    MS_EXPECT(fabs(gsum) < 1e-5);
    /* greedy top-K */
    int tk[5];
    ms_policy_topk(tk, lg, 50, 5, &ws);
    int ok2 = 1;
    for (int j = 0; j < 5; j++) {
        int better = 0;
        for (int i = 0; i < 50; i++) better += lg[i] > lg[tk[j]];
        ok2 &= better == j;
    }
    MS_EXPECT(ok2);
    float ties[4] = {1.0f, 2.0f, 2.0f, 0.0f};
    ms_policy_topk(tk, ties, 4, 3, &ws);
    MS_EXPECT(tk[0] == 1 && tk[1] == 2 && tk[2] == 0);
    ms_sampler sm;
    MS_EXPECT(ms_sampler_parse("multinomial", &sm) == MS_OK && sm == MS_SAMPLER_MULTINOMIAL);
    MS_EXPECT(ms_sampler_parse("without-replacement", &sm) == MS_OK && sm == MS_SAMPLER_WOR);
    MS_EXPECT(ms_sampler_parse("bogus", &sm) == MS_ERR_ARG && strstr(ms_last_error(), "multinomial"));
    MS_EXPECT(strcmp(ms_sampler_name(MS_SAMPLER_WOR), "without-replacement") == 0);
    ms_arena_free(&ws);
}

/* ---- safetensors ---------------------------------------------------------------------- */

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    MS_CHECK(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    MS_CHECK(fread(b, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    MS_CHECK(f && fwrite(b, 1, n, f) == n && fclose(f) == 0);
}

/* A file from a header text and `data_len` data bytes (0x11 each). */
static unsigned char *make_st(const char *header, size_t data_len, size_t *n) {
    size_t h = strlen(header);
    *n = 8 + h + data_len;
    unsigned char *b = malloc(*n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    memset(b + 8 + h, 0x11, data_len);
    return b;
}

/* Parsing must fail with MS_ERR_DATA and a message naming the file and containing `what`. */
static void expect_bad(const char *label, const char *header, size_t data_len, const char *what) {
    size_t n;
    unsigned char *b = make_st(header, data_len, &n);
    ms_st_file f;
    ms_status st = ms_st_parse(&f, b, n, "bad.safetensors");
    const char *e = ms_last_error();
    int ok = st == MS_ERR_DATA && strstr(e, "bad.safetensors: ") == e && strstr(e, what);
    if (!ok) printf("   %s: status %d, message \"%s\" (wanted \"%s\")\n", label, st, e, what);
    MS_EXPECT(ok);
    MS_EXPECT(f.n == 0 && f.buf == NULL);
    free(b);
}

static void test_safetensors(void) {
    printf("-- safetensors\n");
    const char *path = ms_tmp("rt.safetensors");
    float a[6] = {1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f};
    double d[4] = {1.0 / 3.0, -1e300, 2.0, 0.5};
    int64_t iv = -1234567890123LL;
    int64_t sa[2] = {2, 3}, sd[1] = {4}, se[2] = {0, 5};
    ms_st_entry e[4] = {
        {"alpha", MS_ST_F32, 2, sa, a},
        {"beta\"\\name", MS_ST_F64, 1, sd, d},
        {"scalar", MS_ST_I64, 0, NULL, &iv},
        {"empty", MS_ST_F32, 2, se, NULL},
    };
    const char *meta[] = {"note", "line1\nline2 \"q\" \\ \xc3\xa9", "k", ""};
    MS_EXPECT(ms_st_write(path, e, 4, meta, 2) == MS_OK);
    size_t n;
    unsigned char *raw = slurp(path, &n);
    uint64_t N = 0;
    for (int i = 7; i >= 0; i--) N = (N << 8) | raw[i];
    MS_EXPECT((8 + N) % 8 == 0 && raw[8] == '{');
    MS_EXPECT(n == 8 + N + sizeof a + sizeof d + sizeof iv);
    ms_st_file f;
    MS_EXPECT(ms_st_read(&f, path) == MS_OK);
    MS_EXPECT(f.n == 4 && f.n_meta == 2);
    const ms_st_tensor *t = ms_st_find(&f, "alpha");
    MS_EXPECT(t && t->dtype == MS_ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    float af[6];
    MS_EXPECT(t && ms_st_to_f32(&f, t, af) == MS_OK && memcmp(af, a, sizeof a) == 0);
    t = ms_st_find(&f, "beta\"\\name");
    double dd[4];
    MS_EXPECT(t && t->dtype == MS_ST_F64 && ms_st_to_f64(&f, t, dd) == MS_OK &&
              memcmp(dd, d, sizeof d) == 0);
    t = ms_st_find(&f, "scalar");
    MS_EXPECT(t && t->ndim == 0 && t->numel == 1 && ms_st_to_f64(&f, t, dd) == MS_OK &&
              dd[0] == (double)iv);
    t = ms_st_find(&f, "empty");
    MS_EXPECT(t && t->numel == 0 && t->begin == t->end);
    MS_EXPECT(ms_st_meta(&f, "note") && strcmp(ms_st_meta(&f, "note"), meta[1]) == 0);
    MS_EXPECT(ms_st_meta(&f, "k") && ms_st_meta(&f, "k")[0] == 0 && !ms_st_meta(&f, "x"));
    ms_st_free(&f);

    /* truncated: every proper prefix is rejected */
    const char *tp = ms_tmp("trunc.safetensors");
    int all_bad = 1;
    for (size_t cut = 0; cut < n; cut += (cut < 64 ? 1 : 7)) {
        write_bytes(tp, raw, cut);
        ms_status st = ms_st_read(&f, tp);
        all_bad &= st == MS_ERR_DATA && strstr(ms_last_error(), tp) == ms_last_error();
    }
    MS_EXPECT(all_bad);
    write_bytes(tp, raw, n - 1);
    MS_EXPECT(ms_st_read(&f, tp) == MS_ERR_DATA && strstr(ms_last_error(), "truncated"));
    free(raw);

    /* a PNG is not a safetensors file */
    static const unsigned char png[] = {
        0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
        0,    0,   0,   1,   0,    0,    0,    1,    8, 0, 0, 0,  0,   0x3a, 0x7e, 0x9b, 0x55};
    const char *pp = ms_tmp("foreign.png");
    write_bytes(pp, png, sizeof png);
    MS_EXPECT(ms_st_read(&f, pp) == MS_ERR_DATA && strstr(ms_last_error(), "not a safetensors"));
    MS_EXPECT(strstr(ms_last_error(), pp) == ms_last_error());
    MS_EXPECT(ms_st_read(&f, ms_tmp("does-not-exist.safetensors")) == MS_ERR_IO);

    /* header length larger than the file */
    unsigned char hl[16] = {0xe8, 0x03, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    MS_EXPECT(ms_st_parse(&f, hl, sizeof hl, "h.safetensors") == MS_ERR_DATA &&
              strstr(ms_last_error(), "header length 1000 exceeds"));
    MS_EXPECT(ms_st_parse(&f, hl, 5, "h.safetensors") == MS_ERR_DATA);

    /* malformed headers */
    expect_bad("bad JSON", "{\"a\":{\"dtype\":\"F32\",", 0, "not valid JSON");
    expect_bad("not an object", "[1, 2]  ", 0, "not a JSON object");
    expect_bad("unknown dtype", "{\"a\":{\"dtype\":\"F8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
               "unknown dtype");
    expect_bad("span", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8,
               "need 8");
    expect_bad("beyond", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
               "beyond the data section");
    expect_bad("overlap",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlap");
    expect_bad("negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0,
               "not a non-negative integer");
    expect_bad("no offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets");
    expect_bad("metadata", "{\"__metadata__\":{\"a\":1}}", 0, "not a string");
    expect_bad("duplicate",
               "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
               "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, "twice");
    expect_bad("trailing", "{}  xx", 0, "after the JSON header");
    /* a file with only metadata and no tensors is valid */
    size_t mn;
    unsigned char *mb = make_st("{\"__metadata__\":{\"a\":\"b\"}}     ", 0, &mn);
    MS_EXPECT(ms_st_parse(&f, mb, mn, "m") == MS_OK && f.n == 0 && f.n_meta == 1);
    ms_st_free(&f);
    free(mb);
}

/* ---- checkpoints ---------------------------------------------------------------------- */

static void test_checkpoint(void) {
    printf("-- checkpoints\n");
    const int D = 7, H = 5;
    ms_lstm_params p, q;
    ms_lstm_params_init(&p, D, H);
    ms_lstm_params_randomize(&p, 41);
    ms_selector_meta m, r;
    ms_selector_meta_init(&m);
    m.clinical = 1;
    m.K = 20;
    snprintf(m.sampler, sizeof m.sampler, "multinomial");
    m.has_seed = 1;
    m.seed = 18446744073709551615ull;
    ms_selector_meta_set_data(&m, "train=abc123 val=def456");
    ms_selector_meta_set_extra(&m, "val_auroc", "0.7712");
    const char *path = ms_tmp("selector.safetensors");
    MS_EXPECT(ms_checkpoint_save(path, &p, &m) == MS_OK);
    MS_EXPECT(ms_checkpoint_load(path, &q, &r) == MS_OK);
    MS_EXPECT(q.D == D && q.H == H && r.D == D && r.H == H && r.format_version == 1);
    MS_EXPECT(q.memory && memcmp(p.memory, q.memory, sizeof(float) * p.count) == 0);
    MS_EXPECT(r.clinical == 1 && r.K == 20 && strcmp(r.sampler, "multinomial") == 0);
    MS_EXPECT(r.has_seed && r.seed == m.seed);
    MS_EXPECT(r.data && strcmp(r.data, m.data) == 0);
    MS_EXPECT(r.medselect && strcmp(r.medselect, MS_VERSION) == 0);
    MS_EXPECT(ms_selector_meta_extra(&r, "val_auroc") &&
              strcmp(ms_selector_meta_extra(&r, "val_auroc"), "0.7712") == 0);
    ms_lstm_params_free(&q);
    ms_selector_meta_free(&r);
    /* the metadata as stored: the names PyTorch's load_state_dict expects */
    ms_st_file f;
    MS_EXPECT(ms_st_read(&f, path) == MS_OK);
    MS_EXPECT(f.n == MS_LSTM_NTENSORS && strcmp(ms_st_meta(&f, "format"), "medselect-selector") == 0);
    MS_EXPECT(ms_st_find(&f, "LSTM.weight_hh_l0_reverse") && ms_st_find(&f, "linear.bias"));
    ms_st_free(&f);

    /* tensor-only files (as saved from PyTorch), F64 accepted; broken ones named */
    ms_st_entry e[MS_LSTM_NTENSORS + 1];
    int64_t shapes[MS_LSTM_NTENSORS + 1][2];
    double *pd = malloc(sizeof(double) * p.count);
    for (size_t i = 0; i < p.count; i++) pd[i] = p.memory[i];
    for (int i = 0; i < MS_LSTM_NTENSORS; i++) {
        e[i].name = ms_lstm_tensor_name(i);
        e[i].dtype = i == MS_LSTM_LIN_W ? MS_ST_F64 : MS_ST_F32;
        e[i].ndim = ms_lstm_tensor_shape(i, D, H, shapes[i]);
        e[i].shape = shapes[i];
        e[i].data = i == MS_LSTM_LIN_W ? (const void *)(pd + p.offset[i]) : (const void *)p.t[i];
    }
    const char *tp = ms_tmp("tensors-only.safetensors");
    MS_EXPECT(ms_st_write(tp, e, MS_LSTM_NTENSORS, NULL, 0) == MS_OK);
    MS_EXPECT(ms_checkpoint_load(tp, &q, &r) == MS_OK);
    MS_EXPECT(q.D == D && q.H == H && r.format_version == 0 && r.clinical == -1 && r.K == -1 &&
              !r.has_seed && r.sampler[0] == 0 && !r.data);
    MS_EXPECT(q.memory && memcmp(p.memory, q.memory, sizeof(float) * p.count) == 0);
    ms_lstm_params_free(&q);
    ms_selector_meta_free(&r);
    MS_EXPECT(ms_checkpoint_load(tp, &q, NULL) == MS_OK); /* metadata not wanted */
    ms_lstm_params_free(&q);

    MS_EXPECT(ms_st_write(tp, e, MS_LSTM_NTENSORS - 3, NULL, 0) == MS_OK);
    MS_EXPECT(ms_checkpoint_load(tp, &q, &r) == MS_ERR_DATA &&
              strstr(ms_last_error(), "missing tensor LSTM.bias_hh_l0_reverse"));
    MS_EXPECT(q.memory == NULL);
    int64_t wrong[2] = {4 * H, H + 1};
    e[MS_LSTM_W_HH_R].shape = wrong;
    MS_EXPECT(ms_st_write(tp, e, MS_LSTM_NTENSORS, NULL, 0) == MS_OK);
    e[MS_LSTM_W_HH_R].shape = shapes[MS_LSTM_W_HH_R];
    MS_EXPECT(ms_checkpoint_load(tp, &q, &r) == MS_ERR_DATA &&
              strstr(ms_last_error(), "tensor LSTM.weight_hh_l0_reverse has shape [20, 6], expected [20, 5]"));
    int64_t extra_shape[1] = {1};
    e[MS_LSTM_NTENSORS] = (ms_st_entry){"LSTM.weight_ih_l1", MS_ST_F32, 1, extra_shape, p.memory};
    MS_EXPECT(ms_st_write(tp, e, MS_LSTM_NTENSORS + 1, NULL, 0) == MS_OK);
    MS_EXPECT(ms_checkpoint_load(tp, &q, &r) == MS_ERR_DATA &&
              strstr(ms_last_error(), "unexpected tensor LSTM.weight_ih_l1"));
    const char *bad_meta[] = {"format", "medselect-selector", "version", "1", "H", "6"};
    MS_EXPECT(ms_st_write(tp, e, MS_LSTM_NTENSORS, bad_meta, 3) == MS_OK);
    MS_EXPECT(ms_checkpoint_load(tp, &q, &r) == MS_ERR_DATA && strstr(ms_last_error(), "H=\"6\""));
    MS_EXPECT(ms_checkpoint_load(ms_fixture("model/s1_x.npy"), &q, &r) == MS_ERR_DATA);
    free(pd);
    ms_selector_meta_free(&m);
    ms_lstm_params_free(&p);

    /* a file written byte by byte in Python (gen_model.py) loads and computes the same logits */
    MS_EXPECT(ms_checkpoint_load(ms_fixture("model/tiny.safetensors"), &q, &r) == MS_OK);
    MS_EXPECT(q.D == 3 && q.H == 2 && r.format_version == 1 && r.clinical == 0 && r.K == 10 &&
              strcmp(r.sampler, "multinomial") == 0 && r.has_seed && r.seed == 42);
    MS_EXPECT(r.medselect && strcmp(r.medselect, "python-fixture") == 0);
    if (q.memory) {
        float *x = load_f(ms_fixture("model/tiny_x.npy"), 15);
        float *ref = load_f(ms_fixture("model/tiny_logits.npy"), 5), lg[5];
        ms_lstm_cache c;
        ms_lstm_cache_init(&c, 3, 2, 1, 5);
        ms_lstm_forward(lg, &c, x, &q, 1, 5);
        ms_expect_close_f("logits of the Python-written checkpoint", lg, ref, 5, 1e-6, 1e-5);
        ms_lstm_cache_free(&c);
        free(x);
        free(ref);
    }
    ms_lstm_params_free(&q);
    ms_selector_meta_free(&r);
}

int main(void) {
    test_params();
    test_pytorch_case("s1", 2, 7, 5, 3, 0);
    test_pytorch_case("s2", 3, 11, 16, 8, 0);
    test_pytorch_case("big", 1, 6, 512, 256, 1);
    test_finite_differences();
    test_fast_vs_ref(4, 13, 10, 6, 31, 0);
    test_fast_vs_ref(3, 9, 7, 16, 32, 0);
    test_fast_vs_ref(1, 1, 4, 5, 33, 0);
    test_fast_vs_ref(6, 30, 12, 16, 34, 40);  /* 180 rows, 40 distinct */
    test_dedupe_collisions();
    test_fast_vs_ref(4, 20, 9, 8, 35, 1);
    test_threads(MS_PREC_F32, 0);
    test_threads(MS_PREC_F32, 300);
    test_cache_reuse(MS_PREC_F32);
    test_infer(1, 1300, 24, 16, MS_PREC_F32, 0);
    test_infer(5, 900, 24, 16, MS_PREC_F32, 0);
    test_infer(8, 40, 24, 32, MS_PREC_F32, 50);
    test_infer(3, 1500, 24, 16, MS_PREC_F32, 700); /* chunked pools */
    test_infer(2, 3, 7, 5, MS_PREC_F32, 0);
    /* small batches take the matrix-vector recurrence: 4H of 160 and 148 (vector blocks of
     * 128 plus a tail), H odd (a half-empty last pair in bf16) */
    test_infer(1, 700, 24, 40, MS_PREC_F32, 0);
    test_infer(3, 300, 24, 37, MS_PREC_F32, 0);
    test_infer(3, 300, 24, 37, MS_PREC_F32, 150);
    test_infer_batches(96, 64, MS_PREC_F32);
    test_infer_batches(512, 256, MS_PREC_F32);
    test_infer_rows(5, 200, 24, 16, 60, MS_PREC_F32);
    test_infer_rows(3, 600, 24, 37, 1000, MS_PREC_F32); /* chunked pools */
    test_infer_rows(1, 700, 24, 40, 300, MS_PREC_F32);  /* the matrix-vector recurrence */
    test_infer_rows(70, 40, 24, 16, 500, MS_PREC_F32);
    test_recur_small(1, 40);
    test_recur_small(4, 37);
    test_recur_small(2, 256);
    if (ms_bf16_supported()) {
        test_infer(1, 1300, 24, 16, MS_PREC_BF16, 0);
        test_infer(5, 900, 24, 16, MS_PREC_BF16, 0);
        test_infer(8, 40, 24, 32, MS_PREC_BF16, 50);
        test_infer(1, 700, 24, 40, MS_PREC_BF16, 0);
        test_infer(3, 300, 24, 37, MS_PREC_BF16, 0);
        test_infer_rows(5, 200, 24, 16, 60, MS_PREC_BF16);
        test_infer_rows(1, 700, 24, 40, 300, MS_PREC_BF16);
    }
    if (ms_bf16_supported()) {
        test_threads(MS_PREC_BF16, 0);
        test_threads(MS_PREC_BF16, 300);
        test_cache_reuse(MS_PREC_BF16);
        test_bf16_vs_f32(4, 60, 0);
        test_bf16_vs_f32(4, 60, 90);
        /* short pools: every row at a task's end (T = 1: no recurrent gradient at all) */
        test_bf16_vs_f32(3, 1, 0);
        test_bf16_vs_f32(2, 2, 0);
        test_bf16_vs_f32(5, 13, 0);
    } else {
        printf("bf16 checks skipped: this CPU has no AVX512_BF16\n");
    }
    test_policy_fixtures();
    test_policy_sampling();
    test_safetensors();
    test_checkpoint();
    return ms_test_summary();
}
