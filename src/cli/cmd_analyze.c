/* cmd_analyze.c: `medselect analyze`: what two strategies select on the same meta-test tasks
 * (clinical features and embedding geometry of the selected images, with tests), written as
 * a Markdown report with figures (see analyze.h). */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "medselect/analyze.h"

enum { OPT_A = MS_OPT_FIRST_FREE, OPT_B, OPT_OUT, OPT_PERMS, OPT_PERM_SEED, OPT_SCHEME };

static void help(void) {
    printf("Usage: medselect analyze --pos-csv POS.csv --norm-csv NORM.csv --a STRATEGY|CKPT\n"
           "                         --out DIR [--b STRATEGY|best] [OPTIONS]\n\n"
           "Runs strategies A and B on the same meta-test tasks (as 'medselect evaluate') and\n"
           "compares what they select, for every K:\n"
           "  - clinical features of the selected images: age (Wasserstein-1 distance between A's\n"
           "    and B's selections with a permutation p-value), sex and view (frontal/lateral)\n"
           "    proportions (chi-square, Fisher exact and task-swap permutation tests). PA and AP\n"
           "    views both count as frontal, so AP versus PA is not distinguished;\n"
           "  - embedding geometry: L1, L2 and L-infinity norms, cosine similarity to the pool\n"
           "    centroid (per image, pooled over all tasks), mean pairwise cosine similarity\n"
           "    within a selection (diversity) and the fraction of positives among the selected\n"
           "    (per selection): Wasserstein-1 distances with permutation p-values.\n"
           "All p-values of one K are also Benjamini-Hochberg adjusted. DIR receives report.md\n"
           "(tables, the settings, the AUROC per condition per strategy) and PNG figures: the\n"
           "ECDFs of A and B for each quantity (k<K>_<quantity>.png) and the mean AUROC per\n"
           "condition with 95%% bootstrap CIs (k<K>_auroc.png).\n\n%s\n%s\n%s\n"
           "Analysis:\n"
           "      --a SPEC|CKPT        strategy A: a strategy spec (options after ':', e.g.\n"
           "                           probcover:delta=0.4) or a trained selector checkpoint\n"
           "                           (*.safetensors). Strategies: %s\n"
           "      --b SPEC|best        strategy B (default best: every built-in strategy other\n"
           "                           than A is evaluated on the VALIDATION split (--val-pos-csv,\n"
           "                           --val-norm-csv; same shape, K, seed and conditions, see\n"
           "                           above) and B is the one with the highest mean AUROC over\n"
           "                           all its validation tasks and K; the test tasks analysed\n"
           "                           here take no part in that choice)\n"
           "%s"
           "      --out DIR            output directory (created with missing parents; removed again\n"
           "                           if the run fails before writing; one run at a time)\n"
           "      --permutations N     permutations per test (default 2000)\n"
           "      --perm-seed S        seed of the permutation tests (default: --seed)\n"
           "      --perm-scheme S      task-swap (default): permutations swap A's and B's\n"
           "                           selections within tasks (valid when images recur across\n"
           "                           tasks); pooled: shuffle all values as if independent\n"
           "                           (anti-conservative on small splits)\n"
           "      --bootstrap N        bootstrap resamples for the AUROC CIs (default 2000)\n"
           "      --json FILE          also write every number as JSON ('-' for stdout)\n"
           "  -h, --help               this help\n\n"
           "Random is always evaluated too (first, as in evaluate). If several K are given, each\n"
           "K is analysed and reported separately.\n\n"
           "Example:\n"
           "  medselect analyze --pos-csv test_pos.csv --norm-csv test_norm.csv \\\n"
           "      --seen Effusion,Infiltration --unseen Atelectasis,Cardiomegaly \\\n"
           "      --pool 30 --query 20 -k 10 --tasks 1000 --a selector.safetensors --b best \\\n"
           "      --val-pos-csv val_pos.csv --val-norm-csv val_norm.csv \\\n"
           "      --out analysis --json analysis/analysis.json\n",
           ms_cli_data_help, ms_cli_task_help, ms_cli_val_help, ms_strategy_names(), ms_cli_model_help);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

/* Index of a strategy with this label among strats[0..n), or -1. */
static int find_label(ms_strategy **strats, int n, const char *label) {
    for (int i = 0; i < n; i++)
        if (!strcmp(strats[i]->label, label)) return i;
    return -1;
}

/* Adds a strategy from a spec unless one with the same label is there; returns its index or
 * -1 after a usage error. */
static int add_spec(const char *cmd, ms_strategy **strats, int *n, const char *spec) {
    ms_strategy *st;
    if (ms_strategy_create(&st, spec)) {
        ms_cli_usage_error(cmd, "%s", ms_last_error());
        return -1;
    }
    int i = find_label(strats, *n, st->label);
    if (i >= 0) {
        ms_strategy_free(st);
        return i;
    }
    strats[*n] = st;
    return (*n)++;
}

/* The command line, shell-quoted where needed, for the report. */
static char *command_line(int argc, char **argv) {
    size_t cap = 32;
    for (int i = 0; i < argc; i++) cap += 4 * strlen(argv[i]) + 3;
    char *s = ms_xmalloc(cap), *p = s;
    p += sprintf(p, "medselect");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int plain = *a != 0;
        for (const char *c = a; *c; c++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=./,:+@%", *c)) plain = 0;
        *p++ = ' ';
        if (plain) {
            p += sprintf(p, "%s", a);
            continue;
        }
        *p++ = '\'';
        for (const char *c = a; *c; c++) {
            if (*c == '\'') p += sprintf(p, "'\\''");
            else *p++ = *c;
        }
        *p++ = '\'';
        *p = 0;
    }
    return s;
}

int ms_cmd_analyze(int argc, char **argv) {
    const char *cmd = "analyze";
    ms_cli_common c;
    ms_cli_common_defaults(&c);
    const char *a_spec = NULL, *b_spec = "best", *out = NULL, *json = NULL;
    long perms = 2000, boot = 2000;
    int have_perm_seed = 0;
    ms_an_scheme scheme = MS_AN_TASK_SWAP;
    unsigned long long perm_seed = 0;
    ms_cli_val v;
    memset(&v, 0, sizeof v);
    int force_clinical = 0, have_decode = 0;
    ms_decode decode = MS_DECODE_GREEDY;
    static const struct option opts[] = {
        MS_CLI_DATA_OPTIONS, MS_CLI_TASK_OPTIONS, MS_CLI_VAL_OPTIONS,
        {"clinical", no_argument, 0, MS_OPT_CLINICAL},
        {"decode", required_argument, 0, MS_OPT_DECODE},
        {"a", required_argument, 0, OPT_A},
        {"b", required_argument, 0, OPT_B},
        {"out", required_argument, 0, OPT_OUT},
        {"permutations", required_argument, 0, OPT_PERMS},
        {"perm-seed", required_argument, 0, OPT_PERM_SEED},
        {"perm-scheme", required_argument, 0, OPT_SCHEME},
        {"bootstrap", required_argument, 0, MS_OPT_BOOTSTRAP},
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
        case OPT_A: a_spec = optarg; break;
        case OPT_B: b_spec = optarg; break;
        case MS_OPT_CLINICAL: force_clinical = 1; break;
        case MS_OPT_DECODE:
            if (ms_decode_parse(optarg, &decode)) return ms_cli_usage_error(cmd, "--decode: %s", ms_last_error());
            have_decode = 1;
            break;
        case OPT_OUT: out = optarg; break;
        case MS_OPT_JSON: json = optarg; break;
        case OPT_PERMS:
            if (ms_cli_int(cmd, "--permutations", optarg, 1, 100000000, &perms)) return MS_EXIT_USAGE;
            break;
        case OPT_PERM_SEED: {
            char *end;
            perm_seed = strtoull(optarg, &end, 10);
            if (end == optarg || *end || optarg[0] == '-')
                return ms_cli_usage_error(cmd, "--perm-seed: '%s' is not a non-negative integer", optarg);
            have_perm_seed = 1;
            break;
        }
        case OPT_SCHEME:
            if (!strcmp(optarg, "task-swap")) scheme = MS_AN_TASK_SWAP;
            else if (!strcmp(optarg, "pooled")) scheme = MS_AN_POOLED;
            else return ms_cli_usage_error(cmd, "--perm-scheme: '%s' is not task-swap or pooled", optarg);
            break;
        case MS_OPT_BOOTSTRAP:
            if (ms_cli_int(cmd, "--bootstrap", optarg, 100, 1000000, &boot)) return MS_EXIT_USAGE;
            break;
        case 'h': help(); return MS_EXIT_OK;
        default: return ms_cli_bad_option(cmd, opt, argv);
        }
    }
    if (optind < argc) return ms_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!a_spec) return ms_cli_usage_error(cmd, "--a is required");
    if (!out) return ms_cli_usage_error(cmd, "--out is required");
    if ((force_clinical || have_decode) && !ends_with(a_spec, ".safetensors"))
        return ms_cli_usage_error(cmd, "%s needs a selector checkpoint as --a", force_clinical ? "--clinical" : "--decode");
    if (!have_perm_seed) perm_seed = c.seed;
    ms_set_threads(c.threads);

    ms_split s;
    memset(&s, 0, sizeof s);
    ms_eval_config cfg;
    memset(&cfg, 0, sizeof cfg);
    int n_names = 0;
    char **names = ms_split_list(ms_strategy_names(), &n_names);
    ms_strategy **strats = ms_xcalloc((size_t)n_names + 4, sizeof *strats);
    int n_strat = 0, ia = -1, ib = -1, best = !strcasecmp(b_spec, "best");
    /* one run per output folder: a second analyze into the same --out is refused; the
     * folder (and its missing parents) is removed again if the run writes nothing */
    ms_lock lock;
    ms_status lst = ms_lock_acquire(&lock, out, MS_LOCK_FOLDER);
    int rc = lst ? ms_cli_fail(cmd, lst) : ms_cli_load_split(cmd, &c, &s);
    /* random first (the paired baseline of the AUROC table), then A, then B */
    if (!rc && add_spec(cmd, strats, &n_strat, "random") < 0) rc = MS_EXIT_USAGE;
    if (!rc) {
        if (ends_with(a_spec, ".safetensors")) {
            rc = ms_cli_model_strategy(cmd, a_spec, &s, force_clinical, decode, &strats[n_strat]);
            if (!rc) ia = n_strat++;
        } else if ((ia = add_spec(cmd, strats, &n_strat, a_spec)) < 0) {
            rc = MS_EXIT_USAGE;
        }
    }
    if (!rc) {
        if (best) {
            for (int i = 0; i < n_names && !rc; i++)
                if (add_spec(cmd, strats, &n_strat, names[i]) < 0) rc = MS_EXIT_USAGE;
        } else if ((ib = add_spec(cmd, strats, &n_strat, b_spec)) < 0) {
            rc = MS_EXIT_USAGE;
        }
    }
    ms_strv_free(names, n_names);
    if (!rc) rc = ms_cli_eval_config(cmd, &c, &s, &cfg);
    cfg.decode = decode;
    char best_note[512] = "";
    if (!rc && best) {
        /* B: the built-in strategy other than A with the highest validation mean */
        ms_strategy **cand = ms_xcalloc((size_t)n_strat, sizeof *cand);
        int n_cand = 0;
        for (int i = 0; i < n_strat; i++)
            if (i != ia) cand[n_cand++] = strats[i];
        ms_split val;
        rc = ms_cli_val_load(cmd, &v, &c, &val);
        if (!rc) {
            int b = -1;
            ms_status st = ms_analyze_choose_b(&b, best_note, sizeof best_note, &val, &s, &cfg, (int)v.tasks, cand,
                                               n_cand, NULL);
            if (st) rc = ms_cli_fail(cmd, st);
            for (int i = 0; i < n_strat && !rc; i++)
                if (strats[i] == cand[b]) ib = i;
            ms_split_free(&val);
        }
        free(cand);
    }
    if (!rc) {
        cfg.keep_selections = 1;
        ms_eval_result res;
        ms_progress prog;
        ms_progress_begin(&prog, "analyze", (long)cfg.n_groups * cfg.tasks);
        ms_status st = ms_evaluate(&res, &s, &cfg, strats, n_strat, &prog);
        ms_progress_end(&prog);
        if (st) {
            rc = ms_cli_fail(cmd, st);
        } else {
            ms_analysis *an = ms_xcalloc((size_t)cfg.n_k, sizeof *an);
            double t0 = ms_now();
            for (int ki = 0; ki < cfg.n_k && !st; ki++)
                st = ms_analyze(&an[ki], &s, &cfg, &res, ia, ib, ki, (int)perms, perm_seed, scheme);
            double t_an = ms_now() - t0;
            ms_eval_row *rows = NULL;
            int n_rows = 0;
            if (!st) ms_eval_summarize(&res, &cfg, (int)boot, &rows, &n_rows);
            char *line = command_line(argc, argv);
            ms_analysis_report rep = {.split = &s, .cfg = &cfg, .res = &res, .strats = strats, .an = an,
                                      .n_an = cfg.n_k, .rows = rows, .n_rows = n_rows, .command = line,
                                      .b_note = best ? best_note : NULL};
            if (!st) st = ms_analysis_write_report(out, &rep);
            if (!st && json) st = ms_analysis_write_json(json, &rep);
            if (st) {
                rc = ms_cli_fail(cmd, st);
            } else {
                fprintf(stderr,
                        "medselect analyze: A = %s, B = %s%s%s%s; %d tasks x %d strategies evaluated in %.1f s, "
                        "analysed in %.1f s; report in %s/report.md\n",
                        strats[ia]->label, strats[ib]->label, best ? ", the " : "", best_note, "",
                        cfg.n_groups * cfg.tasks, n_strat, res.seconds, t_an, out);
            }
            free(line);
            free(rows);
            for (int ki = 0; ki < cfg.n_k; ki++) ms_analysis_free(&an[ki]);
            free(an);
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
