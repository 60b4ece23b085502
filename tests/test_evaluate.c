/* test_evaluate.c: the meta-test protocol end to end on the synthetic meta-dataset: results
 * identical for 1 and 2 threads, AUROCs in range, strategies compared on the same tasks
 * (random at a nested K reuses the same draw), summary rows consistent with the raw values,
 * and the synthetic generator's defining properties (outliers, condition directions). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/evaluate.h"
#include "medselect/synth.h"
#include "medselect/train.h"
#include "ms_test.h"

int main(void) {
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
    ms_lstm_params_init(&sel.params, te.d, 16);
    ms_lstm_params_randomize(&sel.params, 5);
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
    ms_split_free(&tr), ms_split_free(&va), ms_split_free(&te);
    return ms_test_summary();
}
