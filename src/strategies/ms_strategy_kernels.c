/* ms_strategy_kernels.c: kernels shared by the strategy families: the K range check,
 * squared row norms, squared Euclidean distances between two row sets by one sgemm (the
 * fast path every strategy uses, blocked by its caller) beside the plain double-loop
 * version the tests compare it with, and the thread count for blocked loops. */
#include <omp.h>

#include "strategies/ms_strategies_internal.h"

#include "medselect/gemm.h"

ms_status ms_strategy_check_k(const ms_strategy *s, const ms_pool *pool, int k) {
    if (k < 0 || k > pool->n)
        return ms_fail(MS_ERR_DATA, "strategy %s: K = %d is outside [0, %d] (the pool size)",
                       s->name, k, pool->n);
    return MS_OK;
}

void ms_rows_sqnorm(float *sqn, const float *x, int n, int d) {
    for (int i = 0; i < n; i++) {
        const float *r = x + (size_t)i * d;
        double acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int j = 0; j < d; j++) acc += (double)r[j] * r[j];
        sqn[i] = (float)acc;
    }
}

void ms_sqdist_gemm(float *out, const float *a, const float *an, int na, const float *b,
                    const float *bn, int nb, int d) {
    if (na <= 0 || nb <= 0) return;
    /* out = -2 a b^T, then add the norms: |a-b|^2 = |a|^2 + |b|^2 - 2 a.b */
    ms_gemm('N', 'T', na, nb, d, -2.0f, a, d, b, d, 0.0f, out, nb, MS_PREC_F32);
    for (int i = 0; i < na; i++) {
        float *o = out + (size_t)i * nb;
        float ai = an[i];
        for (int j = 0; j < nb; j++) {
            float v = o[j] + ai + bn[j];
            o[j] = v > 0.0f ? v : 0.0f; /* cancellation can make it slightly negative */
        }
    }
}

void ms_sqdist_plain(double *out, const float *a, int na, const float *b, int nb, int d) {
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++) {
            double acc = 0;
            for (int t = 0; t < d; t++) {
                double diff = (double)a[(size_t)i * d + t] - b[(size_t)j * d + t];
                acc += diff * diff;
            }
            out[(size_t)i * nb + j] = acc;
        }
}

int ms_draw_weighted(const double *cum, int n, double r) {
    int lo = 0, hi = n - 1;
    if (r >= cum[n - 1]) {
        while (hi > 0 && cum[hi] == cum[hi - 1]) hi--;
        return hi;
    }
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (cum[mid] > r) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

int ms_strategy_threads(void) {
    if (omp_in_parallel()) return 1;
    int t = omp_get_max_threads();
    return t > 0 ? t : 1;
}

/* ms_gemm spreads the product over the threads with a shape-only blocking, so the result
 * does not depend on the thread count. */
void ms_gemm_nt_par(float *out, float alpha, const float *a, int na, const float *b, int nb,
                    int d) {
    if (na <= 0 || nb <= 0) return;
    ms_gemm('N', 'T', na, nb, d, alpha, a, d, b, d, 0.0f, out, nb, MS_PREC_F32);
}

void ms_sqdist_gemm_par(float *out, const float *a, const float *an, int na, const float *b,
                        const float *bn, int nb, int d) {
    ms_gemm_nt_par(out, -2.0f, a, na, b, nb, d);
    for (int i = 0; i < na; i++) {
        float *o = out + (size_t)i * nb;
        float ai = an[i];
        for (int j = 0; j < nb; j++) {
            float v = o[j] + ai + bn[j];
            o[j] = v > 0.0f ? v : 0.0f;
        }
    }
}
