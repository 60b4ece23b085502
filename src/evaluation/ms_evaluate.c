/* ms_evaluate.c: the meta-test protocol (see evaluate.h). Each thread owns an arena that
 * holds one task's gathered pool and query rows and every strategy's scratch; after the first
 * task the loop allocates nothing. */
#include "medselect/evaluate.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

uint64_t ms_eval_group_stream(const ms_split *s, const ms_eval_group *grp) {
    /* FNV-1a over the canonical names ("pleural effusion" for "Pleural_Effusion"), each
     * followed by a separator, so that the key names the list and nothing else */
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int c = 0; c < grp->n_cond; c++) {
        for (const char *p = s->cond[grp->cond[c]]; *p; p++) {
            unsigned char ch = (unsigned char)*p;
            if (ch == '_') ch = ' ';
            else if (ch >= 'A' && ch <= 'Z') ch = (unsigned char)(ch - 'A' + 'a');
            h = (h ^ ch) * 0x100000001b3ULL;
        }
        h = (h ^ 0x1fU) * 0x100000001b3ULL;
    }
    return h;
}

uint64_t ms_eval_task_seed(uint64_t seed, uint64_t stream, long i) {
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_STRATEGY * 1000003ULL + stream, (uint64_t)i);
    return ms_rng_next(&r);
}

/* Evaluates every strategy and K on task i of group g; writes AUROCs into res. A ranking
 * strategy (s->ranking) selects once at the largest K and every K scores a prefix of that
 * order; the others select once per K. */
static ms_status eval_one(ms_eval_result *res, const ms_split *s, const ms_eval_config *cfg,
                          ms_strategy *const *strats, int n_strat, float *const *model_scores, int g,
                          uint64_t stream, int i, ms_arena *ws) {
    const int P = cfg->shape.pool, Q = cfg->shape.query, D = s->d;
    int kmax = res->kmax;
    ms_task t;
    ms_task_alloc(&t, &cfg->shape, ws);
    int *scratch = MS_ARENA_NEW(ws, int, s->n_pos > s->n_norm ? s->n_pos : s->n_norm);
    const ms_eval_group *grp = &cfg->group[g];
    ms_task_sample(&t, s, &cfg->shape, grp->cond, grp->n_cond, cfg->seed, stream, (uint64_t)i, scratch);
    res->task_cond[g * res->tasks + i] = t.cond;

    /* the predictor compares unit rows (cosine) or raw rows (euclidean) */
    const float *feat = cfg->pred == MS_PRED_COSINE ? s->unit : s->emb;
    float *pool_x = MS_ARENA_NEW(ws, float, (size_t)P * D);
    float *pool_raw = MS_ARENA_NEW(ws, float, (size_t)P * D);
    float *qry = MS_ARENA_NEW(ws, float, (size_t)Q * D);
    float *pool_clin = s->clin ? MS_ARENA_NEW(ws, float, (size_t)P * MS_NCLIN) : NULL;
    ms_gather_rows(pool_x, s->unit, t.pool, P, D);
    ms_gather_rows(pool_raw, s->emb, t.pool, P, D);
    ms_gather_rows(qry, feat, t.query, Q, D);
    if (pool_clin) ms_gather_rows(pool_clin, s->clin, t.pool, P, MS_NCLIN);
    ms_pool pool = {.n = P, .d = D, .x = pool_x, .raw = pool_raw, .clin = pool_clin};

    int *pick = MS_ARENA_NEW(ws, int, kmax);
    float *sel = MS_ARENA_NEW(ws, float, (size_t)kmax * D);
    uint8_t *sel_y = MS_ARENA_NEW(ws, uint8_t, kmax);
    float *scores = MS_ARENA_NEW(ws, float, Q);
    float *work = MS_ARENA_NEW(ws, float, (size_t)Q * kmax + Q + kmax);
    int *awork = MS_ARENA_NEW(ws, int, 2 * Q);
    uint64_t tseed = ms_eval_task_seed(cfg->seed, stream, i);
    /* strategies allocate after this point; the caller resets the whole arena per task */
    for (int si = 0; si < n_strat; si++) {
        const ms_strategy *st_i = strats[si];
        const float *msc = model_scores[si] ? model_scores[si] + ((size_t)g * res->tasks + i) * P : NULL;
        int ranked = st_i->ranking && !cfg->per_k;
        for (int ki = 0; ki < cfg->n_k; ki++) {
            int K = cfg->k[ki];
            if (!ranked || ki == 0) {
                int Ks = ranked ? kmax : K;
                ms_status st = msc ? st_i->select_scored(st_i, msc, P, Ks, tseed, pick, ws)
                                   : st_i->select(st_i, &pool, Ks, tseed, pick, ws);
                if (st) return st;
            }
            for (int j = 0; j < K; j++) {
                MS_CHECK(pick[j] >= 0 && pick[j] < P);
                sel_y[j] = t.pool_y[pick[j]];
                memcpy(sel + (size_t)j * D, (cfg->pred == MS_PRED_COSINE ? pool_x : pool_raw) + (size_t)pick[j] * D,
                       sizeof(float) * (size_t)D);
            }
            ms_predict(scores, qry, Q, sel, sel_y, K, D, cfg->pred, work);
            double auc;
            ms_status st = ms_auroc(scores, t.query_y, Q, &auc, awork);
            if (st) return st;
            size_t idx = ((size_t)(g * res->n_k + ki) * n_strat + si) * res->tasks + i;
            res->auroc[idx] = auc;
            if (res->sel) memcpy(res->sel + idx * kmax, pick, sizeof(int) * (size_t)K);
        }
    }
    return MS_OK;
}

/* Scores every task's pool with strategy st's batched score hook, into out (n_groups, tasks,
 * P). Tasks are rebuilt from (seed, g, i) exactly as eval_one builds them. */
static ms_status score_all(const ms_split *s, const ms_eval_config *cfg, const ms_strategy *st,
                           float *out, ms_progress *prog) {
    const int P = cfg->shape.pool, D = s->d, B = st->score_batch > 0 ? st->score_batch : 1;
    const int nthreads = omp_get_max_threads();
    const int nscr = s->n_pos > s->n_norm ? s->n_pos : s->n_norm;
    int *scratch = ms_xmalloc(sizeof(int) * (size_t)nscr * nthreads);
    ms_task *tasks = ms_xcalloc((size_t)B, sizeof *tasks);
    for (int b = 0; b < B; b++) ms_task_alloc(&tasks[b], &cfg->shape, NULL);
    ms_status rc = MS_OK;
    /* every pool as row indices into the split; the strategy's score_rows does its per-row
     * work once for the split instead of once per pool item (and gathers no pool), otherwise
     * the pools are gathered and scored, score_batch at a time */
    int *rows = ms_xmalloc(sizeof(int) * (size_t)cfg->tasks * P);
    for (int g = 0; g < cfg->n_groups && !rc; g++) {
        const ms_eval_group *grp = &cfg->group[g];
        uint64_t stream = ms_eval_group_stream(s, grp);
        for (int c0 = 0; c0 < cfg->tasks; c0 += B) {
            int nb = cfg->tasks - c0 < B ? cfg->tasks - c0 : B;
#pragma omp parallel for schedule(static)
            for (int b = 0; b < nb; b++) {
                int *scr = scratch + (size_t)omp_get_thread_num() * nscr;
                ms_task_sample(&tasks[b], s, &cfg->shape, grp->cond, grp->n_cond, cfg->seed, stream,
                               (uint64_t)(c0 + b), scr);
                memcpy(rows + (size_t)(c0 + b) * P, tasks[b].pool, sizeof(int) * (size_t)P);
            }
        }
        float *o = out + (size_t)g * cfg->tasks * P;
        rc = st->score_rows ? st->score_rows(st, s->emb, s->clin, s->n, D, rows, cfg->tasks, P, o, prog)
                            : ms_strategy_score_gathered(st, s->emb, s->clin, D, rows, cfg->tasks, P, o, prog);
    }
    for (int b = 0; b < B; b++) ms_task_free(&tasks[b]);
    free(rows);
    free(tasks);
    free(scratch);
    return rc;
}

ms_status ms_evaluate(ms_eval_result *res, const ms_split *s, const ms_eval_config *cfg,
                      ms_strategy *const *strats, int n_strat, ms_progress *prog) {
    memset(res, 0, sizeof *res);
    MS_CHECK(cfg->n_groups >= 1 && cfg->n_groups <= MS_MAX_GROUPS && cfg->n_k >= 1 && n_strat >= 1);
    for (int g = 0; g < cfg->n_groups; g++) {
        ms_status st = ms_task_check(s, &cfg->shape, cfg->group[g].cond, cfg->group[g].n_cond);
        if (st) return st;
    }
    int kmax = 0;
    for (int ki = 0; ki < cfg->n_k; ki++) {
        if (cfg->k[ki] > cfg->shape.pool)
            return ms_fail(MS_ERR_ARG, "K = %d is larger than the pool (%d items)", cfg->k[ki], cfg->shape.pool);
        if (cfg->k[ki] > kmax) kmax = cfg->k[ki];
    }
    res->n_groups = cfg->n_groups;
    res->n_k = cfg->n_k;
    res->n_strat = n_strat;
    res->tasks = cfg->tasks;
    res->kmax = kmax;
    for (int g = 0; g < cfg->n_groups; g++) res->stream[g] = ms_eval_group_stream(s, &cfg->group[g]);
    size_t cells = (size_t)cfg->n_groups * cfg->n_k * n_strat * cfg->tasks;
    res->auroc = ms_xcalloc(cells, sizeof(double));
    res->task_cond = ms_xcalloc((size_t)cfg->n_groups * cfg->tasks, sizeof(int));
    if (cfg->keep_selections) res->sel = ms_xcalloc(cells * (size_t)kmax, sizeof(int));

    double t0 = ms_now();
    /* model-based strategies score all pools first, in large batches */
    float **scores = ms_xcalloc((size_t)n_strat, sizeof *scores);
    ms_status first = MS_OK;
    int n_scorers = 0;
    for (int si = 0; si < n_strat; si++) n_scorers += strats[si]->score != NULL;
    /* the progress bar counts the scoring passes too */
    if (prog) prog->total = (long)cfg->n_groups * cfg->tasks * (1 + n_scorers);
    char first_msg[1024] = "";
    for (int si = 0; si < n_strat && !first; si++) {
        if (!strats[si]->score) continue;
        scores[si] = ms_xmalloc(sizeof(float) * (size_t)cfg->n_groups * cfg->tasks * cfg->shape.pool);
        first = score_all(s, cfg, strats[si], scores[si], prog);
        if (first) snprintf(first_msg, sizeof first_msg, "%s", ms_last_error());
    }
    long total = (long)cfg->n_groups * cfg->tasks;
#pragma omp parallel
    {
        ms_arena ws;
        ms_arena_init(&ws);
#pragma omp for schedule(dynamic, 1)
        for (long j = 0; j < total; j++) {
            int g = (int)(j / cfg->tasks), i = (int)(j % cfg->tasks);
            ms_status st;
#pragma omp atomic read
            st = first;
            if (st) continue;
            ms_arena_reset(&ws);
            st = eval_one(res, s, cfg, strats, n_strat, scores, g, res->stream[g], i, &ws);
            if (!st && ms_progress_cancelled(prog)) st = ms_fail(MS_ERR_CANCELLED, "cancelled");
            if (st) {
#pragma omp critical(ms_eval_error)
                if (!first) {
                    first = st;
                    snprintf(first_msg, sizeof first_msg, "%s", ms_last_error());
                }
            }
            if (prog) ms_progress_add(prog, 1);
        }
        ms_arena_free(&ws);
    }
    res->seconds = ms_now() - t0;
    for (int si = 0; si < n_strat; si++) free(scores[si]);
    free(scores);
    if (first) {
        ms_eval_result_free(res);
        return ms_fail(first, "%s", first_msg);
    }
    return MS_OK;
}

void ms_eval_result_free(ms_eval_result *r) {
    free(r->auroc);
    free(r->task_cond);
    free(r->sel);
    memset(r, 0, sizeof *r);
}

/* Summary of one (g, ki, s, cond) cell over its tasks. x, d: scratch of r->tasks doubles. */
static void summarize_cell(const ms_eval_result *r, const ms_eval_config *cfg, int g, int ki, int si,
                           int cond, int boot_reps, double *x, double *d, ms_eval_row *row) {
    const size_t per = (size_t)r->tasks;
    const double *a = r->auroc + ((size_t)(g * r->n_k + ki) * r->n_strat + si) * per;
    const double *b = r->auroc + ((size_t)(g * r->n_k + ki) * r->n_strat + 0) * per;
    int n = 0;
    for (int i = 0; i < r->tasks; i++) {
        if (cond >= 0 && r->task_cond[g * r->tasks + i] != cond) continue;
        x[n] = a[i];
        d[n] = a[i] - b[i];
        n++;
    }
    row->g = g, row->ki = ki, row->s = si, row->cond = cond, row->n = n;
    row->vs = cfg->versus_on ? cfg->versus[g][ki] : -1;
    MS_CHECK(row->vs < r->n_strat);
    /* bootstrap streams from the group's stream, K and the condition only: the same group
     * gives the same intervals whatever its position, the other budgets, or which and how
     * many other strategies are in the run (every strategy of a row is resampled with the
     * same task indices, so adding a model to a run leaves the others' intervals as they were) */
    uint64_t stream = r->stream[g] ^ ((uint64_t)cfg->k[ki] << 40) ^ (uint64_t)(cond + 1);
    const ms_ci none = {NAN, NAN, NAN};
    row->vdiff = none;
    row->vp = NAN;
    if (n == 0) {
        row->auroc = row->diff = none;
        row->p = NAN;
        return;
    }
    row->auroc = ms_bootstrap_mean(x, n, boot_reps, cfg->seed, stream);
    if (si == 0) {
        row->diff.mean = row->diff.lo = row->diff.hi = 0;
        row->p = NAN;
    } else {
        row->diff = ms_bootstrap_mean(d, n, boot_reps, cfg->seed, stream ^ 0x5555ULL);
        row->p = ms_wilcoxon(d, n, NULL);
    }
    if (row->vs < 0) return;
    if (row->vs == si) {
        row->vdiff.mean = row->vdiff.lo = row->vdiff.hi = 0;
        return;
    }
    const double *v = r->auroc + ((size_t)(g * r->n_k + ki) * r->n_strat + row->vs) * per;
    n = 0;
    for (int i = 0; i < r->tasks; i++) {
        if (cond >= 0 && r->task_cond[g * r->tasks + i] != cond) continue;
        d[n++] = a[i] - v[i];
    }
    row->vdiff = ms_bootstrap_mean(d, n, boot_reps, cfg->seed, stream ^ 0xAAAAULL);
    row->vp = ms_wilcoxon(d, n, NULL);
}

void ms_eval_summarize(const ms_eval_result *r, const ms_eval_config *cfg, int boot_reps,
                       ms_eval_row **rows, int *n_rows) {
    int cap = 0;
    for (int g = 0; g < r->n_groups; g++) cap += (cfg->group[g].n_cond + 1) * r->n_k * r->n_strat;
    ms_eval_row *out = ms_xcalloc((size_t)cap, sizeof *out);
    double *x = ms_xmalloc(sizeof(double) * (size_t)r->tasks);
    double *d = ms_xmalloc(sizeof(double) * (size_t)r->tasks);
    int n = 0;
    for (int g = 0; g < r->n_groups; g++)
        for (int c = -1; c < cfg->group[g].n_cond; c++)
            for (int ki = 0; ki < r->n_k; ki++)
                for (int si = 0; si < r->n_strat; si++)
                    summarize_cell(r, cfg, g, ki, si, c < 0 ? -1 : cfg->group[g].cond[c], boot_reps, x, d,
                                   &out[n++]);
    free(x);
    free(d);
    *rows = out;
    *n_rows = n;
}

double ms_eval_mean(const ms_eval_result *r, int g, int ki, int si) {
    MS_CHECK(g >= 0 && g < r->n_groups && ki >= 0 && ki < r->n_k && si >= 0 && si < r->n_strat);
    const double *a = r->auroc + ((size_t)(g * r->n_k + ki) * r->n_strat + si) * r->tasks;
    double sum = 0;
    for (int i = 0; i < r->tasks; i++) sum += a[i];
    return r->tasks ? sum / r->tasks : NAN;
}

int ms_eval_best(const ms_eval_result *r, int g, int ki, const int *candidates, int n_cand) {
    MS_CHECK(n_cand >= 1);
    int best = -1;
    double bm = -INFINITY;
    for (int c = 0; c < n_cand; c++) {
        double m = ms_eval_mean(r, g, ki, candidates[c]);
        if (best < 0 || m > bm || (m == bm && candidates[c] < best)) best = candidates[c], bm = m;
    }
    return best;
}
