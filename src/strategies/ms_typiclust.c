/* ms_typiclust.c: the typiclust strategy, TypiClust (Hacohen, Dekel & Weinshall, ICML 2022,
 * "Active learning on a budget"), following the authors' code for an empty labeled set.
 *
 * The pool's unit rows are clustered by ms_kmeans_fit into K clusters (the authors use
 * min(labeled + budget, 500) clusters; with nothing labeled that is K). Clusters of at most
 * min_cluster items are skipped. The authors skip clusters of <= 5 items (min_cluster=5), a
 * rule made for pools of thousands, where the average cluster (n / K items) is far larger
 * than 5; on a pool of 30 with K 10 the average cluster has 3 items and that rule leaves one
 * to three clusters to draw from. The default, min_cluster=auto, scales the threshold to the
 * pool: min(5, floor(n / (2K))), i.e. clusters of at most half the average size, never more
 * than the authors' 5 (so it is their rule whenever n >= 12K). The rest are visited largest first (ties by
 * cluster index), cycling when K exceeds their number; if every such cluster is used up
 * (or none exists), the skipped ones follow, largest first. In the visited cluster the most
 * typical not-yet-chosen member is picked:
 *   typicality(x) = 1 / (mean_{y in kNN(x)} |x - y|^2 + 1e-5),
 * kNN(x) the k nearest other remaining members of the cluster, k = min(knn, m / 2) with m
 * the remaining cluster size (knn default 20). Like the authors' code (faiss IndexFlatL2)
 * the distances averaged are SQUARED Euclidean distances. A cluster with one remaining item
 * yields that item. kNN distances come from (64, m) sgemm blocks over the cluster, in
 * parallel over blocks, so no (m, m) matrix is kept. Options: knn, min_cluster (a number >= 0
 * or auto).
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "strategies/ms_strategies_internal.h"

enum { TC_BLOCK = 64, TC_MAXK = 1024 };

typedef struct {
    int knn, min_cluster; /* min_cluster < 0: auto */
} typiclust_ctx;

/* The skip threshold for a pool of n items and K clusters (see the top of the file). */
static int skip_threshold(const typiclust_ctx *c, int n, int k) {
    if (c->min_cluster >= 0) return c->min_cluster;
    int t = n / (2 * k);
    return t < 5 ? t : 5;
}

/* mean of the kk smallest entries of row (length m) skipping position self */
static double mean_knn(const float *row, int m, int self, int kk, float *best) {
    int nb = 0; /* best[0..nb) ascending */
    for (int j = 0; j < m; j++) {
        if (j == self) continue;
        float v = row[j];
        if (nb == kk && v >= best[kk - 1]) continue;
        int p = nb < kk ? nb++ : kk - 1;
        while (p > 0 && best[p - 1] > v) {
            best[p] = best[p - 1];
            p--;
        }
        best[p] = v;
    }
    double s = 0;
    for (int j = 0; j < nb; j++) s += best[j];
    return s / nb;
}

/* Most typical of the m rows g (m, d); returns its position in g. */
static int most_typical(const float *g, int m, int d, int knn, ms_arena *ws) {
    if (m == 1) return 0;
    int kk = knn < m / 2 ? knn : m / 2;
    float *gsq = MS_ARENA_NEW(ws, float, m);
    double *meand = MS_ARENA_NEW(ws, double, m);
    ms_rows_sqnorm(gsq, g, m, d);
    int nt = ms_strategy_threads();
    float *blk = MS_ARENA_NEW(ws, float, (size_t)nt * TC_BLOCK * m);
    float *best = MS_ARENA_NEW(ws, float, (size_t)nt * kk);
    int nblocks = (m + TC_BLOCK - 1) / TC_BLOCK;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (int b = 0; b < nblocks; b++) {
        int tid = omp_get_thread_num();
        float *bk = blk + (size_t)tid * TC_BLOCK * m;
        int i0 = b * TC_BLOCK, nb = m - i0 < TC_BLOCK ? m - i0 : TC_BLOCK;
        ms_sqdist_gemm(bk, g + (size_t)i0 * d, gsq + i0, nb, g, gsq, m, d);
        for (int r = 0; r < nb; r++)
            meand[i0 + r] = mean_knn(bk + (size_t)r * m, m, i0 + r, kk, best + (size_t)tid * kk);
    }
    int arg = 0; /* largest typicality = smallest mean distance; first on ties */
    for (int i = 1; i < m; i++)
        if (1.0 / (meand[i] + 1e-5) > 1.0 / (meand[arg] + 1e-5)) arg = i;
    return arg;
}

static ms_status typiclust_select(const ms_strategy *s, const ms_pool *pool, int k,
                                  uint64_t seed, int *out, ms_arena *ws) {
    ms_status st = ms_strategy_check_k(s, pool, k);
    if (st || k == 0) return st;
    const typiclust_ctx *c = s->ctx;
    int n = pool->n, d = pool->d;
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_STRATEGY, 0);
    float *cent = MS_ARENA_NEW(ws, float, (size_t)k * d);
    int *label = MS_ARENA_NEW(ws, int, n);
    int *size = MS_ARENA_NEW(ws, int, k);
    ms_kmeans_fit(cent, label, size, pool->x, n, d, k, 300, &r, ws);

    /* visiting order: large clusters by size, then the small ones by size */
    int *order = MS_ARENA_NEW(ws, int, k);
    int nbig = 0, nall = 0;
    const int thr = skip_threshold(c, n, k);
    for (int pass = 0; pass < 2; pass++)
        for (int j = 0; j < k; j++) {
            int big = size[j] > thr;
            if (size[j] == 0 || big != (pass == 0)) continue;
            int p = nall++;
            while (p > (pass ? nbig : 0) && size[order[p - 1]] < size[j]) {
                order[p] = order[p - 1];
                p--;
            }
            order[p] = j;
            if (pass == 0) nbig++;
        }
    int *remain = MS_ARENA_NEW(ws, int, k);
    memcpy(remain, size, sizeof(int) * (size_t)k);
    int *members = MS_ARENA_NEW(ws, int, n);
    float *g = MS_ARENA_NEW(ws, float, (size_t)n * d);
    unsigned char *chosen = MS_ARENA_NEW(ws, unsigned char, n);
    memset(chosen, 0, (size_t)n);
    int lo = 0, hi = nbig > 0 ? nbig : nall, cur = 0;
    for (int t = 0; t < k; t++) {
        /* next cluster in the cycle over order[lo, hi) that still has members */
        int tries = 0;
        while (remain[order[lo + cur]] == 0) {
            cur = (cur + 1) % (hi - lo);
            if (++tries > hi - lo) { /* the large clusters are used up: all clusters */
                lo = 0;
                hi = nall;
                cur = 0;
                tries = 0;
            }
        }
        int cl = order[lo + cur];
        int m = 0;
        for (int i = 0; i < n; i++)
            if (label[i] == cl && !chosen[i]) {
                members[m] = i;
                memcpy(g + (size_t)m * d, pool->x + (size_t)i * d, sizeof(float) * (size_t)d);
                m++;
            }
        int pick = members[most_typical(g, m, d, c->knn, ws)];
        out[t] = pick;
        chosen[pick] = 1;
        remain[cl]--;
        cur = (cur + 1) % (hi - lo);
    }
    return MS_OK;
}

static void typiclust_free(void *ctx) { free(ctx); }

ms_status ms_typiclust_create(ms_strategy *s, const char *opts) {
    static const char *const known[] = {"knn", "min_cluster", NULL};
    ms_status st = ms_opt_check("typiclust", opts, known);
    if (st) return st;
    typiclust_ctx *c = ms_xcalloc(1, sizeof *c);
    c->knn = 20;
    c->min_cluster = -1; /* auto */
    s->ctx = c;
    s->free_ctx = typiclust_free;
    if ((st = ms_opt_int(opts, "knn", &c->knn, NULL))) return st;
    char buf[64];
    int found = 0;
    if ((st = ms_opt_string(opts, "min_cluster", buf, sizeof buf, &found))) return st;
    if (found && strcasecmp(buf, "auto") != 0) {
        if ((st = ms_opt_int(opts, "min_cluster", &c->min_cluster, NULL))) return st;
        if (c->min_cluster < 0)
            return ms_fail(MS_ERR_ARG, "strategy typiclust: min_cluster must be 'auto' or a number >= 0, got %s", buf);
    }
    if (c->knn < 1 || c->knn > TC_MAXK)
        return ms_fail(MS_ERR_ARG, "strategy typiclust: knn must be in [1, %d]", TC_MAXK);
    s->select = typiclust_select;
    return MS_OK;
}
