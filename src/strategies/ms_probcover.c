/* ms_probcover.c: the probcover strategy, ProbCover (Yehuda, Dekel, Hacohen & Weinshall,
 * NeurIPS 2022).
 *
 * Distance: Euclidean on the pool's unit rows. The graph has an edge x -> y iff
 * |x - y| < delta (x -> x included); it is kept as CSR, built by blocked GEMM (128 rows
 * against all n at a time, in parallel over blocks): one pass counts each row's edges, a
 * second fills them, so no dense (n, n) matrix exists. Selection is greedy max coverage:
 * K times take the item whose ball holds the most uncovered items (first index on ties),
 * mark them covered; once nothing new can be covered, take a uniformly random unselected
 * item, as the authors' code does. Degrees are kept up to date through the transposed
 * graph, so the greedy costs O(edges) in all.
 *
 * delta: a number, or "auto" (default): pseudo-labels from k-means with K clusters
 * (ms_kmeans_fit), then the largest delta on the grid 0.05, 0.10, ..., 1.50 whose purity
 * (the fraction of items whose delta-ball holds only items of their own pseudo-label) is at
 * least alpha (default 0.95); if no grid value reaches alpha, 0.05. Purity for every grid
 * value comes from one blocked pass that finds, per item, the squared distance to the
 * nearest item with another label. A graph larger than max_edges edges (default 2^24, 64 MB
 * per direction) is refused for a given delta (MS_ERR_DATA) and skipped by "auto" (which
 * then takes the largest pure-enough grid value under the cap). Options: delta, alpha,
 * max_edges.
 */
#include <float.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "strategies/ms_strategies_internal.h"

enum { PC_BLOCK = 256 };

/* Tile index -> (bi, bj) with bj >= bi, row-major over the upper triangle of nb blocks. */
static void tile_of(long tix, int nb, int *bi, int *bj) {
    int i = 0;
    while (tix >= nb - i) tix -= nb - i++;
    *bi = i;
    *bj = i + (int)tix;
}

/* Squared distances of tile (bi, bj) into tile (ni, nj). Each unordered pair {i, j} is
 * decided from this one value (a diagonal tile uses its upper half), so the graph is
 * exactly symmetric and every pass sees identical values. */
static void tile_dist(float *tile, int *i0, int *ni, int *j0, int *nj, int bi, int bj,
                      const float *x, const float *sqn, int n, int d) {
    *i0 = bi * PC_BLOCK;
    *j0 = bj * PC_BLOCK;
    *ni = n - *i0 < PC_BLOCK ? n - *i0 : PC_BLOCK;
    *nj = n - *j0 < PC_BLOCK ? n - *j0 : PC_BLOCK;
    ms_sqdist_gemm(tile, x + (size_t)*i0 * d, sqn + *i0, *ni, x + (size_t)*j0 * d, sqn + *j0, *nj,
                   d);
}

/* One pass over all unordered pairs (upper-triangle tiles, in parallel). cnt (n, nth) if not
 * NULL: cnt[i][j] = #{y : d2(i, y) < t2[j]} (t2 ascending squared thresholds; y = i
 * included). r2 (n) if not NULL: the smallest d2(i, y) over y with labels[y] != labels[i]
 * (FLT_MAX when there is none). Per-thread partial counts and minima are combined at the
 * end: integer sums and minima, so the result does not depend on the thread count. */
static void scan_pass(int *cnt, float *r2, const int *labels, const float *t2, int nth,
                      const float *x, const float *sqn, int n, int d, ms_arena *ws) {
    int nt = ms_strategy_threads();
    int nb = (n + PC_BLOCK - 1) / PC_BLOCK;
    long ntiles = (long)nb * (nb + 1) / 2;
    float *tiles = MS_ARENA_NEW(ws, float, (size_t)nt * PC_BLOCK * PC_BLOCK);
    int *pc = cnt ? MS_ARENA_NEW(ws, int, (size_t)nt * n * nth) : NULL;
    float *pr = r2 ? MS_ARENA_NEW(ws, float, (size_t)nt * n) : NULL;
    if (pc) memset(pc, 0, sizeof(int) * (size_t)nt * n * nth);
    if (pr)
        for (size_t i = 0; i < (size_t)nt * n; i++) pr[i] = FLT_MAX;
    float top = t2[nth - 1];
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (long tix = 0; tix < ntiles; tix++) {
        int tid = omp_get_thread_num();
        int bi, bj, i0, ni, j0, nj;
        tile_of(tix, nb, &bi, &bj);
        float *tile = tiles + (size_t)tid * PC_BLOCK * PC_BLOCK;
        tile_dist(tile, &i0, &ni, &j0, &nj, bi, bj, x, sqn, n, d);
        int *c = pc ? pc + (size_t)tid * n * nth : NULL;
        float *m = pr ? pr + (size_t)tid * n : NULL;
        for (int r = 0; r < ni; r++) {
            int i = i0 + r;
            for (int q = bi == bj ? r : 0; q < nj; q++) {
                int y = j0 + q;
                float v = tile[(size_t)r * nj + q];
                if (c && v < top) {
                    int lo = 0, hi = nth - 1; /* smallest j with v < t2[j] */
                    while (lo < hi) {
                        int mid = (lo + hi) / 2;
                        if (v < t2[mid]) hi = mid;
                        else lo = mid + 1;
                    }
                    c[(size_t)i * nth + lo]++;
                    if (y != i) c[(size_t)y * nth + lo]++;
                }
                if (m && labels[y] != labels[i]) {
                    if (v < m[i]) m[i] = v;
                    if (v < m[y]) m[y] = v;
                }
            }
        }
    }
    for (int i = 0; i < n; i++) {
        if (cnt) {
            int *ci = cnt + (size_t)i * nth;
            for (int j = 0; j < nth; j++) {
                int s = 0;
                for (int t = 0; t < nt; t++) s += pc[((size_t)t * n + i) * nth + j];
                ci[j] = s + (j ? ci[j - 1] : 0); /* cumulative over thresholds */
            }
        }
        if (r2) {
            float b = FLT_MAX;
            for (int t = 0; t < nt; t++)
                if (pr[(size_t)t * n + i] < b) b = pr[(size_t)t * n + i];
            r2[i] = b;
        }
    }
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Builds the CSR for threshold t2 from per-row counts rowcnt (n) of the same threshold. */
static ms_status graph_from_counts(ms_csr *g, const int *rowcnt, float t2, double delta,
                                   long max_edges, const float *x, const float *sqn, int n,
                                   int d, ms_arena *ws) {
    g->n = n;
    g->rowptr = MS_ARENA_NEW(ws, long, n + 1);
    g->rowptr[0] = 0;
    for (int i = 0; i < n; i++) g->rowptr[i + 1] = g->rowptr[i] + rowcnt[i];
    g->nnz = g->rowptr[n];
    if (g->nnz > max_edges)
        return ms_fail(MS_ERR_DATA,
                       "strategy probcover: delta = %g gives %ld edges on %d items (more than "
                       "max_edges = %ld); use a smaller delta",
                       delta, g->nnz, n, max_edges);
    g->col = MS_ARENA_NEW(ws, int, g->nnz > 0 ? g->nnz : 1);
    long *cur = MS_ARENA_NEW(ws, long, n);
    memcpy(cur, g->rowptr, sizeof(long) * (size_t)n);
    int nt = ms_strategy_threads();
    int nb = (n + PC_BLOCK - 1) / PC_BLOCK;
    long ntiles = (long)nb * (nb + 1) / 2;
    float *tiles = MS_ARENA_NEW(ws, float, (size_t)nt * PC_BLOCK * PC_BLOCK);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (long tix = 0; tix < ntiles; tix++) {
        int bi, bj, i0, ni, j0, nj;
        tile_of(tix, nb, &bi, &bj);
        float *tile = tiles + (size_t)omp_get_thread_num() * PC_BLOCK * PC_BLOCK;
        tile_dist(tile, &i0, &ni, &j0, &nj, bi, bj, x, sqn, n, d);
        for (int r = 0; r < ni; r++) {
            int i = i0 + r;
            for (int q = bi == bj ? r : 0; q < nj; q++) {
                if (!(tile[(size_t)r * nj + q] < t2)) continue;
                int y = j0 + q;
                long p;
#pragma omp atomic capture
                p = cur[i]++;
                g->col[p] = y;
                if (y != i) {
#pragma omp atomic capture
                    p = cur[y]++;
                    g->col[p] = i;
                }
            }
        }
    }
    /* the counting pass saw the same tile values; rows were filled in tile order */
    for (int i = 0; i < n; i++) {
        MS_CHECK(cur[i] == g->rowptr[i + 1]);
        qsort(g->col + g->rowptr[i], (size_t)rowcnt[i], sizeof(int), cmp_int);
    }
    return MS_OK;
}

ms_status ms_probcover_graph(ms_csr *g, const float *x, int n, int d, double delta,
                             long max_edges, ms_arena *ws) {
    float *sqn = MS_ARENA_NEW(ws, float, n);
    int *cnt = MS_ARENA_NEW(ws, int, n);
    ms_rows_sqnorm(sqn, x, n, d);
    float t2 = (float)(delta * delta);
    scan_pass(cnt, NULL, NULL, &t2, 1, x, sqn, n, d, ws);
    return graph_from_counts(g, cnt, t2, delta, max_edges, x, sqn, n, d, ws);
}

static void grid_t2(float *t2, const double *grid, int ngrid) {
    for (int j = 0; j < ngrid; j++) t2[j] = (float)(grid[j] * grid[j]);
}

void ms_probcover_purity(double *purity, const double *grid, int ngrid, const float *x,
                         const int *labels, int n, int d, ms_arena *ws) {
    float *sqn = MS_ARENA_NEW(ws, float, n);
    float *r2 = MS_ARENA_NEW(ws, float, n);
    float *t2 = MS_ARENA_NEW(ws, float, ngrid);
    ms_rows_sqnorm(sqn, x, n, d);
    grid_t2(t2, grid, ngrid);
    scan_pass(NULL, r2, labels, t2, ngrid, x, sqn, n, d, ws);
    for (int j = 0; j < ngrid; j++) {
        long pure = 0;
        for (int i = 0; i < n; i++) pure += !(r2[i] < t2[j]);
        purity[j] = (double)pure / n;
    }
}

/* The automatic delta (see ms_probcover_auto_delta). rowcnt (n), if not NULL, receives each
 * row's edge count at the chosen delta, so the graph needs only its filling pass. */
static double auto_delta(double *purity, int *rowcnt, const float *x, int n, int d, int k,
                         double alpha, long max_edges, ms_rng *rng, ms_arena *ws) {
    enum { NG = MS_PROBCOVER_NGRID };
    double grid[NG], pur[NG];
    float t2[NG];
    for (int j = 0; j < NG; j++) grid[j] = 0.05 * (j + 1);
    grid_t2(t2, grid, NG);
    float *cent = MS_ARENA_NEW(ws, float, (size_t)k * d);
    int *labels = MS_ARENA_NEW(ws, int, n);
    int *sizes = MS_ARENA_NEW(ws, int, k);
    ms_kmeans_fit(cent, labels, sizes, x, n, d, k, 300, rng, ws);
    /* one pass gives both the purity and the edge count of every grid value */
    float *sqn = MS_ARENA_NEW(ws, float, n);
    float *r2 = MS_ARENA_NEW(ws, float, n);
    int *cnt = MS_ARENA_NEW(ws, int, (size_t)n * NG);
    ms_rows_sqnorm(sqn, x, n, d);
    scan_pass(cnt, r2, labels, t2, NG, x, sqn, n, d, ws);
    int pick = 0;
    for (int j = 0; j < NG; j++) {
        long pure = 0, edges = 0;
        for (int i = 0; i < n; i++) {
            pure += !(r2[i] < t2[j]);
            edges += cnt[(size_t)i * NG + j];
        }
        pur[j] = (double)pure / n;
        if (pur[j] >= alpha && edges <= max_edges) pick = j;
    }
    if (purity) memcpy(purity, pur, sizeof pur);
    if (rowcnt)
        for (int i = 0; i < n; i++) rowcnt[i] = cnt[(size_t)i * NG + pick];
    return grid[pick];
}

double ms_probcover_auto_delta(double *purity, const float *x, int n, int d, int k,
                               double alpha, long max_edges, ms_rng *rng, ms_arena *ws) {
    return auto_delta(purity, NULL, x, n, d, k, alpha, max_edges, rng, ws);
}

void ms_probcover_greedy(int *out, long *covered, const ms_csr *g, int k, ms_rng *rng,
                         ms_arena *ws) {
    int n = g->n;
    /* transpose: who covers y */
    long *tptr = MS_ARENA_NEW(ws, long, n + 1);
    int *tcol = MS_ARENA_NEW(ws, int, g->nnz > 0 ? g->nnz : 1);
    long *tpos = MS_ARENA_NEW(ws, long, n);
    int *deg = MS_ARENA_NEW(ws, int, n);
    unsigned char *cov = MS_ARENA_NEW(ws, unsigned char, n);
    unsigned char *sel = MS_ARENA_NEW(ws, unsigned char, n);
    memset(tptr, 0, sizeof(long) * (size_t)(n + 1));
    for (long e = 0; e < g->nnz; e++) tptr[g->col[e] + 1]++;
    for (int i = 0; i < n; i++) tptr[i + 1] += tptr[i];
    memcpy(tpos, tptr, sizeof(long) * (size_t)n);
    for (int i = 0; i < n; i++)
        for (long e = g->rowptr[i]; e < g->rowptr[i + 1]; e++) tcol[tpos[g->col[e]]++] = i;
    for (int i = 0; i < n; i++) deg[i] = (int)(g->rowptr[i + 1] - g->rowptr[i]);
    memset(cov, 0, (size_t)n);
    memset(sel, 0, (size_t)n);
    long ncov = 0;
    for (int t = 0; t < k; t++) {
        int cur = -1;
        for (int i = 0; i < n; i++)
            if (!sel[i] && (cur < 0 || deg[i] > deg[cur])) cur = i;
        if (deg[cur] == 0) { /* nothing left to cover: a random unselected item */
            int r = (int)ms_rng_below(rng, (uint32_t)(n - t));
            for (cur = 0;; cur++)
                if (!sel[cur] && r-- == 0) break;
        }
        out[t] = cur;
        sel[cur] = 1;
        for (long e = g->rowptr[cur]; e < g->rowptr[cur + 1]; e++) {
            int y = g->col[e];
            if (cov[y]) continue;
            cov[y] = 1;
            ncov++;
            for (long f = tptr[y]; f < tptr[y + 1]; f++) deg[tcol[f]]--;
        }
    }
    *covered = ncov;
}

/* ---- the strategy ------------------------------------------------------------------- */

typedef struct {
    double delta; /* <= 0: auto */
    double alpha;
    long max_edges;
} probcover_ctx;

static ms_status probcover_select(const ms_strategy *s, const ms_pool *pool, int k,
                                  uint64_t seed, int *out, ms_arena *ws) {
    ms_status st = ms_strategy_check_k(s, pool, k);
    if (st || k == 0) return st;
    const probcover_ctx *c = s->ctx;
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_STRATEGY, 0);
    ms_csr g;
    if (c->delta > 0) {
        st = ms_probcover_graph(&g, pool->x, pool->n, pool->d, c->delta, c->max_edges, ws);
    } else {
        int n = pool->n;
        int *rowcnt = MS_ARENA_NEW(ws, int, n);
        float *sqn = MS_ARENA_NEW(ws, float, n);
        double delta = auto_delta(NULL, rowcnt, pool->x, n, pool->d, k, c->alpha,
                                  c->max_edges, &r, ws);
        ms_rows_sqnorm(sqn, pool->x, n, pool->d);
        st = graph_from_counts(&g, rowcnt, (float)(delta * delta), delta, c->max_edges, pool->x,
                               sqn, n, pool->d, ws);
    }
    if (st) return st;
    long covered;
    ms_probcover_greedy(out, &covered, &g, k, &r, ws);
    return MS_OK;
}

static void probcover_free(void *ctx) { free(ctx); }

ms_status ms_probcover_create(ms_strategy *s, const char *opts) {
    static const char *const known[] = {"delta", "alpha", "max_edges", NULL};
    ms_status st = ms_opt_check("probcover", opts, known);
    if (st) return st;
    probcover_ctx *c = ms_xcalloc(1, sizeof *c);
    c->delta = 0;
    c->alpha = 0.95;
    c->max_edges = 1L << 24;
    s->ctx = c;
    s->free_ctx = probcover_free;
    char buf[64];
    int found = 0;
    if ((st = ms_opt_string(opts, "delta", buf, sizeof buf, &found))) return st;
    if (found && strcasecmp(buf, "auto") != 0) {
        if ((st = ms_opt_double(opts, "delta", &c->delta, NULL))) return st;
        if (!(c->delta > 0 && c->delta < 1e6))
            return ms_fail(MS_ERR_ARG,
                           "strategy probcover: delta must be 'auto' or a positive number, got %s",
                           buf);
    }
    if ((st = ms_opt_double(opts, "alpha", &c->alpha, NULL))) return st;
    if (!(c->alpha > 0 && c->alpha <= 1))
        return ms_fail(MS_ERR_ARG, "strategy probcover: alpha must be in (0, 1]");
    double me = (double)c->max_edges;
    if ((st = ms_opt_double(opts, "max_edges", &me, NULL))) return st;
    if (!(me >= 1 && me <= 4e18))
        return ms_fail(MS_ERR_ARG, "strategy probcover: max_edges must be >= 1");
    c->max_edges = (long)me;
    s->select = probcover_select;
    return MS_OK;
}
