/* ms_kmeans.c: k-means and the kmeans strategy.
 *
 * ms_kmeans_fit is the k-means reused by kmeans, TypiClust and ProbCover's purity: squared
 * Euclidean distance on the rows it is given (the unit rows of the pool, so |x - c|^2 with
 * c a centroid, which is not unit), greedy k-means++ seeding as in scikit-learn (2 +
 * floor(ln k) candidate trials per centre, the one that lowers the potential most wins),
 * then Lloyd iterations until no assignment changes (or max_iter). A single seeding is run
 * (scikit-learn 1.2 runs n_init = 10 and keeps the best). Point-centroid distances come from
 * sgemm in row blocks, so memory is O(n + k d + block k), never (n, k) at once.
 *
 * The kmeans strategy fits K clusters on pool->x, then takes the centroids in order of
 * cluster size (largest first, ties by centroid index) and for each picks the pool item
 * nearest that centroid (squared L2) among those not already chosen, so the K picks are
 * distinct. Option: iters (max Lloyd iterations, default 300).
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "strategies/ms_strategies_internal.h"

enum { KM_BLOCK = 256 };

/* Assigns each row to its nearest centroid (first index on ties), in parallel over row
 * blocks (each block's sgemm single-threaded). mind (n) receives the squared distance to it;
 * blk holds nt blocks of (KM_BLOCK, k). Returns how many assignments changed. */
static long assign_step(int *assign, float *mind, const float *x, const float *xsq, int n,
                        int d, const float *cent, const float *csq, int k, float *blk, int nt) {
    long changed = 0;
    int nblocks = (n + KM_BLOCK - 1) / KM_BLOCK;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) reduction(+ : changed) if (nt > 1)
    for (int b = 0; b < nblocks; b++) {
        float *bk = blk + (size_t)omp_get_thread_num() * KM_BLOCK * k;
        int i0 = b * KM_BLOCK, nb = n - i0 < KM_BLOCK ? n - i0 : KM_BLOCK;
        ms_sqdist_gemm(bk, x + (size_t)i0 * d, xsq + i0, nb, cent, csq, k, d);
        for (int r = 0; r < nb; r++) {
            const float *row = bk + (size_t)r * k;
            int best = 0;
            for (int j = 1; j < k; j++)
                if (row[j] < row[best]) best = j;
            if (assign[i0 + r] != best) changed++;
            assign[i0 + r] = best;
            mind[i0 + r] = row[best];
        }
    }
    return changed;
}

/* Centroids = means of their rows. An empty cluster takes the row farthest from its own
 * centroid (among clusters of 2 or more), which then moves to it, as scikit-learn does. */
static void update_step(float *cent, int *assign, int *sizes, float *mind, const float *x,
                        int n, int d, int k, double *acc) {
    memset(sizes, 0, sizeof(int) * (size_t)k);
    for (int i = 0; i < n; i++) sizes[assign[i]]++;
    for (int j = 0; j < k; j++) {
        if (sizes[j] > 0) continue;
        int far = -1;
        for (int i = 0; i < n; i++)
            if (sizes[assign[i]] > 1 && (far < 0 || mind[i] > mind[far])) far = i;
        if (far < 0) break; /* every cluster is a singleton: cannot happen for k <= n */
        sizes[assign[far]]--;
        assign[far] = j;
        sizes[j] = 1;
        mind[far] = 0;
    }
    memset(acc, 0, sizeof(double) * (size_t)k * d);
    for (int i = 0; i < n; i++) {
        double *a = acc + (size_t)assign[i] * d;
        const float *r = x + (size_t)i * d;
#pragma omp simd
        for (int t = 0; t < d; t++) a[t] += r[t];
    }
    for (int j = 0; j < k; j++) {
        if (!sizes[j]) continue;
        for (int t = 0; t < d; t++)
            cent[(size_t)j * d + t] = (float)(acc[(size_t)j * d + t] / sizes[j]);
    }
}

int ms_kmeans_fit(float *centroids, int *assign, int *sizes, const float *x, int n, int d,
                  int k, int max_iter, ms_rng *rng, ms_arena *ws) {
    MS_CHECK(k >= 1 && k <= n && d >= 1);
    float *xsq = MS_ARENA_NEW(ws, float, n);
    float *csq = MS_ARENA_NEW(ws, float, k);
    float *mind = MS_ARENA_NEW(ws, float, n);
    double *cum = MS_ARENA_NEW(ws, double, n);
    ms_rows_sqnorm(xsq, x, n, d);

    /* ---- greedy k-means++ seeding ---- */
    int ntrials = 2 + (int)floor(log((double)k));
    float *cand = MS_ARENA_NEW(ws, float, (size_t)ntrials * d);
    float *candsq = MS_ARENA_NEW(ws, float, ntrials);
    float *cd = MS_ARENA_NEW(ws, float, (size_t)ntrials * n); /* (ntrials, n) */
    int c0 = (int)ms_rng_below(rng, (uint32_t)n);
    memcpy(centroids, x + (size_t)c0 * d, sizeof(float) * (size_t)d);
    ms_sqdist_gemm_par(mind, x + (size_t)c0 * d, xsq + c0, 1, x, xsq, n, d);
    for (int c = 1; c < k; c++) {
        double run = 0;
        for (int i = 0; i < n; i++) cum[i] = (run += mind[i]);
        for (int t = 0; t < ntrials; t++) {
            /* all rows coincide with a centre: draw uniformly */
            int id = cum[n - 1] > 0 ? ms_draw_weighted(cum, n, ms_rng_uniform(rng) * cum[n - 1])
                                    : (int)ms_rng_below(rng, (uint32_t)n);
            memcpy(cand + (size_t)t * d, x + (size_t)id * d, sizeof(float) * (size_t)d);
            candsq[t] = xsq[id];
        }
        ms_sqdist_gemm_par(cd, cand, candsq, ntrials, x, xsq, n, d);
        int best = 0;
        double bestpot = 0;
        for (int t = 0; t < ntrials; t++) {
            const float *row = cd + (size_t)t * n;
            double p = 0;
            for (int i = 0; i < n; i++) p += row[i] < mind[i] ? row[i] : mind[i];
            if (t == 0 || p < bestpot) {
                best = t;
                bestpot = p;
            }
        }
        const float *row = cd + (size_t)best * n;
        for (int i = 0; i < n; i++)
            if (row[i] < mind[i]) mind[i] = row[i];
        memcpy(centroids + (size_t)c * d, cand + (size_t)best * d, sizeof(float) * (size_t)d);
    }

    /* ---- Lloyd ---- */
    int nt = ms_strategy_threads();
    float *blk = MS_ARENA_NEW(ws, float, (size_t)nt * KM_BLOCK * k);
    double *acc = MS_ARENA_NEW(ws, double, (size_t)k * d);
    for (int i = 0; i < n; i++) assign[i] = -1;
    int it = 0;
    for (;;) {
        ms_rows_sqnorm(csq, centroids, k, d);
        long changed = assign_step(assign, mind, x, xsq, n, d, centroids, csq, k, blk, nt);
        if ((it > 0 && changed == 0) || it >= max_iter) break;
        update_step(centroids, assign, sizes, mind, x, n, d, k, acc);
        it++;
    }
    memset(sizes, 0, sizeof(int) * (size_t)k);
    for (int i = 0; i < n; i++) sizes[assign[i]]++;
    return it;
}

double ms_kmeans_inertia(const float *centroids, const int *assign, const float *x, int n,
                         int d) {
    double s = 0;
    for (int i = 0; i < n; i++) {
        const float *c = centroids + (size_t)assign[i] * d, *r = x + (size_t)i * d;
        for (int t = 0; t < d; t++) {
            double diff = (double)r[t] - c[t];
            s += diff * diff;
        }
    }
    return s;
}

/* ---- the strategy ------------------------------------------------------------------- */

typedef struct {
    int iters;
} kmeans_ctx;

static ms_status kmeans_select(const ms_strategy *s, const ms_pool *pool, int k, uint64_t seed,
                               int *out, ms_arena *ws) {
    ms_status st = ms_strategy_check_k(s, pool, k);
    if (st || k == 0) return st;
    const kmeans_ctx *c = s->ctx;
    int n = pool->n, d = pool->d;
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_STRATEGY, 0);
    float *cent = MS_ARENA_NEW(ws, float, (size_t)k * d);
    int *assign = MS_ARENA_NEW(ws, int, n);
    int *sizes = MS_ARENA_NEW(ws, int, k);
    ms_kmeans_fit(cent, assign, sizes, pool->x, n, d, k, c->iters, &r, ws);

    /* centroids by size, largest first; insertion sort keeps ties in index order */
    int *order = MS_ARENA_NEW(ws, int, k);
    for (int j = 0; j < k; j++) {
        int p = j;
        while (p > 0 && sizes[order[p - 1]] < sizes[j]) {
            order[p] = order[p - 1];
            p--;
        }
        order[p] = j;
    }
    /* distances of the centroids (in pick order) to every row, a block of centroids per
     * sgemm (at most about 16 MB of distances at once) rather than one pass over the pool
     * per centroid */
    int rows = (int)(((size_t)1 << 22) / (size_t)n);
    rows = rows < 1 ? 1 : rows > k ? k : rows;
    float *xsq = MS_ARENA_NEW(ws, float, n);
    float *crow = MS_ARENA_NEW(ws, float, (size_t)rows * d);
    float *crsq = MS_ARENA_NEW(ws, float, rows);
    float *dist = MS_ARENA_NEW(ws, float, (size_t)rows * n);
    unsigned char *taken = MS_ARENA_NEW(ws, unsigned char, n);
    ms_rows_sqnorm(xsq, pool->x, n, d);
    memset(taken, 0, (size_t)n);
    for (int t0 = 0; t0 < k; t0 += rows) {
        int nr = k - t0 < rows ? k - t0 : rows;
        for (int q = 0; q < nr; q++)
            memcpy(crow + (size_t)q * d, cent + (size_t)order[t0 + q] * d, sizeof(float) * (size_t)d);
        ms_rows_sqnorm(crsq, crow, nr, d);
        ms_sqdist_gemm_par(dist, crow, crsq, nr, pool->x, xsq, n, d);
        for (int q = 0; q < nr; q++) {
            const float *dr = dist + (size_t)q * n;
            int best = -1;
            for (int i = 0; i < n; i++)
                if (!taken[i] && (best < 0 || dr[i] < dr[best])) best = i;
            taken[best] = 1;
            out[t0 + q] = best;
        }
    }
    return MS_OK;
}

static void kmeans_free(void *ctx) { free(ctx); }

ms_status ms_kmeans_create(ms_strategy *s, const char *opts) {
    static const char *const known[] = {"iters", NULL};
    ms_status st = ms_opt_check("kmeans", opts, known);
    if (st) return st;
    kmeans_ctx *c = ms_xcalloc(1, sizeof *c);
    c->iters = 300;
    s->ctx = c;
    s->free_ctx = kmeans_free;
    st = ms_opt_int(opts, "iters", &c->iters, NULL);
    if (st) return st;
    if (c->iters < 1) return ms_fail(MS_ERR_ARG, "strategy kmeans: iters must be >= 1");
    s->select = kmeans_select;
    return MS_OK;
}
