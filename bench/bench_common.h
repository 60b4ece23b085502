/* bench_common.h: the small helpers the oneDNN benchmarks share (bench_dnnl_lstm.c,
 * bench_lstm_floor.c): a oneDNN call checker, the median of a run's samples and the
 * process's CPU clock. Header-only; each benchmark is one program. */
#ifndef MS_BENCH_COMMON_H
#define MS_BENCH_COMMON_H

#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* A oneDNN call that must succeed: on failure, file:line, the call and its status, exit 3. */
#define CK(call)                                                                           \
    do {                                                                                   \
        dnnl_status_t s_ = (call);                                                         \
        if (s_ != dnnl_success) {                                                          \
            fprintf(stderr, "%s:%d: %s failed (status %d)\n", __FILE__, __LINE__, #call,   \
                    (int)s_);                                                              \
            exit(3);                                                                       \
        }                                                                                  \
    } while (0)

static inline int bench_cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of v[0..n) (n >= 1); sorts v in place. */
static inline double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), bench_cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* CPU seconds of all threads of the process: steadier than wall time on a shared machine. */
static inline double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
