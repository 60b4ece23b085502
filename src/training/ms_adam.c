/* ms_adam.c: Adam, PyTorch's update rule, for the trainer (ms_train_internal.h).
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
 *   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * and then g = 0: the next backward accumulates into it, so the step that reads the
 * gradient also clears it (one pass over the four arrays instead of a separate memset).
 *
 * Each parameter's update is the same sequence of IEEE float operations in both kernels
 * (the build is ISO C, so nothing is contracted into fused multiply-adds; vector sqrt and
 * division are correctly rounded like the scalar ones), so the vectorised, multi-threaded
 * ms_adam_step gives the bits of the plain loop, ms_adam_step_ref, for any thread count
 * (test_train compares them). The vector loop is written with intrinsics: with errno-setting
 * sqrtf (the C default) the compiler keeps a plain loop scalar, and one step over the
 * paper's 1.6 M parameters then costs more than its memory traffic. */
#include <math.h>
#include <omp.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

#include "training/ms_train_internal.h"

typedef struct {
    float fb1, fb2, cb1, cb2, step, sbc2, eps;
} adam_coef;

static adam_coef adam_coefs(long t, double lr, double b1, double b2, double eps) {
    double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
    /* 1 - b is formed in double and then rounded, as PyTorch does with its Python-float
     * coefficients: (1.0f - (float)0.999) would be 1.3e-5 off in relative terms. */
    adam_coef c = {(float)b1, (float)b2, (float)(1.0 - b1), (float)(1.0 - b2), (float)(lr / bc1),
                   (float)sqrt(bc2), (float)eps};
    return c;
}

void ms_adam_step_ref(float *p, float *g, float *m, float *v, size_t n, long t, double lr,
                      double b1, double b2, double eps) {
    const adam_coef c = adam_coefs(t, lr, b1, b2, eps);
    for (size_t i = 0; i < n; i++) {
        m[i] = c.fb1 * m[i] + c.cb1 * g[i];
        v[i] = c.fb2 * v[i] + c.cb2 * g[i] * g[i];
        float denom = sqrtf(v[i]) / c.sbc2 + c.eps;
        p[i] -= c.step * m[i] / denom;
        g[i] = 0.0f;
    }
}

/* Elements [lo, hi) on the calling thread. */
static void adam_range(float *p, float *g, float *m, float *v, size_t lo, size_t hi, const adam_coef *c) {
    size_t i = lo;
#if defined(__AVX512F__)
    const __m512 fb1 = _mm512_set1_ps(c->fb1), fb2 = _mm512_set1_ps(c->fb2), cb1 = _mm512_set1_ps(c->cb1),
                 cb2 = _mm512_set1_ps(c->cb2), step = _mm512_set1_ps(c->step), sbc2 = _mm512_set1_ps(c->sbc2),
                 eps = _mm512_set1_ps(c->eps), zero = _mm512_setzero_ps();
    for (; i + 16 <= hi; i += 16) {
        const __m512 gi = _mm512_loadu_ps(g + i);
        const __m512 mi = _mm512_add_ps(_mm512_mul_ps(fb1, _mm512_loadu_ps(m + i)), _mm512_mul_ps(cb1, gi));
        const __m512 vi =
            _mm512_add_ps(_mm512_mul_ps(fb2, _mm512_loadu_ps(v + i)), _mm512_mul_ps(_mm512_mul_ps(cb2, gi), gi));
        const __m512 den = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), sbc2), eps);
        const __m512 pi = _mm512_sub_ps(_mm512_loadu_ps(p + i), _mm512_div_ps(_mm512_mul_ps(step, mi), den));
        _mm512_storeu_ps(m + i, mi);
        _mm512_storeu_ps(v + i, vi);
        _mm512_storeu_ps(p + i, pi);
        _mm512_storeu_ps(g + i, zero);
    }
#elif defined(__AVX__)
    const __m256 fb1 = _mm256_set1_ps(c->fb1), fb2 = _mm256_set1_ps(c->fb2), cb1 = _mm256_set1_ps(c->cb1),
                 cb2 = _mm256_set1_ps(c->cb2), step = _mm256_set1_ps(c->step), sbc2 = _mm256_set1_ps(c->sbc2),
                 eps = _mm256_set1_ps(c->eps), zero = _mm256_setzero_ps();
    for (; i + 8 <= hi; i += 8) {
        const __m256 gi = _mm256_loadu_ps(g + i);
        const __m256 mi = _mm256_add_ps(_mm256_mul_ps(fb1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(cb1, gi));
        const __m256 vi =
            _mm256_add_ps(_mm256_mul_ps(fb2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(_mm256_mul_ps(cb2, gi), gi));
        const __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), sbc2), eps);
        const __m256 pi = _mm256_sub_ps(_mm256_loadu_ps(p + i), _mm256_div_ps(_mm256_mul_ps(step, mi), den));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        _mm256_storeu_ps(p + i, pi);
        _mm256_storeu_ps(g + i, zero);
    }
#endif
    for (; i < hi; i++) { /* the tail, or no vector unit: the plain loop's operations */
        float mi = c->fb1 * m[i] + c->cb1 * g[i];
        float vi = c->fb2 * v[i] + c->cb2 * g[i] * g[i];
        m[i] = mi;
        v[i] = vi;
        p[i] -= c->step * mi / (sqrtf(vi) / c->sbc2 + c->eps);
        g[i] = 0.0f;
    }
}

void ms_adam_step(float *p, float *g, float *m, float *v, size_t n, long t, double lr, double b1,
                  double b2, double eps) {
    const adam_coef c = adam_coefs(t, lr, b1, b2, eps);
    /* one contiguous range per thread, split on 64-byte multiples (16 floats) */
#pragma omp parallel if (n >= 65536 && !omp_in_parallel())
    {
        size_t nt = (size_t)omp_get_num_threads(), th = (size_t)omp_get_thread_num();
        size_t per = ((n + nt - 1) / nt + 15) / 16 * 16;
        size_t lo = th * per < n ? th * per : n, hi = lo + per < n ? lo + per : n;
        adam_range(p, g, m, v, lo, hi, &c);
    }
}
