/* cmd_evaluate.c: `medselect evaluate`: the paper's meta-test comparison of strategies on a
 * labeled split. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"

static void help(void) {
    printf("Usage: medselect evaluate --pos-csv POS.csv --norm-csv NORM.csv [OPTIONS]\n\n"
           "Samples meta-test tasks from a labeled split and runs every strategy on the same\n"
           "tasks: each picks K pool items, a cosine prototype classifier is built from their\n"
           "labels and scored (AUROC) on the task's query set. Prints Markdown tables per\n"
           "condition group, K and condition: mean AUROC with a 95%% bootstrap CI over tasks,\n"
           "and each strategy's paired difference against the first strategy (random) with its\n"
           "CI and Wilcoxon signed-rank p-value (and against --versus).\n\n"
           "A group's tasks depend on its set of conditions, the task shape and the seed only:\n"
           "--seen A,B, --unseen B,A and --conditions A,B give the same tasks. Strategies that\n"
           "rank (random, kcenter, herding, the selector decoding greedy or sample) select once at\n"
           "the largest K and every K scores a prefix of that one ranking; the others (and the\n"
           "selector's multinomial decoding) run once per K.\n\n%s\n%s\n%s\n"
           "Strategies and output:\n"
           "      --strategies LIST    comma-separated (default random,kmedoids,kmeans); 'random'\n"
           "                           is always evaluated and comes first. Available: %s;\n"
           "                           options after ':' e.g. probcover:delta=0.4\n"
           "      --model CKPT         add a trained selector (safetensors) as strategy 'medselect';\n"
           "                           repeatable: several are labeled medselect:DIR/NAME\n"
           "%s"
           "      --versus NAME|best   also give every row's paired difference (bootstrap CI,\n"
           "                           Wilcoxon p) against strategy NAME (a label of the list,\n"
           "                           or 'medselect'), or against 'best': per group and K the\n"
           "                           baseline (a --strategies entry, random included) with the\n"
           "                           highest mean AUROC on the VALIDATION split (see above);\n"
           "                           test tasks never take part in that choice\n"
           "      --per-task FILE      write every task's AUROC per strategy as CSV\n"
           "                           (group,task,condition,k, one column per strategy)\n"
           "      --per-k              run ranking strategies once per K as well (no prefixes)\n"
           "      --bootstrap N        bootstrap resamples for the CIs (default 2000)\n"
           "      --json FILE          also write the results as JSON ('-': JSON alone on stdout;\n"
           "                           missing folders are created)\n"
           "  -h, --help               this help\n\n"
           "Example:\n"
           "  medselect evaluate --pos-csv test_pos.csv --norm-csv test_norm.csv \\\n"
           "      --seen Effusion,Infiltration --unseen Atelectasis,Cardiomegaly \\\n"
           "      --pool 30 --query 20 -k 5,10 --tasks 1000 --seed 0 \\\n"
           "      --val-pos-csv val_pos.csv --val-norm-csv val_norm.csv --versus best\n",
           ms_cli_data_help, ms_cli_task_help, ms_cli_val_help, ms_strategy_names(), ms_cli_model_help);
}

#define MS_MAX_MODELS 8

/* "medselect:DIR/NAME" from a checkpoint path (its folder and file name, no extension), so
 * that several checkpoints can be told apart in one report. */
static void model_label(ms_strategy *st, const char *path) {
    const char *end = path + strlen(path), *dot = strrchr(path, '.');
    if (dot && !strchr(dot, '/')) end = dot;
    const char *start = end;
    int slashes = 0;
    while (start > path && !(start[-1] == '/' && ++slashes == 2)) start--;
    /* the decoding rule stays visible: "medselect (multinomial)" -> "medselect:DIR/NAME (multinomial)" */
    const char *rule = strchr(st->label, ' ');
    char tail[48];
    snprintf(tail, sizeof tail, "%s", rule ? rule : "");
    snprintf(st->label, sizeof st->label, "medselect:%.*s%s", (int)(end - start), start, tail);
}

/* Fills cfg's versus choice: a named strategy for every group and K, or "best": per group
 * and K the baseline (strats[0..n_base)) with the highest mean AUROC on the validation
 * split. Returns an exit code. */
static int set_versus(const char *cmd, const char *versus, const ms_cli_val *v, const ms_cli_common *c,
                      const ms_split *s, ms_eval_config *cfg, ms_strategy *const *strats, int n_strat,
                      int n_base) {
    cfg->versus_on = 1;
    if (strcasecmp(versus, "best") != 0) {
        int which = -1;
        for (int i = 0; i < n_strat && which < 0; i++)
            if (!strcasecmp(strats[i]->label, versus)) which = i;
        for (int i = 0; i < n_strat && which < 0; i++)
            if (!strcasecmp(strats[i]->name, versus)) which = i;
        if (which < 0)
            return ms_cli_usage_error(cmd, "--versus: '%s' is not one of the evaluated strategies (or 'best')", versus);
        for (int g = 0; g < cfg->n_groups; g++)
            for (int ki = 0; ki < cfg->n_k; ki++) cfg->versus[g][ki] = which;
        return MS_EXIT_OK;
    }
    ms_split val;
    int rc = ms_cli_val_load(cmd, v, c, &val);
    if (rc) return rc;
    int *cand = ms_xmalloc(sizeof(int) * (size_t)n_base);
    for (int i = 0; i < n_base; i++) cand[i] = i;
    ms_status st = ms_eval_versus_best(cfg, s, &val, (int)v->tasks, strats, cand, n_base, NULL);
    free(cand);
    ms_split_free(&val);
    if (st) return ms_cli_fail(cmd, st);
    return MS_EXIT_OK;
}

int ms_cmd_evaluate(int argc, char **argv) {
    const char *cmd = "evaluate";
    ms_cli_common c;
    ms_cli_common_defaults(&c);
    const char *strategies = "random,kmedoids,kmeans", *json = NULL, *versus = NULL, *per_task = NULL;
    const char *models[MS_MAX_MODELS];
    int n_models = 0, per_k = 0;
    long boot = 2000;
    int force_clinical = 0, have_decode = 0;
    ms_decode decode = MS_DECODE_GREEDY;
    ms_cli_val v;
    memset(&v, 0, sizeof v);
    enum { OPT_VERSUS = MS_OPT_FIRST_FREE, OPT_PER_TASK, OPT_PER_K };
    static const struct option opts[] = {
        MS_CLI_DATA_OPTIONS, MS_CLI_TASK_OPTIONS, MS_CLI_VAL_OPTIONS,
        {"strategies", required_argument, 0, MS_OPT_STRATEGIES},
        {"model", required_argument, 0, MS_OPT_MODEL},
        {"versus", required_argument, 0, OPT_VERSUS},
        {"per-task", required_argument, 0, OPT_PER_TASK},
        {"per-k", no_argument, 0, OPT_PER_K},
        {"bootstrap", required_argument, 0, MS_OPT_BOOTSTRAP},
        {"clinical", no_argument, 0, MS_OPT_CLINICAL},
        {"decode", required_argument, 0, MS_OPT_DECODE},
        {"json", required_argument, 0, MS_OPT_JSON},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":k:h", opts, NULL)) != -1) {
        int rc = ms_cli_common_option(cmd, opt, optarg, &c);
        if (rc > 0) return rc;
        if (rc == 0) continue;
        rc = ms_cli_val_option(cmd, opt, optarg, &v);
        if (rc > 0) return rc;
        if (rc == 0) continue;
        switch (opt) {
        case MS_OPT_STRATEGIES: strategies = optarg; break;
        case MS_OPT_MODEL:
            if (n_models == MS_MAX_MODELS) return ms_cli_usage_error(cmd, "at most %d --model", MS_MAX_MODELS);
            models[n_models++] = optarg;
            break;
        case OPT_VERSUS: versus = optarg; break;
        case OPT_PER_TASK: per_task = optarg; break;
        case OPT_PER_K: per_k = 1; break;
        case MS_OPT_CLINICAL: force_clinical = 1; break;
        case MS_OPT_DECODE:
            if (ms_decode_parse(optarg, &decode)) return ms_cli_usage_error(cmd, "--decode: %s", ms_last_error());
            have_decode = 1;
            break;
        case MS_OPT_JSON: json = optarg; break;
        case MS_OPT_BOOTSTRAP:
            if (ms_cli_int(cmd, "--bootstrap", optarg, 100, 1000000, &boot)) return MS_EXIT_USAGE;
            break;
        case 'h': help(); return MS_EXIT_OK;
        default: return ms_cli_bad_option(cmd, opt, argv);
        }
    }
    if (optind < argc) return ms_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if ((force_clinical || have_decode) && !n_models)
        return ms_cli_usage_error(cmd, "%s needs --model", force_clinical ? "--clinical" : "--decode");
    ms_set_threads(c.threads);

    /* strategies: random first (the paired baseline), then the requested ones in order */
    ms_strategy **strats;
    int n_strat;
    int rc = ms_cli_strategies(cmd, strategies, n_models, &strats, &n_strat);
    const int n_base = n_strat; /* the baselines: candidates for --versus best */
    ms_status st;
    ms_split s;
    memset(&s, 0, sizeof s);
    ms_eval_config cfg;
    memset(&cfg, 0, sizeof cfg);
    /* one run per --json file: a second evaluate writing the same file is refused */
    ms_lock lock;
    memset(&lock, 0, sizeof lock);
    lock.fd = -1;
    if (!rc && json && strcmp(json, "-") != 0 && (st = ms_lock_acquire(&lock, json, MS_LOCK_FILE)))
        rc = ms_cli_fail(cmd, st);
    if (!rc) rc = ms_cli_load_split(cmd, &c, &s);
    for (int m = 0; m < n_models && !rc; m++) {
        rc = ms_cli_model_strategy(cmd, models[m], &s, force_clinical, decode, &strats[n_strat]);
        if (rc) break;
        if (n_models > 1) model_label(strats[n_strat], models[m]);
        n_strat++;
    }
    if (!rc) rc = ms_cli_eval_config(cmd, &c, &s, &cfg);
    if (!rc) cfg.per_k = per_k;
    cfg.decode = decode;
    if (!rc && versus) rc = set_versus(cmd, versus, &v, &c, &s, &cfg, strats, n_strat, n_base);
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
            if (!rc && per_task) {
                st = ms_eval_write_per_task(per_task, &res, &cfg, &s, strats);
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
    ms_lock_release(&lock);
    ms_cli_config_free(&cfg);
    ms_split_free(&s);
    for (int i = 0; i < n_strat; i++) ms_strategy_free(strats[i]);
    free(strats);
    return rc;
}
