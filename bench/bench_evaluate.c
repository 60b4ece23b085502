/* bench_evaluate.c: wall time of `medselect evaluate`'s protocol at the paper's size: 1000
 * tasks of pool 1000 (half positive) and query 100, 512-d synthetic embeddings, K 20, with
 * random, k-medoids and k-means, optionally plus a selector of hidden size 256 (randomly
 * initialised: the cost does not depend on the weights).
 *
 * Usage: bench_evaluate [--tasks N] [--threads T] [--selector] [--reps R] [--precision P] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/evaluate.h"
#include "medselect/gemm.h"
#include "medselect/synth.h"
#include "medselect/train.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int tasks = 1000, threads = 2, selector = 0, reps = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tasks") && i + 1 < argc) tasks = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--selector")) selector = 1;
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
            ms_precision p;
            if (ms_precision_parse(argv[++i], &p)) {
                fprintf(stderr, "bench_evaluate: %s\n", ms_last_error());
                return 1;
            }
            ms_set_precision(p);
        } else {
            fprintf(stderr, "usage: bench_evaluate [--tasks N] [--threads T] [--selector] [--reps R] [--precision f32|bf16]\n");
            return 1;
        }
    }
    ms_set_threads(threads);
    ms_synth_config sc;
    ms_synth_defaults(&sc);
    sc.d = 512;
    sc.n_cond = 2;
    sc.n_seen = 2;
    for (int s = 0; s < 3; s++) sc.n_pos[s] = 3000, sc.n_norm[s] = 2000;
    ms_split tr, va, te;
    ms_synth_generate(&sc, &tr, &va, &te);
    const char *names[] = {"random", "kmedoids", "kmeans"};
    ms_strategy *st[4];
    int n = 0;
    for (int i = 0; i < 3; i++) ms_strategy_create(&st[n++], names[i]);
    if (selector) {
        ms_selector sel;
        memset(&sel, 0, sizeof sel);
        MS_CHECK(ms_net_init(&sel.net, &ms_arch_bilstm, 512, 256) == MS_OK);
        ms_net_randomize(&sel.net, 1);
        st[n++] = ms_selector_strategy(&sel);
    }
    ms_eval_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.shape = (ms_task_shape){.pool = 1000, .pos_frac = 0.5, .query = 100, .query_pos_frac = 0.5};
    cfg.n_k = 1, cfg.k[0] = 20;
    cfg.tasks = tasks;
    cfg.pred = MS_PRED_COSINE;
    cfg.n_groups = 1;
    int conds[2] = {0, 1};
    snprintf(cfg.group[0].name, 32, "all");
    cfg.group[0].cond = conds, cfg.group[0].n_cond = 2;
    double *t = calloc((size_t)reps, sizeof(double));
    for (int r = 0; r < reps; r++) {
        ms_eval_result res;
        if (ms_evaluate(&res, &te, &cfg, st, n, NULL)) {
            fprintf(stderr, "bench_evaluate: %s\n", ms_last_error());
            return 2;
        }
        t[r] = res.seconds;
        ms_eval_result_free(&res);
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_d);
    printf("evaluate: %d tasks, pool 1000, query 100, 512-d, K 20, strategies random,kmedoids,kmeans%s, %d threads: median %.2f s of %d runs (%.0f tasks/s)\n",
           tasks, selector ? ",medselect(H=256)" : "", threads, t[reps / 2], reps, tasks / t[reps / 2]);
    printf("{\"name\": \"evaluate%s-%s\", \"seconds\": %.3f, \"threads\": %d}\n", selector ? "-selector" : "",
           ms_precision_name(ms_get_precision()), t[reps / 2], threads);
    free(t);
    for (int i = 0; i < n; i++) ms_strategy_free(st[i]);
    ms_split_free(&tr), ms_split_free(&va), ms_split_free(&te);
    return 0;
}
