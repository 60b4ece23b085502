/* medselect/metrics.h: AUROC and the statistics used to compare strategies.
 *
 * AUROC equals scikit-learn's roc_auc_score, ties included (Mann-Whitney U with average
 * ranks). Confidence intervals are percentile bootstraps over tasks; paired comparisons
 * use the Wilcoxon signed-rank test (scipy.stats.wilcoxon, zero_method "wilcox",
 * two-sided, normal approximation with tie correction, exact distribution for n <= 25
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

/* AUROC of scores (n) against 0/1 labels y (n). work: 2n ints. MS_ERR_DATA (message
 * "query set has only one class") when y holds a single class. */
ms_status ms_auroc(const float *scores, const uint8_t *y, int n, double *out, int *work);
/* Plain O(n^2) pair-counting reference: P(s+ > s-) + 0.5 P(s+ == s-). */
double ms_auroc_ref(const float *scores, const uint8_t *y, int n);

typedef struct {
    double mean, lo, hi; /* mean and 95% percentile-bootstrap interval */
} ms_ci;

/* Bootstrap CI of the mean of x (n values), `reps` resamples, level 0.95, from (seed,
 * MS_STREAM_BOOTSTRAP, stream_index). */
ms_ci ms_bootstrap_mean(const double *x, int n, int reps, uint64_t seed, uint64_t stream_index);

/* Wilcoxon signed-rank test of the paired differences d (n). Returns the two-sided p-value
 * (1.0 when all differences are zero); *stat gets the statistic min(W+, W-) if not NULL. */
double ms_wilcoxon(const double *d, int n, double *stat);
/* Paired permutation test of mean(d) != 0 by random sign flips: two-sided p-value with the
 * +1 correction, (1 + #{|mean*| >= |mean|}) / (1 + perms). */
double ms_paired_permutation(const double *d, int n, int perms, uint64_t seed);

/* Wasserstein-1 distance between the empirical distributions of a (na) and b (nb), equal to
 * scipy.stats.wasserstein_distance. work: na + nb doubles. */
double ms_wasserstein1(const double *a, int na, const double *b, int nb, double *work);
/* Permutation p-value of the Wasserstein-1 distance (pooled labels shuffled `perms` times),
 * (1 + #{W* >= W}) / (1 + perms). */
double ms_wasserstein_perm_test(const double *a, int na, const double *b, int nb, int perms,
                                uint64_t seed, double *w_out);

/* Pearson chi-square test of independence on an r x c table of counts (row-major), without
 * continuity correction (scipy.stats.chi2_contingency(correction=False)). Rows or columns
 * that are all zero are dropped. Returns the p-value; *chi2 and *dof if not NULL. */
double ms_chi2_test(const double *table, int r, int c, double *chi2, int *dof);
/* Fisher's exact test for a 2x2 table, two-sided (as scipy.stats.fisher_exact). */
double ms_fisher_exact(const long table[4]);

/* Benjamini-Hochberg adjusted p-values (in place order preserved): q_i, monotone, <= 1. */
void ms_bh_adjust(const double *p, int n, double *q);

double ms_mean(const double *x, int n);
double ms_sd(const double *x, int n); /* sample sd (n - 1) */

#ifdef __cplusplus
}
#endif
#endif
