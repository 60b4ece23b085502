/* ms_auroc.c: area under the ROC curve, equal to scikit-learn's roc_auc_score including
 * ties. The fast kernel sorts the scores once (a stable bottom-up merge sort of indices,
 * O(n log n), no allocation: the caller's `work` holds the index array and the merge
 * buffer) and computes the Mann-Whitney U statistic with average ranks for tied scores;
 * AUROC = U / (n_pos * n_neg). Beside it, ms_auroc_ref counts pairs directly in O(n^2),
 * the obviously correct definition the tests hold the fast kernel to.
 */
#include "medselect/metrics.h"

#include <math.h>
#include <string.h>

/* Stable ascending sort of idx[0..n) by scores[idx[i]] (bottom-up merge sort). tmp: n ints.
 * Ties keep their input order; the AUROC does not depend on that order, but a stable sort
 * makes the pass over tie groups reproducible bit for bit. */
static void merge_sort_idx(const float *scores, int *idx, int *tmp, int n) {
    int *src = idx, *dst = tmp;
    for (int width = 1; width < n; width *= 2) {
        for (int lo = 0; lo < n; lo += 2 * width) {
            int mid = lo + width < n ? lo + width : n;
            int hi = lo + 2 * width < n ? lo + 2 * width : n;
            int i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                /* take from the right run only when strictly smaller: stability */
                if (scores[src[j]] < scores[src[i]]) dst[k++] = src[j++];
                else dst[k++] = src[i++];
            }
            while (i < mid) dst[k++] = src[i++];
            while (j < hi) dst[k++] = src[j++];
        }
        int *t = src;
        src = dst;
        dst = t;
    }
    if (src != idx) memcpy(idx, src, sizeof(int) * (size_t)n);
}

ms_status ms_auroc(const float *scores, const uint8_t *y, int n, double *out, int *work) {
    MS_CHECK(n >= 0 && out != NULL && (n == 0 || (scores && y && work)));
    long n_pos = 0;
    for (int i = 0; i < n; i++) {
        MS_CHECK(y[i] <= 1);
        if (isnan(scores[i])) return ms_fail(MS_ERR_DATA, "AUROC: score %d is NaN", i);
        n_pos += y[i];
    }
    long n_neg = n - n_pos;
    if (n_pos == 0 || n_neg == 0) return ms_fail(MS_ERR_DATA, "query set has only one class");

    int *idx = work, *tmp = work + n;
    for (int i = 0; i < n; i++) idx[i] = i;
    merge_sort_idx(scores, idx, tmp, n);

    /* Walk the tie groups in ascending order. A group occupying sorted positions
     * [g, e) has average rank (g + 1 + e) / 2 (1-based); the rank sum of the positives is
     * R = sum over groups of pos_in_group * (g + 1 + e) / 2, and U = R - n_pos (n_pos + 1) / 2.
     * Every term is a half-integer, so the sums are exact in double up to 2^52. */
    double rank_sum = 0.0;
    int g = 0;
    while (g < n) {
        float v = scores[idx[g]];
        int e = g;
        long pos = 0;
        while (e < n && scores[idx[e]] == v) pos += y[idx[e++]];
        rank_sum += (double)pos * (double)(g + 1 + e) * 0.5;
        g = e;
    }
    double u = rank_sum - (double)n_pos * (double)(n_pos + 1) * 0.5;
    *out = u / ((double)n_pos * (double)n_neg);
    return MS_OK;
}

double ms_auroc_ref(const float *scores, const uint8_t *y, int n) {
    double wins = 0.0, pairs = 0.0;
    for (int i = 0; i < n; i++) {
        if (!y[i]) continue;
        for (int j = 0; j < n; j++) {
            if (y[j]) continue;
            pairs += 1.0;
            if (scores[i] > scores[j]) wins += 1.0;
            else if (scores[i] == scores[j]) wins += 0.5;
        }
    }
    return pairs > 0 ? wins / pairs : NAN;
}
