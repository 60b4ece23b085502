/* test_evaluate.c: the meta-test protocol end to end on the synthetic meta-dataset: results
 * identical for 1 and 2 threads, AUROCs in range, strategies compared on the same tasks
 * (random at a nested K reuses the same draw), summary rows consistent with the raw values,
 * and the synthetic generator's defining properties (outliers, condition directions).
 * Also: paired differences against a second strategy (--versus) against numpy/scipy
 * references (tests/fixtures/gen_evaluate.py); a group's tasks depend on its condition list,
 * not its position or flag (library and CLI); prefix scoring of rankings equals selecting
 * at every K; the per-task CSV. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/evaluate.h"
#include "medselect/synth.h"
#include "medselect/train.h"
#include "model/ms_arch_bilstm.h"
#include "ms_test.h"

/* The versus differences of ms_eval_summarize against the numpy/scipy fixture. */
static void test_versus_fixture(void) {
    int nd;
    long sh[4];
    double *au = ms_load_npy_d(ms_fixture("evaluate/versus_auroc.npy"), &nd, sh);
    MS_EXPECT(nd == 3 && sh[0] == 2 && sh[1] == 3);
    const int NK = (int)sh[0], NS = (int)sh[1], T = (int)sh[2];
    double *cond = ms_load_npy_d(ms_fixture("evaluate/versus_cond.npy"), NULL, NULL);
    double *vk = ms_load_npy_d(ms_fixture("evaluate/versus_k.npy"), NULL, NULL);
    long rs[4];
    double *ref = ms_load_npy_d(ms_fixture("evaluate/versus_ref.npy"), &nd, rs);
    ms_eval_result r;
    memset(&r, 0, sizeof r);
    r.n_groups = 1, r.n_k = NK, r.n_strat = NS, r.tasks = T, r.kmax = 10, r.stream[0] = 77;
    r.auroc = au; /* laid out (g, ki, s, task) like the fixture's (ki, s, task) */
    r.task_cond = malloc(sizeof(int) * (size_t)T);
    for (int i = 0; i < T; i++) r.task_cond[i] = (int)cond[i];
    int conds[2] = {0, 1};
    ms_eval_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_groups = 1, cfg.n_k = NK, cfg.k[0] = 5, cfg.k[1] = 10, cfg.tasks = T, cfg.seed = 9;
    cfg.group[0].cond = conds, cfg.group[0].n_cond = 2;
    snprintf(cfg.group[0].name, 32, "all");
    cfg.versus_on = 1;
    for (int ki = 0; ki < NK; ki++) cfg.versus[0][ki] = (int)vk[ki];
    ms_eval_row *rows;
    int n_rows;
    ms_eval_summarize(&r, &cfg, 2000, &rows, &n_rows);
    int nref = (int)rs[0], found = 0;
    double *g_mean = malloc(sizeof(double) * (size_t)nref * 4), *r_mean = g_mean + nref;
    double *g_p = r_mean + nref, *r_p = g_p + nref;
    double max_ci = 0;
    for (int j = 0; j < nref; j++) {
        const double *e = ref + (size_t)j * 7;
        for (int i = 0; i < n_rows; i++) {
            if (rows[i].ki != (int)e[0] || rows[i].s != (int)e[1] || rows[i].cond != (int)e[2]) continue;
            found++;
            MS_EXPECT(rows[i].vs == (int)vk[(int)e[0]]);
            g_mean[j] = rows[i].vdiff.mean, r_mean[j] = e[3];
            g_p[j] = rows[i].vp, r_p[j] = e[6];
            max_ci = fmax(max_ci, fmax(fabs(rows[i].vdiff.lo - e[4]), fabs(rows[i].vdiff.hi - e[5])));
        }
    }
    MS_EXPECT(found == nref);
    ms_expect_close_d("versus: mean paired difference vs numpy", g_mean, r_mean, (size_t)nref, 1e-12, 0);
    ms_expect_close_d("versus: Wilcoxon p vs scipy", g_p, r_p, (size_t)nref, 0, 1e-9);
    /* medselect's 2,000 resamples against numpy's 20,000: Monte Carlo error only */
    printf("versus: %d rows; largest bootstrap CI end difference to numpy %.5f\n", nref, max_ci);
    MS_EXPECT(max_ci < 0.0025);
    /* the versus strategy's own row: zero difference, no p; the random column is untouched */
    for (int i = 0; i < n_rows; i++) {
        if (rows[i].s == rows[i].vs) MS_EXPECT(rows[i].vdiff.mean == 0 && isnan(rows[i].vp));
        if (rows[i].cond < 0 && rows[i].s > 0) {
            double m = 0;
            for (int t = 0; t < T; t++)
                m += au[((size_t)rows[i].ki * NS + rows[i].s) * T + t] - au[((size_t)rows[i].ki * NS) * T + t];
            MS_EXPECT(fabs(rows[i].diff.mean - m / T) < 1e-12);
        }
    }
    /* best: the highest mean among the candidates, per K */
    int cand[3] = {0, 1, 2};
    for (int ki = 0; ki < NK; ki++) {
        int b = ms_eval_best(&r, 0, ki, cand, 3), arg = 0;
        for (int s = 1; s < NS; s++)
            if (ms_eval_mean(&r, 0, ki, s) > ms_eval_mean(&r, 0, ki, arg)) arg = s;
        MS_EXPECT(b == arg);
        int two[2] = {0, 1};
        MS_EXPECT(ms_eval_best(&r, 0, ki, two, 2) == (ms_eval_mean(&r, 0, ki, 1) > ms_eval_mean(&r, 0, ki, 0)));
    }
    /* a strategy's intervals do not depend on which other strategies are in the run: drop
     * strategy 1 (its columns) and strategy 2's CIs (mean and difference to strategy 0) are
     * bitwise those of the full run */
    {
        ms_eval_result r2 = r;
        r2.n_strat = 2;
        r2.auroc = malloc(sizeof(double) * (size_t)NK * 2 * T);
        for (int ki = 0; ki < NK; ki++) {
            memcpy(r2.auroc + ((size_t)ki * 2 + 0) * T, au + ((size_t)ki * NS + 0) * T, sizeof(double) * T);
            memcpy(r2.auroc + ((size_t)ki * 2 + 1) * T, au + ((size_t)ki * NS + 2) * T, sizeof(double) * T);
        }
        ms_eval_config c2 = cfg;
        c2.versus_on = 0;
        ms_eval_row *r2rows;
        int n2, matched = 0;
        ms_eval_summarize(&r2, &c2, 500, &r2rows, &n2);
        ms_eval_row *r1rows;
        int n1;
        c2.versus_on = 0;
        ms_eval_result r1 = r;
        ms_eval_summarize(&r1, &c2, 500, &r1rows, &n1);
        for (int i = 0; i < n2; i++) {
            if (r2rows[i].s != 1) continue;
            for (int j = 0; j < n1; j++) {
                if (r1rows[j].s != 2 || r1rows[j].ki != r2rows[i].ki || r1rows[j].cond != r2rows[i].cond) continue;
                matched++;
                MS_EXPECT(r1rows[j].auroc.lo == r2rows[i].auroc.lo && r1rows[j].auroc.hi == r2rows[i].auroc.hi);
                MS_EXPECT(r1rows[j].diff.lo == r2rows[i].diff.lo && r1rows[j].diff.hi == r2rows[i].diff.hi);
            }
        }
        MS_EXPECT(matched == NK * 3); /* per K: the whole group and its two conditions */
        free(r1rows), free(r2rows), free(r2.auroc);
    }
    free(rows);
    free(g_mean);
    free(r.task_cond);
    free(au), free(cond), free(vk), free(ref);
}

/* The best baseline chosen on a validation split (ms_eval_versus_best): any subset of the
 * strategies as candidates, the choice recomputed from a validation run alone; a group whose
 * conditions the validation split cannot hold a task of falls back to the others, and says
 * so; a validation split of another width is refused. */
static void test_versus_best(const ms_split *va, const ms_split *te) {
    const char *names[] = {"random", "kcenter", "kmedoids", "herding"};
    ms_strategy *st[4];
    for (int i = 0; i < 4; i++) MS_EXPECT(ms_strategy_create(&st[i], names[i]) == MS_OK);
    ms_eval_config cfg;
    memset(&cfg, 0, sizeof cfg);
    /* a task shape that the second-most frequent condition of the validation split just
     * fits (pool 2p with p positives, query 10 with 5) */
    int c1 = 0, c2 = 0;
    for (int c = 0; c < va->n_cond; c++) {
        if (va->cond_count[c] > c1) c2 = c1, c1 = va->cond_count[c];
        else if (va->cond_count[c] > c2) c2 = va->cond_count[c];
    }
    int p = c2 - 5;
    MS_EXPECT(p >= 5);
    cfg.shape = (ms_task_shape){.pool = 2 * p, .pos_frac = 0.5, .query = 10, .query_pos_frac = 0.5};
    cfg.n_k = 2, cfg.k[0] = 5, cfg.k[1] = 10;
    cfg.tasks = 50, cfg.seed = 7, cfg.pred = MS_PRED_COSINE;
    /* conditions the validation split holds a task of, and one it does not */
    int fit[8], n_fit = 0, nofit = -1;
    for (int c = 0; c < va->n_cond; c++) {
        if (ms_task_check(te, &cfg.shape, &c, 1) != MS_OK) continue;
        if (ms_task_check(va, &cfg.shape, &c, 1) == MS_OK) fit[n_fit++] = c;
        else if (nofit < 0) nofit = c;
    }
    printf("versus best: pool %d: %d conditions fit a validation task, first that does not: %d\n", 2 * p, n_fit,
           nofit);
    MS_EXPECT(n_fit >= 2 && nofit >= 0);
    cfg.n_groups = 2;
    snprintf(cfg.group[0].name, 32, "seen");
    cfg.group[0].cond = fit, cfg.group[0].n_cond = 2;
    snprintf(cfg.group[1].name, 32, "unseen");
    cfg.group[1].cond = &nofit, cfg.group[1].n_cond = 1;
    int cand[3] = {0, 2, 3}; /* k-center is not a candidate */
    MS_EXPECT(ms_eval_versus_best(&cfg, te, va, 40, st, cand, 3, NULL) == MS_OK);
    MS_EXPECT(cfg.versus_on && cfg.versus_best);
    ms_strategy *cs[3] = {st[0], st[2], st[3]};
    ms_eval_validation v;
    MS_EXPECT(ms_eval_validate(&v, va, te, &cfg, 40, cs, 3, NULL) == MS_OK);
    MS_EXPECT(v.res.tasks == 40 && v.res.n_strat == 3);
    for (int g = 0; g < 2; g++)
        for (int ki = 0; ki < 2; ki++) {
            int arg = 0;
            for (int i = 1; i < 3; i++)
                if (ms_eval_mean(&v.res, g, ki, i) > ms_eval_mean(&v.res, g, ki, arg)) arg = i;
            MS_EXPECT(cfg.versus[g][ki] == cand[arg]);
        }
    /* group 0 keeps its conditions; group 1 falls back to every condition of cfg that fits */
    MS_EXPECT(v.cfg.group[0].n_cond == 2 && v.cfg.group[0].cond[0] == fit[0] && v.cfg.group[0].cond[1] == fit[1]);
    MS_EXPECT(v.cfg.group[1].n_cond == 2);
    printf("   %s\n   %s\n", cfg.versus_note[0], cfg.versus_note[1]);
    const char *head = "Best baseline chosen on the validation split (";
    MS_EXPECT(!strncmp(cfg.versus_note[0], head, strlen(head)) && !strstr(cfg.versus_note[0], "because"));
    MS_EXPECT(strstr(cfg.versus_note[1], ", because it holds too few images of ") != NULL);
    char lab[128];
    snprintf(lab, sizeof lab, "K 5 %s ", st[cfg.versus[0][0]]->label);
    MS_EXPECT(strstr(cfg.versus_note[0], lab) != NULL);
    ms_eval_validation_free(&v);
    /* another embedding width: refused before anything runs */
    ms_split narrow = *va;
    narrow.d = va->d - 1;
    MS_EXPECT(ms_eval_validate(&v, &narrow, te, &cfg, 40, cs, 3, NULL) == MS_ERR_DATA);
    MS_EXPECT(strstr(ms_last_error(), "embeddings have 63 columns, the evaluated split 64") != NULL);
    /* no condition of cfg fits: a data error naming the task shape */
    cfg.n_groups = 1;
    cfg.group[0].cond = &nofit, cfg.group[0].n_cond = 1;
    MS_EXPECT(ms_eval_validate(&v, va, te, &cfg, 40, cs, 3, NULL) == MS_ERR_DATA);
    MS_EXPECT(strstr(ms_last_error(), "too few images of every condition for one task (pool") != NULL);
    MS_EXPECT(strstr(ms_last_error(), "query 10 with 5 positive") != NULL);
    for (int i = 0; i < 4; i++) ms_strategy_free(st[i]);
}

/* Same condition list => same tasks and numbers, wherever the group stands; ranking
 * strategies scored on prefixes equal their per-K selections; the per-task CSV. */
static void test_streams_and_prefixes(const ms_split *te) {
    const char *names[] = {"random", "kcenter", "herding", "kmeans", "kmedoids"};
    enum { NS = 6 };
    ms_strategy *st[NS];
    for (int i = 0; i < 5; i++) MS_EXPECT(ms_strategy_create(&st[i], names[i]) == MS_OK);
    ms_selector sel;
    memset(&sel, 0, sizeof sel);
    MS_CHECK(ms_net_init(&sel.net, &ms_arch_bilstm, te->d, 8) == MS_OK);
    ms_net_randomize(&sel.net, 3);
    st[5] = ms_selector_strategy(&sel);
    MS_EXPECT(st[0]->ranking && st[1]->ranking && st[2]->ranking && !st[3]->ranking && !st[4]->ranking && st[5]->ranking);
    ms_eval_config a;
    memset(&a, 0, sizeof a);
    a.shape = (ms_task_shape){.pool = 40, .pos_frac = 0.25, .query = 20, .query_pos_frac = 0.5};
    a.n_k = 3, a.k[0] = 5, a.k[1] = 10, a.k[2] = 20;
    a.tasks = 40, a.seed = 11, a.pred = MS_PRED_COSINE, a.keep_selections = 1;
    int seen[3] = {0, 1, 2}, unseen[2] = {6, 7};
    a.n_groups = 2;
    snprintf(a.group[0].name, 32, "seen");
    a.group[0].cond = seen, a.group[0].n_cond = 3;
    snprintf(a.group[1].name, 32, "unseen");
    a.group[1].cond = unseen, a.group[1].n_cond = 2;
    ms_eval_config b = a;
    b.n_groups = 1;
    snprintf(b.group[0].name, 32, "all");
    b.group[0].cond = unseen, b.group[0].n_cond = 2;
    ms_eval_result ra, rb, rp;
    MS_EXPECT(ms_evaluate(&ra, te, &a, st, NS, NULL) == MS_OK);
    MS_EXPECT(ms_evaluate(&rb, te, &b, st, NS, NULL) == MS_OK);
    size_t per_g = (size_t)a.n_k * NS * a.tasks;
    MS_EXPECT(ra.stream[1] == rb.stream[0] && ra.stream[0] != ra.stream[1]);
    MS_EXPECT(memcmp(ra.auroc + per_g, rb.auroc, sizeof(double) * per_g) == 0);
    MS_EXPECT(memcmp(ra.task_cond + a.tasks, rb.task_cond, sizeof(int) * (size_t)a.tasks) == 0);
    MS_EXPECT(memcmp(ra.sel + per_g * ra.kmax, rb.sel, sizeof(int) * per_g * (size_t)ra.kmax) == 0);
    /* the summary (bootstrap CIs included) is the same too */
    ms_eval_row *rowa, *rowb;
    int na, nb;
    ms_eval_summarize(&ra, &a, 300, &rowa, &na);
    ms_eval_summarize(&rb, &b, 300, &rowb, &nb);
    int same = 0, cmp = 0;
    for (int i = 0; i < na; i++) {
        if (rowa[i].g != 1) continue;
        for (int j = 0; j < nb; j++)
            if (rowb[j].ki == rowa[i].ki && rowb[j].s == rowa[i].s && rowb[j].cond == rowa[i].cond) {
                cmp++;
                same += !memcmp(&rowa[i].auroc, &rowb[j].auroc, sizeof(ms_ci)) &&
                        !memcmp(&rowa[i].diff, &rowb[j].diff, sizeof(ms_ci));
            }
    }
    MS_EXPECT(cmp == nb && same == nb);
    free(rowa), free(rowb);
    /* a different list is a different stream */
    int other[2] = {6, 5};
    b.group[0].cond = other;
    MS_EXPECT(ms_eval_group_stream(te, &b.group[0]) != rb.stream[0]);
    /* prefixes of one ranking == selecting at each K (every strategy, both groups) */
    a.per_k = 1;
    MS_EXPECT(ms_evaluate(&rp, te, &a, st, NS, NULL) == MS_OK);
    MS_EXPECT(memcmp(ra.auroc, rp.auroc, sizeof(double) * 2 * per_g) == 0);
    size_t diff_sel = 0;
    for (size_t c = 0; c < 2 * per_g; c++) {
        int K = a.k[(c / ((size_t)NS * a.tasks)) % (size_t)a.n_k];
        diff_sel += memcmp(ra.sel + c * ra.kmax, rp.sel + c * rp.kmax, sizeof(int) * (size_t)K) != 0;
    }
    printf("prefix scoring vs per-K selection: %zu of %zu selections differ\n", diff_sel, 2 * per_g);
    MS_EXPECT(diff_sel == 0);
    /* per-task CSV: a header and one line per (group, task, K) with every strategy */
    const char *path = ms_tmp("per_task.csv");
    MS_EXPECT(ms_eval_write_per_task(path, &ra, &a, te, st) == MS_OK);
    size_t len;
    char *txt = ms_read_file(path, &len);
    MS_EXPECT(txt != NULL);
    if (txt) {
        int lines = 0;
        for (size_t i = 0; i < len; i++) lines += txt[i] == '\n';
        MS_EXPECT(lines == 1 + 2 * a.tasks * a.n_k);
        MS_EXPECT(!strncmp(txt, "group,task,condition,k,random,kcenter,herding,kmeans,kmedoids,medselect\n", 71));
        /* the line of unseen task 3, K 10 holds that task's AUROCs */
        char want[512];
        int n = snprintf(want, sizeof want, "unseen,3,%s,10", te->cond[ra.task_cond[a.tasks + 3]]);
        for (int s = 0; s < NS; s++)
            n += snprintf(want + n, sizeof want - (size_t)n, ",%.9g",
                          ra.auroc[((size_t)(1 * a.n_k + 1) * NS + s) * a.tasks + 3]);
        MS_EXPECT(strstr(txt, want) != NULL);
        free(txt);
    }
    ms_eval_result_free(&ra), ms_eval_result_free(&rb), ms_eval_result_free(&rp);
    for (int i = 0; i < NS; i++) ms_strategy_free(st[i]);
}

/* The selector's scoring of pools given as rows of the split (score_rows: input
 * projections once for the split) against its scoring of the gathered pools (score), with
 * and without clinical features, over more pools than one batch. */
static void test_score_rows(const ms_split *te) {
    printf("-- selector score_rows vs score\n");
    const int n = 70, T = 40, d = te->d;
    int *rows = malloc(sizeof(int) * n * T);
    float *raw = malloc(sizeof(float) * (size_t)n * T * d), *clin = malloc(sizeof(float) * (size_t)n * T * 3);
    float *s1 = malloc(sizeof(float) * n * T), *s2 = malloc(sizeof(float) * n * T);
    ms_pool *pools = calloc((size_t)n, sizeof *pools);
    ms_rng r;
    ms_rng_init(&r, 9, 0, 0);
    for (int i = 0; i < n * T; i++) rows[i] = (int)ms_rng_below(&r, (uint32_t)te->n);
    for (int b = 0; b < n; b++) {
        ms_gather_rows(raw + (size_t)b * T * d, te->emb, rows + b * T, T, d);
        ms_gather_rows(clin + (size_t)b * T * 3, te->clin, rows + b * T, T, 3);
        pools[b] = (ms_pool){.n = T, .d = d, .raw = raw + (size_t)b * T * d, .clin = clin + (size_t)b * T * 3};
    }
    for (int clinical = 0; clinical < 2; clinical++) {
        ms_selector sel;
        memset(&sel, 0, sizeof sel);
        MS_CHECK(ms_net_init(&sel.net, &ms_arch_bilstm, d + (clinical ? MS_NCLIN : 0), 16) == MS_OK);
        ms_net_randomize(&sel.net, 7);
        sel.clinical = clinical;
        ms_strategy *st = ms_selector_strategy(&sel);
        MS_EXPECT(st->score_rows != NULL);
        for (int c0 = 0; c0 < n; c0 += st->score_batch) {
            int nb = n - c0 < st->score_batch ? n - c0 : st->score_batch;
            MS_EXPECT(st->score(st, pools + c0, nb, s1 + (size_t)c0 * T) == MS_OK);
        }
        MS_EXPECT(st->score_rows(st, te->emb, te->clin, te->n, d, rows, n, T, s2, NULL) == MS_OK);
        ms_expect_relerr_f(clinical ? "score_rows vs score (clinical)" : "score_rows vs score", s2, s1,
                           (size_t)n * T, 1e-5);
        printf("   %s: bitwise the same: %s\n", clinical ? "clinical" : "embeddings only",
               memcmp(s1, s2, sizeof(float) * n * T) ? "no" : "yes");
        /* over the projection table's memory budget, score_rows scores gathered pools: the
         * same scores as score, bitwise (the same calls on the same pools) */
        size_t budget = ms_bilstm_proj_budget;
        ms_bilstm_proj_budget = 0;
        float *s3 = malloc(sizeof(float) * n * T);
        MS_EXPECT(st->score_rows(st, te->emb, te->clin, te->n, d, rows, n, T, s3, NULL) == MS_OK);
        ms_bilstm_proj_budget = budget;
        ms_expect_relerr_f("score_rows over budget (gathered pools) vs score", s3, s1, (size_t)n * T, 0);
        MS_EXPECT(memcmp(s1, s3, sizeof(float) * n * T) == 0);
        free(s3);
        ms_strategy_free(st);
    }
    free(rows), free(raw), free(clin), free(s1), free(s2), free(pools);
}

int main(void) {
    test_versus_fixture();
    ms_synth_config sc;
    ms_synth_defaults(&sc);
    sc.n_pos[0] = 300, sc.n_pos[1] = 100, sc.n_pos[2] = 600;
    sc.n_norm[0] = 200, sc.n_norm[1] = 100, sc.n_norm[2] = 400;
    ms_split tr, va, te;
    ms_synth_generate(&sc, &tr, &va, &te);
    MS_EXPECT(te.n_pos == 600 && te.n_norm == 400 && te.d == 64 && te.n_cond == 8);
    MS_EXPECT(te.clin != NULL);
    /* same seed, same data */
    ms_split tr2, va2, te2;
    ms_synth_generate(&sc, &tr2, &va2, &te2);
    MS_EXPECT(te.fingerprint == te2.fingerprint && memcmp(te.emb, te2.emb, sizeof(float) * (size_t)te.n * te.d) == 0);
    ms_split_free(&tr2), ms_split_free(&va2), ms_split_free(&te2);
    /* outliers: about 8% of rows have norm 8, far above the typical row (about 2.3) */
    int big = 0;
    for (int i = 0; i < te.n; i++) {
        double s2 = 0;
        for (int j = 0; j < te.d; j++) s2 += (double)te.emb[(size_t)i * te.d + j] * te.emb[(size_t)i * te.d + j];
        big += fabs(sqrt(s2) - 8.0) < 1e-3;
    }
    MS_EXPECT(big > te.n * 0.05 && big < te.n * 0.11);

    const char *names[] = {"random", "kmedoids", "kmeans"};
    ms_strategy *st[4];
    for (int i = 0; i < 3; i++) MS_EXPECT(ms_strategy_create(&st[i], names[i]) == MS_OK);
    /* a (randomly initialised) selector: scored in batches before the task loop */
    ms_selector sel;
    memset(&sel, 0, sizeof sel);
    MS_CHECK(ms_net_init(&sel.net, &ms_arch_bilstm, te.d, 16) == MS_OK);
    ms_net_randomize(&sel.net, 5);
    st[3] = ms_selector_strategy(&sel);
    MS_EXPECT(st[3]->score != NULL && st[3]->select_scored != NULL);
    ms_eval_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.shape = (ms_task_shape){.pool = 60, .pos_frac = 0.5, .query = 30, .query_pos_frac = 0.5};
    cfg.n_k = 2, cfg.k[0] = 5, cfg.k[1] = 10;
    cfg.tasks = 60;
    cfg.seed = 3;
    cfg.pred = MS_PRED_COSINE;
    cfg.n_groups = 2;
    int seen[6] = {0, 1, 2, 3, 4, 5}, unseen[2] = {6, 7};
    snprintf(cfg.group[0].name, 32, "seen");
    cfg.group[0].cond = seen, cfg.group[0].n_cond = 6;
    snprintf(cfg.group[1].name, 32, "unseen");
    cfg.group[1].cond = unseen, cfg.group[1].n_cond = 2;
    cfg.keep_selections = 1;

    ms_eval_result r1, r2;
    ms_set_threads(1);
    MS_EXPECT(ms_evaluate(&r1, &te, &cfg, st, 4, NULL) == MS_OK);
    ms_set_threads(2);
    MS_EXPECT(ms_evaluate(&r2, &te, &cfg, st, 4, NULL) == MS_OK);
    size_t cells = (size_t)2 * 2 * 4 * 60;
    MS_EXPECT(memcmp(r1.auroc, r2.auroc, sizeof(double) * cells) == 0);
    MS_EXPECT(memcmp(r1.sel, r2.sel, sizeof(int) * cells * (size_t)r1.kmax) == 0);
    MS_EXPECT(memcmp(r1.task_cond, r2.task_cond, sizeof(int) * 120) == 0);
    int in_range = 1, distinct = 1;
    for (size_t i = 0; i < cells; i++) in_range &= r1.auroc[i] >= 0 && r1.auroc[i] <= 1;
    MS_EXPECT(in_range);
    for (size_t c = 0; c < cells; c++) {
        int K = cfg.k[(c / (4 * 60)) % 2];
        const int *s = r1.sel + c * (size_t)r1.kmax;
        for (int a = 0; a < K; a++)
            for (int b = a + 1; b < K; b++) distinct &= s[a] != s[b];
    }
    MS_EXPECT(distinct);
    /* random at K=5 is the first 5 of random at K=10 on the same task (same seed per task) */
    const int *r5 = r1.sel + ((size_t)(0 * 2 + 0) * 4 + 0) * 60 * (size_t)r1.kmax;
    const int *r10 = r1.sel + ((size_t)(0 * 2 + 1) * 4 + 0) * 60 * (size_t)r1.kmax;
    MS_EXPECT(memcmp(r5, r10, sizeof(int) * 5) == 0);
    /* unseen tasks only use unseen conditions */
    int ok = 1;
    for (int i = 0; i < 60; i++) ok &= r1.task_cond[60 + i] == 6 || r1.task_cond[60 + i] == 7;
    MS_EXPECT(ok);

    /* the batched scores select what the selector's own per-pool select picks */
    {
        ms_strategy *only[1] = {st[3]};
        ms_eval_result rb, rs;
        MS_EXPECT(ms_evaluate(&rb, &te, &cfg, only, 1, NULL) == MS_OK);
        ms_status (*hook)(const ms_strategy *, const ms_pool *, int, float *) = st[3]->score;
        st[3]->score = NULL;
        MS_EXPECT(ms_evaluate(&rs, &te, &cfg, only, 1, NULL) == MS_OK);
        st[3]->score = hook;
        MS_EXPECT(memcmp(rb.sel, rs.sel, sizeof(int) * (size_t)2 * 2 * 60 * (size_t)rb.kmax) == 0);
        MS_EXPECT(memcmp(rb.auroc, rs.auroc, sizeof(double) * 2 * 2 * 60) == 0);
        ms_eval_result_free(&rb);
        ms_eval_result_free(&rs);
    }

    ms_eval_row *rows;
    int n_rows;
    ms_eval_summarize(&r1, &cfg, 500, &rows, &n_rows);
    MS_EXPECT(n_rows == (7 + 3) * 2 * 4);
    /* the group row's mean is the mean of the raw values; the CI brackets it */
    for (int i = 0; i < n_rows; i++) {
        if (rows[i].cond >= 0) continue;
        const double *a = r1.auroc + ((size_t)(rows[i].g * 2 + rows[i].ki) * 4 + rows[i].s) * 60;
        double m = 0;
        for (int t = 0; t < 60; t++) m += a[t];
        m /= 60;
        MS_EXPECT(fabs(rows[i].auroc.mean - m) < 1e-12);
        MS_EXPECT(rows[i].auroc.lo <= m && m <= rows[i].auroc.hi);
        MS_EXPECT(rows[i].n == 60);
        if (rows[i].s == 0) MS_EXPECT(isnan(rows[i].p));
        else MS_EXPECT(rows[i].p >= 0 && rows[i].p <= 1);
    }
    /* per-condition rows add up to the group's tasks */
    int total = 0;
    for (int i = 0; i < n_rows; i++)
        if (rows[i].g == 0 && rows[i].cond >= 0 && rows[i].ki == 0 && rows[i].s == 0) total += rows[i].n;
    MS_EXPECT(total == 60);
    /* the synthetic data carries signal: every strategy beats chance on seen tasks at K=10 */
    for (int i = 0; i < n_rows; i++)
        if (rows[i].g == 0 && rows[i].cond < 0 && rows[i].ki == 1 && rows[i].s < 3) MS_EXPECT(rows[i].auroc.mean > 0.6);
    free(rows);

    /* K larger than the pool is an argument error */
    cfg.k[1] = 61;
    ms_eval_result r3;
    MS_EXPECT(ms_evaluate(&r3, &te, &cfg, st, 4, NULL) == MS_ERR_ARG);

    ms_eval_result_free(&r1);
    ms_eval_result_free(&r2);
    for (int i = 0; i < 4; i++) ms_strategy_free(st[i]);
    test_streams_and_prefixes(&te);
    test_versus_best(&va, &te);
    test_score_rows(&te);
    ms_split_free(&tr), ms_split_free(&va), ms_split_free(&te);
    return ms_test_summary();
}
