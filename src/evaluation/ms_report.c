/* ms_report.c: Markdown and JSON renderings of an evaluation summary (see evaluate.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
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
    char a[64], d[128], p[32];
    fmt_ci(a, sizeof a, row->auroc, 0);
    if (row->s == 0) snprintf(d, sizeof d, " ");
    else fmt_ci(d, sizeof d, row->diff, 1);
    fmt_p(p, sizeof p, row->p);
    if (per_cond) fprintf(f, "| %s ", row->cond >= 0 ? s->cond[row->cond] : "all");
    fprintf(f, "| %d | %s | %d | %s | %s | %s |", cfg->k[row->ki], strats[row->s]->label, row->n, a, d, p);
    if (cfg->versus_on) {
        if (row->s == row->vs) snprintf(d, sizeof d, "(%s)", strats[row->vs]->label);
        else fmt_ci(d, sizeof d, row->vdiff, 1);
        fmt_p(p, sizeof p, row->vp);
        fprintf(f, " %s | %s |", d, p);
    }
    fprintf(f, "\n");
}

/* The versus strategy's name for the column headers: its label when it is the same for
 * every K of group g, else "versus" (the per-K choice is listed above the table). */
static const char *versus_name(const ms_eval_config *cfg, int g, ms_strategy *const *strats) {
    if (cfg->versus_best) return "best";
    for (int ki = 1; ki < cfg->n_k; ki++)
        if (cfg->versus[g][ki] != cfg->versus[g][0]) return "versus";
    return strats[cfg->versus[g][0]]->label;
}

void ms_eval_print_markdown(FILE *f, const ms_eval_result *r, const ms_eval_config *cfg,
                            const ms_split *s, ms_strategy *const *strats,
                            const ms_eval_row *rows, int n_rows) {
    const char *base = strats[0]->label;
    fprintf(f, "Learned selector's decoding rule: %s.\n\n", ms_decode_rule(cfg->decode));
    for (int g = 0; g < r->n_groups; g++) {
        const ms_eval_group *grp = &cfg->group[g];
        fprintf(f, "### %s conditions (", grp->name);
        for (int c = 0; c < grp->n_cond; c++) fprintf(f, "%s%s", c ? ", " : "", s->cond[grp->cond[c]]);
        fprintf(f, "): %d tasks, pool %d (%d positive), query %d (%d positive)", r->tasks, cfg->shape.pool,
                ms_task_pool_pos(&cfg->shape), cfg->shape.query, ms_task_query_pos(&cfg->shape));
        if (s->group_col) fprintf(f, "; each pool holds at most one image per %s", s->group_col);
        fputs("\n\n", f);
        const char *vn = cfg->versus_on ? versus_name(cfg, g, strats) : NULL;
        if (cfg->versus_on && cfg->versus_note[g][0]) fprintf(f, "%s\n\n", cfg->versus_note[g]);
        if (cfg->versus_on) {
            fprintf(f, "Versus:");
            for (int ki = 0; ki < cfg->n_k; ki++)
                fprintf(f, "%s K %d %s", ki ? "," : "", cfg->k[ki], strats[cfg->versus[g][ki]]->label);
            fprintf(f, ".\n\n");
        }
        fprintf(f, "| K | strategy | tasks | AUROC [95%% CI] | vs %s [95%% CI] | p (Wilcoxon) |", base);
        if (vn) fprintf(f, " vs %s [95%% CI] | p |", vn);
        fprintf(f, "\n|---|---|---|---|---|---|%s\n", vn ? "---|---|" : "");
        for (int i = 0; i < n_rows; i++)
            if (rows[i].g == g && rows[i].cond < 0) print_row(f, &rows[i], cfg, s, strats, 0);
        if (grp->n_cond > 1) {
            fprintf(f, "\nPer condition:\n\n");
            fprintf(f, "| condition | K | strategy | tasks | AUROC [95%% CI] | vs %s [95%% CI] | p (Wilcoxon) |", base);
            if (vn) fprintf(f, " vs %s [95%% CI] | p |", vn);
            fprintf(f, "\n|---|---|---|---|---|---|---|%s\n", vn ? "---|---|" : "");
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
    cJSON_AddStringToObject(conf, "decode", ms_decode_name(cfg->decode));
    cJSON_AddStringToObject(conf, "decode_rule", ms_decode_rule(cfg->decode));
    return conf;
}

static cJSON *ci_json(ms_ci c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "mean", c.mean);
    cJSON_AddNumberToObject(o, "lo", c.lo);
    cJSON_AddNumberToObject(o, "hi", c.hi);
    return o;
}

char *ms_eval_json(const ms_eval_result *r, const ms_eval_config *cfg, const ms_split *s,
                   ms_strategy *const *strats, const ms_eval_row *rows, int n_rows) {
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
        if (cfg->versus_on) {
            if (cfg->versus_note[g][0]) cJSON_AddStringToObject(go, "versus_note", cfg->versus_note[g]);
            cJSON_AddBoolToObject(go, "versus_best", cfg->versus_best);
            cJSON *vs = cJSON_AddArrayToObject(go, "versus");
            for (int ki = 0; ki < cfg->n_k; ki++) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddNumberToObject(o, "k", cfg->k[ki]);
                cJSON_AddStringToObject(o, "strategy", strats[cfg->versus[g][ki]]->label);
                cJSON_AddItemToArray(vs, o);
            }
        }
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
            if (row->vs >= 0 && row->s != row->vs) {
                cJSON *d = ci_json(row->vdiff);
                cJSON_AddStringToObject(d, "versus", strats[row->vs]->label);
                cJSON_AddNumberToObject(d, "p_wilcoxon", row->vp);
                cJSON_AddItemToObject(o, "versus", d);
            }
            cJSON_AddItemToArray(rs, o);
        }
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    MS_CHECK(text != NULL);
    size_t n = strlen(text);
    text = ms_xrealloc(text, n + 2);
    text[n] = '\n';
    text[n + 1] = 0;
    return text;
}

ms_status ms_eval_write_json(const char *path, const ms_eval_result *r, const ms_eval_config *cfg,
                             const ms_split *s, ms_strategy *const *strats,
                             const ms_eval_row *rows, int n_rows) {
    char *text = ms_eval_json(r, cfg, s, strats, rows, n_rows);
    ms_status rc = MS_OK;
    if (!strcmp(path, "-")) fputs(text, stdout);
    else rc = ms_write_file_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

/* Appends text to a growing buffer. */
static void buf_add(char **buf, size_t *len, size_t *cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void buf_add(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        MS_CHECK(n >= 0);
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return;
        }
        *cap = 2 * *cap + (size_t)n + 1;
        *buf = ms_xrealloc(*buf, *cap);
    }
}

/* A CSV field, quoted (RFC 4180) when it holds a comma, quote or line break. */
static void csv_field(char **buf, size_t *len, size_t *cap, const char *v) {
    if (!strpbrk(v, ",\"\r\n")) {
        buf_add(buf, len, cap, "%s", v);
        return;
    }
    buf_add(buf, len, cap, "\"");
    for (const char *p = v; *p; p++) buf_add(buf, len, cap, *p == '"' ? "\"\"" : "%c", *p);
    buf_add(buf, len, cap, "\"");
}

ms_status ms_eval_write_per_task(const char *path, const ms_eval_result *r, const ms_eval_config *cfg,
                                 const ms_split *s, ms_strategy *const *strats) {
    size_t len = 0, cap = 1 << 16;
    char *buf = ms_xmalloc(cap);
    buf[0] = 0;
    buf_add(&buf, &len, &cap, "group,task,condition,k");
    for (int si = 0; si < r->n_strat; si++) {
        buf_add(&buf, &len, &cap, ",");
        csv_field(&buf, &len, &cap, strats[si]->label);
    }
    buf_add(&buf, &len, &cap, "\n");
    for (int g = 0; g < r->n_groups; g++)
        for (int i = 0; i < r->tasks; i++)
            for (int ki = 0; ki < r->n_k; ki++) {
                csv_field(&buf, &len, &cap, cfg->group[g].name);
                buf_add(&buf, &len, &cap, ",%d,", i);
                csv_field(&buf, &len, &cap, s->cond[r->task_cond[g * r->tasks + i]]);
                buf_add(&buf, &len, &cap, ",%d", cfg->k[ki]);
                for (int si = 0; si < r->n_strat; si++)
                    buf_add(&buf, &len, &cap, ",%.9g",
                            r->auroc[((size_t)(g * r->n_k + ki) * r->n_strat + si) * r->tasks + i]);
                buf_add(&buf, &len, &cap, "\n");
            }
    ms_status rc = ms_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}
