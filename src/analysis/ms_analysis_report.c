/* ms_analysis_report.c: the Markdown report with its figures and the JSON rendering of an
 * analysis (see analyze.h). Everything is rendered in memory first (text through
 * open_memstream, PNGs through ms_plot), then written file by file atomically; a failed
 * write removes the files this call had already written, so a report is all or nothing. */
#define _POSIX_C_SOURCE 200809L
#include "evaluation/ms_eval_internal.h"
#include "medselect/analyze.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analysis/ms_plot.h"

/* ---- small formatting helpers ------------------------------------------------------------ */

static void fmt_num(char *buf, size_t n, double v) {
    if (isnan(v)) snprintf(buf, n, "n/a");
    else if (v != 0 && (fabs(v) >= 1e5 || fabs(v) < 1e-3)) snprintf(buf, n, "%.3e", v);
    else snprintf(buf, n, "%.4f", v);
}

static void fmt_p(char *buf, size_t n, double p) {
    if (isnan(p)) snprintf(buf, n, "n/a");
    else if (p < 1e-4) snprintf(buf, n, "%.1e", p);
    else snprintf(buf, n, "%.4f", p);
}

static double strategy_mean_auroc(const ms_eval_result *res, int si) {
    double sum = 0;
    long n = 0;
    for (int g = 0; g < res->n_groups; g++)
        for (int ki = 0; ki < res->n_k; ki++) {
            const double *a = res->auroc + ((size_t)(g * res->n_k + ki) * res->n_strat + si) * res->tasks;
            for (int i = 0; i < res->tasks; i++) sum += a[i];
            n += res->tasks;
        }
    return n ? sum / n : NAN;
}

/* ---- output files: all rendered, then written; removed again on failure ------------------ */

typedef struct {
    char *path;
    void *data;
    size_t n;
} out_file;

typedef struct {
    out_file *f;
    int n, cap;
} out_set;

static void out_add(out_set *o, const char *dir, const char *name, void *data, size_t n) {
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 16;
        o->f = ms_xrealloc(o->f, sizeof(out_file) * (size_t)o->cap);
    }
    size_t len = strlen(dir) + strlen(name) + 2;
    out_file *f = &o->f[o->n++];
    f->path = ms_xmalloc(len);
    snprintf(f->path, len, "%s/%s", dir, name);
    f->data = data;
    f->n = n;
}

/* Every file is written completely before any is published (medselect/output.h); report.md,
 * added last, is published last. */
static ms_status out_write_all(out_set *o) {
    ms_outfile *of = ms_xcalloc((size_t)o->n, sizeof *of);
    ms_outfile **v = ms_xmalloc(sizeof *v * (size_t)o->n);
    ms_status st = MS_OK;
    int opened = 0;
    for (int i = 0; i < o->n && !st; i++) {
        v[i] = &of[i];
        st = ms_out_open(&of[i], o->f[i].path);
        if (st) break;
        opened++;
        if (o->f[i].n && fwrite(o->f[i].data, 1, o->f[i].n, of[i].f) != o->f[i].n)
            st = ms_fail(MS_ERR_IO, "%s: cannot write: %s", o->f[i].path, strerror(errno));
    }
    if (!st) st = ms_out_commit_all(v, o->n);
    for (int i = opened - 1; i >= 0; i--) ms_out_abort(&of[i]);
    free(v);
    free(of);
    return st;
}

static void out_free(out_set *o) {
    for (int i = 0; i < o->n; i++) {
        free(o->f[i].path);
        free(o->f[i].data);
    }
    free(o->f);
    memset(o, 0, sizeof *o);
}

/* ---- figures ----------------------------------------------------------------------------- */

static ms_status render_ecdf(out_set *o, const char *dir, const ms_analysis_report *r,
                             const ms_analysis *an, const ms_an_quantity *q, char *fname, size_t fn) {
    char sub[256], wb[32], pb[32], pbh[32], la[128], lb[128];
    fmt_num(wb, sizeof wb, q->w1);
    fmt_p(pb, sizeof pb, q->p);
    fmt_p(pbh, sizeof pbh, q->p_bh);
    snprintf(sub, sizeof sub, "K = %d, %s; W1 = %s (area between the curves), p = %s, BH p = %s",
             an->k, q->per_selection ? "one value per selection" : "selected images pooled over tasks",
             wb, pb, pbh);
    snprintf(la, sizeof la, "A: %s (n = %d)", r->strats[an->sa]->label, q->na);
    snprintf(lb, sizeof lb, "B: %s (n = %d)", r->strats[an->sb]->label, q->nb);
    const double *x[2] = {q->a, q->b};
    int n[2] = {q->na, q->nb};
    const char *labels[2] = {la, lb};
    ms_png png;
    ms_status st = ms_plot_ecdf(&png, q->title, sub, q->title, x, n, labels, 2);
    if (st) return st;
    snprintf(fname, fn, "k%d_%s.png", an->k, q->name);
    out_add(o, dir, fname, png.data, png.n);
    return MS_OK;
}

/* One bar group per condition of each group (and the group as a whole when it has several),
 * one bar per strategy, for K index ki. */
static ms_status render_auroc(out_set *o, const char *dir, const ms_analysis_report *r, int ki,
                              char *fname, size_t fn) {
    const ms_eval_config *cfg = r->cfg;
    const int ns = r->res->n_strat;
    int cap = 0;
    for (int g = 0; g < cfg->n_groups; g++) cap += cfg->group[g].n_cond + 1;
    char **glab = ms_xcalloc((size_t)cap, sizeof(char *));
    double *mean = ms_xmalloc(sizeof(double) * (size_t)cap * ns);
    double *lo = ms_xmalloc(sizeof(double) * (size_t)cap * ns);
    double *hi = ms_xmalloc(sizeof(double) * (size_t)cap * ns);
    int ng = 0;
    for (int g = 0; g < cfg->n_groups; g++) {
        const ms_eval_group *grp = &cfg->group[g];
        for (int c = (grp->n_cond > 1 ? -1 : 0); c < grp->n_cond; c++) {
            int cond = c < 0 ? -1 : grp->cond[c];
            char buf[128];
            if (cond < 0) snprintf(buf, sizeof buf, "%s (all)", grp->name);
            else snprintf(buf, sizeof buf, "%s", r->split->cond[cond]);
            glab[ng] = ms_xstrdup(buf);
            for (int si = 0; si < ns; si++) {
                mean[ng * ns + si] = lo[ng * ns + si] = hi[ng * ns + si] = NAN;
                for (int i = 0; i < r->n_rows; i++) {
                    const ms_eval_row *row = &r->rows[i];
                    if (row->g == g && row->ki == ki && row->s == si && row->cond == cond) {
                        mean[ng * ns + si] = row->auroc.mean;
                        lo[ng * ns + si] = row->auroc.lo;
                        hi[ng * ns + si] = row->auroc.hi;
                    }
                }
            }
            ng++;
        }
    }
    const char **slab = ms_xmalloc(sizeof(char *) * (size_t)ns);
    for (int si = 0; si < ns; si++) slab[si] = r->strats[si]->label;
    char title[128];
    snprintf(title, sizeof title, "Mean AUROC per condition, K = %d (95%% bootstrap CI over tasks)", cfg->k[ki]);
    ms_png png;
    ms_status st = ms_plot_bars(&png, title, "AUROC", (const char *const *)glab, ng, slab,
                                ns > 8 ? 8 : ns, mean, lo, hi);
    for (int i = 0; i < ng; i++) free(glab[i]);
    free(glab);
    free(slab);
    free(mean);
    free(lo);
    free(hi);
    if (st) return st;
    snprintf(fname, fn, "k%d_auroc.png", cfg->k[ki]);
    out_add(o, dir, fname, png.data, png.n);
    return MS_OK;
}

/* ---- the Markdown report ----------------------------------------------------------------- */

static void md_settings(FILE *f, const ms_analysis_report *r) {
    const ms_eval_config *cfg = r->cfg;
    const ms_split *s = r->split;
    const ms_analysis *an0 = &r->an[0];
    fprintf(f, "## Settings\n\n");
    fprintf(f, "- Positives: `%s`; normals: `%s` (%d + %d images, %d-dimensional embeddings)\n",
            s->pos_name ? s->pos_name : "", s->norm_name ? s->norm_name : "", s->n_pos, s->n_norm, s->d);
    for (int g = 0; g < cfg->n_groups; g++) {
        fprintf(f, "- Group **%s**: ", cfg->group[g].name);
        for (int c = 0; c < cfg->group[g].n_cond; c++)
            fprintf(f, "%s%s", c ? ", " : "", s->cond[cfg->group[g].cond[c]]);
        fprintf(f, "\n");
    }
    fprintf(f, "- %d tasks per group; pool %d (%d positive), query %d (%d positive); K =", cfg->tasks,
            cfg->shape.pool, ms_task_pool_pos(&cfg->shape), cfg->shape.query, ms_task_query_pos(&cfg->shape));
    for (int i = 0; i < cfg->n_k; i++) fprintf(f, "%s %d", i ? "," : "", cfg->k[i]);
    fprintf(f, "; predictor %s; task seed %llu\n", cfg->pred == MS_PRED_COSINE ? "cosine" : "euclidean",
            (unsigned long long)cfg->seed);
    fprintf(f, "- **A**: %s (mean AUROC %.4f over every task and K); **B**: %s (mean AUROC %.4f)%s%s\n",
            r->strats[an0->sa]->label, strategy_mean_auroc(r->res, an0->sa), r->strats[an0->sb]->label,
            strategy_mean_auroc(r->res, an0->sb), r->b_note ? ", chosen as the " : "", r->b_note ? r->b_note : "");
    fprintf(f, "- Learned selector's decoding rule: %s%s\n", ms_decode_rule(cfg->decode),
            cfg->decode == MS_DECODE_MULTINOMIAL ? " (a repeated image counts once per draw here too)" : "");
    fprintf(f, "- Permutation tests: %d permutations (%s scheme), seed %llu\n\n", an0->perms,
            an0->scheme == MS_AN_POOLED ? "pooled" : "task-swap", (unsigned long long)an0->seed);
}

static void md_method(FILE *f) {
    fprintf(f,
            "## Method\n\n"
            "Every selection of A and B (one per task, same tasks for both) is mapped back to its "
            "images. Per-image quantities (age, embedding norms, cosine similarity to the pool "
            "centroid) are pooled over all tasks of all groups, an image chosen in several tasks "
            "counting once per choice; per-selection quantities (mean pairwise cosine similarity "
            "of the K selected, fraction of positives) give one value per task. A and B are "
            "compared by the Wasserstein-1 distance between the empirical distributions (the "
            "area between the two ECDFs) with a permutation p-value, "
            "(1 + #{W* >= W}) / (1 + permutations). With the task-swap scheme each permutation "
            "exchanges A's and B's selections of a task with probability 1/2, which respects "
            "that both strategies chose from the same pools and that the same images recur "
            "across tasks; the pooled scheme shuffles all values as if independent and is "
            "anti-conservative when images recur. Sex and view proportions of the selected "
            "images are 2x2 tables (rows A, B) tested by Pearson's chi-square test (no "
            "continuity correction) and Fisher's exact test, which count every pick as an "
            "independent image (anti-conservative in the same way), and by a task-swap "
            "permutation test of the difference of the shares. All p-values of one K form one "
            "family adjusted by "
            "Benjamini-Hochberg. The view is frontal versus lateral only: a View column's PA and "
            "AP are both read as frontal, so AP versus PA is not distinguished. The cosine "
            "centroid of a pool is the normalised mean of its unit-norm embeddings; norms are of "
            "the embeddings as stored.\n\n");
}

static void md_analysis(FILE *f, const ms_analysis_report *r, const ms_analysis *an,
                        char fig[MS_AN_NQUANT][64], const char *auroc_fig) {
    const ms_split *s = r->split;
    fprintf(f, "## K = %d: %s (A) versus %s (B)\n\n", an->k, r->strats[an->sa]->label, r->strats[an->sb]->label);
    fprintf(f, "%d selections per strategy.\n\n", an->n_sel);
    fprintf(f, "| quantity | unit | n A | n B | mean A | mean B | W1 | p | p (BH) |\n");
    fprintf(f, "|---|---|---|---|---|---|---|---|---|\n");
    for (int qi = 0; qi < MS_AN_NQUANT; qi++) {
        const ms_an_quantity *q = &an->q[qi];
        if (!q->available) {
            fprintf(f, "| %s | %s | 0 | 0 | n/a | n/a | n/a | n/a | n/a |\n", q->title,
                    q->per_selection ? "selection" : "image");
            continue;
        }
        char ma[32], mb[32], w[32], p[32], pb[32];
        fmt_num(ma, sizeof ma, q->mean_a);
        fmt_num(mb, sizeof mb, q->mean_b);
        fmt_num(w, sizeof w, q->w1);
        fmt_p(p, sizeof p, q->p);
        fmt_p(pb, sizeof pb, q->p_bh);
        fprintf(f, "| %s | %s | %d | %d | %s | %s | %s | %s | %s |\n", q->title,
                q->per_selection ? "selection" : "image", q->na, q->nb, ma, mb, w, p, pb);
    }
    fprintf(f, "\nProportions of the selected images (pooled over tasks):\n\n");
    fprintf(f, "| feature | A | B | chi2 (dof) | p (chi2) | p (chi2, BH) | p (Fisher) | p (Fisher, BH) "
               "| p (task swap) | p (task swap, BH) |\n");
    fprintf(f, "|---|---|---|---|---|---|---|---|---|---|\n");
    for (int pi = 0; pi < MS_AN_NPROP; pi++) {
        const ms_an_prop *pp = &an->prop[pi];
        if (!pp->available) {
            fprintf(f, "| %s | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |\n", pp->name);
            continue;
        }
        char p1[32], p2[32], p3[32], p4[32], p5[32], p6[32];
        fmt_p(p1, sizeof p1, pp->p_chi2);
        fmt_p(p2, sizeof p2, pp->p_chi2_bh);
        fmt_p(p3, sizeof p3, pp->p_fisher);
        fmt_p(p4, sizeof p4, pp->p_fisher_bh);
        fmt_p(p5, sizeof p5, pp->p_perm);
        fmt_p(p6, sizeof p6, pp->p_perm_bh);
        fprintf(f, "| %s | %ld %s / %ld %s | %ld %s / %ld %s | %.3f (%d) | %s | %s | %s | %s | %s | %s |\n",
                pp->name, pp->table[0], pp->level[0], pp->table[1], pp->level[1], pp->table[2],
                pp->level[0], pp->table[3], pp->level[1], pp->chi2, pp->dof, p1, p2, p3, p4, p5, p6);
    }
    if (!s->clin)
        fprintf(f, "\nThe data have no clinical columns (Age, Sex, Frontal/Lateral or View): age, sex "
                   "and view are not analysed.\n");
    fprintf(f, "\n### Figures (ECDFs of A and B)\n\n");
    for (int qi = 0; qi < MS_AN_NQUANT; qi++)
        if (an->q[qi].available) fprintf(f, "![%s, K = %d](%s)\n\n", an->q[qi].title, an->k, fig[qi]);

    fprintf(f, "### Mean AUROC per condition and strategy, K = %d\n\n", an->k);
    fprintf(f, "| group | condition | strategy | tasks | AUROC [95%% CI] |\n|---|---|---|---|---|\n");
    for (int i = 0; i < r->n_rows; i++) {
        const ms_eval_row *row = &r->rows[i];
        if (row->ki != an->ki) continue;
        char ci[80];
        if (isnan(row->auroc.mean)) snprintf(ci, sizeof ci, "n/a");
        else snprintf(ci, sizeof ci, "%.3f [%.3f, %.3f]", row->auroc.mean, row->auroc.lo, row->auroc.hi);
        fprintf(f, "| %s | %s | %s%s | %d | %s |\n", r->cfg->group[row->g].name,
                row->cond >= 0 ? s->cond[row->cond] : "(all)", r->strats[row->s]->label,
                row->s == an->sa ? " (A)" : row->s == an->sb ? " (B)" : "", row->n, ci);
    }
    fprintf(f, "\n![Mean AUROC per condition, K = %d](%s)\n\n", an->k, auroc_fig);
}

ms_status ms_analysis_write_report(const char *dir, const ms_analysis_report *r) {
    MS_CHECK(r->n_an >= 1);
    ms_status st = MS_OK;
    out_set o = {0};
    char *md = NULL;
    size_t md_n = 0;
    FILE *f = open_memstream(&md, &md_n);
    MS_CHECK(f != NULL);
    const ms_analysis *an0 = &r->an[0];
    fprintf(f, "# Selection analysis: %s (A) versus %s (B)\n\n", r->strats[an0->sa]->label,
            r->strats[an0->sb]->label);
    fprintf(f, "What the two strategies select on the same meta-test tasks: clinical features and "
               "embedding geometry of the selected images, and the AUROC they reach.\n\n");
    if (r->command) fprintf(f, "Made with:\n\n```\n%s\n```\n\n", r->command);
    md_settings(f, r);
    for (int a = 0; a < r->n_an && !st; a++) {
        const ms_analysis *an = &r->an[a];
        char fig[MS_AN_NQUANT][64], auroc_fig[64];
        for (int qi = 0; qi < MS_AN_NQUANT && !st; qi++)
            if (an->q[qi].available) st = render_ecdf(&o, dir, r, an, &an->q[qi], fig[qi], sizeof fig[qi]);
        if (!st) st = render_auroc(&o, dir, r, an->ki, auroc_fig, sizeof auroc_fig);
        if (!st) md_analysis(f, r, an, fig, auroc_fig);
    }
    md_method(f);
    fclose(f);
    if (!st) {
        out_add(&o, dir, "report.md", md, md_n);
        md = NULL;
        st = out_write_all(&o);
    }
    free(md);
    out_free(&o);
    return st;
}

/* ---- JSON -------------------------------------------------------------------------------- */

static void add_num(cJSON *o, const char *key, double v) {
    if (isnan(v) || isinf(v)) cJSON_AddNullToObject(o, key);
    else cJSON_AddNumberToObject(o, key, v);
}

char *ms_analysis_json(const ms_analysis_report *r) {
    const ms_eval_config *cfg = r->cfg;
    const ms_split *s = r->split;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "medselect_version", MS_VERSION);
    if (r->command) cJSON_AddStringToObject(root, "command", r->command);
    cJSON *conf = ms_eval_config_json(root, cfg, s);
    cJSON *groups = cJSON_AddArrayToObject(conf, "groups");
    for (int g = 0; g < cfg->n_groups; g++) {
        cJSON *go = cJSON_CreateObject();
        cJSON_AddStringToObject(go, "name", cfg->group[g].name);
        cJSON *cs = cJSON_AddArrayToObject(go, "conditions");
        for (int c = 0; c < cfg->group[g].n_cond; c++)
            cJSON_AddItemToArray(cs, cJSON_CreateString(s->cond[cfg->group[g].cond[c]]));
        cJSON_AddItemToArray(groups, go);
    }
    cJSON *st_arr = cJSON_AddArrayToObject(conf, "strategies");
    for (int i = 0; i < r->res->n_strat; i++) cJSON_AddItemToArray(st_arr, cJSON_CreateString(r->strats[i]->label));

    cJSON *ans = cJSON_AddArrayToObject(root, "analyses");
    for (int a = 0; a < r->n_an; a++) {
        const ms_analysis *an = &r->an[a];
        cJSON *ao = cJSON_CreateObject();
        cJSON_AddItemToArray(ans, ao);
        cJSON_AddNumberToObject(ao, "k", an->k);
        cJSON_AddStringToObject(ao, "a", r->strats[an->sa]->label);
        cJSON_AddStringToObject(ao, "b", r->strats[an->sb]->label);
        if (r->b_note) cJSON_AddStringToObject(ao, "b_chosen_as", r->b_note);
        cJSON_AddNumberToObject(ao, "permutations", an->perms);
        char seed[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)an->seed);
        cJSON_AddStringToObject(ao, "seed", seed);
        cJSON_AddStringToObject(ao, "scheme", an->scheme == MS_AN_POOLED ? "pooled" : "task-swap");
        cJSON_AddNumberToObject(ao, "selections", an->n_sel);
        cJSON *qs = cJSON_AddArrayToObject(ao, "quantities");
        for (int qi = 0; qi < MS_AN_NQUANT; qi++) {
            const ms_an_quantity *q = &an->q[qi];
            cJSON *qo = cJSON_CreateObject();
            cJSON_AddStringToObject(qo, "name", q->name);
            cJSON_AddStringToObject(qo, "title", q->title);
            cJSON_AddStringToObject(qo, "per", q->per_selection ? "selection" : "image");
            cJSON_AddNumberToObject(qo, "n_a", q->na);
            cJSON_AddNumberToObject(qo, "n_b", q->nb);
            add_num(qo, "mean_a", q->mean_a);
            add_num(qo, "mean_b", q->mean_b);
            add_num(qo, "w1", q->w1);
            add_num(qo, "p", q->p);
            add_num(qo, "p_bh", q->p_bh);
            cJSON_AddItemToArray(qs, qo);
        }
        cJSON *ps = cJSON_AddArrayToObject(ao, "proportions");
        for (int pi = 0; pi < MS_AN_NPROP; pi++) {
            const ms_an_prop *pp = &an->prop[pi];
            cJSON *po = cJSON_CreateObject();
            cJSON_AddStringToObject(po, "name", pp->name);
            cJSON *lv = cJSON_AddArrayToObject(po, "levels");
            cJSON_AddItemToArray(lv, cJSON_CreateString(pp->level[0]));
            cJSON_AddItemToArray(lv, cJSON_CreateString(pp->level[1]));
            cJSON *tab = cJSON_AddArrayToObject(po, "table");
            for (int row = 0; row < 2; row++) {
                cJSON *ro = cJSON_CreateArray();
                cJSON_AddItemToArray(ro, cJSON_CreateNumber((double)pp->table[2 * row]));
                cJSON_AddItemToArray(ro, cJSON_CreateNumber((double)pp->table[2 * row + 1]));
                cJSON_AddItemToArray(tab, ro);
            }
            add_num(po, "chi2", pp->chi2);
            if (pp->available) cJSON_AddNumberToObject(po, "dof", pp->dof);
            else cJSON_AddNullToObject(po, "dof");
            add_num(po, "p_chi2", pp->p_chi2);
            add_num(po, "p_fisher", pp->p_fisher);
            add_num(po, "p_perm", pp->p_perm);
            add_num(po, "p_chi2_bh", pp->p_chi2_bh);
            add_num(po, "p_fisher_bh", pp->p_fisher_bh);
            add_num(po, "p_perm_bh", pp->p_perm_bh);
            cJSON_AddItemToArray(ps, po);
        }
    }
    cJSON *au = cJSON_AddArrayToObject(root, "auroc");
    for (int i = 0; i < r->n_rows; i++) {
        const ms_eval_row *row = &r->rows[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "group", cfg->group[row->g].name);
        if (row->cond >= 0) cJSON_AddStringToObject(o, "condition", s->cond[row->cond]);
        else cJSON_AddNullToObject(o, "condition");
        cJSON_AddNumberToObject(o, "k", cfg->k[row->ki]);
        cJSON_AddStringToObject(o, "strategy", r->strats[row->s]->label);
        cJSON_AddNumberToObject(o, "tasks", row->n);
        add_num(o, "mean", row->auroc.mean);
        add_num(o, "lo", row->auroc.lo);
        add_num(o, "hi", row->auroc.hi);
        cJSON_AddItemToArray(au, o);
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

ms_status ms_analysis_write_json(const char *path, const ms_analysis_report *r) {
    char *text = ms_analysis_json(r);
    ms_status rc = MS_OK;
    if (!strcmp(path, "-")) fputs(text, stdout);
    else rc = ms_write_file_atomic(path, text, strlen(text));
    free(text);
    return rc;
}
