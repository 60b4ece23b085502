/* test_arch.c: the selector architecture registry (arch.h) and the relational selector:
 * parity with PyTorch (tests/fixtures/gen_relational.py; r1, r2 without the k-center term
 * and schedule, i.e. older checkpoints, r3 with them, r4 also with features=rank and
 * static_max=0.5 and tied rows), finite differences, rotation and
 * order invariance of its features, determinism across thread counts, checkpoints of any
 * architecture (older files load as bilstm), and training through the same trainer. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/arch.h"
#include "medselect/checkpoint.h"
#include "medselect/safetensors.h"
#include "medselect/synth.h"
#include "medselect/train.h"
#include "model/ms_relational.h"
#include "training/ms_train_internal.h"
#include "ms_test.h"

static const char *fx(const char *cs, const char *what) {
    static char buf[8][128];
    static int slot;
    char *b = buf[slot++ % 8];
    snprintf(b, 128, "relational/%s_%s.npy", cs, what);
    return ms_fixture(b);
}

static int fx_exists(const char *cs, const char *what) {
    FILE *f = fopen(fx(cs, what), "rb");
    if (f) fclose(f);
    return f != NULL;
}

static void test_registry(void) {
    MS_EXPECT(ms_arch_default() == &ms_arch_bilstm);
    MS_EXPECT(ms_arch_find("bilstm") == &ms_arch_bilstm);
    MS_EXPECT(ms_arch_find("relational") == &ms_arch_relational);
    MS_EXPECT(ms_arch_find("transformer") == NULL);
    const ms_arch *a;
    MS_EXPECT(ms_arch_parse("nope", &a) == MS_ERR_ARG && strstr(ms_last_error(), "bilstm,relational"));
    MS_EXPECT(strcmp(ms_arch_names(), "bilstm,relational,setattn") == 0);
    /* initialisation options */
    const char *opts;
    MS_EXPECT(ms_arch_parse_spec("relational:redundancy=8,coverage=1", &a, &opts) == MS_OK &&
              a == &ms_arch_relational && strcmp(opts, "redundancy=8,coverage=1") == 0);
    MS_EXPECT(ms_arch_parse_spec("relational:tempo=2", &a, &opts) == MS_ERR_ARG && strstr(ms_last_error(), "tempo"));
    MS_EXPECT(ms_arch_parse_spec("relational:coverage=x", &a, &opts) == MS_ERR_ARG);
    MS_EXPECT(ms_arch_parse_spec("bilstm:hidden=3", &a, &opts) == MS_ERR_ARG && strstr(ms_last_error(), "no options"));
    MS_EXPECT(ms_arch_parse_spec("bilstm", &a, &opts) == MS_OK && a == &ms_arch_bilstm && *opts == 0);
    ms_net n;
    MS_EXPECT(ms_net_init(&n, &ms_arch_relational, 7, 0) == MS_OK);
    MS_EXPECT(n.H == 16 && n.ntensors == 8 && n.count == 16 * 5 + 16 + 16 + 2 + 1 + 3 + 2);
    MS_EXPECT(ms_net_find(&n, "rel.coverage") == 4 && ms_net_find(&n, "rel.kcenter") == 5 &&
              ms_net_find(&n, "rel.schedule") == 6 && ms_net_find(&n, "rel.config") == 7);
    MS_EXPECT(!n.tensor[4].optional && n.tensor[5].optional && n.tensor[6].optional && n.tensor[7].optional);
    ms_net_randomize(&n, 1);
    MS_EXPECT(ms_net_tensor_data(&n, 3)[0] == 0.0f && ms_net_tensor_data(&n, 4)[0] == 5.0f);
    MS_EXPECT(ms_net_tensor_data(&n, 5)[0] == 0.0f && ms_net_tensor_data(&n, 6)[2] == 0.0f);
    ms_net_randomize_opts(&n, 1, "redundancy=8,coverage=1");
    MS_EXPECT(ms_net_tensor_data(&n, 3)[0] == 8.0f && ms_net_tensor_data(&n, 4)[0] == 1.0f);
    MS_EXPECT(ms_arch_parse_spec("relational:kcenter=2,redundancy_slope=-1,coverage_slope=0.5,kcenter_slope=3", &a,
                                 &opts) == MS_OK);
    ms_net_randomize_opts(&n, 1, opts);
    MS_EXPECT(ms_net_tensor_data(&n, 3)[0] == 0.0f && ms_net_tensor_data(&n, 4)[0] == 5.0f &&
              ms_net_tensor_data(&n, 5)[0] == 2.0f && ms_net_tensor_data(&n, 6)[0] == -1.0f &&
              ms_net_tensor_data(&n, 6)[1] == 0.5f && ms_net_tensor_data(&n, 6)[2] == 3.0f);
    MS_EXPECT(ms_arch_parse_spec("relational:kcenter_slope=y", &a, &opts) == MS_ERR_ARG);
    /* rank features and the static bound: kept in rel.config (0 0 by default) */
    MS_EXPECT(ms_net_tensor_data(&n, 7)[0] == 0.0f && ms_net_tensor_data(&n, 7)[1] == 0.0f);
    MS_EXPECT(ms_arch_parse_spec("relational:features=rank,static_max=0.5", &a, &opts) == MS_OK);
    ms_net_randomize_opts(&n, 1, opts);
    MS_EXPECT(ms_net_tensor_data(&n, 7)[0] == 1.0f && ms_net_tensor_data(&n, 7)[1] == 0.5f &&
              n.tensor[7].frozen && !n.tensor[2].frozen);
    MS_EXPECT(ms_arch_parse_spec("relational:features=raw", &a, &opts) == MS_OK);
    MS_EXPECT(ms_arch_parse_spec("relational:features=quantile", &a, &opts) == MS_ERR_ARG &&
              strstr(ms_last_error(), "features=quantile"));
    MS_EXPECT(ms_arch_parse_spec("relational:static_max=-1", &a, &opts) == MS_ERR_ARG &&
              strstr(ms_last_error(), "static_max"));
    /* the schedule: 0 at the first pick, 1 at the 41st, increasing */
    MS_EXPECT(ms_rel_schedule(0) == 0.0 && fabs(ms_rel_schedule(40) - 1.0) < 1e-15 &&
              ms_rel_schedule(5) > ms_rel_schedule(4));
    ms_net_free(&n);
    /* a bilstm net has exactly the LSTM's layout */
    MS_EXPECT(ms_net_init(&n, &ms_arch_bilstm, 5, 3) == MS_OK);
    ms_lstm_params p;
    ms_lstm_params_init(&p, 5, 3);
    MS_EXPECT(n.count == p.count);
    for (int i = 0; i < MS_LSTM_NTENSORS; i++)
        MS_EXPECT(n.tensor[i].offset == p.offset[i] && strcmp(n.tensor[i].name, ms_lstm_tensor_name(i)) == 0);
    ms_lstm_params_free(&p);
    ms_net_free(&n);
}

/* Loads a fixture case into a relational net. */
static void load_case(const char *cs, ms_net *net, float **x, int *T, int *D) {
    size_t nx, nw1;
    float *W1 = ms_load_npy_f32(fx(cs, "W1"), &nw1);
    int H = (int)(nw1 / MS_REL_F);
    *x = ms_load_npy_f32(fx(cs, "x"), &nx);
    size_t nf;
    double *feat = ms_load_npy_all(fx(cs, "feat"), &nf);
    *T = (int)(nf / MS_REL_F);
    *D = (int)(nx / (size_t)*T);
    free(feat);
    MS_CHECK(ms_net_init(net, &ms_arch_relational, *D, H) == MS_OK);
    /* kc, sched: only in cases with the k-center term and schedule (else they stay 0);
     * config (rel.config): only in cases with rank features and a static bound */
    const char *names[8] = {"W1", "b1", "w2", "a", "b", "kc", "sched", "config"};
    for (int i = 0; i < 8; i++) {
        size_t n;
        if (i >= 5 && !fx_exists(cs, names[i])) continue;
        float *v = ms_load_npy_f32(fx(cs, names[i]), &n);
        MS_CHECK(n == net->tensor[i].size);
        memcpy(ms_net_tensor_data(net, i), v, sizeof(float) * n);
        free(v);
    }
    free(W1);
}

static void test_pytorch_case(const char *cs) {
    ms_net net;
    float *x;
    int T, D;
    load_case(cs, &net, &x, &T, &D);
    size_t K, nf;
    double *picks_d = ms_load_npy_all(fx(cs, "picks"), &K);
    double *greedy_d = ms_load_npy_all(fx(cs, "greedy"), NULL);
    double *ref_logp = ms_load_npy_all(fx(cs, "logp"), NULL);
    double *ref_feat = ms_load_npy_all(fx(cs, "feat"), &nf);
    int picks[64], greedy[64];
    for (size_t i = 0; i < K; i++) picks[i] = (int)picks_d[i], greedy[i] = (int)greedy_d[i];

    /* features */
    int R = ms_rel_nref(T);
    double *feat = malloc(sizeof(double) * nf), *scr = malloc(sizeof(double) * ms_rel_scratch(T, D));
    float *z = malloc(sizeof(float) * (size_t)T * D), *kern = malloc(sizeof(float) * (size_t)T * R);
    ms_rel_features(feat, z, kern, x, T, D, scr);
    if (ms_net_tensor_data(&net, 7)[0] != 0) ms_rel_rank_features(feat, T, scr);
    char what[96];
    snprintf(what, sizeof what, "%s features vs PyTorch", cs);
    ms_expect_close_d(what, feat, ref_feat, nf, 1e-9, 1e-7);

    /* log-probability of the fixed draw and its gradient */
    void *w = net.arch->work_new(&net, 1, T, (int)K);
    double lp = ms_rel_score_draw(&net, w, x, T, picks, (int)K);
    snprintf(what, sizeof what, "%s log p vs PyTorch", cs);
    ms_expect_close_d(what, &lp, ref_logp, 1, 1e-9, 1e-7);
    float *g = calloc(net.count, sizeof(float));
    double one = 1.0;
    net.arch->backward(&net, w, x, &one, g);
    const char *gn[7] = {"g_W1", "g_b1", "g_w2", "g_a", "g_b", "g_kc", "g_sched"};
    for (int i = 0; i < 7; i++) {
        size_t n;
        if (i >= 5 && !fx_exists(cs, gn[i])) continue;
        float *ref = ms_load_npy_f32(fx(cs, gn[i]), &n);
        MS_EXPECT(n == net.tensor[i].size);
        snprintf(what, sizeof what, "%s d logp / d %s vs PyTorch", cs, net.tensor[i].name);
        ms_expect_close_f(what, g + net.tensor[i].offset, ref, n, 1e-6, 1e-5);
        free(ref);
    }

    /* greedy decoding */
    int k = (int)K, got[64], n;
    double logp;
    ms_net_mode greedy_mode = {.sampler = MS_SAMPLER_WOR, .greedy = 1};
    net.arch->run(&net, w, x, 1, T, &k, k, greedy_mode, NULL, got, &n, &logp, NULL);
    MS_EXPECT(n == k && memcmp(got, greedy, sizeof(int) * K) == 0);

    net.arch->work_free(w);
    free(g);
    free(feat), free(scr), free(z), free(kern);
    free(picks_d), free(greedy_d), free(ref_logp), free(ref_feat);
    free(x);
    ms_net_free(&net);
}

/* Central differences of log p (double arithmetic on float parameters); rel.config (tensor 7)
 * is a constant of the design, not a parameter. rank, smax: its values. */
static void test_finite_differences(float rank, float smax) {
    ms_net net;
    float *x;
    int T, D;
    load_case("r3", &net, &x, &T, &D);
    ms_net_tensor_data(&net, 7)[0] = rank, ms_net_tensor_data(&net, 7)[1] = smax;
    int picks[8] = {3, 17, 0, 9, 12, 5, 1, 19}, K = 8;
    void *w = net.arch->work_new(&net, 1, T, K);
    (void)ms_rel_score_draw(&net, w, x, T, picks, K);
    float *g = calloc(net.count, sizeof(float));
    double one = 1.0;
    net.arch->backward(&net, w, x, &one, g);
    double worst = 0;
    for (size_t q = 0; q < net.tensor[7].offset; q++) {
        float keep = net.params[q];
        float h = 3e-3f * (fabsf(keep) > 1 ? fabsf(keep) : 1.0f);
        net.params[q] = keep + h;
        double hp = (double)net.params[q] - keep;
        double up = ms_rel_score_draw(&net, w, x, T, picks, K);
        net.params[q] = keep - h;
        double hm = keep - (double)net.params[q];
        double dn = ms_rel_score_draw(&net, w, x, T, picks, K);
        net.params[q] = keep;
        double fd = (up - dn) / (hp + hm);
        double err = fabs(fd - g[q]) / (1e-3 + fabs(fd));
        if (err > worst) worst = err;
    }
    if (worst > 1e-3)
        fprintf(stderr, "relational finite differences (rank %g, static_max %g): worst relative error %.3g\n",
                rank, smax, worst);
    MS_EXPECT(worst <= 1e-3);
    MS_EXPECT(g[net.tensor[5].offset] != 0 && g[net.tensor[6].offset + 2] != 0);
    net.arch->work_free(w);
    free(g);
    free(x);
    ms_net_free(&net);
}

/* features=rank: the features depend on the pool only through the orderings of c, d and
 * |x - m|, so any increasing transform of those statistics leaves them, the static scores
 * and the first step's logits bitwise unchanged; the normal scores are Phi^-1 of the mid-
 * ranks; static_max bounds the static score. */
static void test_rank_features(void) {
    ms_net net;
    float *x;
    int T, D;
    load_case("r3", &net, &x, &T, &D);
    int R = ms_rel_nref(T);
    size_t nf = (size_t)T * MS_REL_F;
    double *f = malloc(sizeof(double) * nf), *g = malloc(sizeof(double) * nf);
    double *scr = malloc(sizeof(double) * ms_rel_scratch(T, D));
    float *z = malloc(sizeof(float) * (size_t)T * D), *kern = malloc(sizeof(float) * (size_t)T * R);
    ms_rel_features(f, z, kern, x, T, D, scr);
    /* increasing transforms of the statistics behind columns 0, 1, 4 (the rank columns 2, 3
     * are unchanged by them): exp(3 v), v^3 + v, 10 v - 7 */
    for (int i = 0; i < T; i++) {
        const double *a = f + (size_t)i * MS_REL_F;
        double *b = g + (size_t)i * MS_REL_F;
        b[0] = exp(3 * a[0]), b[1] = a[1] * a[1] * a[1] + a[1], b[2] = a[2], b[3] = a[3];
        b[4] = 10 * a[4] - 7;
    }
    int changed = 0;
    for (size_t q = 0; q < nf; q++) changed |= f[q] != g[q];
    MS_EXPECT(changed); /* the raw features do change */
    ms_rel_rank_features(f, T, scr);
    ms_rel_rank_features(g, T, scr);
    MS_EXPECT(memcmp(f, g, sizeof(double) * nf) == 0);
    /* normal scores: each column holds Phi^-1((j + 1/2) / T), j = 0..T-1 (distinct values) */
    for (int col = 0; col < 5; col += 4) {
        double worst = 0;
        for (int i = 0; i < T; i++) {
            double v = f[(size_t)i * MS_REL_F + col];
            int below = 0;
            for (int j = 0; j < T; j++) below += f[(size_t)j * MS_REL_F + col] < v;
            double q = (below + 0.5) / T, phi = 0.5 * erfc(-v / sqrt(2.0));
            if (fabs(phi - q) > worst) worst = fabs(phi - q);
        }
        if (worst > 1e-14) fprintf(stderr, "normal scores, column %d: |Phi(v) - q| up to %.3g\n", col, worst);
        MS_EXPECT(worst <= 1e-14);
    }
    /* the static scores through the net: with every sequential weight 0 the first step's
     * logits are s_i; rank features use the mid-rank normal scores of the pool */
    ms_net_tensor_data(&net, 7)[0] = 1.0f;
    for (int i = 3; i < 7; i++) memset(ms_net_tensor_data(&net, i), 0, sizeof(float) * net.tensor[i].size);
    int K = 3, n, picks[3];
    double logp;
    float *l0 = malloc(sizeof(float) * T), *l1 = malloc(sizeof(float) * T);
    void *w = net.arch->work_new(&net, 1, T, K);
    ms_net_mode gm = {.sampler = MS_SAMPLER_WOR, .greedy = 1};
    net.arch->run(&net, w, x, 1, T, &K, K, gm, NULL, picks, &n, &logp, l0);
    const float *W1 = ms_net_tensor_data(&net, 0), *b1 = ms_net_tensor_data(&net, 1), *w2 = ms_net_tensor_data(&net, 2);
    double vmax = 0, worst = 0;
    for (int i = 0; i < T; i++) {
        double v = 0;
        for (int u = 0; u < net.H; u++) {
            double pre = b1[u];
            for (int q = 0; q < MS_REL_F; q++) pre += (double)W1[u * MS_REL_F + q] * g[(size_t)i * MS_REL_F + q];
            v += (double)w2[u] * tanh(pre);
        }
        if (fabs(v) > vmax) vmax = fabs(v);
        if (fabs(v - l0[i]) > worst) worst = fabs(v - l0[i]);
    }
    MS_EXPECT(vmax > 0.05 && worst < 1e-6);
    /* static_max S: s = S tanh(v / S), below S in magnitude */
    float S = (float)(vmax / 2);
    ms_net_tensor_data(&net, 7)[1] = S;
    net.arch->run(&net, w, x, 1, T, &K, K, gm, NULL, picks, &n, &logp, l1);
    double smax = 0;
    worst = 0;
    for (int i = 0; i < T; i++) {
        double want = S * tanh(l0[i] / S);
        if (fabs(want - l1[i]) > worst) worst = fabs(want - l1[i]);
        if (fabs(l1[i]) > smax) smax = fabs(l1[i]);
    }
    MS_EXPECT(worst < 1e-6 && smax < S && smax > 0.5 * S);
    net.arch->work_free(w);
    free(f), free(g), free(scr), free(z), free(kern), free(l0), free(l1), free(x);
    ms_net_free(&net);
}

/* A random orthogonal matrix (D, D) by Gram-Schmidt on Gaussian columns. */
/* Features and the greedy ranking do not change when the embedding space is rotated and
 * scaled, or when the pool is reordered (up to the same reordering). */
static void test_invariance(void) {
    ms_net net;
    float *x;
    int T, D;
    load_case("r3", &net, &x, &T, &D);
    int K = 10, n, base[10], got[10];
    double logp;
    void *w = net.arch->work_new(&net, 1, T, K);
    ms_net_mode gm = {.sampler = MS_SAMPLER_WOR, .greedy = 1};
    net.arch->run(&net, w, x, 1, T, &K, K, gm, NULL, base, &n, &logp, NULL);
    double *Q = malloc(sizeof(double) * D * D);
    ms_random_orthogonal(Q, D, 7);
    float *y = malloc(sizeof(float) * (size_t)T * D);
    for (int i = 0; i < T; i++)
        for (int c = 0; c < D; c++) {
            double s = 0;
            for (int k = 0; k < D; k++) s += Q[c * D + k] * x[i * D + k];
            y[i * D + c] = (float)(2.5 * s);
        }
    int R = ms_rel_nref(T);
    double *f1 = malloc(sizeof(double) * T * MS_REL_F), *f2 = malloc(sizeof(double) * T * MS_REL_F);
    double *scr = malloc(sizeof(double) * ms_rel_scratch(T, D));
    float *z = malloc(sizeof(float) * (size_t)T * D), *kern = malloc(sizeof(float) * (size_t)T * R);
    ms_rel_features(f1, z, kern, x, T, D, scr);
    ms_rel_features(f2, z, kern, y, T, D, scr);
    ms_expect_close_d("features of a rotated, scaled pool", f2, f1, (size_t)T * MS_REL_F, 1e-5, 1e-5);
    net.arch->run(&net, w, y, 1, T, &K, K, gm, NULL, got, &n, &logp, NULL);
    MS_EXPECT(memcmp(got, base, sizeof base) == 0);
    /* reversed order: the same items, renamed */
    for (int i = 0; i < T; i++) memcpy(y + (size_t)i * D, x + (size_t)(T - 1 - i) * D, sizeof(float) * D);
    net.arch->run(&net, w, y, 1, T, &K, K, gm, NULL, got, &n, &logp, NULL);
    int same = 1;
    for (int i = 0; i < K; i++) same &= got[i] == T - 1 - base[i];
    MS_EXPECT(same);
    /* prefixes: greedy with K' < K gives the first K' picks */
    int k5 = 5;
    net.arch->run(&net, w, x, 1, T, &k5, k5, gm, NULL, got, &n, &logp, NULL);
    MS_EXPECT(memcmp(got, base, sizeof(int) * 5) == 0);
    net.arch->work_free(w);
    free(Q), free(y), free(f1), free(f2), free(scr), free(z), free(kern), free(x);
    ms_net_free(&net);
}

/* With only the k-center term (w2 = 0, a = b = 0, c > 0) the greedy ranking is k-center's
 * farthest-first order on unit rows, started at the item farthest from the mean unit row. */
static void test_farthest_first(void) {
    const int T = 30, D = 8, K = 12;
    ms_net net;
    MS_CHECK(ms_net_init(&net, &ms_arch_relational, D, 4) == MS_OK);
    ms_net_randomize_opts(&net, 2, "redundancy=0,coverage=0,kcenter=3,kcenter_slope=1");
    float x[30 * 8];
    double u[30 * 8], mu[8] = {0}, mind[30];
    ms_rng r;
    ms_rng_init(&r, 6, 7, 8);
    for (int i = 0; i < T * D; i++) x[i] = (float)ms_rng_normal(&r) + (i % D == 0 ? 2.0f : 0.0f);
    for (int i = 0; i < T; i++) {
        double n2 = 0;
        for (int q = 0; q < D; q++) n2 += (double)x[i * D + q] * x[i * D + q];
        for (int q = 0; q < D; q++) u[i * D + q] = (float)(x[i * D + q] / sqrt(n2)), mu[q] += u[i * D + q] / T;
    }
    int want[12], taken[30] = {0};
    for (int i = 0; i < T; i++) {
        double d2 = 0;
        for (int q = 0; q < D; q++) d2 += (u[i * D + q] - mu[q]) * (u[i * D + q] - mu[q]);
        mind[i] = d2;
    }
    for (int t = 0; t < K; t++) {
        int c = -1;
        for (int i = 0; i < T; i++)
            if (!taken[i] && (c < 0 || mind[i] > mind[c])) c = i;
        want[t] = c, taken[c] = 1;
        for (int i = 0; i < T; i++) {
            double d2 = 0;
            for (int q = 0; q < D; q++) d2 += (u[i * D + q] - u[c * D + q]) * (u[i * D + q] - u[c * D + q]);
            if (t == 0 || d2 < mind[i]) mind[i] = d2;
        }
    }
    void *w = net.arch->work_new(&net, 1, T, K);
    int k = K, got[12], n;
    double logp;
    ms_net_mode gm = {.sampler = MS_SAMPLER_WOR, .greedy = 1};
    net.arch->run(&net, w, x, 1, T, &k, K, gm, NULL, got, &n, &logp, NULL);
    MS_EXPECT(memcmp(got, want, sizeof want) == 0);
    net.arch->work_free(w);
    ms_net_free(&net);
}

/* A batch of sampled draws and its gradient: bitwise the same for 1 and 2 threads. */
static void test_threads(void) {
    const int B = 6, T = 25, D = 12, K = 7;
    ms_net net;
    MS_CHECK(ms_net_init(&net, &ms_arch_relational, D, 8) == MS_OK);
    ms_net_randomize(&net, 3);
    for (int i = 0; i < 8; i++) ms_net_tensor_data(&net, 2)[i] = 0.3f * (float)(i % 3) - 0.2f;
    ms_net_tensor_data(&net, 3)[0] = 0.8f;
    ms_net_tensor_data(&net, 5)[0] = 1.5f;
    ms_net_tensor_data(&net, 6)[0] = 0.4f, ms_net_tensor_data(&net, 6)[2] = -0.7f;
    ms_expect_net_thread_independent(&net, B, T, K);
    /* rank features and a bounded static score */
    ms_net_tensor_data(&net, 7)[0] = 1.0f, ms_net_tensor_data(&net, 7)[1] = 0.3f;
    ms_expect_net_thread_independent(&net, B, T, K);
    ms_net_free(&net);
}

static void test_checkpoints(void) {
    ms_net net, back;
    MS_CHECK(ms_net_init(&net, &ms_arch_relational, 10, 6) == MS_OK);
    ms_net_randomize_opts(&net, 9, "features=rank,static_max=0.25");
    ms_selector_meta m;
    ms_selector_meta_init(&m);
    m.K = 40;
    const char *path = ms_tmp("relational.safetensors");
    MS_EXPECT(ms_net_save(path, &net, &m) == MS_OK);
    ms_selector_meta r;
    MS_EXPECT(ms_net_load(path, &back, &r) == MS_OK);
    MS_EXPECT(back.arch == &ms_arch_relational && back.D == 10 && back.H == 6 && r.K == 40);
    MS_EXPECT(back.params && memcmp(back.params, net.params, sizeof(float) * net.count) == 0);
    MS_EXPECT(ms_net_tensor_data(&back, 7)[0] == 1.0f && ms_net_tensor_data(&back, 7)[1] == 0.25f);
    ms_net_free(&back);
    ms_selector_meta_free(&r);
    /* the bilstm-only loader refuses it by name */
    ms_lstm_params p;
    MS_EXPECT(ms_checkpoint_load(path, &p, NULL) == MS_ERR_DATA && strstr(ms_last_error(), "relational"));
    /* an unknown architecture and missing sizes */
    ms_st_file f;
    MS_CHECK(ms_st_read(&f, path) == MS_OK);
    ms_st_entry e[5];
    for (int i = 0; i < 5; i++) {
        const ms_st_tensor *t = ms_st_find(&f, net.tensor[i].name);
        e[i] = (ms_st_entry){net.tensor[i].name, MS_ST_F32, t->ndim, t->shape, ms_net_tensor_data(&net, i)};
    }
    const char *kv1[] = {"format", "medselect-selector", "version", "1", "arch", "hyper", "D", "10", "H", "6"};
    const char *bad = ms_tmp("bad_arch.safetensors");
    MS_EXPECT(ms_st_write(bad, e, 5, kv1, 5) == MS_OK);
    MS_EXPECT(ms_net_load(bad, &back, NULL) == MS_ERR_DATA && strstr(ms_last_error(), "\"hyper\"") &&
              back.params == NULL);
    const char *kv2[] = {"format", "medselect-selector", "version", "1", "arch", "relational"};
    MS_EXPECT(ms_st_write(bad, e, 5, kv2, 3) == MS_OK);
    MS_EXPECT(ms_net_load(bad, &back, NULL) == MS_ERR_DATA && strstr(ms_last_error(), "D and H"));
    /* a file from before the k-center term and schedule (5 tensors) loads with them 0 */
    const char *kv0[] = {"format", "medselect-selector", "version", "1", "arch", "relational", "D", "10", "H", "6"};
    MS_EXPECT(ms_st_write(bad, e, 5, kv0, 5) == MS_OK);
    MS_EXPECT(ms_net_load(bad, &back, NULL) == MS_OK && back.count == net.count);
    if (back.params) {
        size_t old = net.tensor[5].offset;
        MS_EXPECT(memcmp(back.params, net.params, sizeof(float) * old) == 0);
        int zero = 1;
        for (size_t q = old; q < back.count; q++) zero &= back.params[q] == 0.0f;
        MS_EXPECT(zero);
        ms_net_free(&back);
    }
    /* a required tensor is still required */
    MS_EXPECT(ms_st_write(bad, e, 4, kv0, 5) == MS_OK);
    MS_EXPECT(ms_net_load(bad, &back, NULL) == MS_ERR_DATA && strstr(ms_last_error(), "rel.coverage"));
    const char *kv3[] = {"format", "medselect-selector", "version", "1", "arch", "relational", "D", "10", "H", "7"};
    MS_EXPECT(ms_st_write(bad, e, 5, kv3, 5) == MS_OK);
    MS_EXPECT(ms_net_load(bad, &back, NULL) == MS_ERR_DATA && strstr(ms_last_error(), "rel.fc1.weight"));
    ms_st_free(&f);
    ms_net_free(&net);
    ms_selector_meta_free(&m);

    /* older files (no "arch"; one written byte by byte in Python) load as bilstm */
    MS_EXPECT(ms_net_load(ms_fixture("model/tiny.safetensors"), &back, &r) == MS_OK);
    MS_EXPECT(back.arch == &ms_arch_bilstm && back.D == 3 && back.H == 2 && r.K == 10);
    ms_net_free(&back);
    ms_selector_meta_free(&r);
}

static int loo_iterations, loo_reward_moved;
static double loo_worst, loo_first_reward;
static int loo_check(const ms_train_progress *p, void *ctx) {
    (void)ctx;
    if (loo_iterations++ == 0) loo_first_reward = p->reward;
    else if (p->reward != loo_first_reward) loo_reward_moved = 1;
    if (fabs(p->advantage) > loo_worst) loo_worst = fabs(p->advantage);
    return 0;
}

/* Trains c on `threads` threads into the temporary folder `dir` (16 iterations expected) and
 * loads its last checkpoint into *net (and its metadata into *meta when not NULL). */
static void train_last(const ms_split *tr, const ms_split *va, ms_train_config c, const char *dir,
                       int threads, ms_net *net, ms_selector_meta *meta) {
    c.out_dir = ms_tmp(dir);
    ms_set_threads(threads);
    ms_train_summary s;
    MS_EXPECT(ms_train(tr, va, &c, &s) == MS_OK && s.iterations == 16);
    char path[4096];
    snprintf(path, sizeof path, "%s/last.safetensors", c.out_dir);
    MS_CHECK(ms_net_load(path, net, meta) == MS_OK);
}

/* The trainer runs any architecture: a short relational run with K and prevalence ranges
 * writes a relational checkpoint that works as a strategy and gives rankings. */
static void test_training(void) {
    ms_split tr, va;
    ms_test_small_splits(&tr, &va);
    int cond[2] = {0, 1};
    ms_train_config c;
    ms_train_defaults(&c);
    c.arch = &ms_arch_relational;
    c.shape = (ms_task_shape){.pool = 30, .pos_frac = 0.2, .query = 20, .query_pos_frac = 0.5};
    c.pos_frac_hi = 0.5;
    c.k_min = 3;
    c.k = 12;
    c.batch = 8;
    c.tasks = 64;
    c.epochs = 2;
    c.val_tasks = 16;
    c.val_every = 4;
    c.lr = 1e-2;
    c.seed = 4;
    c.train_cond = cond, c.n_train_cond = 2;
    c.val_cond = cond, c.n_val_cond = 2;
    c.out_dir = ms_tmp("rel_run");
    ms_train_summary s;
    ms_status st = ms_train(&tr, &va, &c, &s);
    if (st) fprintf(stderr, "relational training: %s\n", ms_last_error());
    MS_EXPECT(st == MS_OK && s.iterations == 16);
    char path[4096];
    snprintf(path, sizeof path, "%s/last.safetensors", c.out_dir);
    ms_selector sel;
    memset(&sel, 0, sizeof sel);
    ms_selector_meta m;
    MS_EXPECT(ms_net_load(path, &sel.net, &m) == MS_OK);
    MS_EXPECT(sel.net.arch == &ms_arch_relational);
    MS_EXPECT(ms_selector_meta_extra(&m, "k_range") && strcmp(ms_selector_meta_extra(&m, "k_range"), "3:12") == 0);
    ms_selector_meta_free(&m);
    ms_strategy *strat = ms_selector_strategy(&sel);
    MS_EXPECT(strat->score == NULL && strcmp(strat->label, "medselect relational") == 0);
    float *unit = malloc(sizeof(float) * 30 * 16);
    ms_rows_unit(unit, tr.emb, 30, 16);
    ms_pool pool = {.n = 30, .d = 16, .x = unit, .raw = tr.emb, .clin = NULL};
    ms_arena ws;
    ms_arena_init(&ws);
    int a[12], b[5];
    MS_EXPECT(strat->select(strat, &pool, 12, 0, a, &ws) == MS_OK);
    ms_arena_reset(&ws);
    MS_EXPECT(strat->select(strat, &pool, 5, 0, b, &ws) == MS_OK);
    MS_EXPECT(memcmp(a, b, sizeof b) == 0); /* one ranking for every budget */
    ms_arena_free(&ws);
    ms_strategy_free(strat);
    free(unit);
    /* a resumed run ends with the same weights as an uninterrupted one */
    ms_train_config c2 = c;
    c2.out_dir = ms_tmp("rel_run_resumed");
    c2.max_iterations = 6;
    MS_EXPECT(ms_train(&tr, &va, &c2, &s) == MS_OK && s.iterations == 6);
    c2.max_iterations = 0;
    c2.resume = 1;
    MS_EXPECT(ms_train(&tr, &va, &c2, &s) == MS_OK && s.iterations == 16);
    char p2[4096];
    snprintf(p2, sizeof p2, "%s/last.safetensors", c2.out_dir);
    ms_net n1, n2;
    if (ms_net_load(path, &n1, NULL) == MS_OK && ms_net_load(p2, &n2, NULL) == MS_OK) {
        MS_EXPECT(memcmp(n1.params, n2.params, sizeof(float) * n1.count) == 0);
        ms_net_free(&n1);
        ms_net_free(&n2);
    } else {
        MS_EXPECT(0);
    }
    /* --samples 4: leave-one-out baselines make each task's advantages sum to 0 (so does
     * the iteration's mean), the weights move, and 1 and 2 threads agree bitwise */
    ms_net lw[2];
    for (int rep = 0; rep < 2; rep++) {
        ms_train_config c3 = c;
        char dir[64];
        snprintf(dir, sizeof dir, "rel_loo%d", rep);
        c3.samples = 4;
        c3.on_iteration = loo_check;
        loo_iterations = 0, loo_worst = 0, loo_reward_moved = 0;
        train_last(&tr, &va, c3, dir, rep + 1, &lw[rep], NULL);
        MS_EXPECT(loo_iterations == 16 && loo_worst < 1e-12 && loo_reward_moved);
    }
    MS_EXPECT(memcmp(lw[0].params, lw[1].params, sizeof(float) * lw[0].count) == 0);
    MS_CHECK(ms_net_load(path, &n1, NULL) == MS_OK);
    MS_EXPECT(memcmp(lw[0].params, n1.params, sizeof(float) * n1.count) != 0);
    ms_net_free(&n1);
    /* static=frozen: the per-item MLP's tensors end bitwise as initialised, the six term
     * weights move, the option is in the file's metadata, and 1 and 2 threads agree */
    {
        const char *opts = "coverage=5,coverage_slope=-5,kcenter_slope=10,static=frozen";
        ms_net init, fw[2];
        MS_CHECK(ms_net_init(&init, &ms_arch_relational, 16, 0) == MS_OK);
        ms_net_randomize_opts(&init, c.seed, opts);
        MS_EXPECT(init.tensor[0].frozen && init.tensor[1].frozen && init.tensor[2].frozen &&
                  !init.tensor[3].frozen && !init.tensor[4].frozen && !init.tensor[5].frozen &&
                  !init.tensor[6].frozen);
        for (int rep = 0; rep < 2; rep++) {
            ms_train_config c4 = c;
            char dir[64];
            snprintf(dir, sizeof dir, "rel_frozen%d", rep);
            c4.samples = 4;
            c4.arch_opts = opts;
            ms_selector_meta fm;
            train_last(&tr, &va, c4, dir, rep + 1, &fw[rep], &fm);
            const char *ai = ms_selector_meta_extra(&fm, "arch_init");
            MS_EXPECT(ai && strcmp(ai, opts) == 0);
            ms_selector_meta_free(&fm);
        }
        MS_EXPECT(memcmp(fw[0].params, fw[1].params, sizeof(float) * fw[0].count) == 0);
        for (int i = 0; i < init.ntensors; i++) {
            int same = memcmp(ms_net_tensor_data(&init, i), ms_net_tensor_data(&fw[0], i),
                              sizeof(float) * init.tensor[i].size) == 0;
            if (same != init.tensor[i].frozen)
                fprintf(stderr, "static=frozen: tensor %s %s\n", init.tensor[i].name,
                        same ? "did not move" : "moved although frozen");
            MS_EXPECT(same == init.tensor[i].frozen);
        }
        /* free (the default) moves the MLP's output weights */
        MS_EXPECT(memcmp(ms_net_tensor_data(&init, 2), ms_net_tensor_data(&lw[0], 2),
                         sizeof(float) * init.tensor[2].size) != 0);
        ms_net_free(&init);
        ms_net_free(&fw[0]);
        ms_net_free(&fw[1]);
        MS_EXPECT(ms_arch_relational.check_opts("static=free") == MS_OK);
        MS_EXPECT(ms_arch_relational.check_opts("static=thawed") == MS_ERR_ARG &&
                  strstr(ms_last_error(), "static=thawed"));
    }
    ms_net_free(&lw[0]);
    ms_net_free(&lw[1]);
    ms_set_threads(2);
    c.samples = 3, c.baseline_greedy = 1;
    MS_EXPECT(ms_train(&tr, &va, &c, &s) == MS_ERR_ARG && strstr(ms_last_error(), "leave-one-out"));
    c.samples = 0, c.baseline_greedy = 0;
    /* multinomial draws are refused for a sequential policy */
    c.sampler = MS_SAMPLER_MULTINOMIAL;
    MS_EXPECT(ms_train(&tr, &va, &c, &s) == MS_ERR_ARG && strstr(ms_last_error(), "without replacement"));
    ms_split_free(&tr);
    ms_split_free(&va);
}

/* --augment rotate: an orthogonal map (norms and dot products kept, clinical columns
 * untouched) that does move the rows; and a bilstm trains with it, 1 and 2 threads alike. */
static void test_rotation(void) {
    const int T = 5, D = 16, S = 19;
    float x[5 * 19], y[5 * 19];
    ms_rng r;
    ms_rng_init(&r, 3, 4, 5);
    for (int i = 0; i < T * S; i++) x[i] = (float)ms_rng_normal(&r);
    memcpy(y, x, sizeof x);
    double buf[16];
    signed char sg[48];
    ms_rng_init(&r, 8, 9, 10);
    ms_train_rotate_rows(y, T, S, D, &r, buf, sg);
    double worst = 0, moved = 0;
    for (int a = 0; a < T; a++)
        for (int b = 0; b < T; b++) {
            double d0 = 0, d1 = 0;
            for (int k = 0; k < D; k++) d0 += (double)x[a * S + k] * x[b * S + k], d1 += (double)y[a * S + k] * y[b * S + k];
            worst = fmax(worst, fabs(d0 - d1));
        }
    for (int i = 0; i < T * D; i++) moved = fmax(moved, fabs(x[(i / D) * S + i % D] - y[(i / D) * S + i % D]));
    MS_EXPECT(worst < 1e-4 && moved > 0.1);
    for (int a = 0; a < T; a++) MS_EXPECT(memcmp(x + a * S + D, y + a * S + D, sizeof(float) * (S - D)) == 0);

    ms_synth_config sc;
    ms_synth_defaults(&sc);
    sc.d = 16;
    sc.n_pos[0] = 300, sc.n_pos[1] = 150, sc.n_pos[2] = 50;
    sc.n_norm[0] = 300, sc.n_norm[1] = 150, sc.n_norm[2] = 50;
    ms_split tr, va, te;
    ms_synth_generate(&sc, &tr, &va, &te);
    ms_split_free(&te);
    int cond[2] = {0, 1};
    ms_train_config c;
    ms_train_defaults(&c);
    c.augment_rotate = 1;
    c.shape = (ms_task_shape){.pool = 20, .pos_frac = 0.5, .query = 10, .query_pos_frac = 0.5};
    c.k = 4, c.hidden = 8, c.batch = 8, c.tasks = 32, c.epochs = 1, c.val_tasks = 8, c.val_every = 2;
    c.train_cond = cond, c.n_train_cond = 2, c.val_cond = cond, c.n_val_cond = 2;
    ms_net w[3];
    for (int rep = 0; rep < 3; rep++) {
        char dir[64];
        snprintf(dir, sizeof dir, "rot_run%d", rep);
        c.out_dir = ms_tmp(dir);
        c.augment_rotate = rep < 2;
        ms_set_threads(rep + 1 > 2 ? 2 : rep + 1);
        ms_train_summary s;
        MS_EXPECT(ms_train(&tr, &va, &c, &s) == MS_OK);
        char path[4096];
        snprintf(path, sizeof path, "%s/last.safetensors", c.out_dir);
        MS_CHECK(ms_net_load(path, &w[rep], NULL) == MS_OK);
    }
    MS_EXPECT(memcmp(w[0].params, w[1].params, sizeof(float) * w[0].count) == 0);
    MS_EXPECT(memcmp(w[0].params, w[2].params, sizeof(float) * w[0].count) != 0);
    for (int i = 0; i < 3; i++) ms_net_free(&w[i]);
    ms_split_free(&tr);
    ms_split_free(&va);
}

int main(void) {
    test_rotation();
    test_registry();
    test_pytorch_case("r1");
    test_pytorch_case("r2");
    test_pytorch_case("r3");
    test_pytorch_case("r4");
    test_finite_differences(0, 0);
    test_finite_differences(1, 0);
    test_finite_differences(1, 0.4f);
    test_rank_features();
    test_farthest_first();
    test_invariance();
    test_threads();
    test_checkpoints();
    test_training();
    return ms_test_summary();
}
