/* ms_kmedoids.c: the kmedoids strategy, the MedSelect paper's clustering baseline, modelled
 * on scikit-learn-extra's KMedoids(metric='cosine', init='k-medoids++', method='alternate').
 *
 * Distance: cosine distance D(i, j) = 1 - x_i . x_j on the pool's unit rows.
 * Seeding (k-medoids++): first medoid uniform; each further medoid is the best of 2 +
 * floor(ln k) candidates drawn with probability proportional to D(i, nearest medoid)^2, the
 * best being the one that minimises sum_i min(D_i^2, D(i, cand)^2) (the potential).
 * Alternate: assign each item to its nearest medoid (first on ties; a medoid always to its
 * own cluster, so clusters are never empty and medoids stay distinct even with duplicate
 * rows), then in each cluster move the medoid to the member with the smallest total
 * in-cluster distance when that is strictly smaller than the current medoid's; stop when no
 * medoid changes or after max_iter (option iters, default 300).
 *
 * Because D is linear in the dot product, the in-cluster cost of member j is
 * sum_{i in C} (1 - x_i . x_j) = |C| - x_j . s_C with s_C the sum of the cluster's rows, so
 * an iteration costs O(n k d) (one (k, n) sgemm for the assignment) plus O(n d), and no
 * (n, n) matrix exists at any pool size. The explicit pairwise sum is kept as the plain
 * reference (plain = 1). Distances during seeding come from (trials, n) sgemm blocks.
 * Returns the K medoids in cluster order.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "strategies/ms_strategies_internal.h"

/* out (m, n) = 1 - a . x^T, cosine distances of m rows a against all n rows of x */
static void cosdist_rows(float *out, const float *a, int m, const float *x, int n, int d) {
    ms_gemm_nt_par(out, -1.0f, a, m, x, n, d);
    for (size_t i = 0; i < (size_t)m * n; i++) {
        float v = out[i] + 1.0f;
        out[i] = v > 0.0f ? v : 0.0f;
    }
}

/* x . s with a float row and a double row, in double. Vectorized: 8 partial sums (the
 * order is fixed by d alone, so the result does not depend on threads). */
static double dot_fd(const float *x, const double *s, int d) {
    double dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int t = 0; t < d; t++) dot += (double)x[t] * s[t];
    return dot;
}

/* k-medoids++: medoids (k) distinct. */
static void kpp_init(int *medoids, const float *x, int n, int d, int k, ms_rng *rng,
                     ms_arena *ws) {
    int ntrials = 2 + (int)floor(log((double)k));
    float *closest = MS_ARENA_NEW(ws, float, n); /* D(i, nearest medoid)^2 */
    double *cum = MS_ARENA_NEW(ws, double, n);
    float *cand = MS_ARENA_NEW(ws, float, (size_t)ntrials * d);
    float *cd = MS_ARENA_NEW(ws, float, (size_t)ntrials * n);
    int *cid = MS_ARENA_NEW(ws, int, ntrials);
    unsigned char *is_med = MS_ARENA_NEW(ws, unsigned char, n);
    memset(is_med, 0, (size_t)n);
    medoids[0] = (int)ms_rng_below(rng, (uint32_t)n);
    is_med[medoids[0]] = 1;
    cosdist_rows(closest, x + (size_t)medoids[0] * d, 1, x, n, d);
    for (int i = 0; i < n; i++) closest[i] *= closest[i];
    for (int c = 1; c < k; c++) {
        double run = 0;
        for (int i = 0; i < n; i++) cum[i] = (run += is_med[i] ? 0.0 : closest[i]);
        for (int t = 0; t < ntrials; t++) {
            int id;
            if (cum[n - 1] > 0) {
                id = ms_draw_weighted(cum, n, ms_rng_uniform(rng) * cum[n - 1]);
            } else { /* every remaining item duplicates a medoid: any non-medoid */
                do id = (int)ms_rng_below(rng, (uint32_t)n);
                while (is_med[id]);
            }
            cid[t] = id;
            memcpy(cand + (size_t)t * d, x + (size_t)id * d, sizeof(float) * (size_t)d);
        }
        cosdist_rows(cd, cand, ntrials, x, n, d);
        int best = 0;
        double bestpot = 0;
        for (int t = 0; t < ntrials; t++) {
            const float *row = cd + (size_t)t * n;
            double p = 0;
            for (int i = 0; i < n; i++) {
                float v = row[i] * row[i];
                p += v < closest[i] ? v : closest[i];
            }
            if (t == 0 || p < bestpot) {
                best = t;
                bestpot = p;
            }
        }
        const float *row = cd + (size_t)best * n;
        for (int i = 0; i < n; i++) {
            float v = row[i] * row[i];
            if (v < closest[i]) closest[i] = v;
        }
        medoids[c] = cid[best];
        is_med[cid[best]] = 1;
    }
}

int ms_kmedoids_fit(int *medoids, const float *x, int n, int d, int k, int max_iter, int plain,
                    ms_rng *rng, ms_arena *ws) {
    MS_CHECK(k >= 1 && k <= n && d >= 1);
    kpp_init(medoids, x, n, d, k, rng, ws);
    int *label = MS_ARENA_NEW(ws, int, n);
    int *size = MS_ARENA_NEW(ws, int, k);
    float *mrows = MS_ARENA_NEW(ws, float, (size_t)k * d);
    float *dots = MS_ARENA_NEW(ws, float, (size_t)k * n); /* (k, n) */
    double *sum = MS_ARENA_NEW(ws, double, (size_t)k * d);
    double *best_cost = MS_ARENA_NEW(ws, double, k);
    int *best_idx = MS_ARENA_NEW(ws, int, k);
    int *members = plain ? MS_ARENA_NEW(ws, int, n) : NULL;
    int it = 0;
    while (it < max_iter) {
        it++;
        /* assignment: nearest medoid = largest dot product */
        for (int j = 0; j < k; j++)
            memcpy(mrows + (size_t)j * d, x + (size_t)medoids[j] * d, sizeof(float) * (size_t)d);
        ms_gemm_nt_par(dots, 1.0f, mrows, k, x, n, d);
        for (int i = 0; i < n; i++) {
            int b = 0;
            for (int j = 1; j < k; j++)
                if (dots[(size_t)j * n + i] > dots[(size_t)b * n + i]) b = j;
            label[i] = b;
        }
        for (int j = 0; j < k; j++) label[medoids[j]] = j;

        /* in-cluster costs; best member of each cluster (first index on ties) */
        int moved = 0;
        if (!plain) {
            memset(sum, 0, sizeof(double) * (size_t)k * d);
            memset(size, 0, sizeof(int) * (size_t)k);
            for (int i = 0; i < n; i++) {
                double *s = sum + (size_t)label[i] * d;
                const float *r = x + (size_t)i * d;
#pragma omp simd
                for (int t = 0; t < d; t++) s[t] += r[t];
                size[label[i]]++;
            }
            for (int j = 0; j < k; j++) best_idx[j] = -1;
            for (int i = 0; i < n; i++) {
                int j = label[i];
                const double cost = size[j] - dot_fd(x + (size_t)i * d, sum + (size_t)j * d, d);
                if (best_idx[j] < 0 || cost < best_cost[j]) {
                    best_cost[j] = cost;
                    best_idx[j] = i;
                }
            }
            for (int j = 0; j < k; j++) {
                const double cur = size[j] - dot_fd(x + (size_t)medoids[j] * d, sum + (size_t)j * d, d);
                if (best_cost[j] < cur) {
                    medoids[j] = best_idx[j];
                    moved = 1;
                }
            }
        } else {
            for (int j = 0; j < k; j++) {
                int m = 0;
                for (int i = 0; i < n; i++)
                    if (label[i] == j) members[m++] = i;
                double bc = 0, cur = 0;
                int bi = -1;
                for (int a = 0; a < m; a++) {
                    double cost = 0;
                    const float *ra = x + (size_t)members[a] * d;
                    for (int b = 0; b < m; b++) {
                        const float *rb = x + (size_t)members[b] * d;
                        double dot = 0;
                        for (int t = 0; t < d; t++) dot += (double)ra[t] * rb[t];
                        cost += 1.0 - dot;
                    }
                    if (bi < 0 || cost < bc) {
                        bc = cost;
                        bi = members[a];
                    }
                    if (members[a] == medoids[j]) cur = cost;
                }
                if (bc < cur) {
                    medoids[j] = bi;
                    moved = 1;
                }
            }
        }
        if (!moved) break;
    }
    return it;
}

typedef struct {
    int iters;
} kmedoids_ctx;

static ms_status kmedoids_select(const ms_strategy *s, const ms_pool *pool, int k,
                                 uint64_t seed, int *out, ms_arena *ws) {
    ms_status st = ms_strategy_check_k(s, pool, k);
    if (st || k == 0) return st;
    const kmedoids_ctx *c = s->ctx;
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_STRATEGY, 0);
    ms_kmedoids_fit(out, pool->x, pool->n, pool->d, k, c->iters, 0, &r, ws);
    return MS_OK;
}

static void kmedoids_free(void *ctx) { free(ctx); }

ms_status ms_kmedoids_create(ms_strategy *s, const char *opts) {
    static const char *const known[] = {"iters", NULL};
    ms_status st = ms_opt_check("kmedoids", opts, known);
    if (st) return st;
    kmedoids_ctx *c = ms_xcalloc(1, sizeof *c);
    c->iters = 300;
    s->ctx = c;
    s->free_ctx = kmedoids_free;
    st = ms_opt_int(opts, "iters", &c->iters, NULL);
    if (st) return st;
    if (c->iters < 1) return ms_fail(MS_ERR_ARG, "strategy kmedoids: iters must be >= 1");
    s->select = kmedoids_select;
    return MS_OK;
}
