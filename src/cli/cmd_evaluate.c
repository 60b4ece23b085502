/* cmd_evaluate.c: `medselect evaluate`: the paper's meta-test comparison of strategies on a
 * labeled split. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static void help(void) {
    printf("Usage: medselect evaluate --pos-csv POS.csv --norm-csv NORM.csv [OPTIONS]\n\n"
           "Samples meta-test tasks from a labeled split and runs every strategy on the same\n"
           "tasks: each picks K pool items, a cosine prototype classifier is built from their\n"
           "labels and scored (AUROC) on the task's query set. Prints Markdown tables per\n"
           "condition group, K and condition: mean AUROC with a 95%% bootstrap CI over tasks,\n"
           "and each strategy's paired difference against the first strategy (random) with its\n"
           "CI and Wilcoxon signed-rank p-value.\n\n%s\n%s\n"
           "Strategies and output:\n"
           "      --strategies LIST    comma-separated (default random,kmedoids,kmeans); 'random'\n"
           "                           is always evaluated and comes first. Available: %s;\n"
           "                           options after ':' e.g. probcover:delta=0.4\n"
           "      --model CKPT         add a trained selector (safetensors) as strategy 'medselect'\n"
           "      --bootstrap N        bootstrap resamples for the CIs (default 2000)\n"
           "      --json FILE          also write the results as JSON ('-': JSON alone on stdout)\n"
           "  -h, --help               this help\n\n"
           "Example:\n"
           "  medselect evaluate --pos-csv test_pos.csv --norm-csv test_norm.csv \\\n"
           "      --seen Effusion,Infiltration --unseen Atelectasis,Cardiomegaly \\\n"
           "      --pool 30 --query 20 -k 5,10 --tasks 1000 --seed 0\n",
           ms_cli_data_help, ms_cli_task_help, ms_strategy_names());
}

int ms_cmd_evaluate(int argc, char **argv) {
    const char *cmd = "evaluate";
    ms_cli_common c;
    ms_cli_common_defaults(&c);
    const char *strategies = "random,kmedoids,kmeans", *json = NULL, *model = NULL;
    long boot = 2000;
    static const struct option opts[] = {
        MS_CLI_DATA_OPTIONS, MS_CLI_TASK_OPTIONS,
        {"strategies", required_argument, 0, MS_OPT_STRATEGIES},
        {"model", required_argument, 0, MS_OPT_MODEL},
        {"bootstrap", required_argument, 0, MS_OPT_BOOTSTRAP},
        {"json", required_argument, 0, MS_OPT_JSON},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "k:h", opts, NULL)) != -1) {
        int rc = ms_cli_common_option(cmd, opt, optarg, &c);
        if (rc > 0) return rc;
        if (rc == 0) continue;
        switch (opt) {
        case MS_OPT_STRATEGIES: strategies = optarg; break;
        case MS_OPT_MODEL: model = optarg; break;
        case MS_OPT_JSON: json = optarg; break;
        case MS_OPT_BOOTSTRAP:
            if (ms_cli_int(cmd, "--bootstrap", optarg, 100, 1000000, &boot)) return MS_EXIT_USAGE;
            break;
        case 'h': help(); return MS_EXIT_OK;
        default: return ms_cli_usage_error(cmd, "unrecognized option");
        }
    }
    if (optind < argc) return ms_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    ms_set_threads(c.threads);

    /* strategies: random first (the paired baseline), then the requested ones in order */
    ms_strategy **strats;
    int n_strat;
    int rc = ms_cli_strategies(cmd, strategies, 1, &strats, &n_strat);
    ms_status st;
    ms_split s;
    memset(&s, 0, sizeof s);
    ms_eval_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (!rc) rc = ms_cli_load_split(cmd, &c, &s);
    if (!rc && model) rc = ms_cli_model_strategy(cmd, model, &s, &strats[n_strat++]);
    if (!rc) rc = ms_cli_eval_config(cmd, &c, &s, &cfg);
    if (!rc) {
        ms_eval_result res;
        ms_progress prog;
        ms_progress_begin(&prog, "evaluate", (long)cfg.n_groups * cfg.tasks);
        st = ms_evaluate(&res, &s, &cfg, strats, n_strat, &prog);
        ms_progress_end(&prog);
        if (st) rc = ms_cli_fail(cmd, st);
        else {
            ms_eval_row *rows;
            int n_rows;
            ms_eval_summarize(&res, &cfg, (int)boot, &rows, &n_rows);
            if (json) {
                st = ms_eval_write_json(json, &res, &cfg, &s, strats, rows, n_rows);
                if (st) rc = ms_cli_fail(cmd, st);
            }
            if (!rc) {
                /* with --json -, stdout carries the JSON alone */
                if (!json || strcmp(json, "-") != 0)
                    ms_eval_print_markdown(stdout, &res, &cfg, &s, strats, rows, n_rows);
                fprintf(stderr, "medselect evaluate: %d tasks x %d strategies x %d K in %.1f s\n",
                        cfg.n_groups * cfg.tasks, n_strat, cfg.n_k, res.seconds);
            }
            free(rows);
            ms_eval_result_free(&res);
        }
    }
    ms_cli_config_free(&cfg);
    ms_split_free(&s);
    for (int i = 0; i < n_strat; i++) ms_strategy_free(strats[i]);
    free(strats);
    return rc;
}
