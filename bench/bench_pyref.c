/* bench_pyref.c: the C side of bench/bench_python.py. Times exactly the library calls that
 * medselect.select and Selector.scores make (no file I/O inside the timed region):
 *   strategy:  ms_rows_unit on the pool, then the strategy's select (as `medselect select`)
 *   --scores:  ms_selector_run on the pool: one pick and every item's logit (as
 *              `select --model --scores`)
 * on the (n, d) float32 matrix of an NPY file, REPS times, each time with the buffers of one
 * call allocated and freed inside the timed region as the extension does (the unit rows,
 * n x d floats, or the logits); prints one line of JSON with every repetition's seconds.
 * Usage: bench_pyref X.npy K STRATEGY REPS
 *        bench_pyref X.npy --scores CKPT REPS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/checkpoint.h"
#include "medselect/io.h"
#include "medselect/train.h"

static void die(const char *what) {
    fprintf(stderr, "bench_pyref: %s\n", what);
    exit(2);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: bench_pyref X.npy K STRATEGY REPS | bench_pyref X.npy --scores CKPT REPS\n");
        return 1;
    }
    float *x;
    int n, d, reps = atoi(argv[4]);
    if (ms_npy_read(argv[1], &x, &n, &d)) die(ms_last_error());
    int scores = !strcmp(argv[2], "--scores");
    ms_strategy *st = NULL;
    int k = scores ? 0 : atoi(argv[2]);
    if (scores) {
        ms_selector sel;
        memset(&sel, 0, sizeof sel);
        if (ms_net_load(argv[3], &sel.net, NULL)) die(ms_last_error());
        sel.decode = MS_DECODE_GREEDY;
        st = ms_selector_strategy(&sel);
    } else if (ms_strategy_create(&st, argv[3])) {
        die(ms_last_error());
    }
    if (k < 0 || k > n || reps < 1) die("bad K or REPS");
    printf("{\"n\": %d, \"d\": %d, \"what\": \"%s\", \"seconds\": [", n, d, scores ? "scores" : argv[3]);
    for (int r = 0; r < reps; r++) {
        ms_arena ws;
        ms_arena_init(&ws);
        double t0 = ms_now();
        /* the buffers of one call, allocated per call as the extension (and the CLI) does */
        float *unit = scores ? NULL : ms_xmalloc(sizeof(float) * (size_t)n * d);
        float *logits = scores ? ms_xmalloc(sizeof(float) * (size_t)n) : NULL;
        int *pick = ms_xmalloc(sizeof(int) * (size_t)(k > 0 ? k : 1));
        ms_status s;
        if (scores) {
            ms_pool pool = {.n = n, .d = d, .x = NULL, .raw = x, .clin = NULL};
            s = ms_selector_run(st, &pool, 1, 0, pick, logits, &ws);
        } else {
            ms_rows_unit(unit, x, (size_t)n, (size_t)d);
            ms_pool pool = {.n = n, .d = d, .x = unit, .raw = x, .clin = NULL};
            s = st->select(st, &pool, k, 0, pick, &ws);
        }
        free(unit), free(logits), free(pick);
        double t = ms_now() - t0;
        ms_arena_free(&ws);
        if (s) die(ms_last_error());
        printf("%s%.6f", r ? ", " : "", t);
        fflush(stdout);
    }
    printf("]}\n");
    ms_strategy_free(st);
    free(x);
    return 0;
}
