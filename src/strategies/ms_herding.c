/* ms_herding.c: the herding strategy, MaxHerding (Bae, Noh & Sutherland, ECCV 2024,
 * "Generalized coverage for more robust low-budget active learning").
 *
 * Greedy maximisation of the generalized coverage F(S) = sum_i max_{s in S} k(x_i, s) over
 * the pool, with the Gaussian kernel k(x, y) = exp(-|x - y|^2 / (2 sigma^2)) on the pool's
 * unit rows (Euclidean distance; sigma option, default 1.0). Each step adds the item with
 * the largest gain(x) = sum_i max(0, k(x_i, x) - c_i), c_i = max_{s in S} k(x_i, s) the
 * current coverage of item i (0 before the first pick).
 *
 * F is monotone submodular (a facility-location function), so gains only shrink as S grows
 * and the lazy greedy (Minoux) gives the same picks as the plain greedy at a fraction of
 * the cost: a max-heap holds an upper bound of each candidate's gain; the top is
 * re-evaluated (one (1, n) kernel row from sgemm, O(n d)) until the top is fresh for this
 * step, and that one is taken (ties to the lowest index, like the plain argmax). The
 * initial bounds are the first-step gains sum_i k(x_i, x), computed once by blocked sgemm
 * (128 candidates x n points, in parallel over blocks; O(n^2 d) and never an (n, n)
 * matrix), inflated by 1e-5 relative so that float rounding cannot make them fall below
 * the row-wise re-evaluation. Fresh gains use one routine (float kernel row, double sum in
 * fixed order); since every term max(0, k - c_i) is non-increasing in c_i and rounding is
 * monotone, a stale gain is an exact upper bound of the current one. ms_herding_plain is
 * the obviously-correct O(n^2 K d) version the tests compare with. Option: sigma.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "strategies/ms_strategies_internal.h"

enum { HB_BLOCK = 128 };

typedef struct {
    double key; /* gain or an upper bound of it */
    int idx;
    int stamp; /* step the key was computed at; -1 for the initial bound */
} hentry;

static int hbefore(const hentry *a, const hentry *b) {
    return a->key > b->key || (a->key == b->key && a->idx < b->idx);
}

static void sift_down(hentry *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && hbefore(&h[l], &h[m])) m = l;
        if (r < n && hbefore(&h[r], &h[m])) m = r;
        if (m == i) return;
        hentry t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* row (n) = k(x_i, x_j) for all i */
static void kernel_row(float *row, int j, const float *x, const float *sqn, int n, int d,
                       float gamma) {
    ms_sqdist_gemm(row, x + (size_t)j * d, sqn + j, 1, x, sqn, n, d);
    for (int i = 0; i < n; i++) row[i] = expf(-gamma * row[i]);
}

static double gain_of(const float *row, const float *c, int n) {
    double g = 0;
    for (int i = 0; i < n; i++) {
        float v = row[i] - c[i];
        if (v > 0) g += v;
    }
    return g;
}

ms_status ms_herding_lazy(int *out, double *objective, const float *x, int n, int d, int k,
                          double sigma, ms_arena *ws) {
    MS_CHECK(k >= 0 && k <= n && sigma > 0);
    if (k == 0) return MS_OK;
    float gamma = (float)(1.0 / (2.0 * sigma * sigma));
    float *sqn = MS_ARENA_NEW(ws, float, n);
    float *c = MS_ARENA_NEW(ws, float, n);
    float *row = MS_ARENA_NEW(ws, float, n);
    hentry *h = MS_ARENA_NEW(ws, hentry, n);
    ms_rows_sqnorm(sqn, x, n, d);
    memset(c, 0, sizeof(float) * (size_t)n);

    /* initial bounds: first-step gains by blocked sgemm */
    int nt = ms_strategy_threads();
    float *blk = MS_ARENA_NEW(ws, float, (size_t)nt * HB_BLOCK * n);
    int nblocks = (n + HB_BLOCK - 1) / HB_BLOCK;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1 && n >= 1024)
    for (int b = 0; b < nblocks; b++) {
        float *bk = blk + (size_t)omp_get_thread_num() * HB_BLOCK * n;
        int j0 = b * HB_BLOCK, nb = n - j0 < HB_BLOCK ? n - j0 : HB_BLOCK;
        ms_sqdist_gemm(bk, x + (size_t)j0 * d, sqn + j0, nb, x, sqn, n, d);
        for (int r = 0; r < nb; r++) {
            const float *br = bk + (size_t)r * n;
            double s = 0;
            for (int i = 0; i < n; i++) s += expf(-gamma * br[i]);
            h[j0 + r].key = s * (1.0 + 1e-5) + 1e-6;
            h[j0 + r].idx = j0 + r;
            h[j0 + r].stamp = -1;
        }
    }
    for (int i = n / 2 - 1; i >= 0; i--) sift_down(h, n, i);

    int hn = n;
    for (int t = 0; t < k; t++) {
        while (h[0].stamp != t) {
            kernel_row(row, h[0].idx, x, sqn, n, d, gamma);
            h[0].key = gain_of(row, c, n);
            h[0].stamp = t;
            sift_down(h, hn, 0);
        }
        int j = h[0].idx;
        out[t] = j;
        h[0] = h[--hn];
        sift_down(h, hn, 0);
        kernel_row(row, j, x, sqn, n, d, gamma);
        double obj = 0;
        for (int i = 0; i < n; i++) {
            if (row[i] > c[i]) c[i] = row[i];
            obj += c[i];
        }
        if (objective) objective[t] = obj;
    }
    return MS_OK;
}

void ms_herding_plain(int *out, double *objective, const float *x, int n, int d, int k,
                      double sigma) {
    double *c = ms_xcalloc((size_t)n, sizeof(double));
    double *kk = ms_xmalloc(sizeof(double) * (size_t)n * n);
    unsigned char *sel = ms_xcalloc((size_t)n, 1);
    ms_sqdist_plain(kk, x, n, x, n, d);
    for (size_t i = 0; i < (size_t)n * n; i++) kk[i] = exp(-kk[i] / (2 * sigma * sigma));
    for (int t = 0; t < k; t++) {
        int best = -1;
        double bg = 0;
        for (int j = 0; j < n; j++) {
            if (sel[j]) continue;
            double g = 0;
            for (int i = 0; i < n; i++) {
                double v = kk[(size_t)j * n + i] - c[i];
                if (v > 0) g += v;
            }
            if (best < 0 || g > bg) {
                best = j;
                bg = g;
            }
        }
        out[t] = best;
        sel[best] = 1;
        double obj = 0;
        for (int i = 0; i < n; i++) {
            if (kk[(size_t)best * n + i] > c[i]) c[i] = kk[(size_t)best * n + i];
            obj += c[i];
        }
        if (objective) objective[t] = obj;
    }
    free(c);
    free(kk);
    free(sel);
}

typedef struct {
    double sigma;
} herding_ctx;

static ms_status herding_select(const ms_strategy *s, const ms_pool *pool, int k, uint64_t seed,
                                int *out, ms_arena *ws) {
    (void)seed; /* deterministic: ties go to the lowest index */
    ms_status st = ms_strategy_check_k(s, pool, k);
    if (st || k == 0) return st;
    const herding_ctx *c = s->ctx;
    return ms_herding_lazy(out, NULL, pool->x, pool->n, pool->d, k, c->sigma, ws);
}

static void herding_free(void *ctx) { free(ctx); }

ms_status ms_herding_create(ms_strategy *s, const char *opts) {
    static const char *const known[] = {"sigma", NULL};
    ms_status st = ms_opt_check("herding", opts, known);
    if (st) return st;
    herding_ctx *c = ms_xcalloc(1, sizeof *c);
    c->sigma = 1.0;
    s->ctx = c;
    s->free_ctx = herding_free;
    if ((st = ms_opt_double(opts, "sigma", &c->sigma, NULL))) return st;
    if (!(c->sigma > 0 && c->sigma < 1e6))
        return ms_fail(MS_ERR_ARG, "strategy herding: sigma must be a positive number");
    s->select = herding_select;
    return MS_OK;
}
