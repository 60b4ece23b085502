/* test_metrics.c: AUROC and statistics against scikit-learn / scipy / numpy references
 * written by tests/fixtures/gen_metrics.py (fixtures in tests/fixtures/metrics/), the fast
 * AUROC kernel against the pair-counting reference, and the distributional properties of
 * the randomized procedures (permutation p-values uniform under the null, bootstrap CIs
 * that cover the mean, shrink with n and reproduce per seed).
 */
#include "medselect/metrics.h"
#include "ms_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double *v;
    long n;
} arr;

static arr load(const char *name) {
    char buf[256];
    snprintf(buf, sizeof buf, "metrics/%s.npy", name);
    arr a;
    long shape[4];
    int nd;
    a.v = ms_load_npy_d(ms_fixture(buf), &nd, shape);
    a.n = 1;
    for (int i = 0; i < nd; i++) a.n *= shape[i];
    return a;
}

/* ---- AUROC --------------------------------------------------------------------------- */

static void test_auroc_fixtures(void) {
    arr s = load("auroc_scores"), y = load("auroc_labels"), off = load("auroc_offsets"),
        ref = load("auroc_ref");
    MS_EXPECT(off.n == ref.n + 1);
    int ncase = (int)ref.n;
    double *got = malloc(sizeof(double) * (size_t)ncase), *got_ref = malloc(sizeof(double) * (size_t)ncase);
    float *sf = malloc(sizeof(float) * (size_t)s.n);
    uint8_t *yb = malloc((size_t)s.n);
    int *work = malloc(sizeof(int) * 2 * (size_t)s.n);
    for (long i = 0; i < s.n; i++) {
        sf[i] = (float)s.v[i];
        yb[i] = (uint8_t)y.v[i];
    }
    int ok = 1;
    for (int c = 0; c < ncase; c++) {
        long o = (long)off.v[c];
        int n = (int)((long)off.v[c + 1] - o);
        if (ms_auroc(sf + o, yb + o, n, &got[c], work) != MS_OK) ok = 0;
        got_ref[c] = ms_auroc_ref(sf + o, yb + o, n);
    }
    MS_EXPECT(ok);
    ms_expect_close_d("auroc vs sklearn roc_auc_score", got, ref.v, (size_t)ncase, 1e-12, 0);
    ms_expect_close_d("auroc_ref vs sklearn roc_auc_score", got_ref, ref.v, (size_t)ncase, 1e-12, 0);
    ms_expect_close_d("auroc fast vs pair-counting", got, got_ref, (size_t)ncase, 1e-12, 0);
    printf("auroc: %d sklearn cases\n", ncase);
    free(got), free(got_ref), free(sf), free(yb), free(work);
    free(s.v), free(y.v), free(off.v), free(ref.v);
}

static void test_auroc_random_vs_ref(void) {
    /* Larger random cases (with ties from coarse quantization) than the fixtures hold. */
    ms_rng r;
    ms_rng_init(&r, 99, 1000, 0);
    enum { NMAX = 3000 };
    float *s = malloc(sizeof(float) * NMAX);
    uint8_t *y = malloc(NMAX);
    int *work = malloc(sizeof(int) * 2 * NMAX);
    double maxdiff = 0.0;
    for (int t = 0; t < 40; t++) {
        int n = 2 + (int)ms_rng_below(&r, NMAX - 1);
        int levels = (t % 3 == 0) ? 5 : 1000000;
        for (int i = 0; i < n; i++) {
            y[i] = ms_rng_uniform(&r) < 0.3;
            s[i] = (float)((int)(ms_rng_uniform(&r) * levels) / (double)levels + 0.1 * y[i]);
        }
        y[0] = 0, y[1] = 1;
        double a;
        MS_EXPECT(ms_auroc(s, y, n, &a, work) == MS_OK);
        double d = fabs(a - ms_auroc_ref(s, y, n));
        if (d > maxdiff) maxdiff = d;
    }
    if (maxdiff > 1e-12) printf("auroc fast vs ref on random cases: max diff %.3g\n", maxdiff);
    MS_EXPECT(maxdiff <= 1e-12);
    free(s), free(y), free(work);
}

static void test_auroc_errors(void) {
    float s[4] = {0.1f, 0.4f, 0.3f, 0.2f};
    uint8_t y1[4] = {1, 1, 1, 1}, y0[4] = {0, 0, 0, 0}, y[4] = {0, 1, 1, 0};
    int work[8];
    double a = -1.0;
    MS_EXPECT(ms_auroc(s, y1, 4, &a, work) == MS_ERR_DATA);
    MS_EXPECT(strcmp(ms_last_error(), "query set has only one class") == 0);
    MS_EXPECT(ms_auroc(s, y0, 4, &a, work) == MS_ERR_DATA);
    MS_EXPECT(strcmp(ms_last_error(), "query set has only one class") == 0);
    MS_EXPECT(ms_auroc(s, y, 0, &a, work) == MS_ERR_DATA);
    MS_EXPECT(isnan(ms_auroc_ref(s, y1, 4)));
    s[2] = NAN;
    MS_EXPECT(ms_auroc(s, y, 4, &a, work) == MS_ERR_DATA);
    s[2] = 0.3f;
    MS_EXPECT(ms_auroc(s, y, 4, &a, work) == MS_OK && a == 1.0);
}

/* ---- Wilcoxon ------------------------------------------------------------------------ */

static void test_wilcoxon(void) {
    arr d = load("wilcoxon_d"), off = load("wilcoxon_offsets"), ref = load("wilcoxon_ref");
    int ncase = (int)off.n - 1;
    MS_EXPECT(ref.n == 2 * ncase);
    double *p = malloc(sizeof(double) * (size_t)ncase), *pr = malloc(sizeof(double) * (size_t)ncase);
    double *t = malloc(sizeof(double) * (size_t)ncase), *tr = malloc(sizeof(double) * (size_t)ncase);
    for (int c = 0; c < ncase; c++) {
        long o = (long)off.v[c];
        p[c] = ms_wilcoxon(d.v + o, (int)((long)off.v[c + 1] - o), &t[c]);
        tr[c] = ref.v[2 * c];
        pr[c] = ref.v[2 * c + 1];
    }
    ms_expect_close_d("wilcoxon statistic vs scipy", t, tr, (size_t)ncase, 0, 1e-12);
    ms_expect_close_d("wilcoxon p vs scipy", p, pr, (size_t)ncase, 0, 1e-9);
    printf("wilcoxon: %d scipy cases (n = 5..100, with and without ties/zeros)\n", ncase);
    double zeros[3] = {0, 0, 0}, st = -1;
    MS_EXPECT(ms_wilcoxon(zeros, 3, &st) == 1.0 && st == 0.0);
    MS_EXPECT(ms_wilcoxon(zeros, 0, NULL) == 1.0);
    free(p), free(pr), free(t), free(tr), free(d.v), free(off.v), free(ref.v);
}

/* ---- permutation tests --------------------------------------------------------------- */

static void test_paired_permutation(void) {
    ms_rng r;
    ms_rng_init(&r, 4242, 1001, 0);
    double d[30];
    int below = 0, reps = 200;
    double psum = 0.0;
    for (int k = 0; k < reps; k++) {
        for (int i = 0; i < 20; i++) d[i] = ms_rng_normal(&r);
        double p = ms_paired_permutation(d, 20, 199, 1000 + (uint64_t)k);
        MS_EXPECT(p > 0.0 && p <= 1.0);
        below += p < 0.05;
        psum += p;
    }
    double frac = (double)below / reps;
    printf("paired permutation under the null: P(p < 0.05) = %.3f, mean p = %.3f\n", frac, psum / reps);
    MS_EXPECT(frac >= 0.01 && frac <= 0.10);
    MS_EXPECT(fabs(psum / reps - 0.5) < 0.08);
    for (int i = 0; i < 30; i++) d[i] = 1.0 + 0.5 * ms_rng_normal(&r);
    double p = ms_paired_permutation(d, 30, 999, 7);
    printf("paired permutation, shifted sample: p = %.4g\n", p);
    MS_EXPECT(p < 0.01);
    MS_EXPECT(p == ms_paired_permutation(d, 30, 999, 7)); /* deterministic per seed */
    /* every sign pattern flips an all-equal |d| into sums of the same magnitude only when
     * all signs agree: n = 3 gives 2 of 8 patterns, p -> 1/4 for many perms */
    double e[3] = {0.1, 0.1, 0.1};
    double pe = ms_paired_permutation(e, 3, 20000, 3);
    MS_EXPECT(fabs(pe - 0.25) < 0.02);
    double z[4] = {0, 0, 0, 0};
    MS_EXPECT(ms_paired_permutation(z, 4, 50, 1) == 1.0);
}

/* ---- Wasserstein --------------------------------------------------------------------- */

static void test_wasserstein(void) {
    arr a = load("wasserstein_a"), b = load("wasserstein_b"), oa = load("wasserstein_a_offsets"),
        ob = load("wasserstein_b_offsets"), ref = load("wasserstein_ref");
    int ncase = (int)ref.n;
    double *got = malloc(sizeof(double) * (size_t)ncase);
    double *work = malloc(sizeof(double) * (size_t)(a.n + b.n));
    for (int c = 0; c < ncase; c++) {
        long a0 = (long)oa.v[c], b0 = (long)ob.v[c];
        got[c] = ms_wasserstein1(a.v + a0, (int)((long)oa.v[c + 1] - a0), b.v + b0,
                                 (int)((long)ob.v[c + 1] - b0), work);
    }
    ms_expect_close_d("wasserstein1 vs scipy", got, ref.v, (size_t)ncase, 1e-12, 1e-12);
    printf("wasserstein: %d scipy cases\n", ncase);
    free(got), free(work), free(a.v), free(b.v), free(oa.v), free(ob.v), free(ref.v);

    /* permutation test: uniform-ish under the null, tiny for a clear shift */
    ms_rng r;
    ms_rng_init(&r, 77, 1002, 0);
    double x[40], y[40];
    int below = 0, reps = 200;
    for (int k = 0; k < reps; k++) {
        for (int i = 0; i < 15; i++) x[i] = ms_rng_normal(&r);
        for (int i = 0; i < 20; i++) y[i] = ms_rng_normal(&r);
        below += ms_wasserstein_perm_test(x, 15, y, 20, 99, (uint64_t)k, NULL) < 0.05;
    }
    double frac = (double)below / reps;
    printf("wasserstein permutation under the null: P(p < 0.05) = %.3f\n", frac);
    MS_EXPECT(frac >= 0.01 && frac <= 0.10);
    for (int i = 0; i < 40; i++) x[i] = ms_rng_normal(&r);
    for (int i = 0; i < 40; i++) y[i] = 1.5 + ms_rng_normal(&r);
    double w = -1, wt[80];
    double p = ms_wasserstein_perm_test(x, 40, y, 40, 499, 5, &w);
    printf("wasserstein permutation, shifted sample: W = %.4f, p = %.4g\n", w, p);
    MS_EXPECT(p < 0.01);
    MS_EXPECT(w == ms_wasserstein1(x, 40, y, 40, wt));
    MS_EXPECT(p == ms_wasserstein_perm_test(x, 40, y, 40, 499, 5, NULL));
}

/* ---- chi-square, Fisher, BH, percentile ---------------------------------------------- */

static void test_chi2(void) {
    arr t = load("chi2_tables"), sh = load("chi2_shapes"), ref = load("chi2_ref");
    int ncase = (int)ref.n / 3;
    double *stat = malloc(sizeof(double) * (size_t)ncase), *p = malloc(sizeof(double) * (size_t)ncase);
    double *rs = malloc(sizeof(double) * (size_t)ncase), *rp = malloc(sizeof(double) * (size_t)ncase);
    long o = 0;
    int dof_ok = 1;
    for (int c = 0; c < ncase; c++) {
        int r = (int)sh.v[2 * c], cc = (int)sh.v[2 * c + 1], dof = -1;
        p[c] = ms_chi2_test(t.v + o, r, cc, &stat[c], &dof);
        o += (long)r * cc;
        rs[c] = ref.v[3 * c];
        rp[c] = ref.v[3 * c + 1];
        if (dof != (int)ref.v[3 * c + 2]) {
            printf("chi2 case %d: dof %d, scipy %d\n", c, dof, (int)ref.v[3 * c + 2]);
            dof_ok = 0;
        }
    }
    MS_EXPECT(o == t.n);
    MS_EXPECT(dof_ok);
    ms_expect_close_d("chi2 statistic vs scipy", stat, rs, (size_t)ncase, 1e-12, 1e-12);
    ms_expect_close_d("chi2 p vs scipy", p, rp, (size_t)ncase, 1e-15, 1e-9);
    free(stat), free(p), free(rs), free(rp), free(t.v), free(sh.v), free(ref.v);
}

static void test_fisher(void) {
    arr t = load("fisher_tables"), ref = load("fisher_ref");
    int ncase = (int)ref.n;
    double *p = malloc(sizeof(double) * (size_t)ncase);
    for (int c = 0; c < ncase; c++) {
        long tab[4];
        for (int k = 0; k < 4; k++) tab[k] = (long)t.v[4 * c + k];
        p[c] = ms_fisher_exact(tab);
    }
    ms_expect_close_d("fisher p vs scipy", p, ref.v, (size_t)ncase, 1e-15, 1e-9);
    printf("fisher: %d scipy tables\n", ncase);
    free(p), free(t.v), free(ref.v);
}

static void test_bh(void) {
    arr p = load("bh_p"), off = load("bh_offsets"), ref = load("bh_ref");
    double *q = malloc(sizeof(double) * (size_t)p.n);
    for (long c = 0; c + 1 < off.n; c++) {
        long o = (long)off.v[c];
        ms_bh_adjust(p.v + o, (int)((long)off.v[c + 1] - o), q + o);
    }
    ms_expect_close_d("BH q vs numpy textbook BH", q, ref.v, (size_t)p.n, 0, 1e-12);
    /* in place */
    ms_bh_adjust(p.v, (int)p.n, p.v);
    int mono = 1;
    for (long i = 0; i < p.n; i++) mono &= p.v[i] <= 1.0;
    MS_EXPECT(mono);
    free(q), free(p.v), free(off.v), free(ref.v);
}

static void test_percentile(void) {
    arr x = load("percentile_x"), off = load("percentile_offsets"), q = load("percentile_q"),
        ref = load("percentile_ref");
    double *got = malloc(sizeof(double) * (size_t)ref.n);
    int k = 0;
    for (long c = 0; c + 1 < off.n; c++) {
        long o = (long)off.v[c];
        for (long j = 0; j < q.n; j++)
            got[k++] = ms_percentile_sorted(x.v + o, (int)((long)off.v[c + 1] - o), q.v[j]);
    }
    MS_EXPECT(k == ref.n);
    ms_expect_close_d("percentile vs numpy", got, ref.v, (size_t)ref.n, 0, 1e-15);
    free(got), free(x.v), free(off.v), free(q.v), free(ref.v);
}

/* ---- bootstrap, mean, sd ------------------------------------------------------------- */

static void test_bootstrap(void) {
    ms_rng r;
    ms_rng_init(&r, 5150, 1003, 0);
    enum { N = 400 };
    double x[N];
    for (int i = 0; i < N; i++) x[i] = 0.7 + 0.1 * ms_rng_normal(&r);
    double width[3];
    int sizes[3] = {25, 100, 400};
    for (int k = 0; k < 3; k++) {
        ms_ci ci = ms_bootstrap_mean(x, sizes[k], 2000, 11, 3);
        double m = ms_mean(x, sizes[k]);
        MS_EXPECT(ci.mean == m);
        MS_EXPECT(ci.lo < m && m < ci.hi);
        width[k] = ci.hi - ci.lo;
        /* the percentile interval's width is about 2 * 1.96 sd / sqrt(n) */
        double expect = 2 * 1.96 * ms_sd(x, sizes[k]) / sqrt(sizes[k]);
        printf("bootstrap n = %d: [%.4f, %.4f] width %.4f (normal theory %.4f)\n", sizes[k],
               ci.lo, ci.hi, width[k], expect);
        MS_EXPECT(fabs(width[k] / expect - 1.0) < 0.15);
    }
    MS_EXPECT(width[1] < width[0] && width[2] < width[1]);
    ms_ci a = ms_bootstrap_mean(x, 100, 500, 11, 3), b = ms_bootstrap_mean(x, 100, 500, 11, 3);
    ms_ci c = ms_bootstrap_mean(x, 100, 500, 12, 3), d = ms_bootstrap_mean(x, 100, 500, 11, 4);
    MS_EXPECT(a.lo == b.lo && a.hi == b.hi);
    MS_EXPECT(a.lo != c.lo || a.hi != c.hi);
    MS_EXPECT(a.lo != d.lo || a.hi != d.hi);
    ms_ci one = ms_bootstrap_mean(x, 1, 100, 1, 0);
    MS_EXPECT(one.lo == x[0] && one.hi == x[0]);
    ms_ci none = ms_bootstrap_mean(x, 0, 100, 1, 0);
    MS_EXPECT(isnan(none.mean) && isnan(none.lo) && isnan(none.hi));

    double v[5] = {1, 2, 3, 4, 10};
    MS_EXPECT(fabs(ms_mean(v, 5) - 4.0) < 1e-15);
    MS_EXPECT(fabs(ms_sd(v, 5) - sqrt(12.5)) < 1e-14);
    MS_EXPECT(isnan(ms_sd(v, 1)) && isnan(ms_mean(v, 0)));
}

int main(void) {
    test_auroc_fixtures();
    test_auroc_random_vs_ref();
    test_auroc_errors();
    test_wilcoxon();
    test_paired_permutation();
    test_wasserstein();
    test_chi2();
    test_fisher();
    test_bh();
    test_percentile();
    test_bootstrap();
    return ms_test_summary();
}
