/* bench_strategies.c: wall time of every built-in strategy on a synthetic clustered pool of
 * unit rows (default 10,000 x 512, 50 Gaussian clusters of random sizes), for K = 10, 20,
 * 40; prints the median of 3 runs in seconds.
 * Usage: bench_strategies [n] [d] [threads] [spec ...] (default: every built-in strategy). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/strategy.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || atoi(argv[1]) <= 0)) {
        fprintf(stderr, "usage: bench_strategies [n] [d] [threads] [spec ...]\n");
        return argc > 1 && argv[1][0] == '-' ? 0 : 1;
    }
    int n = argc > 1 ? atoi(argv[1]) : 10000;
    int d = argc > 2 ? atoi(argv[2]) : 512;
    if (d <= 0) {
        fprintf(stderr, "bench_strategies: d must be a positive integer\n");
        return 1;
    }
    if (argc > 3) ms_set_threads(atoi(argv[3]));
    const int nclust = 50;
    ms_rng r;
    ms_rng_init(&r, 1234, MS_STREAM_SYNTH, 0);
    float *centres = ms_xmalloc(sizeof(float) * (size_t)nclust * d);
    for (size_t i = 0; i < (size_t)nclust * d; i++) centres[i] = (float)ms_rng_normal(&r);
    float *x = ms_xmalloc(sizeof(float) * (size_t)n * d);
    for (int i = 0; i < n; i++) {
        /* cluster sizes vary: cluster c drawn with weight ~ 1 / (c + 5) */
        double u = ms_rng_uniform(&r), tot = 0, acc = 0;
        for (int c = 0; c < nclust; c++) tot += 1.0 / (c + 5);
        int c = 0;
        for (; c < nclust - 1; c++) {
            acc += 1.0 / (c + 5) / tot;
            if (u < acc) break;
        }
        double norm = 0;
        for (int t = 0; t < d; t++) {
            float v = centres[(size_t)c * d + t] + 0.9f * (float)ms_rng_normal(&r);
            x[(size_t)i * d + t] = v;
            norm += (double)v * v;
        }
        for (int t = 0; t < d; t++) x[(size_t)i * d + t] /= (float)sqrt(norm);
    }
    ms_pool pool = {n, d, x, x, NULL};
    const char *builtin[] = {"random",    "kmedoids",  "kmeans", "kcenter",
                             "typiclust", "probcover", "herding"};
    const char *const *names = builtin;
    int nnames = (int)(sizeof builtin / sizeof builtin[0]);
    if (argc > 4) {
        names = (const char *const *)(argv + 4);
        nnames = argc - 4;
    }
    const int ks[] = {10, 20, 40};
    int *out = ms_xmalloc(sizeof(int) * 40);
    ms_arena ws;
    ms_arena_init(&ws);
    printf("pool %d x %d, %d clusters, threads %d; seconds, median of 3\n", n, d, nclust,
           ms_get_threads());
    printf("%-22s %9s %9s %9s\n", "strategy", "K=10", "K=20", "K=40");
    for (int si = 0; si < nnames; si++) {
        ms_strategy *s;
        if (ms_strategy_create(&s, names[si])) {
            fprintf(stderr, "%s\n", ms_last_error());
            return 1;
        }
        printf("%-22s", names[si]);
        for (int ki = 0; ki < 3; ki++) {
            double t[3];
            for (int rep = 0; rep < 3; rep++) {
                ms_arena_reset(&ws);
                double t0 = ms_now();
                if (s->select(s, &pool, ks[ki], (uint64_t)rep + 1, out, &ws)) {
                    fprintf(stderr, "\n%s\n", ms_last_error());
                    return 1;
                }
                t[rep] = ms_now() - t0;
            }
            qsort(t, 3, sizeof t[0], cmp_double);
            printf(" %9.3f", t[1]);
            fflush(stdout);
        }
        printf("\n");
        ms_strategy_free(s);
    }
    printf("arena peak %.1f MB\n", ws.peak / 1048576.0);
    ms_arena_free(&ws);
    free(out);
    free(x);
    free(centres);
    return 0;
}
