/* test_strategies.c: the selection strategies on synthetic pools built here from ms_rng
 * (fixed seeds): every strategy returns K distinct in-range indices, is deterministic per
 * seed and independent of the thread count; clustering strategies find one item per
 * well-separated cluster; each optimized kernel agrees with its plain version; k-center
 * stays within twice the exhaustive optimum; TypiClust finds constructed dense cores;
 * ProbCover's graph and coverage match brute force; MaxHerding's lazy greedy matches the
 * plain greedy; option and K errors give the right status. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/strategy.h"
#include "ms_test.h"
#include "strategies/ms_strategies_internal.h"

static const char *const ALL[] = {"random",    "kmedoids",  "kmeans", "kcenter",
                                   "typiclust", "probcover", "herding"};
#define N_ALL (int)(sizeof ALL / sizeof ALL[0])

static void normalize_rows(float *x, int n, int d) {
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int t = 0; t < d; t++) s += (double)x[(size_t)i * d + t] * x[(size_t)i * d + t];
        for (int t = 0; t < d; t++) x[(size_t)i * d + t] /= (float)sqrt(s);
    }
}

/* Unit rows scattered uniformly on the sphere. */
static float *random_rows(int n, int d, uint64_t seed) {
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_SYNTH, 0);
    float *x = ms_xmalloc(sizeof(float) * (size_t)n * d);
    for (size_t i = 0; i < (size_t)n * d; i++) x[i] = (float)ms_rng_normal(&r);
    normalize_rows(x, n, d);
    return x;
}

/* nc well-separated clusters (random centres, noise `spread`), sizes[c] rows each, rows of
 * one cluster contiguous; label (n) receives the cluster of each row. */
static float *cluster_rows(int nc, const int *sizes, int d, double spread, uint64_t seed,
                           int *label, int *n_out) {
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_SYNTH, 1);
    int n = 0;
    for (int c = 0; c < nc; c++) n += sizes[c];
    float *cent = ms_xmalloc(sizeof(float) * (size_t)nc * d);
    for (size_t i = 0; i < (size_t)nc * d; i++) cent[i] = (float)ms_rng_normal(&r);
    normalize_rows(cent, nc, d);
    float *x = ms_xmalloc(sizeof(float) * (size_t)n * d);
    int i = 0;
    for (int c = 0; c < nc; c++)
        for (int m = 0; m < sizes[c]; m++, i++) {
            for (int t = 0; t < d; t++)
                x[(size_t)i * d + t] =
                    cent[(size_t)c * d + t] + (float)(spread * ms_rng_normal(&r) / sqrt(d));
            label[i] = c;
        }
    normalize_rows(x, n, d);
    free(cent);
    *n_out = n;
    return x;
}

static double dist2(const float *a, const float *b, int d) {
    double s = 0;
    for (int t = 0; t < d; t++) s += ((double)a[t] - b[t]) * ((double)a[t] - b[t]);
    return s;
}

static int all_distinct_in_range(const int *out, int k, int n) {
    for (int i = 0; i < k; i++) {
        if (out[i] < 0 || out[i] >= n) return 0;
        for (int j = 0; j < i; j++)
            if (out[i] == out[j]) return 0;
    }
    return 1;
}

static ms_status run(const char *spec, const ms_pool *pool, int k, uint64_t seed, int *out) {
    ms_strategy *s = NULL;
    ms_status st = ms_strategy_create(&s, spec);
    if (st) {
        fprintf(stderr, "create %s: %s\n", spec, ms_last_error());
        return st;
    }
    ms_arena ws;
    ms_arena_init(&ws);
    st = s->select(s, pool, k, seed, out, &ws);
    ms_arena_free(&ws);
    ms_strategy_free(s);
    return st;
}

/* ---- kernels ------------------------------------------------------------------------ */

static void test_sqdist(void) {
    int na = 37, nb = 1100, d = 19; /* nb > one parallel chunk */
    float *a = random_rows(na, d, 1), *b = random_rows(nb, d, 2);
    for (int i = 0; i < nb * d; i++) b[i] *= 1.5f; /* not unit: the norms must matter */
    float *an = ms_xmalloc(sizeof(float) * na), *bn = ms_xmalloc(sizeof(float) * nb);
    ms_rows_sqnorm(an, a, na, d);
    ms_rows_sqnorm(bn, b, nb, d);
    float *g = ms_xmalloc(sizeof(float) * na * nb), *gp = ms_xmalloc(sizeof(float) * na * nb);
    double *p = ms_xmalloc(sizeof(double) * na * nb);
    float *pf = ms_xmalloc(sizeof(float) * na * nb);
    ms_sqdist_gemm(g, a, an, na, b, bn, nb, d);
    ms_sqdist_gemm_par(gp, a, an, na, b, bn, nb, d);
    ms_sqdist_plain(p, a, na, b, nb, d);
    for (int i = 0; i < na * nb; i++) pf[i] = (float)p[i];
    ms_expect_close_f("sqdist gemm vs plain", g, pf, (size_t)na * nb, 1e-5, 1e-5);
    ms_expect_close_f("sqdist gemm_par vs plain", gp, pf, (size_t)na * nb, 1e-5, 1e-5);
    free(a), free(b), free(an), free(bn), free(g), free(gp), free(p), free(pf);
}

/* ---- every strategy ------------------------------------------------------------------ */

static void test_contract(void) {
    int sizes[6] = {40, 35, 30, 25, 20, 10}, label[160], n;
    float *x = cluster_rows(6, sizes, 16, 0.8, 3, label, &n);
    ms_pool pool = {n, 16, x, x, NULL};
    const int ks[] = {1, 6, 17, 160};
    for (int si = 0; si < N_ALL; si++)
        for (int ki = 0; ki < 4; ki++) {
            int k = ks[ki];
            int a[160], b[160], c[160];
            ms_set_threads(2);
            MS_EXPECT(run(ALL[si], &pool, k, 42, a) == MS_OK);
            MS_EXPECT(run(ALL[si], &pool, k, 42, b) == MS_OK);
            ms_set_threads(1);
            MS_EXPECT(run(ALL[si], &pool, k, 42, c) == MS_OK);
            ms_set_threads(2);
            int ok = all_distinct_in_range(a, k, n);
            if (!ok) fprintf(stderr, "  %s K=%d: not distinct/in range\n", ALL[si], k);
            MS_EXPECT(ok);
            int same = memcmp(a, b, sizeof(int) * k) == 0 && memcmp(a, c, sizeof(int) * k) == 0;
            if (!same) fprintf(stderr, "  %s K=%d: differs between runs/threads\n", ALL[si], k);
            MS_EXPECT(same);
        }
    /* K > n is a data error, K = 0 selects nothing */
    for (int si = 0; si < N_ALL; si++) {
        int out[1];
        MS_EXPECT(run(ALL[si], &pool, n + 1, 1, out) == MS_ERR_DATA);
        MS_EXPECT(run(ALL[si], &pool, 0, 1, out) == MS_OK);
    }
    /* seeded strategies change with the seed (the greedy herding does not use it) */
    const char *seeded[] = {"random", "kcenter", "kmeans"};
    for (int si = 0; si < 3; si++) {
        int a[6], b[6], differ = 0;
        for (uint64_t s = 2; s < 12 && !differ; s++) {
            run(seeded[si], &pool, 6, 1, a);
            run(seeded[si], &pool, 6, s, b);
            differ = memcmp(a, b, sizeof a) != 0;
        }
        MS_EXPECT(differ);
    }
    free(x);
}

static void test_options(void) {
    ms_strategy *s = NULL;
    const char *bad[] = {"nosuch",           "kmeans:bogus=1",       "kmeans:iters=abc",
                         "kmeans:iters=0",   "kmedoids:iters=-3",    "kcenter:k=2",
                         "typiclust:knn=0",  "typiclust:min_cluster=x", "typiclust:min_cluster=-1", "probcover:delta=-1",
                         "probcover:delta=abc", "probcover:alpha=2", "probcover:max_edges=0",
                         "herding:sigma=0",  "herding:sigma=",       "random:seed=3",
                         "kmeans:iters"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ms_status st = ms_strategy_create(&s, bad[i]);
        if (st != MS_ERR_ARG) fprintf(stderr, "  '%s' gave status %d\n", bad[i], st);
        MS_EXPECT(st == MS_ERR_ARG && s == NULL);
        MS_EXPECT(strlen(ms_last_error()) > 0);
    }
    const char *good[] = {"kmeans:iters=50",  "kmedoids:iters=10", "typiclust:knn=5,min_cluster=2",
                          "probcover:delta=auto", "probcover:delta=0.4,alpha=0.9",
                          "herding:sigma=0.5,dense_max=0", "KMeans"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        MS_EXPECT(ms_strategy_create(&s, good[i]) == MS_OK && s != NULL);
        if (s) MS_EXPECT(strcmp(s->label, good[i]) == 0 || strcmp(good[i], "KMeans") == 0);
        ms_strategy_free(s);
        s = NULL;
    }
    /* every listed name can be created */
    int nn = 0;
    char **names = ms_split_list(ms_strategy_names(), &nn);
    MS_EXPECT(nn == N_ALL);
    for (int i = 0; i < nn; i++) {
        MS_EXPECT(ms_strategy_create(&s, names[i]) == MS_OK);
        ms_strategy_free(s);
        s = NULL;
    }
    ms_strv_free(names, nn);
}

/* ---- clustering ---------------------------------------------------------------------- */

static void test_one_per_cluster(void) {
    int sizes[7] = {30, 12, 25, 8, 18, 22, 15}, label[130], n;
    float *x = cluster_rows(7, sizes, 24, 0.15, 5, label, &n);
    ms_pool pool = {n, 24, x, x, NULL};
    const char *specs[] = {"kmedoids", "kmeans", "typiclust:min_cluster=0"};
    for (int si = 0; si < 3; si++)
        for (uint64_t seed = 1; seed <= 6; seed++) {
            int out[7], seen[7] = {0}, ok = 1;
            MS_EXPECT(run(specs[si], &pool, 7, seed, out) == MS_OK);
            for (int j = 0; j < 7; j++) seen[label[out[j]]]++;
            for (int c = 0; c < 7; c++) ok &= seen[c] == 1;
            if (!ok) fprintf(stderr, "  %s seed %d: not one item per cluster\n", specs[si], (int)seed);
            MS_EXPECT(ok);
        }
    /* kmeans takes clusters largest first: the picks' cluster sizes do not increase */
    int out[7];
    run("kmeans", &pool, 7, 3, out);
    int mono = 1;
    for (int j = 1; j < 7; j++) mono &= sizes[label[out[j]]] <= sizes[label[out[j - 1]]];
    MS_EXPECT(mono);
    free(x);
}

static void test_kmedoids_plain(void) {
    /* unclustered data so that the alternating steps have work to do */
    int n = 90, d = 6, k = 5;
    float *x = random_rows(n, d, 7);
    int moved = 0;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        ms_arena ws;
        ms_arena_init(&ws);
        int a[5], b[5];
        ms_rng r1, r2;
        ms_rng_init(&r1, seed, MS_STREAM_STRATEGY, 0);
        ms_rng_init(&r2, seed, MS_STREAM_STRATEGY, 0);
        int ia = ms_kmedoids_fit(a, x, n, d, k, 300, 0, &r1, &ws);
        int ib = ms_kmedoids_fit(b, x, n, d, k, 300, 1, &r2, &ws);
        MS_EXPECT(memcmp(a, b, sizeof a) == 0 && ia == ib);
        MS_EXPECT(ia < 300); /* converged */
        moved += ia > 1;
        /* a fixed point: each medoid minimises the in-cluster cosine distance sum */
        int lab[90];
        for (int i = 0; i < n; i++) {
            int best = 0;
            for (int j = 1; j < k; j++)
                if (dist2(x + (size_t)i * d, x + (size_t)a[j] * d, d) <
                    dist2(x + (size_t)i * d, x + (size_t)a[best] * d, d))
                    best = j;
            lab[i] = best;
        }
        for (int j = 0; j < k; j++) lab[a[j]] = j;
        int fixed = 1;
        for (int j = 0; j < k; j++) {
            double cur = 0;
            for (int i = 0; i < n; i++)
                if (lab[i] == j) cur += dist2(x + (size_t)i * d, x + (size_t)a[j] * d, d) / 2;
            for (int m = 0; m < n; m++) {
                if (lab[m] != j) continue;
                double c = 0;
                for (int i = 0; i < n; i++)
                    if (lab[i] == j) c += dist2(x + (size_t)i * d, x + (size_t)m * d, d) / 2;
                if (c < cur - 1e-6) fixed = 0;
            }
        }
        MS_EXPECT(fixed);
        ms_arena_free(&ws);
    }
    MS_EXPECT(moved > 0); /* some seeding was not already a fixed point */
    free(x);
}

static void test_kmeans_details(void) {
    int sizes[5] = {30, 20, 25, 15, 10}, label[100], n;
    float *x = cluster_rows(5, sizes, 12, 1.0, 9, label, &n); /* overlapping clusters */
    int d = 12, k = 5;
    ms_pool pool = {n, d, x, x, NULL};
    for (uint64_t seed = 1; seed <= 3; seed++) {
        int out[5];
        MS_EXPECT(run("kmeans", &pool, k, seed, out) == MS_OK);
        /* reproduce the fit the strategy ran */
        ms_arena ws;
        ms_arena_init(&ws);
        ms_rng r;
        ms_rng_init(&r, seed, MS_STREAM_STRATEGY, 0);
        float cent[5 * 12];
        int assign[100], sz[5];
        int iters = ms_kmeans_fit(cent, assign, sz, x, n, d, k, 300, &r, &ws);
        MS_EXPECT(iters >= 1 && iters < 300);
        /* Lloyd fixed point: every row sits with its nearest centroid, centroids are means */
        int fixed = 1;
        double maxerr = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < k; j++)
                if (dist2(x + (size_t)i * d, cent + (size_t)j * d, d) <
                    dist2(x + (size_t)i * d, cent + (size_t)assign[i] * d, d) - 1e-6)
                    fixed = 0;
        for (int j = 0; j < k; j++)
            for (int t = 0; t < d; t++) {
                double m = 0;
                int c = 0;
                for (int i = 0; i < n; i++)
                    if (assign[i] == j) m += x[(size_t)i * d + t], c++;
                MS_EXPECT(c == sz[j]);
                if (c) maxerr = fmax(maxerr, fabs(m / c - cent[(size_t)j * d + t]));
            }
        MS_EXPECT(fixed);
        MS_EXPECT(maxerr < 1e-5);
        /* each pick is the item nearest its centroid among those not taken before; the
         * centroids are taken by size, largest first */
        int taken[100] = {0}, used[5] = {0}, ok = 1;
        for (int t = 0; t < k; t++) {
            int cj = -1;
            for (int j = 0; j < k; j++)
                if (!used[j] && (cj < 0 || sz[j] > sz[cj])) cj = j;
            used[cj] = 1;
            int best = -1;
            for (int i = 0; i < n; i++)
                if (!taken[i] && (best < 0 || dist2(x + (size_t)i * d, cent + (size_t)cj * d, d) <
                                                  dist2(x + (size_t)best * d, cent + (size_t)cj * d, d)))
                    best = i;
            taken[best] = 1;
            ok &= out[t] == best;
        }
        MS_EXPECT(ok);
        /* a better potential than a plain random assignment of the same centroids */
        MS_EXPECT(ms_kmeans_inertia(cent, assign, x, n, d) < ms_kmeans_inertia(cent, label, x, n, d) + 1e-9);
        ms_arena_free(&ws);
    }
    free(x);
}

/* ---- k-center ------------------------------------------------------------------------ */

static double cover_radius(const float *x, int n, int d, const int *s, int k) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double m = INFINITY;
        for (int j = 0; j < k; j++) m = fmin(m, sqrt(dist2(x + (size_t)i * d, x + (size_t)s[j] * d, d)));
        worst = fmax(worst, m);
    }
    return worst;
}

static void test_kcenter(void) {
    int n = 12, d = 3, k = 3;
    for (uint64_t data = 1; data <= 4; data++) {
        float *x = random_rows(n, d, 100 + data);
        double opt = INFINITY;
        for (int a = 0; a < n; a++)
            for (int b = a + 1; b < n; b++)
                for (int c = b + 1; c < n; c++) {
                    int s[3] = {a, b, c};
                    opt = fmin(opt, cover_radius(x, n, d, s, 3));
                }
        ms_pool pool = {n, d, x, x, NULL};
        for (uint64_t seed = 1; seed <= 5; seed++) {
            int out[3];
            MS_EXPECT(run("kcenter", &pool, k, seed, out) == MS_OK);
            double rad = cover_radius(x, n, d, out, k);
            if (!(rad <= 2 * opt + 1e-9))
                fprintf(stderr, "  kcenter radius %g > 2 x optimum %g\n", rad, opt);
            MS_EXPECT(rad <= 2 * opt + 1e-9);
            MS_EXPECT(rad >= opt - 1e-9);
            /* each pick after the first is the farthest item from those before it */
            for (int t = 1; t < k; t++) {
                double far = -1, got = 0;
                for (int i = 0; i < n; i++) {
                    double m = INFINITY;
                    for (int j = 0; j < t; j++) m = fmin(m, dist2(x + (size_t)i * d, x + (size_t)out[j] * d, d));
                    far = fmax(far, m);
                    if (i == out[t]) got = m;
                }
                MS_EXPECT(fabs(got - far) < 1e-6);
            }
        }
        free(x);
    }
}

/* ---- TypiClust ----------------------------------------------------------------------- */

/* Clusters each made of a core row at the cluster centre and rows at growing distances in
 * random directions, so the core is the densest row of its cluster. */
static float *cored_rows(int nc, const int *sizes, int d, int *label, int *core, int *n_out) {
    ms_rng r;
    ms_rng_init(&r, 77, MS_STREAM_SYNTH, 2);
    int n = 0;
    for (int c = 0; c < nc; c++) n += sizes[c];
    float *x = ms_xmalloc(sizeof(float) * (size_t)n * d);
    float *cent = ms_xmalloc(sizeof(float) * (size_t)d);
    int i = 0;
    for (int c = 0; c < nc; c++) {
        for (int t = 0; t < d; t++) cent[t] = (float)ms_rng_normal(&r);
        normalize_rows(cent, 1, d);
        int where = (int)ms_rng_below(&r, (uint32_t)sizes[c]); /* core not first in order */
        for (int m = 0; m < sizes[c]; m++, i++) {
            double rad = m == where ? 0 : 0.04 + 0.25 * m / sizes[c];
            double u[64], nu = 0;
            for (int t = 0; t < d; t++) {
                u[t] = ms_rng_normal(&r);
                nu += u[t] * u[t];
            }
            for (int t = 0; t < d; t++) x[(size_t)i * d + t] = cent[t] + (float)(rad * u[t] / sqrt(nu));
            label[i] = c;
            if (m == where) core[c] = i;
        }
    }
    normalize_rows(x, n, d);
    free(cent);
    *n_out = n;
    return x;
}

static void test_typiclust(void) {
    int sizes[5] = {40, 60, 3, 30, 50}, label[183], core[5], n, d = 48;
    float *x = cored_rows(5, sizes, d, label, core, &n);
    ms_pool pool = {n, d, x, x, NULL};
    /* brute force: the most typical row of each cluster (mean squared distance to its
     * k = min(20, m / 2) nearest others) is the core */
    for (int c = 0; c < 5; c++) {
        if (sizes[c] <= 5) continue;
        int kk = sizes[c] / 2 < 20 ? sizes[c] / 2 : 20, best = -1;
        double bestm = 0;
        for (int i = 0; i < n; i++) {
            if (label[i] != c) continue;
            double dd[64];
            int m = 0;
            for (int j = 0; j < n; j++)
                if (label[j] == c && j != i) dd[m++] = dist2(x + (size_t)i * d, x + (size_t)j * d, d);
            for (int a = 0; a < kk; a++) /* partial selection sort */
                for (int b = a + 1; b < m; b++)
                    if (dd[b] < dd[a]) {
                        double t = dd[a];
                        dd[a] = dd[b];
                        dd[b] = t;
                    }
            double mean = 0;
            for (int a = 0; a < kk; a++) mean += dd[a] / kk;
            if (best < 0 || mean < bestm) best = i, bestm = mean;
        }
        MS_EXPECT(best == core[c]);
    }
    /* K = 5 clusters: the 3-row cluster is skipped; the four cores come largest cluster
     * first (60, 50, 40, 30), then the cycle returns to the largest cluster */
    for (uint64_t seed = 1; seed <= 3; seed++) {
        int out[5];
        MS_EXPECT(run("typiclust", &pool, 5, seed, out) == MS_OK);
        MS_EXPECT(out[0] == core[1] && out[1] == core[4] && out[2] == core[0] && out[3] == core[3]);
        MS_EXPECT(label[out[4]] == 1 && out[4] != core[1]);
        /* min_cluster=2 keeps the small cluster: it comes last */
        MS_EXPECT(run("typiclust:min_cluster=2", &pool, 5, seed, out) == MS_OK);
        MS_EXPECT(out[0] == core[1] && label[out[4]] == 2);
        /* on a pool this size (183 items, K 5) auto is the authors' rule, min_cluster=5 */
        int o5[5], oa[5];
        MS_EXPECT(run("typiclust:min_cluster=5", &pool, 5, seed, o5) == MS_OK);
        MS_EXPECT(run("typiclust:min_cluster=auto", &pool, 5, seed, oa) == MS_OK);
        MS_EXPECT(run("typiclust", &pool, 5, seed, out) == MS_OK);
        MS_EXPECT(!memcmp(o5, out, sizeof o5) && !memcmp(oa, out, sizeof oa));
    }
    free(x);
    /* A small pool: clusters of 8, 4, 4, 1, 1 items, K 5 (average cluster 3.6). The
     * authors' rule (<= 5 skipped) leaves only the 8-item cluster, so all five picks come
     * from it; auto skips clusters of <= min(5, floor(18 / 10)) = 1 item: the picks are the
     * three cores (8, then the 4s), then the cycle returns to the 8 and the first 4. */
    int small[5] = {8, 4, 4, 1, 1}, slabel[18], score[5], sn;
    float *y = cored_rows(5, small, d, slabel, score, &sn);
    ms_pool sp = {sn, d, y, y, NULL};
    for (uint64_t seed = 1; seed <= 3; seed++) {
        int o5[5], oa[5];
        MS_EXPECT(run("typiclust:min_cluster=5", &sp, 5, seed, o5) == MS_OK);
        int all0 = 1;
        for (int i = 0; i < 5; i++) all0 &= slabel[o5[i]] == 0;
        MS_EXPECT(all0 && o5[0] == score[0]);
        MS_EXPECT(run("typiclust", &sp, 5, seed, oa) == MS_OK);
        int hits[5] = {0};
        for (int i = 0; i < 5; i++) hits[slabel[oa[i]]]++;
        MS_EXPECT(oa[0] == score[0] && hits[0] == 2 && hits[1] + hits[2] == 3 && hits[3] == 0 && hits[4] == 0);
        MS_EXPECT((oa[1] == score[1] && oa[2] == score[2]) || (oa[1] == score[2] && oa[2] == score[1]));
    }
    free(y);
}

/* ---- ProbCover ----------------------------------------------------------------------- */

static void test_probcover(void) {
    int n = 150, d = 4;
    float *x = random_rows(n, d, 11);
    double delta = 0.55;
    /* the test relies on no pair sitting on the threshold */
    int boundary = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            boundary += fabs(sqrt(dist2(x + (size_t)i * d, x + (size_t)j * d, d)) - delta) < 1e-4;
    MS_EXPECT(boundary == 0);
    ms_arena ws;
    ms_arena_init(&ws);
    ms_csr g;
    MS_EXPECT(ms_probcover_graph(&g, x, n, d, delta, 1L << 20, &ws) == MS_OK);
    /* graph = brute-force adjacency, rows sorted */
    long nnz = 0;
    int same = 1;
    for (int i = 0; i < n; i++) {
        long p = g.rowptr[i];
        for (int j = 0; j < n; j++)
            if (sqrt(dist2(x + (size_t)i * d, x + (size_t)j * d, d)) < delta) {
                same &= p < g.rowptr[i + 1] && g.col[p] == j;
                p++;
                nnz++;
            }
        same &= p == g.rowptr[i + 1];
    }
    MS_EXPECT(same && nnz == g.nnz);
    /* greedy: brute-force coverage and gains */
    int k = 8, out[8];
    long covered;
    ms_rng r;
    ms_rng_init(&r, 5, MS_STREAM_STRATEGY, 0);
    ms_probcover_greedy(out, &covered, &g, k, &r, &ws);
    MS_EXPECT(all_distinct_in_range(out, k, n));
    unsigned char cov[150] = {0};
    int greedy_ok = 1;
    for (int t = 0; t < k; t++) {
        int best = -1, bestgain = -1, gain_of_pick = 0;
        for (int c = 0; c < n; c++) {
            int gain = 0;
            for (int i = 0; i < n; i++)
                gain += !cov[i] && sqrt(dist2(x + (size_t)i * d, x + (size_t)c * d, d)) < delta;
            if (gain > bestgain) best = c, bestgain = gain;
            if (c == out[t]) gain_of_pick = gain;
        }
        if (t == 0) MS_EXPECT(out[0] == best); /* the max-degree item, lowest index */
        greedy_ok &= gain_of_pick == bestgain;
        for (int i = 0; i < n; i++)
            if (sqrt(dist2(x + (size_t)i * d, x + (size_t)out[t] * d, d)) < delta) cov[i] = 1;
    }
    MS_EXPECT(greedy_ok);
    long brute = 0;
    for (int i = 0; i < n; i++) brute += cov[i];
    MS_EXPECT(brute == covered);
    /* the strategy with this delta is exactly that greedy */
    ms_pool pool = {n, d, x, x, NULL};
    int s_out[8];
    MS_EXPECT(run("probcover:delta=0.55", &pool, k, 5, s_out) == MS_OK);
    MS_EXPECT(memcmp(s_out, out, sizeof out) == 0);

    /* purity against brute force, with arbitrary labels */
    int lab[150];
    for (int i = 0; i < n; i++) lab[i] = (int)(x[(size_t)i * d] > 0) + 2 * (int)(x[(size_t)i * d + 1] > 0.3f);
    double grid[6] = {0.1, 0.2, 0.4, 0.6, 0.9, 1.3}, pur[6], ref[6];
    ms_probcover_purity(pur, grid, 6, x, lab, n, d, &ws);
    for (int j = 0; j < 6; j++) {
        long pure = 0;
        for (int i = 0; i < n; i++) {
            int ok = 1;
            for (int y = 0; y < n; y++)
                if (lab[y] != lab[i] && sqrt(dist2(x + (size_t)i * d, x + (size_t)y * d, d)) < grid[j]) ok = 0;
            pure += ok;
        }
        ref[j] = (double)pure / n;
    }
    ms_expect_close_d("purity vs brute force", pur, ref, 6, 1e-12, 0);

    /* auto: the largest grid delta whose purity reaches alpha */
    int sizes[4] = {40, 30, 30, 20}, cl[120], nn;
    float *xc = cluster_rows(4, sizes, 8, 0.3, 13, cl, &nn);
    double pg[MS_PROBCOVER_NGRID];
    ms_rng_init(&r, 3, MS_STREAM_STRATEGY, 0);
    double da = ms_probcover_auto_delta(pg, xc, nn, 8, 4, 0.95, 1L << 20, &r, &ws);
    int pick = 0, mono = 1;
    for (int j = 0; j < MS_PROBCOVER_NGRID; j++) {
        if (pg[j] >= 0.95) pick = j;
        if (j) mono &= pg[j] <= pg[j - 1];
    }
    MS_EXPECT(mono && pg[0] >= 0.95);
    MS_EXPECT(fabs(da - 0.05 * (pick + 1)) < 1e-12);
    MS_EXPECT(da > 0.2); /* well-separated clusters allow wide balls */
    /* the edge cap: a fixed delta over it is a data error; auto steps down under it */
    ms_csr g2;
    MS_EXPECT(ms_probcover_graph(&g2, xc, nn, 8, 1.9, 1000, &ws) == MS_ERR_DATA);
    ms_rng_init(&r, 3, MS_STREAM_STRATEGY, 0);
    double dcap = ms_probcover_auto_delta(NULL, xc, nn, 8, 4, 0.95, 1500, &r, &ws);
    MS_EXPECT(ms_probcover_graph(&g2, xc, nn, 8, dcap, 1500, &ws) == MS_OK && g2.nnz <= 1500);
    MS_EXPECT(dcap < da);
    /* once everything is covered the remaining picks are random, still distinct */
    ms_pool pc = {nn, 8, xc, xc, NULL};
    int o2[10];
    MS_EXPECT(run("probcover:delta=2.5,max_edges=100000", &pc, 10, 1, o2) == MS_OK);
    MS_EXPECT(all_distinct_in_range(o2, 10, nn));
    MS_EXPECT(o2[0] == 0); /* everything in every ball: degree ties go to index 0 */
    free(xc);
    ms_arena_free(&ws);
    free(x);
}

/* ---- MaxHerding ---------------------------------------------------------------------- */

static void test_herding(void) {
    int n = 140, d = 6, k = 12;
    float *x = random_rows(n, d, 21);
    const double sigmas[2] = {1.0, 0.4};
    for (int si = 0; si < 2; si++) {
        double sigma = sigmas[si];
        int plain[12], dense[12], blocked[12];
        double op[12], od[12], ob[12];
        long ev_d, ev_b;
        ms_arena ws;
        ms_arena_init(&ws);
        ms_herding_plain(plain, op, x, n, d, k, sigma);
        MS_EXPECT(ms_herding_lazy(dense, od, &ev_d, x, n, d, k, sigma, n, &ws) == MS_OK);
        MS_EXPECT(ms_herding_lazy(blocked, ob, &ev_b, x, n, d, k, sigma, 0, &ws) == MS_OK);
        MS_EXPECT(memcmp(plain, dense, sizeof plain) == 0);
        MS_EXPECT(memcmp(plain, blocked, sizeof plain) == 0);
        ms_expect_close_d("herding objective dense vs plain", od, op, k, 1e-4, 1e-5);
        ms_expect_close_d("herding objective blocked vs plain", ob, op, k, 1e-4, 1e-5);
        MS_EXPECT(ev_d < (long)n * k); /* the lazy greedy skips evaluations */
        int mono = 1;
        for (int t = 1; t < k; t++) mono &= od[t] > od[t - 1];
        MS_EXPECT(mono);
        /* the first pick maximises the brute-force objective sum_i k(x_i, x) */
        int best = -1;
        double bo = 0;
        for (int j = 0; j < n; j++) {
            double o = 0;
            for (int i = 0; i < n; i++)
                o += exp(-dist2(x + (size_t)i * d, x + (size_t)j * d, d) / (2 * sigma * sigma));
            if (best < 0 || o > bo) best = j, bo = o;
        }
        MS_EXPECT(dense[0] == best);
        ms_expect_close_d("herding first objective", od, &bo, 1, 1e-4, 1e-5);
        ms_arena_free(&ws);
    }
    /* the strategy is the lazy greedy with sigma = 1 */
    ms_pool pool = {n, d, x, x, NULL};
    int s_out[12], ref[12];
    ms_herding_plain(ref, NULL, x, n, d, k, 1.0);
    MS_EXPECT(run("herding", &pool, k, 9, s_out) == MS_OK);
    MS_EXPECT(memcmp(s_out, ref, sizeof ref) == 0);
    MS_EXPECT(run("herding:sigma=0.4,dense_max=0", &pool, k, 9, s_out) == MS_OK);
    ms_herding_plain(ref, NULL, x, n, d, k, 0.4);
    MS_EXPECT(memcmp(s_out, ref, sizeof ref) == 0);
    free(x);
}

int main(void) {
    test_sqdist();
    test_options();
    test_contract();
    test_one_per_cluster();
    test_kmedoids_plain();
    test_kmeans_details();
    test_kcenter();
    test_typiclust();
    test_probcover();
    test_herding();
    return ms_test_summary();
}
