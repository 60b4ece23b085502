/* test_analyze.c: the selection analysis on the synthetic meta-dataset.
 *
 * - random versus an identical random strategy: identical selections, so every Wasserstein-1
 *   distance is 0, every permutation p-value 1 (BH too), and the 2x2 tables have equal rows
 *   (chi-square 0, p 1; Fisher p 1).
 * - both permutation schemes (task swap and pooled) on 20 independent pairs of random
 *   strategies: p-values roughly uniform (binomial bounds on the counts below 0.1 and 0.5).
 * - random versus a test strategy that picks the K largest-norm pool items: the L2-norm
 *   distance is large with p < 0.01; the values collected for B equal, task by task, the K
 *   largest norms of the task's pool recomputed here (checks the pool-position -> row
 *   mapping); BH-adjusted p >= raw p.
 * - the report directory (report.md + PNGs with the PNG signature) and the JSON (parsed with
 *   cJSON, fields present), and a failing report leaves nothing behind.
 * The statistics themselves are tested against scipy in test_metrics.
 */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include <cairo.h>
#include <dlfcn.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/ms_plot.h"
#include "medselect/analyze.h"
#include "medselect/synth.h"
#include "ms_test.h"

/* ---- a test-only strategy: the K pool items of largest L2 norm, largest first ------------ */
static double row_norm(const float *x, int d) {
    double s = 0;
    for (int j = 0; j < d; j++) s += (double)x[j] * x[j];
    return sqrt(s);
}

static ms_status largest_select(const ms_strategy *s, const ms_pool *pool, int k, uint64_t seed,
                                int *out, ms_arena *ws) {
    (void)s;
    (void)seed;
    double *nrm = MS_ARENA_NEW(ws, double, pool->n);
    for (int i = 0; i < pool->n; i++) nrm[i] = row_norm(pool->raw + (size_t)i * pool->d, pool->d);
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < pool->n; i++) {
            int taken = 0;
            for (int t = 0; t < j; t++) taken |= out[t] == i;
            if (!taken && (best < 0 || nrm[i] > nrm[best])) best = i;
        }
        out[j] = best;
    }
    return MS_OK;
}

/* A test-only random strategy with its own stream (ctx: an int id), so that several of them
 * draw independently on the same task: the null hypothesis of the calibration check. */
static ms_status other_select(const ms_strategy *s, const ms_pool *pool, int k, uint64_t seed,
                              int *out, ms_arena *ws) {
    ms_rng r;
    ms_rng_init(&r, seed, 99, (uint64_t)*(const int *)s->ctx);
    int *scratch = MS_ARENA_NEW(ws, int, pool->n);
    ms_rng_choose(&r, pool->n, k, out, scratch);
    return MS_OK;
}

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

static size_t file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n > 0 ? (size_t)n : 0;
}

static int is_png(const char *path) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char buf[8];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(buf, 1, 8, f);
    fclose(f);
    return n == 8 && !memcmp(buf, sig, 8) && file_size(path) > 1000;
}


int main(void) {
    ms_synth_config sc;
    ms_synth_defaults(&sc);
    sc.d = 32;
    for (int i = 0; i < 3; i++) sc.n_pos[i] = 400, sc.n_norm[i] = 300;
    ms_split tr, va, te;
    ms_synth_generate(&sc, &tr, &va, &te);
    ms_split_free(&tr);
    ms_split_free(&va);

    ms_eval_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.shape = (ms_task_shape){.pool = 40, .pos_frac = 0.5, .query = 20, .query_pos_frac = 0.5};
    cfg.n_k = 2;
    cfg.k[0] = 5;
    cfg.k[1] = 10;
    cfg.tasks = 60;
    cfg.seed = 3;
    cfg.pred = MS_PRED_COSINE;
    cfg.keep_selections = 1;
    int seen[6] = {0, 1, 2, 3, 4, 5}, unseen[2] = {6, 7};
    cfg.n_groups = 2;
    snprintf(cfg.group[0].name, sizeof cfg.group[0].name, "seen");
    cfg.group[0].cond = seen;
    cfg.group[0].n_cond = 6;
    snprintf(cfg.group[1].name, sizeof cfg.group[1].name, "unseen");
    cfg.group[1].cond = unseen;
    cfg.group[1].n_cond = 2;

    ms_strategy *strats[3];
    MS_CHECK(ms_strategy_create(&strats[0], "random") == MS_OK);
    MS_CHECK(ms_strategy_create(&strats[1], "random") == MS_OK);
    strats[2] = ms_xcalloc(1, sizeof(ms_strategy));
    snprintf(strats[2]->name, sizeof strats[2]->name, "largest");
    snprintf(strats[2]->label, sizeof strats[2]->label, "largest-norm");
    strats[2]->select = largest_select;

    ms_eval_result res;
    MS_EXPECT(ms_evaluate(&res, &te, &cfg, strats, 3, NULL) == MS_OK);
    const int n_sel = cfg.n_groups * cfg.tasks;

    /* ---- identical strategies ---- */
    ms_analysis same;
    MS_EXPECT(ms_analyze(&same, &te, &cfg, &res, 0, 1, 1, 200, 11, MS_AN_TASK_SWAP) == MS_OK);
    MS_EXPECT(same.k == 10 && same.n_sel == n_sel);
    for (int q = 0; q < MS_AN_NQUANT; q++) {
        const ms_an_quantity *qq = &same.q[q];
        MS_EXPECT(qq->available);
        MS_EXPECT(qq->na == qq->nb);
        MS_EXPECT(qq->na == (qq->per_selection ? n_sel : n_sel * 10));
        MS_EXPECT(qq->w1 == 0.0);
        MS_EXPECT(qq->p == 1.0 && qq->p_bh == 1.0);
        if (qq->w1 != 0.0 || qq->p != 1.0) printf("identical: %s W1 %g p %g\n", qq->name, qq->w1, qq->p);
    }
    for (int p = 0; p < MS_AN_NPROP; p++) {
        const ms_an_prop *pp = &same.prop[p];
        MS_EXPECT(pp->available);
        MS_EXPECT(pp->table[0] == pp->table[2] && pp->table[1] == pp->table[3]);
        MS_EXPECT(pp->table[0] + pp->table[1] == n_sel * 10);
        MS_EXPECT(fabs(pp->chi2) < 1e-12 && fabs(pp->p_chi2 - 1) < 1e-12 && fabs(pp->p_fisher - 1) < 1e-9);
        MS_EXPECT(pp->p_chi2_bh > 0.05 && pp->p_fisher_bh > 0.05);
        MS_EXPECT(pp->p_perm == 1.0 && pp->p_perm_bh == 1.0);
    }
    {
        ms_analysis pooled;
        MS_EXPECT(ms_analyze(&pooled, &te, &cfg, &res, 0, 1, 0, 100, 11, MS_AN_POOLED) == MS_OK);
        for (int q = 0; q < MS_AN_NQUANT; q++) MS_EXPECT(pooled.q[q].w1 == 0.0 && pooled.q[q].p == 1.0);
        ms_analysis_free(&pooled);
    }
    /* synthetic ages are plausible years */
    for (int i = 0; i < same.q[MS_AN_AGE].na; i++) MS_EXPECT(same.q[MS_AN_AGE].a[i] > 0 && same.q[MS_AN_AGE].a[i] < 120);

    /* ---- random versus the K largest norms ---- */
    ms_analysis an[2];
    for (int ki = 0; ki < 2; ki++)
        MS_EXPECT(ms_analyze(&an[ki], &te, &cfg, &res, 0, 2, ki, 300, 11, MS_AN_TASK_SWAP) == MS_OK);
    const ms_an_quantity *l2 = &an[1].q[MS_AN_L2];
    printf("largest-norm vs random, K=10: L2 mean %.3f vs %.3f, W1 %.3f, p %.4g (BH %.4g)\n", l2->mean_b,
           l2->mean_a, l2->w1, l2->p, l2->p_bh);
    MS_EXPECT(l2->w1 > 0 && l2->mean_b > l2->mean_a);
    MS_EXPECT(l2->p < 0.01 && l2->p_bh < 0.05); /* BH depends on the whole family of tests */
    MS_EXPECT(an[0].q[MS_AN_L2].p < 0.01);
    /* p = (1 + count) / (1 + perms): the smallest possible value here */
    MS_EXPECT(fabs(l2->p - 1.0 / 301.0) < 1e-12);
    for (int a = 0; a < 2; a++) {
        for (int q = 0; q < MS_AN_NQUANT; q++)
            if (an[a].q[q].available) MS_EXPECT(an[a].q[q].p_bh >= an[a].q[q].p - 1e-15);
        for (int p = 0; p < MS_AN_NPROP; p++) {
            MS_EXPECT(an[a].prop[p].p_chi2_bh >= an[a].prop[p].p_chi2 - 1e-15);
            MS_EXPECT(an[a].prop[p].p_fisher_bh >= an[a].prop[p].p_fisher - 1e-15);
            MS_EXPECT(an[a].prop[p].p_perm_bh >= an[a].prop[p].p_perm - 1e-15);
        }
    }
    {
        ms_analysis pooled;
        MS_EXPECT(ms_analyze(&pooled, &te, &cfg, &res, 0, 2, 1, 300, 11, MS_AN_POOLED) == MS_OK);
        MS_EXPECT(pooled.q[MS_AN_L2].w1 == l2->w1 && pooled.q[MS_AN_L2].p < 0.01);
        ms_analysis_free(&pooled);
    }
    /* B's L2 values are, task by task, the 10 largest norms of that task's pool */
    {
        ms_task t;
        ms_task_alloc(&t, &cfg.shape, NULL);
        int *scratch = malloc(sizeof(int) * (size_t)(te.n_pos > te.n_norm ? te.n_pos : te.n_norm));
        double *nrm = malloc(sizeof(double) * (size_t)cfg.shape.pool);
        double *got = malloc(sizeof(double) * 10);
        double maxdiff = 0;
        for (int g = 0; g < cfg.n_groups; g++)
            for (int i = 0; i < cfg.tasks; i++) {
                ms_task_sample(&t, &te, &cfg.shape, cfg.group[g].cond, cfg.group[g].n_cond, cfg.seed,
                               ms_eval_group_stream(&te, &cfg.group[g]), (uint64_t)i, scratch);
                for (int j = 0; j < t.P; j++) nrm[j] = row_norm(te.emb + (size_t)t.pool[j] * te.d, te.d);
                qsort(nrm, (size_t)t.P, sizeof(double), cmp_desc);
                memcpy(got, l2->b + (size_t)(g * cfg.tasks + i) * 10, sizeof(double) * 10);
                qsort(got, 10, sizeof(double), cmp_desc);
                for (int j = 0; j < 10; j++) maxdiff = fmax(maxdiff, fabs(got[j] - nrm[j]));
            }
        printf("largest-norm selections vs recomputed top-10 pool norms: max |diff| %.3g\n", maxdiff);
        MS_EXPECT(maxdiff < 1e-9);
        ms_task_free(&t);
        free(scratch);
        free(nrm);
        free(got);
    }

    /* ---- best baseline by mean AUROC ---- */
    {
        double mean[3] = {0, 0, 0};
        size_t cells = (size_t)res.n_groups * res.n_k * res.tasks;
        for (int g = 0; g < res.n_groups; g++)
            for (int ki = 0; ki < res.n_k; ki++)
                for (int si = 0; si < 3; si++)
                    for (int i = 0; i < res.tasks; i++)
                        mean[si] += res.auroc[((size_t)(g * res.n_k + ki) * 3 + si) * res.tasks + i] / (double)cells;
        int want = mean[2] > mean[1] ? 2 : 1;
        MS_EXPECT(ms_analyze_best(&res, 0) == want);
        MS_EXPECT(ms_analyze_best(&res, 2) == (mean[1] >= mean[0] ? 0 : 1) || mean[0] == mean[1]);
    }

    /* ---- calibration under the null: 20 independent pairs of random strategies ---- */
    {
        enum { NPAIR = 20 };
        ms_strategy *others[2 * NPAIR];
        int ids[2 * NPAIR];
        for (int j = 0; j < 2 * NPAIR; j++) {
            ids[j] = j;
            others[j] = ms_xcalloc(1, sizeof(ms_strategy));
            snprintf(others[j]->name, sizeof others[j]->name, "other%d", j);
            snprintf(others[j]->label, sizeof others[j]->label, "other%d", j);
            others[j]->select = other_select;
            others[j]->ctx = &ids[j];
        }
        ms_eval_config c2 = cfg;
        c2.tasks = 25;
        c2.n_k = 1;
        c2.k[0] = 5;
        ms_eval_result r2;
        MS_EXPECT(ms_evaluate(&r2, &te, &c2, others, 2 * NPAIR, NULL) == MS_OK);
        for (int scheme = 0; scheme < 2; scheme++) {
            int below10 = 0, below50 = 0;
            for (int j = 0; j < NPAIR; j++) {
                ms_analysis na;
                MS_EXPECT(ms_analyze(&na, &te, &c2, &r2, 2 * j, 2 * j + 1, 0, 99, 5 + j, (ms_an_scheme)scheme) == MS_OK);
                double p = na.q[MS_AN_L2].p;
                below10 += p < 0.1;
                below50 += p < 0.5;
                ms_analysis_free(&na);
            }
            printf("null calibration (%s): %d of %d p < 0.1, %d p < 0.5\n", scheme ? "pooled" : "task-swap",
                   below10, NPAIR, below50);
            /* Binomial(20, 0.1) >= 8 and Binomial(20, 0.5) <= 3 each have probability < 0.002 */
            MS_EXPECT(below10 <= 7);
            MS_EXPECT(below50 >= 4);
        }
        ms_eval_result_free(&r2);
        for (int j = 0; j < 2 * NPAIR; j++) free(others[j]);
    }

    /* ---- report and JSON ---- */
    ms_eval_row *rows;
    int n_rows;
    ms_eval_summarize(&res, &cfg, 200, &rows, &n_rows);
    ms_analysis_report rep = {.split = &te, .cfg = &cfg, .res = &res, .strats = strats, .an = an, .n_an = 2,
                              .rows = rows, .n_rows = n_rows, .command = "test_analyze (library call)"};
    const char *dir = ms_tmp("analyze_report");
    MS_EXPECT(ms_analysis_write_report(dir, &rep) == MS_OK);
    char path[1024];
    static const char *const figs[] = {"k10_age.png", "k10_l1_norm.png", "k10_l2_norm.png", "k10_linf_norm.png",
                                       "k10_cos_centroid.png", "k10_pairwise_cos.png", "k10_pos_frac.png",
                                       "k10_auroc.png", "k5_l2_norm.png", "k5_auroc.png"};
    for (size_t i = 0; i < sizeof figs / sizeof figs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, figs[i]);
        MS_EXPECT(is_png(path));
    }
    snprintf(path, sizeof path, "%s/report.md", dir);
    char *md = ms_read_file(path, NULL);
    MS_EXPECT(md != NULL);
    if (md) {
        MS_EXPECT(strstr(md, "| L2 norm of the embedding |") != NULL);
        MS_EXPECT(strstr(md, "![L2 norm of the embedding, K = 10](k10_l2_norm.png)") != NULL);
        MS_EXPECT(strstr(md, "](k10_auroc.png)") != NULL);
        MS_EXPECT(strstr(md, "| sex |") != NULL && strstr(md, "| view |") != NULL);
        MS_EXPECT(strstr(md, "## K = 5") != NULL && strstr(md, "## K = 10") != NULL);
    }
    free(md);

    const char *json = ms_tmp("analyze.json");
    MS_EXPECT(ms_analysis_write_json(json, &rep) == MS_OK);
    char *text = ms_read_file(json, NULL);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    MS_EXPECT(root != NULL);
    if (root) {
        cJSON *ans = cJSON_GetObjectItem(root, "analyses");
        MS_EXPECT(cJSON_GetArraySize(ans) == 2);
        cJSON *a1 = cJSON_GetArrayItem(ans, 1);
        MS_EXPECT(cJSON_GetObjectItem(a1, "k")->valuedouble == 10);
        MS_EXPECT(!strcmp(cJSON_GetObjectItem(a1, "b")->valuestring, "largest-norm"));
        cJSON *qs = cJSON_GetObjectItem(a1, "quantities");
        MS_EXPECT(cJSON_GetArraySize(qs) == MS_AN_NQUANT);
        cJSON *q2 = cJSON_GetArrayItem(qs, MS_AN_L2);
        MS_EXPECT(!strcmp(cJSON_GetObjectItem(q2, "name")->valuestring, "l2_norm"));
        static const char *const keys[] = {"n_a", "n_b", "mean_a", "mean_b", "w1", "p", "p_bh"};
        for (int k = 0; k < 7; k++) MS_EXPECT(cJSON_IsNumber(cJSON_GetObjectItem(q2, keys[k])));
        MS_EXPECT(fabs(cJSON_GetObjectItem(q2, "w1")->valuedouble - l2->w1) <= 1e-9 * l2->w1);
        cJSON *ps = cJSON_GetObjectItem(a1, "proportions");
        MS_EXPECT(cJSON_GetArraySize(ps) == MS_AN_NPROP);
        MS_EXPECT(cJSON_IsNumber(cJSON_GetObjectItem(cJSON_GetArrayItem(ps, 0), "p_fisher_bh")));
        MS_EXPECT(cJSON_IsNumber(cJSON_GetObjectItem(cJSON_GetArrayItem(ps, 0), "p_perm_bh")));
        MS_EXPECT(!strcmp(cJSON_GetObjectItem(a1, "scheme")->valuestring, "task-swap"));
        MS_EXPECT(cJSON_GetArraySize(cJSON_GetObjectItem(root, "auroc")) == n_rows);
        cJSON_Delete(root);
    }
    free(text);

    /* a report into missing parent folders creates them; one under a file fails, writes
     * nothing and names the file */
    char nested[4200];
    snprintf(nested, sizeof nested, "%s/such/parent/dir", ms_tmp("no"));
    MS_EXPECT(ms_analysis_write_report(nested, &rep) == MS_OK);
    snprintf(nested, sizeof nested, "%s/such/parent/dir/report.md", ms_tmp("no"));
    MS_EXPECT(ms_file_exists(nested));
    char under_file[4300];
    snprintf(under_file, sizeof under_file, "%s/dir", nested);
    MS_EXPECT(ms_analysis_write_report(under_file, &rep) == MS_ERR_IO);
    MS_EXPECT(strstr(ms_last_error(), "report.md: cannot create folder") != NULL);

    /* plotting helper */
    MS_EXPECT(fabs(ms_plot_nice_step(0, 1, 7) - 0.2) < 1e-12);
    MS_EXPECT(fabs(ms_plot_nice_step(3, 97, 8) - 20) < 1e-12);

    free(rows);
    ms_analysis_free(&same);
    ms_analysis_free(&an[0]);
    ms_analysis_free(&an[1]);
    ms_eval_result_free(&res);
    ms_strategy_free(strats[0]);
    ms_strategy_free(strats[1]);
    free(strats[2]);
    ms_split_free(&te);
    /* Release cairo's font caches and fontconfig's configuration (process-lifetime caches,
     * not leaks of ours) so that LeakSanitizer reports only real leaks. fontconfig is not
     * linked directly (cairo loads it), hence the lookup. */
    cairo_debug_reset_static_data();
    void (*fc_fini)(void);
    *(void **)&fc_fini = dlsym(RTLD_DEFAULT, "FcFini");
    if (fc_fini) fc_fini();
    return ms_test_summary();
}
