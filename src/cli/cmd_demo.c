/* cmd_demo.c: `medselect demo`: the whole method on the built-in synthetic meta-dataset
 * (synth.h): meta-train a small selector on the seen conditions of the training split, then
 * evaluate it against the baselines on seen and unseen conditions of the test split. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "medselect/synth.h"

static void help(void) {
    printf("Usage: medselect demo [OPTIONS]\n\n"
           "Generates the built-in synthetic meta-dataset (8 conditions as directions in a\n"
           "64-d embedding space, 6 acquisition sub-clusters, 5%% corrupted outliers; see\n"
           "include/medselect/synth.h), meta-trains a small MedSelect selector on the six seen\n"
           "conditions of its training split (validation on the validation split), and compares\n"
           "it with random, k-medoids and k-means selection on the test split, for the seen\n"
           "conditions and the two unseen ones. Prints the same tables as 'medselect evaluate'.\n\n"
           "Options:\n"
           "      --tasks N            meta-test tasks per group (default 500)\n"
           "  -k, --k LIST             labeling budgets (default 10,20)\n"
           "      --pool N             pool size (default 100); query size is pool/2 (half positive)\n"
           "      --pos-frac F         fraction of positives in the pool (default 0.2: a finding\n"
           "                           that is rarer than normal images; 0.5 is the paper's setting)\n"
           "      --strategies LIST    baselines (default random,kmedoids,kmeans)\n"
           "      --no-train           skip meta-training (baselines only)\n"
           "      --write-data DIR     also write the synthetic splits in the reference layout\n"
           "                           (DIR/{train,val,test}_{pos,norm}.{csv,hdf5})\n"
           "      --seed S             seed of the data, training and tasks (default 0)\n"
           "      --threads T          worker threads (default: all cores)\n"
           "      --json FILE          also write the results as JSON\n"
           "  -h, --help               this help\n");
}

enum { OPT_NO_TRAIN = MS_OPT_FIRST_FREE, OPT_WRITE_DATA };

int ms_cmd_demo(int argc, char **argv) {
    const char *cmd = "demo";
    ms_cli_common c;
    ms_cli_common_defaults(&c);
    c.shape.pool = 100;
    c.shape.pos_frac = 0.2;
    c.shape.query = 50;
    c.n_k = 2, c.k[0] = 10, c.k[1] = 20;
    c.tasks = 500;
    const char *strategies = "random,kmedoids,kmeans", *json = NULL, *write_dir = NULL;
    int no_train = 0;
    static const struct option opts[] = {
        {"tasks", required_argument, 0, MS_OPT_TASKS},
        {"k", required_argument, 0, 'k'},
        {"pool", required_argument, 0, MS_OPT_POOL},
        {"pos-frac", required_argument, 0, MS_OPT_POS_FRAC},
        {"seed", required_argument, 0, MS_OPT_SEED},
        {"threads", required_argument, 0, MS_OPT_THREADS},
        {"strategies", required_argument, 0, MS_OPT_STRATEGIES},
        {"json", required_argument, 0, MS_OPT_JSON},
        {"no-train", no_argument, 0, OPT_NO_TRAIN},
        {"write-data", required_argument, 0, OPT_WRITE_DATA},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":k:h", opts, NULL)) != -1) {
        int rc = ms_cli_common_option(cmd, opt, optarg, &c);
        if (rc > 0) return rc;
        if (rc == 0) continue;
        switch (opt) {
        case MS_OPT_STRATEGIES: strategies = optarg; break;
        case MS_OPT_JSON: json = optarg; break;
        case OPT_NO_TRAIN: no_train = 1; break;
        case OPT_WRITE_DATA: write_dir = optarg; break;
        case 'h': help(); return MS_EXIT_OK;
        default: return ms_cli_bad_option(cmd, opt, argv);
        }
    }
    if (optind < argc) return ms_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    c.shape.query = c.shape.pool / 2 > 2 ? c.shape.pool / 2 : 2;
    ms_set_threads(c.threads);

    double t0 = ms_now();
    ms_synth_config sc;
    ms_synth_defaults(&sc);
    sc.seed = c.seed + 7;
    ms_split train, val, test;
    ms_synth_generate(&sc, &train, &val, &test);
    int rc = MS_EXIT_OK;
    if (write_dir) {
        ms_status st = ms_synth_write(&train, write_dir, "train");
        if (!st) st = ms_synth_write(&val, write_dir, "val");
        if (!st) st = ms_synth_write(&test, write_dir, "test");
        if (st) rc = ms_cli_fail(cmd, st);
    }
    fprintf(stderr, "medselect demo: synthetic data: %d-d, %d conditions (%d seen), train %d+%d, val %d+%d, test %d+%d images\n",
            sc.d, sc.n_cond, sc.n_seen, train.n_pos, train.n_norm, val.n_pos, val.n_norm, test.n_pos, test.n_norm);

    ms_strategy **strats;
    int n_strat;
    int src = ms_cli_strategies(cmd, strategies, 1, &strats, &n_strat);
    if (!rc) rc = src;
    ms_status st;

    /* seen: the first n_seen conditions; unseen: the rest */
    ms_eval_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.shape = c.shape;
    cfg.n_k = c.n_k;
    memcpy(cfg.k, c.k, sizeof cfg.k);
    cfg.tasks = (int)c.tasks;
    cfg.seed = c.seed;
    cfg.pred = MS_PRED_COSINE;
    cfg.n_groups = 2;
    snprintf(cfg.group[0].name, sizeof cfg.group[0].name, "seen");
    snprintf(cfg.group[1].name, sizeof cfg.group[1].name, "unseen");
    int seen[26], unseen[26];
    for (int k = 0; k < sc.n_seen; k++) seen[k] = k;
    for (int k = sc.n_seen; k < sc.n_cond; k++) unseen[k - sc.n_seen] = k;
    cfg.group[0].cond = seen, cfg.group[0].n_cond = sc.n_seen;
    cfg.group[1].cond = unseen, cfg.group[1].n_cond = sc.n_cond - sc.n_seen;
    for (int i = 0; i < cfg.n_k && !rc; i++)
        if (cfg.k[i] > cfg.shape.pool) rc = ms_cli_usage_error(cmd, "K = %d is larger than the pool (%d)", cfg.k[i], cfg.shape.pool);

    if (!rc && !no_train) rc = ms_cli_demo_train(cmd, &train, &val, &cfg, c.seed, &strats[n_strat++]);
    if (!rc) {
        ms_eval_result res;
        ms_progress prog;
        ms_progress_begin(&prog, "evaluate", (long)cfg.n_groups * cfg.tasks);
        st = ms_evaluate(&res, &test, &cfg, strats, n_strat, &prog);
        ms_progress_end(&prog);
        if (st) rc = ms_cli_fail(cmd, st);
        else {
            ms_eval_row *rows;
            int n_rows;
            ms_eval_summarize(&res, &cfg, 2000, &rows, &n_rows);
            if (json) {
                st = ms_eval_write_json(json, &res, &cfg, &test, strats, rows, n_rows);
                if (st) rc = ms_cli_fail(cmd, st);
            }
            if (!rc) {
                printf("## medselect demo: synthetic meta-test (test split)\n\n");
                ms_eval_print_markdown(stdout, &res, &cfg, &test, strats, rows, n_rows);
                fprintf(stderr, "medselect demo: done in %.1f s\n", ms_now() - t0);
            }
            free(rows);
            ms_eval_result_free(&res);
        }
    }
    for (int i = 0; i < n_strat; i++) ms_strategy_free(strats[i]);
    free(strats);
    ms_split_free(&train);
    ms_split_free(&val);
    ms_split_free(&test);
    return rc;
}
