/* bench/bench_sgemm.c: the machine's practical float32 matrix-multiply rate, the yardstick
 * for medselect's training speed. It times cblas_sgemm (OpenBLAS, the same library and the
 * same thread count the trainer uses) on square row-major matrices C = A B with
 * M = N = K = n for each requested n (default 2048 and 4096): one warm-up call, then
 * `reps` timed calls (default 5), and reports the median time as GFLOP/s = 2 n^3 / t.
 * The headline figure is the best of the per-size medians (large sizes are closest to
 * the peak the BLAS can reach; the trainer's big GEMMs are of that kind: (64000 x 512) x
 * (512 x 2048)). The last line of stdout is one JSON object:
 *     {"name": "sgemm", "gflops": G, "threads": T, "by_size": {"2048": g, ...}}
 * Usage: bench_sgemm [--threads T] [--reps R] [--sizes 2048,4096]
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "medselect/common.h"

#define MAX_SIZES 8

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(void) {
    fprintf(stderr, "usage: bench_sgemm [--threads T] [--reps R] [--sizes n1,n2,...]\n"
                    "  times cblas_sgemm on n x n float32 matrices (default 2048,4096; T 2; R 5)\n");
}

/* Median seconds of `reps` calls C = A B for n x n matrices (after one warm-up call). */
static double time_sgemm(int n, int reps) {
    size_t nn = (size_t)n * (size_t)n;
    float *a = ms_xmalloc(nn * sizeof(float));
    float *b = ms_xmalloc(nn * sizeof(float));
    float *c = ms_xmalloc(nn * sizeof(float));
    ms_rng r;
    ms_rng_init(&r, 1234, 0, (uint64_t)n);
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)(ms_rng_uniform(&r) - 0.5);
        b[i] = (float)(ms_rng_uniform(&r) - 0.5);
    }
    memset(c, 0, nn * sizeof(float));
    double *t = ms_xmalloc((size_t)reps * sizeof(double));
    for (int rep = -1; rep < reps; rep++) {  /* rep -1 is the warm-up */
        double t0 = now_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f,
                    c, n);
        double dt = now_seconds() - t0;
        if (rep >= 0) t[rep] = dt;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    /* keep the product observable so the calls cannot be considered dead */
    if (c[nn / 2] != c[nn / 2]) fprintf(stderr, "bench_sgemm: NaN in the product\n");
    free(t);
    free(a);
    free(b);
    free(c);
    return med;
}

int main(int argc, char **argv) {
    int threads = 2, reps = 5;
    int sizes[MAX_SIZES] = {2048, 4096};
    int nsizes = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            char *s = argv[++i], *end;
            nsizes = 0;
            while (*s && nsizes < MAX_SIZES) {
                long v = strtol(s, &end, 10);
                if (end == s || v < 16 || v > 16384) {
                    fprintf(stderr, "bench_sgemm: bad --sizes value '%s'\n", s);
                    return 2;
                }
                sizes[nsizes++] = (int)v;
                s = *end == ',' ? end + 1 : end;
            }
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        } else {
            usage();
            return 2;
        }
    }
    if (threads < 1 || reps < 1 || nsizes < 1) {
        usage();
        return 2;
    }
    ms_set_threads(threads);
    openblas_set_num_threads(threads);

    double gf[MAX_SIZES], best = 0.0;
    for (int s = 0; s < nsizes; s++) {
        double t = time_sgemm(sizes[s], reps);
        gf[s] = 2.0 * (double)sizes[s] * (double)sizes[s] * (double)sizes[s] / t * 1e-9;
        fprintf(stderr, "sgemm %5d x %5d x %5d: median %.4f s of %d, %.1f GFLOP/s (%d threads)\n",
                sizes[s], sizes[s], sizes[s], t, reps, gf[s], threads);
        if (gf[s] > best) best = gf[s];
    }
    printf("{\"name\": \"sgemm\", \"gflops\": %.2f, \"threads\": %d, \"by_size\": {", best,
           threads);
    for (int s = 0; s < nsizes; s++)
        printf("%s\"%d\": %.2f", s ? ", " : "", sizes[s], gf[s]);
    printf("}}\n");
    return 0;
}
