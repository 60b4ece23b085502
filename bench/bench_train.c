/* bench_train.c: speed of one REINFORCE training iteration at the reference configuration
 * (64 tasks of pool 1000 and query 100, 512-d embeddings, hidden 256, K 20) on synthetic
 * data. Prints per-iteration seconds (median over the timed iterations, the first one
 * excluded as warm-up), tasks/s, achieved GFLOP/s under the FLOP model below, and peak RSS,
 * then one JSON line for bench/run.
 *
 * FLOP model per task (T = pool, D = 512, H = 256; elementwise work, the linear layer,
 * sampling, predictor and AUROC are not counted):
 *   forward  = 2 T (D 8H + H 8H)          input projections of both directions + recurrence
 *   backward = 2 T (D 8H) + 2 T (H 8H) + 2 T (H 8H)   dW_ih, dW_hh, dh recurrence (no dx)
 *
 * Usage: bench_train [--iters N] [--threads T] [--pool P] [--hidden H] [--batch B]
 *                    [--precision f32|bf16] */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "medselect/gemm.h"
#include "medselect/synth.h"
#include "medselect/train.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int iters = 4, threads = 2, pool = 1000, hidden = 256, batch = 64, D = 512;
    const char *usage = "usage: bench_train [--iters N] [--threads T] [--pool P] [--hidden H] [--batch B] [--precision f32|bf16]\n";
    for (int i = 1; i < argc; i += 2) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 0;
        }
        if (i + 1 >= argc) { /* an option without its value is a usage error, not a bench run */
            fprintf(stderr, "bench_train: %s needs a value\n%s", argv[i], usage);
            return 1;
        }
        if (!strcmp(argv[i], "--iters")) iters = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--pool")) pool = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--hidden")) hidden = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--precision")) {
            ms_precision p;
            if (ms_precision_parse(argv[i + 1], &p)) {
                fprintf(stderr, "bench_train: %s\n", ms_last_error());
                return 1;
            }
            ms_set_precision(p);
        } else {
            fputs(usage, stderr);
            return 1;
        }
    }
    if (iters < 2) iters = 2;
    ms_set_threads(threads);
    ms_synth_config sc;
    ms_synth_defaults(&sc);
    sc.d = D;
    sc.n_cond = 2;
    sc.n_seen = 2;
    /* a training split as large as the paper's (CheXpert, ~190k images) relative to the
     * batch: 64 pools of 1000 then repeat few images (about 45k distinct rows of 64k), so
     * the LSTM's repeated-row shortcut (model.h, at most half the rows distinct) stays off
     * and every row is projected, as on real data of that size */
    sc.n_pos[0] = batch * pool, sc.n_norm[0] = batch * pool;
    sc.n_pos[1] = sc.n_pos[2] = 3 * pool, sc.n_norm[1] = sc.n_norm[2] = 2 * pool;
    ms_split tr, va, te;
    ms_synth_generate(&sc, &tr, &va, &te);
    int conds[2] = {0, 1};

    char dir[] = "/tmp/medselect-bench-XXXXXX";
    if (!mkdtemp(dir)) return 2;
    ms_train_config cfg;
    ms_train_defaults(&cfg);
    cfg.shape.pool = pool;
    cfg.shape.query = 100;
    cfg.hidden = hidden;
    cfg.batch = batch;
    cfg.tasks = batch * iters;
    cfg.epochs = 1;
    cfg.val_tasks = 0;
    cfg.val_every = 1000000;
    cfg.train_cond = conds, cfg.n_train_cond = 2;
    cfg.val_cond = conds, cfg.n_val_cond = 2;
    cfg.out_dir = dir;
    ms_train_summary sum;
    ms_status st = ms_train(&tr, &va, &cfg, &sum);
    if (st) {
        fprintf(stderr, "bench_train: %s\n", ms_last_error());
        return 2;
    }
    /* per-iteration times from metrics.csv (cumulative seconds in the last column) */
    char path[256];
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    FILE *f = fopen(path, "r");
    double *dt = calloc((size_t)iters, sizeof(double)), prev = 0;
    int n = 0;
    char line[512];
    if (f && fgets(line, sizeof line, f))
        while (fgets(line, sizeof line, f) && n < iters) {
            char *last = strrchr(line, ',');
            double t = last ? atof(last + 1) : 0;
            dt[n++] = t - prev;
            prev = t;
        }
    if (f) fclose(f);
    const char *files[] = {"metrics.csv", "state.safetensors", "last.safetensors", "best.safetensors"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        remove(path);
    }
    rmdir(dir);
    /* median of iterations 2..n (the first pays page faults of fresh buffers) */
    qsort(dt + 1, (size_t)(n - 1), sizeof(double), cmp_d);
    double s_iter = dt[1 + (n - 1) / 2];
    double T = pool, H = hidden;
    double fwd = 2 * T * (D * 8 * H + H * 8 * H), bwd = 2 * T * (D * 8 * H) + 4 * T * (H * 8 * H);
    double gflop = batch * (fwd + bwd) / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_mb = ru.ru_maxrss / 1024.0;
    fprintf(stderr,
            "medselect train step (%s): B=%d T=%d D=%d H=%d K=20 Q=100, %d threads\n"
            "  FLOP model per task: forward 2T(D*8H + H*8H) = %.3f GFLOP, backward 2T(D*8H) + 4T(H*8H) = %.3f GFLOP\n"
            "  first iteration %.2f s (warm-up), median of %d: %.3f s/iteration, %.1f tasks/s, %.1f GFLOP/s, peak RSS %.0f MB\n",
            ms_precision_name(ms_get_precision()), batch, pool, D, hidden, threads, fwd / 1e9, bwd / 1e9, dt[0], n - 1, s_iter, batch / s_iter,
            gflop / s_iter, rss_mb);
    printf("{\"name\": \"medselect-%s\", \"tasks_per_s\": %.3f, \"s_per_iter\": %.4f, \"gflops\": %.2f, \"peak_rss_mb\": %.1f, \"threads\": %d}\n",
           ms_precision_name(ms_get_precision()), batch / s_iter, s_iter, gflop / s_iter, rss_mb, threads);
    free(dt);
    ms_split_free(&tr), ms_split_free(&va), ms_split_free(&te);
    return 0;
}
