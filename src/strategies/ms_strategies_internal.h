/* ms_strategies_internal.h: constructors of the built-in strategy families (one .c file
 * each) and the small kernels they share (squared distances by GEMM, k-means). Not part of
 * the public API; tests include it to check the kernels against their plain versions. */
#ifndef MS_STRATEGIES_INTERNAL_H
#define MS_STRATEGIES_INTERNAL_H

#include "medselect/strategy.h"

ms_status ms_random_create(ms_strategy *s, const char *opts);
ms_status ms_kmedoids_create(ms_strategy *s, const char *opts);
ms_status ms_kmeans_create(ms_strategy *s, const char *opts);
ms_status ms_kcenter_create(ms_strategy *s, const char *opts);
ms_status ms_typiclust_create(ms_strategy *s, const char *opts);
ms_status ms_probcover_create(ms_strategy *s, const char *opts);
ms_status ms_herding_create(ms_strategy *s, const char *opts);

/* ---- shared kernels (ms_strategy_kernels.c) ------------------------------------------ */

/* MS_ERR_DATA naming the strategy when k is outside [1, n] (k = 0 is allowed and selects
 * nothing: returns MS_OK). */
ms_status ms_strategy_check_k(const ms_strategy *s, const ms_pool *pool, int k);

/* sqn[i] = |x_i|^2 accumulated in double. x is (n, d), sqn is (n). */
void ms_rows_sqnorm(float *sqn, const float *x, int n, int d);

/* Squared Euclidean distances by one sgemm: out[i][j] = max(0, an[i] + bn[j] - 2 a_i.b_j).
 * out is (na, nb) row-major; a is (na, d), b is (nb, d); an (na) and bn (nb) their squared
 * norms (ms_rows_sqnorm). */
void ms_sqdist_gemm(float *out, const float *a, const float *an, int na, const float *b,
                    const float *bn, int nb, int d);
/* The same product spread over the threads by ms_gemm's shape-only blocking (the values do
 * not depend on the thread count). */
void ms_sqdist_gemm_par(float *out, const float *a, const float *an, int na, const float *b,
                        const float *bn, int nb, int d);
/* out (na, nb) = alpha a b^T, chunked and parallel like ms_sqdist_gemm_par. */
void ms_gemm_nt_par(float *out, float alpha, const float *a, int na, const float *b, int nb,
                    int d);
/* The same by plain double loops (reference for tests; out is (na, nb)). */
void ms_sqdist_plain(double *out, const float *a, int na, const float *b, int nb, int d);

/* Index i with cum[i-1] <= r < cum[i], cum (n) the inclusive prefix sum of weights >= 0 with
 * cum[n-1] > 0: a zero-weight index is never drawn; r past the end (rounding) gives the last
 * index with positive weight. Draw r = U * cum[n-1] for sampling proportional to weight. */
int ms_draw_weighted(const double *cum, int n, double r);

/* Number of worker threads a blocked loop may use here: omp_get_max_threads() outside a
 * parallel region, 1 inside one (nested regions are not used). */
int ms_strategy_threads(void);

/* ---- k-means (ms_kmeans.c) ----------------------------------------------------------- */

/* k-means (squared Euclidean) on the rows of x (n, d), 1 <= k <= n.
 * Seeding: greedy k-means++ as in scikit-learn: the first centre uniform, then for each
 * further centre 2 + floor(ln k) candidates drawn with probability proportional to the
 * squared distance to the nearest centre so far; the candidate giving the smallest total
 * potential wins. Then Lloyd iterations until no assignment changes or max_iter. An empty
 * cluster is re-seeded with the point farthest from its own centre.
 * Outputs: centroids (k, d), assign (n) cluster of each row, sizes (k) rows per cluster;
 * returns the number of Lloyd iterations run. Randomness only from rng. Scratch from ws
 * (O(n k + n) floats plus one (8, n) candidate block). */
int ms_kmeans_fit(float *centroids, int *assign, int *sizes, const float *x, int n, int d,
                  int k, int max_iter, ms_rng *rng, ms_arena *ws);

/* Within-cluster sum of squared distances to the centroids (double, for tests/diagnostics). */
double ms_kmeans_inertia(const float *centroids, const int *assign, const float *x, int n,
                         int d);

/* ---- k-medoids (ms_kmedoids.c) ------------------------------------------------------ */

/* k-medoids on cosine distance D(i, j) = 1 - x_i.x_j (x (n, d) unit rows), k-medoids++
 * seeding, then alternating (Voronoi) iterations until the medoids stop changing or
 * max_iter. medoids (k) receives distinct row indices in cluster order. plain = 0 uses the
 * linear form of the in-cluster cost (sum_i D(i, j) = m - x_j . sum_i x_i), O(n d) per
 * iteration; plain = 1 sums explicit pairwise distances (reference for tests, O(n^2 d)).
 * Returns the number of iterations run. */
int ms_kmedoids_fit(int *medoids, const float *x, int n, int d, int k, int max_iter, int plain,
                    ms_rng *rng, ms_arena *ws);

/* ---- MaxHerding (ms_herding.c) ------------------------------------------------------- */

/* Greedy MaxHerding by lazy evaluation (the optimized form used by the strategy); out (k).
 * sigma is the Gaussian kernel width. n <= dense_max: the (n, n) kernel is computed once and
 * kept (gains cost O(n)); otherwise gains are recomputed from x in sgemm batches (O(n d)). objective (k), if not NULL, receives the coverage
 * objective sum_i max_{s in S_t} k(x_i, s) after each pick t; nevals, if not NULL, the
 * number of gain re-evaluations after the initial bounds. Returns MS_OK. */
ms_status ms_herding_lazy(int *out, double *objective, long *nevals, const float *x, int n,
                          int d, int k, double sigma, int dense_max, ms_arena *ws);
/* Pools up to this size keep the full (n, n) float kernel (n = 12,000: 576 MB). */
#define MS_HERDING_DENSE_MAX 12000
/* The same by plain greedy: every step evaluates every candidate's gain over all points
 * with double loops. O(n^2 k d); for tests on small pools. */
void ms_herding_plain(int *out, double *objective, const float *x, int n, int d, int k,
                      double sigma);

/* ---- ProbCover (ms_probcover.c) ------------------------------------------------------ */

/* The delta-ball graph as CSR: row i lists, in increasing order, every j (i itself
 * included) with |x_i - x_j|^2 < delta^2 as computed by ms_sqdist_gemm. */
typedef struct {
    int n;
    long nnz;
    long *rowptr; /* (n + 1) */
    int *col;     /* (nnz) */
} ms_csr;

/* Builds the graph of the rows x (n, d) for delta by two blocked GEMM passes (count, then
 * fill); storage from ws. MS_ERR_DATA when it would hold more than max_edges edges. */
ms_status ms_probcover_graph(ms_csr *g, const float *x, int n, int d, double delta,
                             long max_edges, ms_arena *ws);
/* purity[j] for each grid[j] (ngrid values, ascending): the fraction of rows whose
 * grid[j]-ball holds only rows with their own label. labels (n). One blocked GEMM pass. */
void ms_probcover_purity(double *purity, const double *grid, int ngrid, const float *x,
                         const int *labels, int n, int d, ms_arena *ws);
/* Greedy max coverage on g: k times, the unselected row covering the most uncovered rows
 * (first index on ties); once nothing new can be covered, a uniformly random unselected
 * row (from rng). out (k) distinct; *covered receives the number of covered rows. */
void ms_probcover_greedy(int *out, long *covered, const ms_csr *g, int k, ms_rng *rng,
                         ms_arena *ws);
/* The automatic delta: pseudo-labels from ms_kmeans_fit (k clusters, rng), purity on the
 * grid 0.05, 0.10, ..., 1.50; the largest grid value with purity >= alpha whose graph has at
 * most max_edges edges (if none reaches alpha, the smallest). purity (30) may be NULL. */
double ms_probcover_auto_delta(double *purity, const float *x, int n, int d, int k,
                               double alpha, long max_edges, ms_rng *rng, ms_arena *ws);
#define MS_PROBCOVER_NGRID 30

#endif
