/* ms_stats.c: the statistics used to compare strategies across tasks: means and standard
 * deviations, percentile-bootstrap confidence intervals, the Wilcoxon signed-rank test
 * (matching scipy.stats.wilcoxon), the paired sign-flip permutation test, the Wasserstein-1
 * distance (matching scipy.stats.wasserstein_distance) with a pooled permutation test,
 * Pearson's chi-square test of independence (matching scipy.stats.chi2_contingency with
 * correction=False), Fisher's exact test for 2x2 tables, and Benjamini-Hochberg adjusted
 * p-values. Distribution tails come from GSL. Each function allocates at most one buffer
 * per call, never per resample or permutation.
 */
#include "medselect/metrics.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_sf_gamma.h>

static int cmp_double(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* ---- mean, sd, percentile ------------------------------------------------------------ */

double ms_mean(const double *x, int n) {
    if (n <= 0) return NAN;
    double s = 0.0;
    for (int i = 0; i < n; i++) s += x[i];
    return s / n;
}

double ms_sd(const double *x, int n) {
    if (n < 2) return NAN;
    double m = ms_mean(x, n), ss = 0.0;
    for (int i = 0; i < n; i++) ss += (x[i] - m) * (x[i] - m); /* two passes: no cancellation */
    return sqrt(ss / (n - 1));
}

double ms_percentile_sorted(const double *sorted, int n, double q) {
    MS_CHECK(n >= 1 && q >= 0.0 && q <= 100.0);
    /* numpy's 'linear' method: virtual index h = (q / 100) (n - 1), interpolate between
     * the neighbours with numpy's two-sided lerp (exact at both ends). */
    double h = (q / 100.0) * (double)(n - 1);
    int lo = (int)floor(h);
    if (lo >= n - 1) return sorted[n - 1];
    double t = h - lo, a = sorted[lo], b = sorted[lo + 1], diff = b - a;
    return t >= 0.5 ? b - diff * (1.0 - t) : a + diff * t;
}

/* ---- bootstrap ----------------------------------------------------------------------- */

ms_ci ms_bootstrap_mean(const double *x, int n, int reps, uint64_t seed, uint64_t stream_index) {
    ms_ci ci;
    ci.mean = ms_mean(x, n);
    if (n <= 0) {
        ci.lo = ci.hi = NAN;
        return ci;
    }
    MS_CHECK(reps >= 1);
    double *means = ms_xmalloc(sizeof(double) * (size_t)reps); /* the one buffer */
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_BOOTSTRAP, stream_index);
    for (int b = 0; b < reps; b++) {
        double s = 0.0;
        for (int i = 0; i < n; i++) s += x[ms_rng_below(&r, (uint32_t)n)];
        means[b] = s / n;
    }
    qsort(means, (size_t)reps, sizeof(double), cmp_double);
    ci.lo = ms_percentile_sorted(means, reps, 2.5);
    ci.hi = ms_percentile_sorted(means, reps, 97.5);
    free(means);
    return ci;
}

/* ---- Wilcoxon signed-rank ------------------------------------------------------------ */

typedef struct {
    double a; /* |d_i| */
    int pos;  /* d_i > 0 */
} signed_abs;

static int cmp_signed_abs(const void *pa, const void *pb) {
    return cmp_double(&((const signed_abs *)pa)->a, &((const signed_abs *)pb)->a);
}

/* Largest n for the exact null distribution: scipy 1.10's method='auto' threshold. The
 * counts of rank-sum values are integers below 2^50 for n <= 50, exact in double. */
#define WILCOXON_EXACT_MAX 50

double ms_wilcoxon(const double *d, int n, double *stat) {
    MS_CHECK(n >= 0);
    int m = 0, zeros = 0;
    for (int i = 0; i < n; i++) {
        MS_CHECK(!isnan(d[i]));
        if (d[i] == 0.0) zeros++;
    }
    m = n - zeros; /* zero_method 'wilcox': zero differences are dropped */
    if (m == 0) {
        if (stat) *stat = 0.0;
        return 1.0;
    }
    signed_abs *v = ms_xmalloc(sizeof(signed_abs) * (size_t)m);
    for (int i = 0, k = 0; i < n; i++)
        if (d[i] != 0.0) {
            v[k].a = fabs(d[i]);
            v[k].pos = d[i] > 0.0;
            k++;
        }
    qsort(v, (size_t)m, sizeof(signed_abs), cmp_signed_abs);

    /* Average ranks over tie groups [g, e): rank (g + 1 + e) / 2. r_plus is a sum of
     * half-integers (exact). tie_term = sum over groups of t (t^2 - 1). */
    double r_plus = 0.0, tie_term = 0.0;
    for (int g = 0; g < m;) {
        int e = g, npos = 0;
        while (e < m && v[e].a == v[g].a) npos += v[e++].pos;
        double t = e - g;
        r_plus += npos * (double)(g + 1 + e) * 0.5;
        tie_term += t * (t * t - 1.0);
        g = e;
    }
    free(v);
    double total = (double)m * (m + 1) * 0.5;
    double r_minus = total - r_plus;
    double T = r_plus < r_minus ? r_plus : r_minus;
    if (stat) *stat = T;

    double p;
    if (n <= WILCOXON_EXACT_MAX && zeros == 0 && tie_term == 0.0) {
        /* Exact null distribution of r_plus: each rank k in 1..m joins the positive set
         * with probability 1/2. cnt[s] = number of subsets of {1..m} with sum s (integers,
         * exact), built by the usual knapsack recursion. */
        double cnt[WILCOXON_EXACT_MAX * (WILCOXON_EXACT_MAX + 1) / 2 + 1];
        int smax = m * (m + 1) / 2;
        memset(cnt, 0, sizeof(double) * (size_t)(smax + 1));
        cnt[0] = 1.0;
        for (int k = 1, top = 0; k <= m; k++) {
            top += k;
            for (int s = top; s >= k; s--) cnt[s] += cnt[s - k];
        }
        int rp = (int)r_plus; /* an integer: no ties */
        if (rp == smax / 2) {
            p = 1.0; /* scipy: the centre of the distribution */
        } else {
            double less = 0.0, greater = 0.0;
            for (int s = 0; s <= rp; s++) less += cnt[s];
            for (int s = rp; s <= smax; s++) greater += cnt[s];
            p = 2.0 * ldexp(less < greater ? less : greater, -m);
            if (p > 1.0) p = 1.0;
        }
    } else {
        /* Normal approximation with the tie correction, no continuity correction. */
        double mn = (double)m * (m + 1) * 0.25;
        double se = (double)m * (m + 1) * (2.0 * m + 1) - 0.5 * tie_term;
        se = sqrt(se / 24.0);
        double z = (T - mn) / se;
        p = 2.0 * gsl_cdf_ugaussian_Q(fabs(z));
    }
    return p;
}

/* ---- paired permutation (sign flips) ------------------------------------------------- */

double ms_paired_permutation(const double *d, int n, int perms, uint64_t seed) {
    MS_CHECK(n >= 0 && perms >= 1);
    if (n == 0) return 1.0;
    double s_obs = 0.0, scale = 0.0;
    for (int i = 0; i < n; i++) {
        s_obs += d[i];
        scale += fabs(d[i]);
    }
    /* Compare sums (same n as the means). Flipped sums that equal the observed one in exact
     * arithmetic can differ by rounding: count them with a tolerance of 1e-12 sum|d|. */
    double thr = fabs(s_obs) - 1e-12 * scale;
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_PERMUTE, 0);
    long count = 0;
    for (int p = 0; p < perms; p++) {
        double s = 0.0;
        uint64_t bits = 0;
        for (int i = 0; i < n; i++) {
            if ((i & 63) == 0) bits = ms_rng_next(&r);
            s += (bits & 1) ? d[i] : -d[i];
            bits >>= 1;
        }
        if (fabs(s) >= thr) count++;
    }
    return (1.0 + (double)count) / (1.0 + (double)perms);
}

/* ---- Wasserstein-1 ------------------------------------------------------------------- */

/* W1 of two sorted samples: the integral of |F_u - G_v| over the merged support, summed
 * between consecutive distinct values exactly as scipy's _cdf_distance(p=1) does
 * (F = #{u <= x} / nu on [x_k, x_{k+1})). */
static double w1_sorted(const double *u, int nu, const double *v, int nv) {
    int i = 0, j = 0;
    double cur = u[0] < v[0] ? u[0] : v[0], acc = 0.0;
    for (;;) {
        while (i < nu && u[i] <= cur) i++;
        while (j < nv && v[j] <= cur) j++;
        if (i == nu && j == nv) break;
        double next = i < nu ? u[i] : INFINITY;
        if (j < nv && v[j] < next) next = v[j];
        acc += fabs((double)i / nu - (double)j / nv) * (next - cur);
        cur = next;
    }
    return acc;
}

double ms_wasserstein1(const double *a, int na, const double *b, int nb, double *work) {
    MS_CHECK(na >= 1 && nb >= 1 && a && b && work);
    memcpy(work, a, sizeof(double) * (size_t)na);
    memcpy(work + na, b, sizeof(double) * (size_t)nb);
    for (int i = 0; i < na + nb; i++) MS_CHECK(!isnan(work[i]));
    qsort(work, (size_t)na, sizeof(double), cmp_double);
    qsort(work + na, (size_t)nb, sizeof(double), cmp_double);
    return w1_sorted(work, na, work + na, nb);
}

double ms_wasserstein_perm_test(const double *a, int na, const double *b, int nb, int perms,
                                uint64_t seed, double *w_out) {
    MS_CHECK(na >= 1 && nb >= 1 && perms >= 1);
    int nt = na + nb;
    double *pool = ms_xmalloc(sizeof(double) * 2 * (size_t)nt); /* pooled | work */
    double *work = pool + nt;
    double w = ms_wasserstein1(a, na, b, nb, work);
    if (w_out) *w_out = w;
    memcpy(pool, a, sizeof(double) * (size_t)na);
    memcpy(pool + na, b, sizeof(double) * (size_t)nb);
    /* A relabelling with the same two multisets reproduces w exactly (same sorted arrays);
     * the relative slack only guards against ties that rounding could break. */
    double thr = w * (1.0 - 1e-12);
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_PERMUTE, 1);
    long count = 0;
    for (int p = 0; p < perms; p++) {
        for (int i = nt - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)ms_rng_below(&r, (uint32_t)(i + 1));
            double t = pool[i];
            pool[i] = pool[j];
            pool[j] = t;
        }
        if (ms_wasserstein1(pool, na, pool + na, nb, work) >= thr) count++;
    }
    free(pool);
    return (1.0 + (double)count) / (1.0 + (double)perms);
}

/* ---- chi-square test of independence ------------------------------------------------- */

double ms_chi2_test(const double *table, int r, int c, double *chi2, int *dof) {
    MS_CHECK(r >= 1 && c >= 1 && table);
    double *rows = ms_xcalloc((size_t)(r + c), sizeof(double));
    double *cols = rows + r, total = 0.0;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < c; j++) {
            double o = table[(size_t)i * c + j];
            MS_CHECK(o >= 0.0 && isfinite(o));
            rows[i] += o;
            cols[j] += o;
            total += o;
        }
    int nr = 0, nc = 0;
    for (int i = 0; i < r; i++) nr += rows[i] > 0.0;
    for (int j = 0; j < c; j++) nc += cols[j] > 0.0;
    int df = (nr > 0 && nc > 0) ? (nr - 1) * (nc - 1) : 0;
    double stat = 0.0, p = 1.0;
    if (df > 0) {
        /* expected e_ij = row_i col_j / total over the rows and columns kept */
        for (int i = 0; i < r; i++) {
            if (rows[i] <= 0.0) continue;
            for (int j = 0; j < c; j++) {
                if (cols[j] <= 0.0) continue;
                double e = rows[i] * cols[j] / total, o = table[(size_t)i * c + j];
                stat += (o - e) * (o - e) / e;
            }
        }
        p = gsl_cdf_chisq_Q(stat, (double)df);
    } /* df == 0 (one non-trivial row or column): observed == expected, scipy's chi2 = 0, p = 1 */
    free(rows);
    if (chi2) *chi2 = stat;
    if (dof) *dof = df;
    return p;
}

/* ---- Fisher's exact test ------------------------------------------------------------- */

double ms_fisher_exact(const long table[4]) {
    long a = table[0], b = table[1], c = table[2], d = table[3];
    MS_CHECK(a >= 0 && b >= 0 && c >= 0 && d >= 0);
    long n1 = a + b, n2 = c + d, n = a + c;
    MS_CHECK(n1 + n2 <= (long)UINT_MAX);
    if (n1 == 0 || n2 == 0 || n == 0 || b + d == 0) return 1.0; /* an empty margin */
    /* With the margins fixed, x = table[0] is hypergeometric on [lo, hi]:
     * P(x) = C(n1, x) C(n2, n - x) / C(n1 + n2, n). The two-sided p-value sums P over the
     * tables no more probable than the observed one, with relative slack 1 + 1e-7 so that
     * tables equally probable in exact arithmetic count whatever the rounding. Weights are
     * taken relative to the mode and normalised by their own sum, so C(n1 + n2, n) and
     * the rounding of the log-binomials at the mode cancel. */
    long lo = n - n2 > 0 ? n - n2 : 0, hi = n < n1 ? n : n1;
    long mode = (long)(((double)(n + 1) * (double)(n1 + 1)) / (double)(n1 + n2 + 2));
    if (mode < lo) mode = lo;
    if (mode > hi) mode = hi;
#define LOGP(x) (gsl_sf_lnchoose((unsigned)n1, (unsigned)(x)) + gsl_sf_lnchoose((unsigned)n2, (unsigned)(n - (x))))
    double lref = LOGP(mode);
    double wobs = exp(LOGP(a) - lref) * (1.0 + 1e-7);
    double sum = 0.0, all = 0.0;
    for (long x = lo; x <= hi; x++) {
        double w = exp(LOGP(x) - lref);
        all += w;
        if (w <= wobs) sum += w;
    }
#undef LOGP
    double p = sum / all;
    return p < 1.0 ? p : 1.0;
}

/* ---- Benjamini-Hochberg -------------------------------------------------------------- */

typedef struct {
    double p;
    int i;
} p_index;

static int cmp_p_index(const void *pa, const void *pb) {
    const p_index *x = pa, *y = pb;
    if (x->p != y->p) return x->p < y->p ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

void ms_bh_adjust(const double *p, int n, double *q) {
    MS_CHECK(n >= 0);
    if (n == 0) return;
    p_index *s = ms_xmalloc(sizeof(p_index) * (size_t)n);
    for (int i = 0; i < n; i++) {
        MS_CHECK(p[i] >= 0.0 && p[i] <= 1.0);
        s[i].p = p[i];
        s[i].i = i;
    }
    qsort(s, (size_t)n, sizeof(p_index), cmp_p_index);
    /* q_(k) = min over j >= k of p_(j) n / j (1-based ranks), capped at 1. Written after
     * the copy above, so q may alias p. */
    double cur = 1.0;
    for (int k = n - 1; k >= 0; k--) {
        double v = s[k].p * n / (k + 1);
        if (v < cur) cur = v;
        q[s[k].i] = cur;
    }
    free(s);
}
