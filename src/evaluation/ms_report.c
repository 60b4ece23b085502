/* ms_report.c: Markdown and JSON renderings of an evaluation summary (see evaluate.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "medselect/evaluate.h"
#include "evaluation/ms_eval_internal.h"

static void fmt_ci(char *buf, size_t n, ms_ci c, int sign) {
    if (isnan(c.mean)) snprintf(buf, n, "n/a");
    else if (sign) snprintf(buf, n, "%+.3f [%+.3f, %+.3f]", c.mean, c.lo, c.hi);
    else snprintf(buf, n, "%.3f [%.3f, %.3f]", c.mean, c.lo, c.hi);
}

static void fmt_p(char *buf, size_t n, double p) {
    if (isnan(p)) snprintf(buf, n, " ");
    else if (p < 1e-4) snprintf(buf, n, "%.1e", p);
    else snprintf(buf, n, "%.4f", p);
}

static void print_row(FILE *f, const ms_eval_row *row, const ms_eval_config *cfg, const ms_split *s,
                      ms_strategy *const *strats, int per_cond) {
    char a[64], d[64], p[32];
    fmt_ci(a, sizeof a, row->auroc, 0);
    if (row->s == 0) snprintf(d, sizeof d, " ");
    else fmt_ci(d, sizeof d, row->diff, 1);
    fmt_p(p, sizeof p, row->p);
    if (per_cond) fprintf(f, "| %s ", row->cond >= 0 ? s->cond[row->cond] : "all");
    fprintf(f, "| %d | %s | %d | %s | %s | %s |\n", cfg->k[row->ki], strats[row->s]->label, row->n, a, d, p);
}

void ms_eval_print_markdown(FILE *f, const ms_eval_result *r, const ms_eval_config *cfg,
                            const ms_split *s, ms_strategy *const *strats,
                            const ms_eval_row *rows, int n_rows) {
    const char *base = strats[0]->label;
    for (int g = 0; g < r->n_groups; g++) {
        const ms_eval_group *grp = &cfg->group[g];
        fprintf(f, "### %s conditions (", grp->name);
        for (int c = 0; c < grp->n_cond; c++) fprintf(f, "%s%s", c ? ", " : "", s->cond[grp->cond[c]]);
        fprintf(f, "): %d tasks, pool %d (%d positive), query %d (%d positive)\n\n", r->tasks,
                cfg->shape.pool, ms_task_pool_pos(&cfg->shape), cfg->shape.query,
                ms_task_query_pos(&cfg->shape));
        fprintf(f, "| K | strategy | tasks | AUROC [95%% CI] | vs %s [95%% CI] | p (Wilcoxon) |\n", base);
        fprintf(f, "|---|---|---|---|---|---|\n");
        for (int i = 0; i < n_rows; i++)
            if (rows[i].g == g && rows[i].cond < 0) print_row(f, &rows[i], cfg, s, strats, 0);
        if (grp->n_cond > 1) {
            fprintf(f, "\nPer condition:\n\n");
            fprintf(f, "| condition | K | strategy | tasks | AUROC [95%% CI] | vs %s [95%% CI] | p (Wilcoxon) |\n", base);
            fprintf(f, "|---|---|---|---|---|---|---|\n");
            for (int i = 0; i < n_rows; i++)
                if (rows[i].g == g && rows[i].cond >= 0) print_row(f, &rows[i], cfg, s, strats, 1);
        }
        fprintf(f, "\n");
    }
}

cJSON *ms_eval_config_json(cJSON *root, const ms_eval_config *cfg, const ms_split *s) {
    cJSON *conf = cJSON_AddObjectToObject(root, "config");
    cJSON_AddStringToObject(conf, "positives", s->pos_name ? s->pos_name : "");
    cJSON_AddStringToObject(conf, "normals", s->norm_name ? s->norm_name : "");
    cJSON_AddNumberToObject(conf, "pool", cfg->shape.pool);
    cJSON_AddNumberToObject(conf, "pool_positives", ms_task_pool_pos(&cfg->shape));
    cJSON_AddNumberToObject(conf, "query", cfg->shape.query);
    cJSON_AddNumberToObject(conf, "query_positives", ms_task_query_pos(&cfg->shape));
    cJSON_AddNumberToObject(conf, "tasks_per_group", cfg->tasks);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)cfg->seed);
    cJSON_AddStringToObject(conf, "seed", seed);
    cJSON_AddStringToObject(conf, "predictor", cfg->pred == MS_PRED_COSINE ? "cosine" : "euclidean");
    return conf;
}

static cJSON *ci_json(ms_ci c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "mean", c.mean);
    cJSON_AddNumberToObject(o, "lo", c.lo);
    cJSON_AddNumberToObject(o, "hi", c.hi);
    return o;
}

ms_status ms_eval_write_json(const char *path, const ms_eval_result *r, const ms_eval_config *cfg,
                             const ms_split *s, ms_strategy *const *strats,
                             const ms_eval_row *rows, int n_rows) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "medselect_version", MS_VERSION);
    cJSON *conf = ms_eval_config_json(root, cfg, s);
    cJSON *ks = cJSON_AddArrayToObject(conf, "k");
    for (int i = 0; i < cfg->n_k; i++) cJSON_AddItemToArray(ks, cJSON_CreateNumber(cfg->k[i]));
    cJSON *st = cJSON_AddArrayToObject(conf, "strategies");
    for (int i = 0; i < r->n_strat; i++) cJSON_AddItemToArray(st, cJSON_CreateString(strats[i]->label));
    cJSON_AddNumberToObject(root, "seconds", r->seconds);
    cJSON *groups = cJSON_AddArrayToObject(root, "groups");
    for (int g = 0; g < r->n_groups; g++) {
        cJSON *go = cJSON_CreateObject();
        cJSON_AddItemToArray(groups, go);
        cJSON_AddStringToObject(go, "name", cfg->group[g].name);
        cJSON *cs = cJSON_AddArrayToObject(go, "conditions");
        for (int c = 0; c < cfg->group[g].n_cond; c++)
            cJSON_AddItemToArray(cs, cJSON_CreateString(s->cond[cfg->group[g].cond[c]]));
        cJSON *rs = cJSON_AddArrayToObject(go, "rows");
        for (int i = 0; i < n_rows; i++) {
            const ms_eval_row *row = &rows[i];
            if (row->g != g) continue;
            cJSON *o = cJSON_CreateObject();
            if (row->cond >= 0) cJSON_AddStringToObject(o, "condition", s->cond[row->cond]);
            else cJSON_AddNullToObject(o, "condition");
            cJSON_AddNumberToObject(o, "k", cfg->k[row->ki]);
            cJSON_AddStringToObject(o, "strategy", strats[row->s]->label);
            cJSON_AddNumberToObject(o, "tasks", row->n);
            cJSON_AddItemToObject(o, "auroc", ci_json(row->auroc));
            if (row->s > 0) {
                cJSON *d = ci_json(row->diff);
                cJSON_AddStringToObject(d, "versus", strats[0]->label);
                cJSON_AddItemToObject(o, "difference", d);
                cJSON_AddNumberToObject(o, "p_wilcoxon", row->p);
            }
            cJSON_AddItemToArray(rs, o);
        }
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    size_t n = strlen(text);
    text = ms_xrealloc(text, n + 2);
    text[n] = '\n';
    text[n + 1] = 0;
    ms_status rc;
    if (!strcmp(path, "-")) {
        fputs(text, stdout);
        rc = MS_OK;
    } else {
        rc = ms_write_file_atomic(path, text, n + 1);
    }
    free(text);
    return rc;
}
