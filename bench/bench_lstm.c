/* bench_lstm.c: speed of the selector's batched forward + backward against the machine's
 * sgemm rate.
 *
 * Usage: bench_lstm [B T D H [threads [f32|bf16]]]   (default 64 1000 512 256, all cores, f32)
 *
 * FLOP model (multiply-add = 2 FLOP; elementwise gate math, the linear layer and the bias
 * sums are ignored):
 *   forward  = 2*B*T*(D*8H + H*8H)       input projection + recurrent steps, both directions
 *   backward = 2*B*T*D*8H                dW_ih
 *            + 2*B*T*H*8H                dW_hh
 *            + 2*B*T*H*8H                dh_{t-1} = dgates W_hh recurrences
 *            (no gradient with respect to the input x)
 * Each figure is the median of 3 timed iterations after one warm-up iteration. The sgemm
 * probe is a square 2048^3 ms_gemm (oneDNN, fp32), median of 3 after a warm-up.
 */
#define _GNU_SOURCE
#include "medselect/model.h"

#include "medselect/gemm.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double median3(double a, double b, double c) {
    if (a > b) { double t = a; a = b; b = t; }
    if (b > c) { double t = b; b = c; c = t; }
    if (a > b) { double t = a; a = b; b = t; }
    return b;
}

/* CPU seconds used by all threads of the process: on a shared machine GFLOP per CPU-second
 * is a steadier efficiency figure than wall time (threads spinning at barriers count, so it
 * errs on the pessimistic side). */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double sgemm_rate(int n, double *cpu_rate) {
    float *a = ms_xmalloc(sizeof(float) * (size_t)n * n), *b = ms_xmalloc(sizeof(float) * (size_t)n * n);
    float *c = ms_xmalloc(sizeof(float) * (size_t)n * n);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    double t[4], u[4];
    for (int r = 0; r < 4; r++) {
        double t0 = ms_now(), u0 = cpu_now();
        ms_gemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n, MS_PREC_F32);
        t[r] = ms_now() - t0;
        u[r] = cpu_now() - u0;
    }
    free(a);
    free(b);
    free(c);
    double flop = 2.0 * n * (double)n * n;
    *cpu_rate = flop / median3(u[1], u[2], u[3]) * 1e-9;
    return flop / median3(t[1], t[2], t[3]) * 1e-9;
}

int main(int argc, char **argv) {
    int B = 64, T = 1000, D = 512, H = 256, threads = 0;
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        puts("usage: bench_lstm [B T D H [threads [f32|bf16]]]");
        return 0;
    }
    if (argc >= 2 && argc < 5) {
        fprintf(stderr, "usage: bench_lstm [B T D H [threads [f32|bf16]]]\n");
        return 2;
    }
    if (argc >= 5) {
        B = atoi(argv[1]);
        T = atoi(argv[2]);
        D = atoi(argv[3]);
        H = atoi(argv[4]);
    }
    if (argc >= 6) threads = atoi(argv[5]);
    ms_precision prec = MS_PREC_F32;
    if (argc >= 7 && ms_precision_parse(argv[6], &prec)) {
        fprintf(stderr, "bench_lstm: %s\n", ms_last_error());
        return 2;
    }
    if (B < 1 || T < 1 || D < 1 || H < 1) {
        fprintf(stderr, "usage: bench_lstm [B T D H [threads [f32|bf16]]]\n");
        return 2;
    }
    ms_set_threads(threads);
    ms_set_precision(prec);
    printf("bench_lstm: B=%d T=%d D=%d H=%d, %d threads, %s\n", B, T, D, H, ms_get_threads(),
           ms_precision_name(prec));
    double fw_flop = 2.0 * B * T * ((double)D * 8 * H + (double)H * 8 * H);
    double bw_flop = 2.0 * B * T * ((double)D * 8 * H + 2.0 * H * 8 * H);
    printf("FLOP model: forward 2*B*T*(D*8H + H*8H) = %.1f GFLOP; backward 2*B*T*(D*8H + 2*H*8H)"
           " (dW_ih, dW_hh, dh recurrences; no dx) = %.1f GFLOP; elementwise ignored\n",
           fw_flop * 1e-9, bw_flop * 1e-9);

    ms_lstm_params p, g;
    ms_lstm_params_init(&p, D, H);
    ms_lstm_params_init(&g, D, H);
    ms_lstm_params_randomize(&p, 1);
    ms_lstm_cache cache;
    ms_lstm_cache_init(&cache, D, H, B, T);
    size_t BT = (size_t)B * T;
    float *x = ms_xmalloc(sizeof(float) * BT * D), *logits = ms_xmalloc(sizeof(float) * BT);
    float *dlog = ms_xmalloc(sizeof(float) * BT);
    ms_rng r;
    ms_rng_init(&r, 2, 0, 0);
    for (size_t i = 0; i < BT * D; i++) x[i] = (float)ms_rng_normal(&r);
    for (size_t i = 0; i < BT; i++) dlog[i] = (float)ms_rng_normal(&r) / (float)BT;
    printf("memory: cache %.0f MB, x %.0f MB, parameters %.1f MB\n", cache.bytes / 1e6,
           sizeof(float) * BT * D / 1e6, sizeof(float) * p.count / 1e6);

    double tf[4], tb[4], uc[4];
    for (int it = 0; it < 4; it++) { /* iteration 0 is the warm-up */
        double u0 = cpu_now();
        double t0 = ms_now();
        ms_lstm_forward(logits, &cache, x, &p, B, T);
        double t1 = ms_now();
        ms_lstm_params_zero(&g);
        ms_lstm_backward(&g, dlog, &cache, x, &p);
        double t2 = ms_now();
        tf[it] = t1 - t0;
        tb[it] = t2 - t1;
        uc[it] = cpu_now() - u0;
    }
    double mf = median3(tf[1], tf[2], tf[3]), mb = median3(tb[1], tb[2], tb[3]);
    double tt[3] = {tf[1] + tb[1], tf[2] + tb[2], tf[3] + tb[3]};
    double mt = median3(tt[0], tt[1], tt[2]);
    double rate = (fw_flop + bw_flop) / mt * 1e-9;
    printf("forward           %8.3f s  %7.1f GFLOP/s\n", mf, fw_flop / mf * 1e-9);
    printf("backward          %8.3f s  %7.1f GFLOP/s\n", mb, bw_flop / mb * 1e-9);
    printf("forward+backward  %8.3f s  %7.1f GFLOP/s  (%.1f tasks/s)\n", mt, rate, B / mt);
    double sgc, sg = sgemm_rate(2048, &sgc);
    printf("sgemm 2048^3      %7.1f GFLOP/s\n", sg);
    printf("ratio forward+backward / sgemm = %.2f (target >= 0.60)\n", rate / sg);
    double cpu_rate = (fw_flop + bw_flop) / median3(uc[1], uc[2], uc[3]) * 1e-9;
    printf("per CPU-second: forward+backward %.1f GFLOP/s, sgemm %.1f GFLOP/s, ratio %.2f\n",
           cpu_rate, sgc, cpu_rate / sgc);
    free(x);
    free(logits);
    free(dlog);
    ms_lstm_cache_free(&cache);
    ms_lstm_params_free(&p);
    ms_lstm_params_free(&g);
    return 0;
}
