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
 * and the lazy greedy (Minoux) gives the plain greedy's picks at a fraction of the cost: a
 * max-heap holds an upper bound of each candidate's gain; the stale entries at the top are
 * re-evaluated (in batches of 16, 32, ... 512, in parallel) until the top is fresh for this
 * step, and that one is taken (ties to the lowest index, like the plain argmax). Fresh gains
 * come from one routine per mode (float kernel values, double sum in fixed order); since
 * every term max(0, k - c_i) is non-increasing in c_i and rounding is monotone, a stale gain
 * bounds the current one exactly.
 *
 * Two modes. n <= dense_max (default 12,000; 576 MB at that size): the (n, n) float kernel
 * is built once from symmetric 256 x 256 sgemm tiles (O(n^2 d / 2), in parallel) and every
 * gain is one pass over a kernel row, O(n). Larger pools: no kernel is kept; the initial
 * bounds come from the same symmetric tiles (row and column sums, inflated by 1e-5 relative
 * so that rounding cannot put them below a re-evaluation) and each re-evaluation recomputes
 * the candidate's kernel row by sgemm, O(n d). With a smooth kernel the first steps
 * re-evaluate most candidates, so this mode is several times slower. ms_herding_plain is the
 * obviously-correct O(n^2 K d) version the tests compare with. The seed is unused (the
 * greedy is deterministic). Options: sigma (kernel width, default 1.0), dense_max.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "strategies/ms_strategies_internal.h"

#include "medselect/gemm.h"

enum { HB_BLOCK = 256, HB_SUB = 16, HB_MAXBATCH = 512 };

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

static void sift_up(hentry *h, int i) {
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!hbefore(&h[i], &h[p])) return;
        hentry t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

/* Initial bounds ub (n) >= sum_i k(x_i, x_j): the kernel is symmetric, so only tiles (I, J)
 * with J >= I are computed (256 x 256 by sgemm), their row sums credited to I and column
 * sums to J, in per-thread accumulators acc (nt, n). The sums depend on which thread took
 * which tile in the last bits only; they are inflated and used as bounds, never as gains,
 * so the picks do not depend on it. */
static void initial_bounds(double *ub, const float *x, const float *sqn, int n, int d,
                           float gamma, ms_arena *ws) {
    int nt = ms_strategy_threads();
    int nb = (n + HB_BLOCK - 1) / HB_BLOCK;
    long ntiles = (long)nb * (nb + 1) / 2;
    double *acc = MS_ARENA_NEW(ws, double, (size_t)nt * n);
    float *tiles = MS_ARENA_NEW(ws, float, (size_t)nt * HB_BLOCK * HB_BLOCK);
    memset(acc, 0, sizeof(double) * (size_t)nt * n);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (long tix = 0; tix < ntiles; tix++) {
        int tid = omp_get_thread_num();
        /* tile index -> (bi, bj), bj >= bi, row-major over the upper triangle */
        int bi = 0;
        long rem = tix;
        while (rem >= nb - bi) rem -= nb - bi++;
        int bj = bi + (int)rem;
        int i0 = bi * HB_BLOCK, j0 = bj * HB_BLOCK;
        int ni = n - i0 < HB_BLOCK ? n - i0 : HB_BLOCK, nj = n - j0 < HB_BLOCK ? n - j0 : HB_BLOCK;
        float *tile = tiles + (size_t)tid * HB_BLOCK * HB_BLOCK;
        double *a = acc + (size_t)tid * n;
        ms_sqdist_gemm(tile, x + (size_t)i0 * d, sqn + i0, ni, x + (size_t)j0 * d, sqn + j0, nj, d);
        for (int r = 0; r < ni; r++) {
            float *row = tile + (size_t)r * nj;
            double rs = 0;
            for (int q = 0; q < nj; q++) {
                row[q] = expf(-gamma * row[q]);
                rs += row[q];
            }
            a[i0 + r] += rs;
        }
        if (bj != bi)
            for (int r = 0; r < ni; r++) {
                const float *row = tile + (size_t)r * nj;
                for (int q = 0; q < nj; q++) a[j0 + q] += row[q];
            }
    }
    for (int j = 0; j < n; j++) {
        double s = 0;
        for (int t = 0; t < nt; t++) s += acc[(size_t)t * n + j];
        ub[j] = s * (1.0 + 1e-5) + 1e-6;
    }
}

/* The full kernel matrix kmat (n, n), exactly symmetric: tiles (I, J) with J >= I by
 * sgemm straight into kmat, mirrored into (J, I); a diagonal tile mirrors its upper half. */
static void dense_kernel(float *kmat, const float *x, const float *sqn, int n, int d,
                         float gamma) {
    int nt = ms_strategy_threads();
    int nb = (n + HB_BLOCK - 1) / HB_BLOCK;
    long ntiles = (long)nb * (nb + 1) / 2;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (long tix = 0; tix < ntiles; tix++) {
        int bi = 0;
        long rem = tix;
        while (rem >= nb - bi) rem -= nb - bi++;
        int bj = bi + (int)rem;
        int i0 = bi * HB_BLOCK, j0 = bj * HB_BLOCK;
        int ni = n - i0 < HB_BLOCK ? n - i0 : HB_BLOCK, nj = n - j0 < HB_BLOCK ? n - j0 : HB_BLOCK;
        float *blk = kmat + (size_t)i0 * n + j0;
        ms_gemm('N', 'T', ni, nj, d, -2.0f, x + (size_t)i0 * d, d, x + (size_t)j0 * d, d, 0.0f,
                blk, n, MS_PREC_F32);
        for (int r = 0; r < ni; r++)
            for (int q = bi == bj ? r : 0; q < nj; q++) {
                float v = blk[(size_t)r * n + q] + sqn[i0 + r] + sqn[j0 + q];
                float kv = expf(-gamma * (v > 0.0f ? v : 0.0f));
                blk[(size_t)r * n + q] = kv;
                kmat[(size_t)(j0 + q) * n + i0 + r] = kv;
            }
    }
}

ms_status ms_herding_lazy(int *out, double *objective, long *nevals, const float *x, int n,
                          int d, int k, double sigma, int dense_max, ms_arena *ws) {
    MS_CHECK(k >= 0 && k <= n && sigma > 0);
    if (nevals) *nevals = 0;
    if (k == 0) return MS_OK;
    float gamma = (float)(1.0 / (2.0 * sigma * sigma));
    int nt = ms_strategy_threads();
    int dense = n <= dense_max;
    float *sqn = MS_ARENA_NEW(ws, float, n);
    float *c = MS_ARENA_NEW(ws, float, n);
    float *row = MS_ARENA_NEW(ws, float, n);
    hentry *h = MS_ARENA_NEW(ws, hentry, n);
    hentry *batch = MS_ARENA_NEW(ws, hentry, HB_MAXBATCH);
    ms_rows_sqnorm(sqn, x, n, d);
    memset(c, 0, sizeof(float) * (size_t)n);
    float *kmat = NULL, *cand = NULL, *candsq = NULL, *tile = NULL;
    int hn = n;
    if (dense) {
        /* every gain is a pass over one kernel row; the first-step gains are exact */
        kmat = MS_ARENA_NEW(ws, float, (size_t)n * n);
        dense_kernel(kmat, x, sqn, n, d, gamma);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int j = 0; j < n; j++) {
            const float *kr = kmat + (size_t)j * n;
            double g = 0;
            for (int i = 0; i < n; i++) g += kr[i];
            h[j] = (hentry){g, j, 0};
        }
    } else {
        double *ub = MS_ARENA_NEW(ws, double, n);
        cand = MS_ARENA_NEW(ws, float, (size_t)nt * HB_SUB * d);
        candsq = MS_ARENA_NEW(ws, float, (size_t)nt * HB_SUB);
        tile = MS_ARENA_NEW(ws, float, (size_t)nt * HB_SUB * n);
        initial_bounds(ub, x, sqn, n, d, gamma, ws);
        for (int j = 0; j < n; j++) h[j] = (hentry){ub[j], j, -1};
    }
    for (int i = n / 2 - 1; i >= 0; i--) sift_down(h, n, i);

    for (int t = 0; t < k; t++) {
        int bsz = HB_SUB;
        while (h[0].stamp != t) {
            /* re-evaluate the stale entries at the top, a batch at a time (doubling) */
            int nbat = 0;
            while (nbat < bsz && hn > 0 && h[0].stamp != t) {
                batch[nbat++] = h[0];
                h[0] = h[--hn];
                sift_down(h, hn, 0);
            }
            int nsub = (nbat + HB_SUB - 1) / HB_SUB;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
            for (int sb = 0; sb < nsub; sb++) {
                int b0 = sb * HB_SUB, m = nbat - b0 < HB_SUB ? nbat - b0 : HB_SUB;
                if (dense) {
                    for (int q = 0; q < m; q++) {
                        const float *kr = kmat + (size_t)batch[b0 + q].idx * n;
                        double g = 0;
                        for (int i = 0; i < n; i++) {
                            float v = kr[i] - c[i];
                            if (v > 0) g += v;
                        }
                        batch[b0 + q].key = g;
                        batch[b0 + q].stamp = t;
                    }
                    continue;
                }
                int tid = omp_get_thread_num();
                float *cr = cand + (size_t)tid * HB_SUB * d, *cs = candsq + (size_t)tid * HB_SUB;
                float *tl = tile + (size_t)tid * HB_SUB * n;
                for (int q = 0; q < m; q++) {
                    int j = batch[b0 + q].idx;
                    memcpy(cr + (size_t)q * d, x + (size_t)j * d, sizeof(float) * (size_t)d);
                    cs[q] = sqn[j];
                }
                ms_sqdist_gemm(tl, cr, cs, m, x, sqn, n, d);
                for (int q = 0; q < m; q++) {
                    const float *tr = tl + (size_t)q * n;
                    double g = 0;
                    for (int i = 0; i < n; i++) {
                        float v = expf(-gamma * tr[i]) - c[i];
                        if (v > 0) g += v;
                    }
                    batch[b0 + q].key = g;
                    batch[b0 + q].stamp = t;
                }
            }
            for (int q = 0; q < nbat; q++) {
                h[hn] = batch[q];
                sift_up(h, hn++);
            }
            if (nevals) *nevals += nbat;
            if (bsz < HB_MAXBATCH) bsz *= 2;
        }
        int j = h[0].idx;
        out[t] = j;
        h[0] = h[--hn];
        sift_down(h, hn, 0);
        if (dense) {
            memcpy(row, kmat + (size_t)j * n, sizeof(float) * (size_t)n);
        } else {
            ms_sqdist_gemm_par(row, x + (size_t)j * d, sqn + j, 1, x, sqn, n, d);
            for (int i = 0; i < n; i++) row[i] = expf(-gamma * row[i]);
        }
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
    int dense_max;
} herding_ctx;

static ms_status herding_select(const ms_strategy *s, const ms_pool *pool, int k, uint64_t seed,
                                int *out, ms_arena *ws) {
    (void)seed; /* deterministic: ties go to the lowest index */
    ms_status st = ms_strategy_check_k(s, pool, k);
    if (st || k == 0) return st;
    const herding_ctx *c = s->ctx;
    return ms_herding_lazy(out, NULL, NULL, pool->x, pool->n, pool->d, k, c->sigma, c->dense_max,
                           ws);
}

static void herding_free(void *ctx) { free(ctx); }

ms_status ms_herding_create(ms_strategy *s, const char *opts) {
    static const char *const known[] = {"sigma", "dense_max", NULL};
    ms_status st = ms_opt_check("herding", opts, known);
    if (st) return st;
    herding_ctx *c = ms_xcalloc(1, sizeof *c);
    c->sigma = 1.0;
    c->dense_max = MS_HERDING_DENSE_MAX;
    s->ctx = c;
    s->free_ctx = herding_free;
    if ((st = ms_opt_double(opts, "sigma", &c->sigma, NULL))) return st;
    if (!(c->sigma > 0 && c->sigma < 1e6))
        return ms_fail(MS_ERR_ARG, "strategy herding: sigma must be a positive number");
    if ((st = ms_opt_int(opts, "dense_max", &c->dense_max, NULL))) return st;
    if (c->dense_max < 0)
        return ms_fail(MS_ERR_ARG, "strategy herding: dense_max must be >= 0");
    s->select = herding_select;
    s->ranking = 1;
    return MS_OK;
}
