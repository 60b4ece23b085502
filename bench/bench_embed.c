/* bench_embed.c: ResNet-18 forward throughput (images/s) of medselect's encoder.
 *
 * Usage: bench_embed [MODEL_DIR] [--size S] [--batch B] [--threads T] [--reps R] [--warmup W]
 *                    [--rgb] [--precision f32|bf16]
 * Runs the network on random normalised input of B images of S x S (1 channel for a gray
 * model, as `medselect embed` does, else 3; --rgb forces 3 channels), after W warm-up
 * passes (default 2), R times (default 10), and prints one line per repetition plus the
 * median and the images per CPU-second of the timed passes (user + system time of the
 * process, all threads; on a shared machine less disturbed by other programs than wall
 * time): "medselect size=S batch=B threads=T channels=C median_img_s=X img_per_cpu_s=Y".
 * MODEL_DIR defaults to models/cxr-simclr-resnet18-64 (run from the repository root).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "medselect/embed.h"
#include "medselect/gemm.h"

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *model = "models/cxr-simclr-resnet18-64";
    int size = 64, batch = 32, threads = 2, reps = 10, warmup = 2, rgb = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rgb")) rgb = 1;
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
            ms_precision p;
            if (ms_precision_parse(argv[++i], &p)) {
                fprintf(stderr, "bench_embed: %s\n", ms_last_error());
                return 1;
            }
            ms_set_precision(p);
        }
        else if (argv[i][0] != '-') model = argv[i];
        else {
            fprintf(stderr, "usage: bench_embed [MODEL_DIR] [--size S] [--batch B] [--threads T] [--reps R] [--warmup W] [--rgb] [--precision f32|bf16]\n");
            return 1;
        }
    }
    if (size < 1 || batch < 1 || threads < 1 || reps < 1 || warmup < 0) {
        fprintf(stderr, "bench_embed: size, batch, threads and reps must be >= 1, warmup >= 0\n");
        return 1;
    }
    ms_set_threads(threads);
    ms_resnet *net;
    if (ms_resnet_load(&net, model)) {
        fprintf(stderr, "bench_embed: %s\n", ms_last_error());
        return 2;
    }
    const int cin = rgb ? 3 : ms_resnet_input_channels(net), dim = ms_resnet_dim(net);
    size_t nx = (size_t)batch * cin * size * size;
    float *x = ms_xmalloc(sizeof(float) * nx), *out = ms_xmalloc(sizeof(float) * (size_t)batch * dim);
    ms_rng r;
    ms_rng_init(&r, 1, 0, 0);
    for (size_t i = 0; i < nx; i++) x[i] = (float)ms_rng_normal(&r);
    ms_resnet_ws *ws = ms_resnet_ws_new(net, batch, size, size, threads);
    for (int k = 0; k < warmup; k++) ms_resnet_forward(net, ws, x, cin, batch, out);
    double *ips = ms_xmalloc(sizeof(double) * (size_t)reps);
    const double c0 = cpu_now();
    for (int k = 0; k < reps; k++) {
        double t0 = ms_now();
        ms_resnet_forward(net, ws, x, cin, batch, out);
        ips[k] = batch / (ms_now() - t0);
        printf("medselect size=%d batch=%d threads=%d rep=%d img_s=%.1f\n", size, batch, threads, k, ips[k]);
    }
    const double cpu = cpu_now() - c0;
    qsort(ips, (size_t)reps, sizeof(double), cmp_d);
    const double med = reps % 2 ? ips[reps / 2] : 0.5 * (ips[reps / 2 - 1] + ips[reps / 2]);
    printf("medselect size=%d batch=%d threads=%d channels=%d median_img_s=%.1f img_per_cpu_s=%.1f\n", size, batch,
           threads, cin, med, (double)batch * reps / cpu);
    ms_resnet_ws_free(ws);
    ms_resnet_free(net);
    free(ips);
    free(x);
    free(out);
    return 0;
}
