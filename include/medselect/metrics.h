/* medselect/metrics.h: AUROC and the statistics used to compare strategies.
 *
 * AUROC equals scikit-learn's roc_auc_score, ties included (Mann-Whitney U with average
 * ranks). Confidence intervals are percentile bootstraps over tasks; paired comparisons
 * use the Wilcoxon signed-rank test (scipy.stats.wilcoxon, zero_method "wilcox",
 * two-sided, normal approximation with tie correction, exact distribution for n <= 50
 * without ties or zeros) and paired permutation tests (sign flips). Two-sample comparisons
 * of distributions use the Wasserstein-1 distance with a permutation p-value; proportions
 * use Pearson's chi-square test of independence; p-value families are adjusted by
 * Benjamini-Hochberg.
 */
#ifndef MEDSELECT_METRICS_H
#define MEDSELECT_METRICS_H

#include "medselect/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* AUROC of scores (n) against 0/1 labels y (n) into *out. work: 2n ints of scratch (the
 * sorted index and the merge buffer); nothing is allocated. O(n log n), equal to
 * sklearn.metrics.roc_auc_score(y, scores) with ties (Mann-Whitney U with average ranks).
 * MS_ERR_DATA (message "query set has only one class") when y holds a single class (or
 * n == 0), MS_ERR_DATA naming the index when a score is NaN. y[i] > 1 aborts (contract). */
ms_status ms_auroc(const float *scores, const uint8_t *y, int n, double *out, int *work);
/* Plain O(n^2) pair-counting reference: P(s+ > s-) + 0.5 P(s+ == s-), NaN for one class. */
double ms_auroc_ref(const float *scores, const uint8_t *y, int n);

typedef struct {
    double mean, lo, hi; /* mean and 95% percentile-bootstrap interval */
} ms_ci;

/* Bootstrap CI of the mean of x (n values), `reps` (>= 1) resamples of n draws with
 * replacement, level 0.95: lo/hi are the 2.5th/97.5th percentiles of the resampled means
 * (ms_percentile_sorted, numpy's default linear interpolation). Random numbers from (seed,
 * MS_STREAM_BOOTSTRAP, stream_index): a pure function of its arguments. One buffer of
 * `reps` doubles is allocated per call. n == 0 gives NaN for all three fields. */
ms_ci ms_bootstrap_mean(const double *x, int n, int reps, uint64_t seed, uint64_t stream_index);

/* The q-th percentile (0 <= q <= 100) of sorted (n >= 1, ascending) with linear
 * interpolation, equal to numpy.percentile(x, q) (method 'linear'). */
double ms_percentile_sorted(const double *sorted, int n, double q);

/* Wilcoxon signed-rank test of the paired differences d (n). Returns the two-sided p-value
 * (1.0 when all differences are zero or n == 0); *stat gets the statistic min(W+, W-) if
 * not NULL. Zero differences are dropped (zero_method 'wilcox'); ranks of |d| are averaged
 * over ties. When n <= 50 and d has no zeros and no tied |d|, the p-value comes from the
 * exact null distribution of W+ (as scipy 1.10's wilcoxon(d), method 'auto', centre of
 * the distribution -> 1.0); otherwise from the normal approximation with the tie
 * correction and no continuity correction (scipy's method='approx', correction=False).
 * This equals scipy.stats.wilcoxon(d) of scipy 1.10 in every case but one: with tied |d|,
 * no zeros and n <= 50, scipy 1.10 still uses the exact no-ties distribution (truncating
 * a half-integer W+); here the normal approximation with tie correction is used. */
double ms_wilcoxon(const double *d, int n, double *stat);
/* Paired permutation test of mean(d) != 0 by random sign flips: two-sided p-value with the
 * +1 correction, (1 + #{|mean*| >= |mean|}) / (1 + perms), perms >= 1. Means that are
 * equal up to rounding (1e-12 sum|d|) count as >=. Random numbers from (seed,
 * MS_STREAM_PERMUTE, 0). n == 0 gives 1.0. */
double ms_paired_permutation(const double *d, int n, int perms, uint64_t seed);

/* Wasserstein-1 distance between the empirical distributions of a (na >= 1) and b
 * (nb >= 1), equal to scipy.stats.wasserstein_distance(a, b) (unweighted). work: na + nb
 * doubles (sorted copies; a and b are not modified). Values must not be NaN. */
double ms_wasserstein1(const double *a, int na, const double *b, int nb, double *work);
/* Permutation p-value of the Wasserstein-1 distance (pooled labels shuffled `perms` times),
 * (1 + #{W* >= W}) / (1 + perms); *w_out gets W if not NULL. Random numbers from (seed,
 * MS_STREAM_PERMUTE, 1). One buffer of 2 (na + nb) doubles is allocated per call. */
double ms_wasserstein_perm_test(const double *a, int na, const double *b, int nb, int perms,
                                uint64_t seed, double *w_out);

/* Pearson chi-square test of independence on an r x c table of counts (row-major), without
 * continuity correction (scipy.stats.chi2_contingency(correction=False)). Rows or columns
 * that are all zero are dropped (scipy refuses them); dof = (r' - 1)(c' - 1) over the rest,
 * and dof == 0 gives chi2 = 0, p = 1 (as scipy). table is (r, c) of non-negative counts.
 * Returns the p-value (GSL's chi-square upper tail); *chi2 and *dof if not NULL. */
double ms_chi2_test(const double *table, int r, int c, double *chi2, int *dof);
/* Fisher's exact test for a 2x2 table {a, b, c, d} = [[a, b], [c, d]] of non-negative
 * counts, two-sided (as scipy.stats.fisher_exact): the hypergeometric probability of the
 * tables with the observed margins that are no more probable than the observed one
 * (relative slack 1 + 1e-7, as R's fisher.test; scipy uses 1 + 1e-14). 1.0 when a row
 * or column sum is zero. */
double ms_fisher_exact(const long table[4]);

/* Benjamini-Hochberg adjusted p-values of p (n values in [0, 1]) into q (n), in the
 * original order: q_(k) = min_{j >= k} min(1, p_(j) n / j) over the ascending order,
 * as statsmodels multipletests(method='fdr_bh'). q may be p (in place). */
void ms_bh_adjust(const double *p, int n, double *q);

double ms_mean(const double *x, int n); /* NaN when n == 0 */
double ms_sd(const double *x, int n);   /* sample sd (n - 1), two-pass; NaN when n < 2 */

#ifdef __cplusplus
}
#endif
#endif
