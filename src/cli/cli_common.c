/* cli_common.c: options shared by the commands that sample tasks (evaluate, train,
 * analyze, demo): data files, task shape, K values, seed, threads. */
#define _GNU_SOURCE
#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char *const paper_seen = "Consolidation,Lung Opacity,Pleural Effusion,Pneumothorax,Enlarged Cardiomediastinum,Cardiomegaly";
static const char *const paper_unseen = "Atelectasis,Edema";

const char ms_cli_data_help[] =
    "Data (the reference layout: a positives CSV and a normals CSV, each with an HDF5 file\n"
    "of the same base name holding dataset \"dataset\", one embedding row per CSV row):\n"
    "      --pos-csv FILE       images with at least one finding (Path + condition columns)\n"
    "      --norm-csv FILE      \"No Finding\" images\n"
    "      --pos-emb FILE       embeddings of the positives (.hdf5/.h5 or .npy; default: next\n"
    "                           to the CSV with the same base name)\n"
    "      --norm-emb FILE      embeddings of the normals (same rules)\n"
    "      --uncertain MODE     label -1: positive (default: the paper and the authors' README\n"
    "                           count uncertain as positive), negative, ignore. The authors'\n"
    "                           code counts only 1.0 as positive (their sampler keeps rows with\n"
    "                           label == 1.0): use negative (or ignore) to match their code\n";

const char ms_cli_task_help[] =
    "Tasks:\n"
    "      --conditions A,B     sample tasks from these conditions (one group, \"all\")\n"
    "      --seen A,B           seen-condition group (default: the paper's six CheXpert names)\n"
    "      --unseen A,B         unseen-condition group (default: Atelectasis,Edema)\n"
    "                           Condition names are the CSV's column names; case does not\n"
    "                           matter and '_', '-' and ' ' are the same. A name with spaces\n"
    "                           needs quotes around the list (or write '_' for the spaces):\n"
    "                           --seen \"Pleural Effusion,Lung Opacity\" or\n"
    "                           --seen Pleural_Effusion,Lung_Opacity. NIH and CheXpert names of\n"
    "                           one finding are interchangeable: Effusion = Pleural Effusion,\n"
    "                           Pleural_Thickening = Pleural Other.\n"
    "      --pool N             unlabeled pool size (default 1000)\n"
    "      --pos-frac F         fraction of positives in the pool (default 0.5)\n"
    "      --query N            query set size (default 100)\n"
    "      --query-pos-frac F   fraction of positives in the query set (default 0.5)\n"
    "  -k, --k LIST             labeling budgets, e.g. 10,20,40 (default 20)\n"
    "      --tasks N            tasks per group (default 1000)\n"
    "      --seed S             seed of every random choice (default 0)\n"
    "      --threads T          worker threads (default: all cores); results do not depend on it\n"
    "      --predictor KIND     cosine (default) or euclidean\n"
    "      --group-by COLUMN    a column of both CSVs (e.g. PatientID): every pool holds at\n"
    "                           most one image per group (the query is drawn as usual from\n"
    "                           the other rows). It fits when a condition's positives come\n"
    "                           from >= pool-positives groups and the normals from >= pool\n"
    "                           groups; otherwise the error gives the counts\n"
    "      --precision P        f32 (default) or bf16 for the selector's matrix products\n";

const char ms_cli_precision_help[] =
    "      --precision P        f32 (default) or bf16: bf16 operands with fp32 accumulation\n"
    "                           (needs a CPU with AVX512_BF16; otherwise an error)\n";

int ms_cli_precision(const char *cmd, const char *arg) {
    ms_precision p;
    if (ms_precision_parse(arg, &p)) return ms_cli_usage_error(cmd, "%s", ms_last_error());
    ms_set_precision(p);
    return 0;
}

void ms_cli_common_defaults(ms_cli_common *c) {
    memset(c, 0, sizeof *c);
    c->uncertain = MS_UNCERTAIN_POSITIVE;
    c->shape.pool = 1000;
    c->shape.pos_frac = 0.5;
    c->shape.query = 100;
    c->shape.query_pos_frac = 0.5;
    c->n_k = 1;
    c->k[0] = 20;
    c->tasks = 1000;
    c->seed = 0;
    c->threads = 0;
    c->pred = MS_PRED_COSINE;
}

int ms_cli_common_option(const char *cmd, int opt, const char *arg, ms_cli_common *c) {
    long v;
    switch (opt) {
    case MS_OPT_POS_CSV: c->pos_csv = arg; return 0;
    case MS_OPT_NORM_CSV: c->norm_csv = arg; return 0;
    case MS_OPT_POS_EMB: c->pos_emb = arg; return 0;
    case MS_OPT_NORM_EMB: c->norm_emb = arg; return 0;
    case MS_OPT_UNCERTAIN:
        if (!strcmp(arg, "positive")) c->uncertain = MS_UNCERTAIN_POSITIVE;
        else if (!strcmp(arg, "negative")) c->uncertain = MS_UNCERTAIN_NEGATIVE;
        else if (!strcmp(arg, "ignore")) c->uncertain = MS_UNCERTAIN_IGNORE;
        else return ms_cli_usage_error(cmd, "--uncertain: '%s' is not positive, negative or ignore", arg);
        return 0;
    case MS_OPT_CONDITIONS: c->conditions = arg; return 0;
    case MS_OPT_SEEN: c->seen = arg; return 0;
    case MS_OPT_UNSEEN: c->unseen = arg; return 0;
    case MS_OPT_GROUP_BY: c->group_by = arg; return 0;
    case MS_OPT_POOL:
        if (ms_cli_int(cmd, "--pool", arg, 2, 10000000, &v)) return MS_EXIT_USAGE;
        c->shape.pool = (int)v;
        return 0;
    case MS_OPT_QUERY:
        if (ms_cli_int(cmd, "--query", arg, 2, 10000000, &v)) return MS_EXIT_USAGE;
        c->shape.query = (int)v;
        return 0;
    case MS_OPT_POS_FRAC:
        return ms_cli_double(cmd, "--pos-frac", arg, 0.0, 1.0, &c->shape.pos_frac) ? MS_EXIT_USAGE : 0;
    case MS_OPT_QUERY_POS_FRAC:
        return ms_cli_double(cmd, "--query-pos-frac", arg, 0.0, 1.0, &c->shape.query_pos_frac) ? MS_EXIT_USAGE : 0;
    case 'k': {
        int n = ms_cli_int_list(cmd, "-k", arg, c->k, MS_MAX_K);
        if (n < 0) return MS_EXIT_USAGE;
        c->n_k = n;
        return 0;
    }
    case MS_OPT_TASKS:
        if (ms_cli_int(cmd, "--tasks", arg, 1, 100000000, &v)) return MS_EXIT_USAGE;
        c->tasks = v;
        return 0;
    case MS_OPT_SEED: {
        char *end;
        unsigned long long s = strtoull(arg, &end, 10);
        if (end == arg || *end || arg[0] == '-') return ms_cli_usage_error(cmd, "--seed: '%s' is not a non-negative integer", arg);
        c->seed = s;
        return 0;
    }
    case MS_OPT_THREADS:
        if (ms_cli_int(cmd, "--threads", arg, 0, 1024, &v)) return MS_EXIT_USAGE;
        c->threads = (int)v;
        return 0;
    case MS_OPT_PREDICTOR:
        if (ms_pred_kind_parse(arg, &c->pred)) return ms_cli_usage_error(cmd, "%s", ms_last_error());
        return 0;
    case MS_OPT_PRECISION: return ms_cli_precision(cmd, arg);
    default: return -1;
    }
}

int ms_cli_load_split(const char *cmd, const ms_cli_common *c, ms_split *s) {
    if (!c->pos_csv || !c->norm_csv)
        return ms_cli_usage_error(cmd, "--pos-csv and --norm-csv are required");
    ms_status st = ms_split_load(s, c->pos_csv, c->pos_emb, c->norm_csv, c->norm_emb, c->uncertain);
    if (!st && c->group_by && (st = ms_split_group_by(s, c->group_by))) ms_split_free(s);
    if (st) return ms_cli_fail(cmd, st);
    return MS_EXIT_OK;
}

/* strcmp on canonical names: lower case, '_' read as ' ' */
static int canon_cmp(const char *a, const char *b) {
    for (;; a++, b++) {
        int x = tolower((unsigned char)(*a == '_' ? ' ' : *a)), y = tolower((unsigned char)(*b == '_' ? ' ' : *b));
        if (x != y || !x) return x - y;
    }
}

static int add_group(const char *cmd, const ms_split *s, ms_eval_config *cfg, const char *name,
                     const char *list) {
    int n = 0;
    char **names = ms_split_list(list, &n);
    if (n == 0) {
        ms_strv_free(names, n);
        return ms_cli_usage_error(cmd, "empty condition list for the %s group", name);
    }
    ms_eval_group *g = &cfg->group[cfg->n_groups];
    snprintf(g->name, sizeof g->name, "%s", name);
    g->cond = ms_xmalloc(sizeof(int) * (size_t)n);
    g->n_cond = n;
    cfg->n_groups++;
    ms_status st = ms_split_resolve(s, names, n, g->cond);
    ms_strv_free(names, n);
    if (st) return ms_cli_fail(cmd, st);
    /* canonical order (by name, case and '_' ignored): the group's tasks then depend on its
     * set of conditions only, not on the order or the flag that named them */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && canon_cmp(s->cond[g->cond[j - 1]], s->cond[g->cond[j]]) > 0; j--) {
            int tmp = g->cond[j];
            g->cond[j] = g->cond[j - 1];
            g->cond[j - 1] = tmp;
        }
    for (int i = 1; i < n; i++)
        if (g->cond[i] == g->cond[i - 1])
            return ms_cli_usage_error(cmd, "condition '%s' is listed twice in the %s group", s->cond[g->cond[i]], name);
    return MS_EXIT_OK;
}

int ms_cli_eval_config(const char *cmd, const ms_cli_common *c, const ms_split *s, ms_eval_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->shape = c->shape;
    cfg->n_k = c->n_k;
    memcpy(cfg->k, c->k, sizeof cfg->k);
    cfg->tasks = (int)c->tasks;
    cfg->seed = c->seed;
    cfg->pred = c->pred;
    for (int i = 0; i < c->n_k; i++)
        if (c->k[i] > c->shape.pool)
            return ms_cli_usage_error(cmd, "K = %d is larger than the pool (%d)", c->k[i], c->shape.pool);
    int rc = 0;
    if (c->conditions) {
        if (c->seen || c->unseen) return ms_cli_usage_error(cmd, "--conditions excludes --seen/--unseen");
        rc = add_group(cmd, s, cfg, "all", c->conditions);
    } else if (c->seen || c->unseen) {
        if (c->seen) rc = add_group(cmd, s, cfg, "seen", c->seen);
        if (!rc && c->unseen) rc = add_group(cmd, s, cfg, "unseen", c->unseen);
    } else {
        rc = add_group(cmd, s, cfg, "seen", paper_seen);
        if (!rc) rc = add_group(cmd, s, cfg, "unseen", paper_unseen);
    }
    if (rc) {
        ms_cli_config_free(cfg);
        return rc;
    }
    for (int g = 0; g < cfg->n_groups; g++) {
        ms_status st = ms_task_check(s, &cfg->shape, cfg->group[g].cond, cfg->group[g].n_cond);
        if (st) {
            ms_cli_config_free(cfg);
            return ms_cli_fail(cmd, st);
        }
    }
    return MS_EXIT_OK;
}

int ms_cli_strategies(const char *cmd, const char *list, int extra, ms_strategy ***out, int *n) {
    int n_names = 0;
    char **names = ms_split_list(list, &n_names);
    ms_strategy **strats = ms_xcalloc((size_t)n_names + 1 + (size_t)extra, sizeof *strats);
    int cnt = 0, rc = MS_EXIT_OK;
    ms_status st = ms_strategy_create(&strats[cnt++], "random");
    MS_CHECK(st == MS_OK);
    for (int i = 0; i < n_names && !rc; i++) {
        if (!strcmp(names[i], "random")) continue;
        if (ms_strategy_create(&strats[cnt], names[i])) rc = ms_cli_usage_error(cmd, "%s", ms_last_error());
        else cnt++;
    }
    ms_strv_free(names, n_names);
    *out = strats;
    *n = cnt;
    return rc;
}

void ms_cli_config_free(ms_eval_config *cfg) {
    for (int g = 0; g < cfg->n_groups; g++) free(cfg->group[g].cond);
    cfg->n_groups = 0;
}

/* ---- the validation split: choosing "best" without looking at test tasks ------------------ */

const char ms_cli_val_help[] =
    "Validation (to choose --versus best, or analyze's --b best):\n"
    "      --val-pos-csv F, --val-norm-csv F  the validation split (or --val-pos-emb,\n"
    "                           --val-norm-emb for its embeddings)\n"
    "      --val-tasks N        validation tasks per group (default: --tasks)\n"
    "  The best baseline of a group and K is the strategy with the highest mean AUROC on\n"
    "  validation tasks of the same shape, seed and conditions. A condition the validation\n"
    "  split holds too few images of for one task is left out of that group's validation\n"
    "  tasks; when none is left, the group is validated on every condition of the command\n"
    "  that the split can hold (the report names them).\n";

int ms_cli_val_option(const char *cmd, int opt, const char *arg, ms_cli_val *v) {
    long n;
    switch (opt) {
    case MS_OPT_VAL_POS_CSV: v->pos_csv = arg; return 0;
    case MS_OPT_VAL_NORM_CSV: v->norm_csv = arg; return 0;
    case MS_OPT_VAL_POS_EMB: v->pos_emb = arg; return 0;
    case MS_OPT_VAL_NORM_EMB: v->norm_emb = arg; return 0;
    case MS_OPT_VAL_TASKS:
        if (ms_cli_int(cmd, "--val-tasks", arg, 1, 100000000, &n)) return MS_EXIT_USAGE;
        v->tasks = n;
        return 0;
    default: return -1;
    }
}

int ms_cli_val_load(const char *cmd, const ms_cli_val *v, const ms_cli_common *c, ms_split *val) {
    memset(val, 0, sizeof *val);
    if (!v->pos_csv || !v->norm_csv)
        return ms_cli_usage_error(cmd, "choosing the best baseline needs the validation split "
                                       "(--val-pos-csv and --val-norm-csv)");
    ms_status st = ms_split_load(val, v->pos_csv, v->pos_emb, v->norm_csv, v->norm_emb, c->uncertain);
    if (!st && c->group_by && (st = ms_split_group_by(val, c->group_by))) ms_split_free(val);
    if (st) return ms_cli_fail(cmd, st);
    return MS_EXIT_OK;
}
