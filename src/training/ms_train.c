/* ms_train.c: REINFORCE meta-training of a selector of any architecture (see train.h and
 * arch.h).
 *
 * Memory: the architecture's work object (for the bilstm its LSTM cache, 48*B*P*H bytes),
 * the batch input x (B, P, D'), the picks and log-probabilities, and one arena per thread
 * for the per-task reward computation are sized once before the first iteration; the loop
 * itself allocates nothing. */
#define _POSIX_C_SOURCE 200809L
#include "medselect/train.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "medselect/checkpoint.h"
#include "medselect/metrics.h"
#include "training/ms_train_internal.h"

void ms_train_defaults(ms_train_config *c) {
    memset(c, 0, sizeof *c);
    c->shape.pool = 1000;
    c->shape.pos_frac = 0.5;
    c->shape.query = 100;
    c->shape.query_pos_frac = 0.5;
    c->k = 20;
    c->batch = 64;
    c->epochs = 5;
    c->tasks = 10000;
    c->val_tasks = 1000;
    c->val_every = 30;
    c->lr = 1e-4;
    c->lr_decay = 0.1;
    c->lr_decay_epoch = 3;
    c->hidden = 0;
    c->sampler = MS_SAMPLER_WOR;
    c->pred = MS_PRED_COSINE;
    c->seed = 0;
}

/* Task streams: meta-train and meta-validation tasks never coincide. */
enum { STREAM_TRAIN_TASKS = 101, STREAM_VAL_TASKS = 102, STREAM_EPOCH_ORDER = 103, STREAM_POS_FRAC = 105,
       STREAM_ROTATE = 106, STREAM_GEOMETRY = 107 };

/* In-place fast Walsh-Hadamard transform of v (n, a power of two), scaled by 1/sqrt(n) so
 * that it is orthogonal. */
static void fwht(double *v, int n) {
    for (int h = 1; h < n; h *= 2)
        for (int i = 0; i < n; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                double a = v[j], b = v[j + h];
                v[j] = a + b;
                v[j + h] = a - b;
            }
    double sc = 1.0 / sqrt((double)n);
    for (int i = 0; i < n; i++) v[i] *= sc;
}

/* --augment rotate: rows x (T, stride), first D columns, multiplied by one random orthogonal
 * matrix R = H S3 H S2 H S1 (H the normalised Hadamard matrix, S random sign diagonals; a
 * structured random rotation, Yu et al., NeurIPS 2016) drawn from rng. buf: D doubles. */
void ms_train_rotate_rows(float *x, int T, int stride, int D, ms_rng *rng, double *buf, signed char *sg) {
    for (int i = 0; i < 3 * D; i++) sg[i] = (ms_rng_next(rng) >> 63) ? 1 : -1;
    for (int t = 0; t < T; t++) {
        float *row = x + (size_t)t * stride;
        for (int i = 0; i < D; i++) buf[i] = row[i];
        for (int r = 0; r < 3; r++) {
            for (int i = 0; i < D; i++) buf[i] *= sg[r * D + i];
            fwht(buf, D);
        }
        for (int i = 0; i < D; i++) row[i] = (float)buf[i];
    }
}

void ms_clin_means(const float *clin, int n, float fill[MS_NCLIN]) {
    for (int j = 0; j < MS_NCLIN; j++) {
        double sum = 0;
        long cnt = 0;
        for (int i = 0; clin && i < n; i++) {
            float v = clin[(size_t)i * MS_NCLIN + j];
            if (!isnan(v)) sum += v, cnt++;
        }
        fill[j] = cnt ? (float)(sum / cnt) : 0.0f;
    }
}

ms_status ms_selector_input(float *x, const ms_split *s, const int *rows, int n, int clinical,
                            const float *fill) {
    int D = s->d, Din = D + (clinical ? MS_NCLIN : 0);
    for (int i = 0; i < n; i++) {
        float *dst = x + (size_t)i * Din;
        memcpy(dst, s->emb + (size_t)rows[i] * D, sizeof(float) * (size_t)D);
        if (!clinical) continue;
        if (!s->clin || s->clin_cols != 7) {
            if (!fill)
                return ms_fail(MS_ERR_DATA, "%s: clinical features need Age, Sex and Frontal/Lateral (or View) columns in both files (use --impute-clinical to fill missing ones)",
                               s->pos_name ? s->pos_name : "split");
        }
        float row[MS_NCLIN]; /* table order [age, sex, frontal] */
        for (int j = 0; j < MS_NCLIN; j++) {
            float v = s->clin ? s->clin[(size_t)rows[i] * MS_NCLIN + j] : NAN;
            if (isnan(v)) {
                if (!fill) {
                    int r = rows[i];
                    const char *file = r < s->n_pos ? s->pos_name : s->norm_name;
                    int line = (r < s->n_pos ? r : r - s->n_pos) + 2;
                    static const char *const what[3] = {"Age", "Sex", "Frontal/Lateral"};
                    return ms_fail(MS_ERR_DATA, "%s: line %d: missing %s (use --impute-clinical to fill it)",
                                   file ? file : "split", line, what[j]);
                }
                v = fill[j];
            }
            row[j] = v;
        }
        ms_clin_to_input(dst + D, row);
    }
    return MS_OK;
}

/* The rows a task's reward reads when they are not the split's own: --augment geometry's
 * changed pool rows (P, pstride; first D columns) and query rows (Q, D). */
typedef struct {
    const float *pool;
    int pstride;
    const float *query;
} task_rows;

/* Reward of one selection: AUROC on the query set of the predictor built from picks, on the
 * split's rows or (rows non-NULL) on the task's changed rows (normalised here for the cosine
 * predictor, as the split's unit rows are). */
static double task_auroc(const ms_split *s, const ms_task *t, const int *picks, int n_picks,
                         ms_pred_kind pred, const task_rows *rows, ms_arena *ws) {
    int D = s->d, Q = t->Q;
    const float *feat = pred == MS_PRED_COSINE ? s->unit : s->emb;
    float *sel = MS_ARENA_NEW(ws, float, (size_t)n_picks * D);
    uint8_t *sel_y = MS_ARENA_NEW(ws, uint8_t, n_picks);
    float *qry = MS_ARENA_NEW(ws, float, (size_t)Q * D);
    float *scores = MS_ARENA_NEW(ws, float, Q);
    float *work = MS_ARENA_NEW(ws, float, (size_t)Q * n_picks + Q + n_picks);
    int *aw = MS_ARENA_NEW(ws, int, 2 * Q);
    for (int j = 0; j < n_picks; j++) {
        if (rows) memcpy(sel + (size_t)j * D, rows->pool + (size_t)picks[j] * rows->pstride, sizeof(float) * (size_t)D);
        else memcpy(sel + (size_t)j * D, feat + (size_t)t->pool[picks[j]] * D, sizeof(float) * (size_t)D);
        sel_y[j] = t->pool_y[picks[j]];
    }
    if (rows) {
        memcpy(qry, rows->query, sizeof(float) * (size_t)Q * D);
        if (pred == MS_PRED_COSINE) {
            ms_rows_unit(sel, sel, (size_t)n_picks, (size_t)D);
            ms_rows_unit(qry, qry, (size_t)Q, (size_t)D);
        }
    } else {
        ms_gather_rows(qry, feat, t->query, Q, D);
    }
    ms_predict(scores, qry, Q, sel, sel_y, n_picks, D, pred, work);
    double auc = 0.5;
    ms_status st = ms_auroc(scores, t->query_y, Q, &auc, aw);
    MS_CHECK(st == MS_OK); /* the query always holds both classes (ms_task_check) */
    return auc;
}

typedef struct {
    const ms_split *s;
    const ms_train_config *cfg;
    int Din, P, B, Kmax;
    int S;           /* draws per task (cfg->samples, at least 1); per-draw arrays hold B S */
    ms_net params, grads, m, v; /* grads, m, v: the same layout, used as flat arrays; grads is
                                 * zero between iterations (ms_net_init zeroes it, the
                                 * backward accumulates into it, ms_adam_step clears it) */
    void *work;      /* the architecture's work object for (B S, P, Kmax) */
    int VB;          /* tasks per validation batch (val_batch): at least B S */
    void *vwork;     /* the architecture's work object for validation, (VB, P, Kmax) */
    float *x;        /* (max(B S, VB), P, Din); draw j = b S + s of task b */
    int *kb;         /* (B S) budget of each draw */
    int *picks;      /* (B S, Kmax) */
    int *npicks;     /* (B S) */
    double *logp, *scale; /* (B S) */
    ms_rng *rngs;    /* (B S) */
    int n_val_k, val_k[32]; /* validation budgets: prefixes of one greedy ranking */
    ms_task *tasks;  /* (max(B, VB)) */
    int *task_mem;
    uint8_t *y_mem;
    double *reward, *baseline; /* (B S) */
    int nthreads;
    ms_arena *arenas; /* (nthreads) */
    int *scratch;     /* (nthreads, max(n_pos, n_norm)) */
    double *rot_buf;  /* (nthreads, D) for --augment rotate */
    float *qx;        /* (B, Q, D) --augment geometry: each task's changed query rows */
    double *geo_work; /* (nthreads, geo_n) */
    size_t geo_n;
    signed char *rot_sign; /* (nthreads, 3 D) */
    int scratch_n;
    /* --impute-clinical: each split's feature means, computed once (NULL: no imputation) */
    float fill_train_mem[MS_NCLIN], fill_val_mem[MS_NCLIN];
    const float *fill_train, *fill_val;
} trainer;

static void trainer_tasks_alloc(trainer *tr, const ms_task_shape *sh) {
    int P = sh->pool, Q = sh->query, B = tr->B > tr->VB ? tr->B : tr->VB;
    tr->tasks = ms_xcalloc((size_t)B, sizeof(ms_task));
    tr->task_mem = ms_xmalloc(sizeof(int) * (size_t)B * (P + Q));
    tr->y_mem = ms_xmalloc((size_t)B * (P + Q));
    for (int b = 0; b < B; b++) {
        ms_task *t = &tr->tasks[b];
        t->P = P, t->Q = Q;
        t->pool = tr->task_mem + (size_t)b * (P + Q);
        t->query = t->pool + P;
        t->pool_y = tr->y_mem + (size_t)b * (P + Q);
        t->query_y = t->pool_y + P;
    }
}

/* The reward of an ordered selection of n items: with a budget range (k_min), the mean
 * AUROC over its prefixes of the validation budgets k_min, 2 k_min, ..., k (a multinomial
 * draw with duplicates may hold fewer distinct items: prefixes are capped at n); else the
 * AUROC of all n. */
/* draw: the block of x the selection was made from; task: its task's index in the batch. */
static double prefix_auroc(const trainer *tr, const ms_split *s, const ms_task *t, const int *picks,
                           int n, int draw, int task, ms_arena *ws) {
    const ms_train_config *cfg = tr->cfg;
    task_rows rows_mem = {tr->x + (size_t)draw * tr->P * tr->Din, tr->Din, tr->qx + (size_t)task * t->Q * s->d};
    const task_rows *rows = cfg->geometry.on ? &rows_mem : NULL;
    if (!(cfg->k_min > 0 && cfg->k_min < cfg->k)) return task_auroc(s, t, picks, n, cfg->pred, rows, ws);
    double r = 0;
    for (int j = 0; j < tr->n_val_k; j++)
        r += task_auroc(s, t, picks, tr->val_k[j] < n ? tr->val_k[j] : n, cfg->pred, rows, ws);
    return r / tr->n_val_k;
}

/* Samples tasks ids[0..nb) of `stream` from split s into tr->tasks and, unless with_x is 0,
 * builds their input x. it >= 0: a training iteration (the augmentations apply); -1:
 * validation. */
static ms_status build_batch(trainer *tr, const ms_split *s, const float *fill, const int *cond,
                             int n_cond, uint64_t stream, const long *ids, int nb, long it, int with_x) {
    const ms_train_config *cfg = tr->cfg;
    ms_status first = MS_OK;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nb; b++) {
        int *scratch = tr->scratch + (size_t)omp_get_thread_num() * tr->scratch_n;
        ms_task_shape sh = cfg->shape;
        if (cfg->pos_frac_hi > cfg->shape.pos_frac) {
            /* a uniform number of positives in [ceil(P lo), ceil(P hi)]; the fraction is set
             * half a positive below it so that ceil(P f) gives that number exactly */
            int lo = ms_task_pool_pos(&cfg->shape);
            ms_task_shape hi_sh = cfg->shape;
            hi_sh.pos_frac = cfg->pos_frac_hi;
            int hi = ms_task_pool_pos(&hi_sh);
            ms_rng r;
            ms_rng_init(&r, cfg->seed, STREAM_POS_FRAC, stream * 0x100000000ULL + (uint64_t)ids[b]);
            int np = lo + (int)ms_rng_below(&r, (uint32_t)(hi - lo + 1));
            sh.pos_frac = (np - 0.5) / sh.pool;
        }
        ms_task_sample(&tr->tasks[b], s, &sh, cond, n_cond, cfg->seed, stream, (uint64_t)ids[b], scratch);
        if (!with_x) continue;
        ms_status st = ms_selector_input(tr->x + (size_t)b * tr->P * tr->Din, s, tr->tasks[b].pool, tr->P,
                                         cfg->clinical, fill);
        if (!st && cfg->augment_rotate && it >= 0) {
            ms_rng r;
            ms_rng_init(&r, cfg->seed, STREAM_ROTATE, ((uint64_t)it << 16) ^ (uint64_t)b);
            int th = omp_get_thread_num();
            ms_train_rotate_rows(tr->x + (size_t)b * tr->P * tr->Din, tr->P, tr->Din, s->d, &r,
                        tr->rot_buf + (size_t)th * s->d, tr->rot_sign + (size_t)th * 3 * s->d);
        }
        if (!st && cfg->geometry.on && it >= 0) {
            /* pool and query changed together, so the reward sees the same geometry */
            const ms_task *t = &tr->tasks[b];
            float *qx = tr->qx + (size_t)b * t->Q * s->d;
            ms_gather_rows(qx, s->emb, t->query, t->Q, s->d);
            ms_rng r;
            ms_rng_init(&r, cfg->seed, STREAM_GEOMETRY, ((uint64_t)it << 16) ^ (uint64_t)b);
            ms_train_geometry_rows(tr->x + (size_t)b * tr->P * tr->Din, tr->P, tr->Din, qx, t->Q, s->d, s->d,
                                   &cfg->geometry, &r, tr->geo_work + (size_t)omp_get_thread_num() * tr->geo_n, NULL);
        }
        if (st) {
#pragma omp critical(ms_train_err)
            if (!first) first = st;
        }
    }
    return first;
}

/* Tasks per validation batch. Validation is forward-only, so its batches can be larger than
 * the training batch: bigger recurrent products and fewer calls (one projection of the
 * split's distinct rows per batch). Up to 256 tasks while a batch holds at most 8192 pool
 * rows (pools of 30: 256 tasks; paper-size pools of 1000: the training batch as before),
 * never fewer than the B S draws of a training iteration, whose buffers it shares. A task's
 * logits do not depend on the batch it is scored in (the products sum each element in the
 * same order for any number of rows), so neither does the validation AUROC. */
static int val_batch(int BS, int P, int val_tasks) {
    int vb = 8192 / (P > 0 ? P : 1);
    if (vb > 256) vb = 256;
    if (vb > val_tasks) vb = val_tasks;
    return vb > BS ? vb : BS;
}

/* Mean greedy AUROC (and random AUROC) over the fixed meta-validation tasks, averaged over
 * the validation budgets (prefixes of one greedy ranking of Kmax items).
 *
 * A static architecture with the prepare_rows hook (the bilstm) and inputs that are the
 * split's embeddings as they are (no clinical columns) scores the batches from row indices
 * when the split has fewer rows than a quarter of the items validation scores:
 * the split's rows are prepared once per validation (the bilstm projects each row once)
 * and a batch is its tasks' pool rows, with no input copied and no repeated rows to find;
 * the greedy selection is the top K of the logits, as in run(). The logits are those of
 * run() (arch.h), so the AUROC is the same; other selectors run() on the built input. */
static ms_status validate(trainer *tr, const ms_split *val, double *auc_out, double *random_out) {
    const ms_train_config *cfg = tr->cfg;
    const ms_arch *a = tr->params.arch;
    double sum = 0, rsum = 0;
    const int VB = tr->VB, P = tr->P;
    long *ids = ms_xmalloc(sizeof(long) * (size_t)VB);
    ms_status st = MS_OK;
    ms_net_mode greedy = {.sampler = cfg->sampler, .greedy = 1};
    const int by_rows = !a->sequential && a->prepare_rows && a->run_rows && !cfg->clinical &&
                        (double)val->n <= (double)cfg->val_tasks * P / 4 &&
                        a->prepare_rows(&tr->params, tr->vwork, val->emb, val->n);
    int *rows = by_rows ? ms_xmalloc(sizeof(int) * (size_t)VB * P) : NULL;
    float *logits = by_rows ? ms_xmalloc(sizeof(float) * (size_t)VB * P) : NULL;
    for (int b = 0; b < VB; b++) tr->kb[b] = tr->Kmax;
    for (int start = 0; start < cfg->val_tasks && !st; start += VB) {
        int nb = cfg->val_tasks - start < VB ? cfg->val_tasks - start : VB;
        for (int b = 0; b < nb; b++) ids[b] = start + b;
        st = build_batch(tr, val, tr->fill_val, cfg->val_cond, cfg->n_val_cond, STREAM_VAL_TASKS, ids, nb, -1,
                         !by_rows);
        if (st) break;
        if (by_rows) {
            for (int b = 0; b < nb; b++) memcpy(rows + (size_t)b * P, tr->tasks[b].pool, sizeof(int) * (size_t)P);
            a->run_rows(&tr->params, tr->vwork, rows, nb, P, logits);
        } else {
            a->run(&tr->params, tr->vwork, tr->x, nb, P, tr->kb, tr->Kmax, greedy, NULL, tr->picks, tr->npicks,
                   tr->logp, NULL);
        }
#pragma omp parallel for schedule(static)
        for (int b = 0; b < nb; b++) {
            ms_arena *ws = &tr->arenas[omp_get_thread_num()];
            ms_arena_reset(ws);
            if (by_rows) ms_policy_topk(tr->picks + (size_t)b * tr->Kmax, logits + (size_t)b * P, P, tr->Kmax, ws);
            const int *picks = tr->picks + (size_t)b * tr->Kmax;
            double r = 0, rb = 0;
            for (int j = 0; j < tr->n_val_k; j++)
                r += task_auroc(val, &tr->tasks[b], picks, tr->val_k[j], cfg->pred, NULL, ws);
            tr->reward[b] = r / tr->n_val_k;
            if (random_out) {
                ms_rng rg;
                int *rp = MS_ARENA_NEW(ws, int, tr->Kmax);
                int *scr = MS_ARENA_NEW(ws, int, tr->P);
                for (int j = 0; j < tr->n_val_k; j++) {
                    ms_rng_init(&rg, cfg->seed, MS_STREAM_BASELINE, 0x7fffffffULL + (uint64_t)(start + b) + ((uint64_t)j << 40));
                    ms_rng_choose(&rg, tr->P, tr->val_k[j], rp, scr);
                    rb += task_auroc(val, &tr->tasks[b], rp, tr->val_k[j], cfg->pred, NULL, ws);
                }
                tr->baseline[b] = rb / tr->n_val_k;
            }
        }
        /* summed in task order, so the mean does not depend on the thread count */
        for (int b = 0; b < nb; b++) {
            sum += tr->reward[b];
            if (random_out) rsum += tr->baseline[b];
        }
    }
    free(ids);
    free(rows);
    free(logits);
    if (st) return st;
    *auc_out = sum / cfg->val_tasks;
    if (random_out) *random_out = rsum / cfg->val_tasks;
    return MS_OK;
}

/* --samples S: the batch's nb tasks (built into x) each drawn S times. Draw j = b S + s of
 * task b has reward r_j and the leave-one-out baseline bl_j = (sum_s' r_{b S + s'} - r_j) /
 * (S - 1), so the advantages of one task sum to 0 and no draw's own reward enters its
 * baseline (the estimator stays unbiased). loss = -(1 / (nb S)) sum_j (r_j - bl_j) log p_j.
 * Draw 0 of each task uses the same generator as a one-draw run. */
static ms_status train_step_loo(trainer *tr, long it, int nb) {
    const ms_train_config *cfg = tr->cfg;
    const ms_arch *a = tr->params.arch;
    const int S = tr->S, n = nb * S;
    const size_t blk = (size_t)tr->P * tr->Din;
    /* spread task b's input to draws b S .. b S + S - 1, from the last task down (a block
     * is written only after every task it could hold has been read) */
    for (int b = nb - 1; b >= 0; b--)
        for (int s = S - 1; s >= 0; s--)
            if (b * S + s != b) memcpy(tr->x + (size_t)(b * S + s) * blk, tr->x + (size_t)b * blk, sizeof(float) * blk);
    for (int j = 0; j < n; j++) {
        int b = j / S, s = j % S;
        uint64_t id = (((uint64_t)it << 16) ^ (uint64_t)b) ^ ((uint64_t)s << 48);
        ms_rng_init(&tr->rngs[j], cfg->seed, MS_STREAM_POLICY, id);
        tr->kb[j] = cfg->k;
    }
    ms_net_mode mode = {.sampler = cfg->sampler, .greedy = 0};
    a->run(&tr->params, tr->work, tr->x, n, tr->P, tr->kb, tr->Kmax, mode, tr->rngs, tr->picks, tr->npicks,
           tr->logp, NULL);
#pragma omp parallel for schedule(static)
    for (int j = 0; j < n; j++) {
        ms_arena *ws = &tr->arenas[omp_get_thread_num()];
        ms_arena_reset(ws);
        tr->reward[j] = prefix_auroc(tr, tr->s, &tr->tasks[j / S], tr->picks + (size_t)j * tr->Kmax, tr->npicks[j], j, j / S, ws);
    }
    for (int b = 0; b < nb; b++) {
        double sum = 0;
        for (int s = 0; s < S; s++) sum += tr->reward[b * S + s];
        for (int s = 0; s < S; s++) tr->baseline[b * S + s] = (sum - tr->reward[b * S + s]) / (S - 1);
    }
    for (int j = 0; j < n; j++) tr->scale[j] = -(tr->reward[j] - tr->baseline[j]) / n;
    a->backward(&tr->params, tr->work, tr->x, tr->scale, tr->grads.params);
    return MS_OK;
}

/* One REINFORCE iteration over tasks ids[0..nb). Fills reward/baseline (per draw: nb S of
 * them) and leaves the mean gradient of the loss in tr->grads. */
static ms_status train_step(trainer *tr, long it, const long *ids, int nb) {
    const ms_train_config *cfg = tr->cfg;
    const ms_split *s = tr->s;
    const ms_arch *a = tr->params.arch;
    ms_status st = build_batch(tr, s, tr->fill_train, cfg->train_cond, cfg->n_train_cond, STREAM_TRAIN_TASKS, ids, nb, it, 1);
    if (st) return st;
    for (int b = 0; b < nb; b++) {
        uint64_t id = ((uint64_t)it << 16) ^ (uint64_t)b;
        ms_rng_init(&tr->rngs[b], cfg->seed, MS_STREAM_POLICY, id);
        tr->kb[b] = cfg->k;
    }
    if (tr->S > 1) return train_step_loo(tr, it, nb);
    if (cfg->baseline_greedy) {
        /* self-critical: the baseline is the reward of the current policy's greedy decode
         * (run first: the sampled run below keeps what the backward needs) */
        ms_net_mode gm = {.sampler = cfg->sampler, .greedy = 1};
        a->run(&tr->params, tr->work, tr->x, nb, tr->P, tr->kb, tr->Kmax, gm, NULL, tr->picks, tr->npicks,
               tr->logp, NULL);
#pragma omp parallel for schedule(static)
        for (int b = 0; b < nb; b++) {
            ms_arena *ws = &tr->arenas[omp_get_thread_num()];
            ms_arena_reset(ws);
            tr->baseline[b] = prefix_auroc(tr, s, &tr->tasks[b], tr->picks + (size_t)b * tr->Kmax, tr->npicks[b], b, b, ws);
        }
    }
    ms_net_mode mode = {.sampler = cfg->sampler, .greedy = 0};
    a->run(&tr->params, tr->work, tr->x, nb, tr->P, tr->kb, tr->Kmax, mode, tr->rngs, tr->picks, tr->npicks,
           tr->logp, NULL);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nb; b++) {
        ms_arena *ws = &tr->arenas[omp_get_thread_num()];
        ms_arena_reset(ws);
        uint64_t id = ((uint64_t)it << 16) ^ (uint64_t)b;
        tr->reward[b] = prefix_auroc(tr, s, &tr->tasks[b], tr->picks + (size_t)b * tr->Kmax, tr->npicks[b], b, b, ws);
        if (cfg->baseline_greedy) continue;
        ms_rng r;
        ms_rng_init(&r, cfg->seed, MS_STREAM_BASELINE, id);
        int *rp = MS_ARENA_NEW(ws, int, tr->kb[b]);
        int *scr = MS_ARENA_NEW(ws, int, tr->P);
        ms_rng_choose(&r, tr->P, tr->kb[b], rp, scr);
        tr->baseline[b] = prefix_auroc(tr, s, &tr->tasks[b], rp, tr->kb[b], b, b, ws);
    }
    /* loss = -(1/nb) sum_b adv_b * logp_b  =>  dL/dparams = sum_b -(adv_b / nb) dlogp_b */
    for (int b = 0; b < nb; b++) tr->scale[b] = -(tr->reward[b] - tr->baseline[b]) / nb;
    a->backward(&tr->params, tr->work, tr->x, tr->scale, tr->grads.params);
    return MS_OK;
}

static void path_in(char *buf, size_t n, const char *dir, const char *name) {
    snprintf(buf, n, "%s/%s", dir, name);
}

static void fill_meta(ms_selector_meta *m, const trainer *tr, const ms_split *val) {
    const ms_train_config *cfg = tr->cfg;
    ms_selector_meta_init(m);
    m->clinical = cfg->clinical;
    m->K = cfg->k;
    if (cfg->arch_opts && *cfg->arch_opts) ms_selector_meta_set_extra(m, "arch_init", cfg->arch_opts);
    if (cfg->geometry.on) {
        char g[128];
        ms_geometry_format(g, sizeof g, &cfg->geometry);
        ms_selector_meta_set_extra(m, "augment_geometry", g);
    }
    if (cfg->k_min > 0 && cfg->k_min < cfg->k) {
        char kr[48];
        snprintf(kr, sizeof kr, "%d:%d", cfg->k_min, cfg->k);
        ms_selector_meta_set_extra(m, "k_range", kr);
    }
    if (cfg->pos_frac_hi > cfg->shape.pos_frac) {
        char pr[64];
        snprintf(pr, sizeof pr, "%.6g:%.6g", cfg->shape.pos_frac, cfg->pos_frac_hi);
        ms_selector_meta_set_extra(m, "pos_frac_range", pr);
    }
    snprintf(m->sampler, sizeof m->sampler, "%s", ms_sampler_name(cfg->sampler));
    m->has_seed = 1;
    m->seed = cfg->seed;
    char fp[160];
    snprintf(fp, sizeof fp, "train %016llx; val %016llx", (unsigned long long)tr->s->fingerprint,
             (unsigned long long)val->fingerprint);
    ms_selector_meta_set_data(m, fp);
}

/* A string that changes whenever a setting that shapes the run changes; a resume with other
 * settings is refused. */
static void run_signature(char *buf, size_t n, const trainer *tr) {
    const ms_train_config *c = tr->cfg;
    /* clinical runs sign as clin2 since the inputs follow [sex, age, frontal]: a state saved
     * with the older [age, sex, frontal] inputs (clin1) is not resumed with the new order */
    snprintf(buf, n, "%s:%s P%d f%.6g:%.6g Q%d q%.6g K%d:%d B%d E%d N%d V%d every%d lr%.9g decay%.6g@%d H%d s%d bl%d rot%d clin%d imp%d pred%d seed%llu data%016llx",
             tr->params.arch->name, c->arch_opts ? c->arch_opts : "", c->shape.pool, c->shape.pos_frac, c->pos_frac_hi, c->shape.query,
             c->shape.query_pos_frac, c->k_min, c->k, c->batch,
             c->epochs, c->tasks, c->val_tasks, c->val_every, c->lr, c->lr_decay, c->lr_decay_epoch,
             tr->params.H, (int)c->sampler, c->baseline_greedy, c->augment_rotate, c->clinical ? 2 : 0, c->impute_clinical, (int)c->pred,
             (unsigned long long)c->seed, (unsigned long long)tr->s->fingerprint);
    /* only runs with several draws per task sign them: older states keep resuming */
    if (tr->S > 1) {
        size_t len = strlen(buf);
        snprintf(buf + len, n > len ? n - len : 0, " S%d", tr->S);
    }
    if (c->geometry.on) {
        char g[128];
        ms_geometry_format(g, sizeof g, &c->geometry);
        size_t len = strlen(buf);
        snprintf(buf + len, n > len ? n - len : 0, " geometry:%s", g);
    }
}

/* metrics.csv lives in memory and is rewritten as a whole (atomically, medselect/output.h)
 * before every state save and at most once a second in between (by the saver's thread, in
 * the order asked: ms_train_saver.c): the file on disk is complete and has
 * at least the rows of the saved state, so a resume cuts it back to the state's iteration
 * and continues exactly. */
typedef struct {
    char *s;
    size_t n, cap;
} metrics_buf;

static const char metrics_header[] = "iteration,epoch,reward,baseline,advantage,val_auroc,lr,seconds\n";

static void metrics_add(metrics_buf *b, const char *line) {
    size_t len = strlen(line);
    if (b->n + len + 1 > b->cap) {
        b->cap = (b->n + len + 1) * 2;
        b->s = ms_xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, line, len + 1);
    b->n += len;
}

/* Reads metrics.csv keeping the header and the rows of iterations <= last (rows written
 * after the last saved state are dropped). A missing file is fine before the first
 * iteration. */
static ms_status metrics_load(metrics_buf *b, const char *path, long last) {
    metrics_add(b, metrics_header);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT && last == 0) return MS_OK;
        return ms_fail(MS_ERR_IO, "%s: cannot open for resuming: %s", path, strerror(errno));
    }
    char line[1024];
    int first = 1;
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        if (!len || line[len - 1] != '\n') break; /* a partial line (older versions appended) */
        if (first) {
            first = 0;
            continue;
        }
        long it = strtol(line, NULL, 10);
        if (it <= last) metrics_add(b, line);
    }
    fclose(f);
    return MS_OK;
}

ms_status ms_train(const ms_split *train, const ms_split *val, const ms_train_config *cfg,
                   ms_train_summary *summary) {
    memset(summary, 0, sizeof *summary);
    MS_CHECK(cfg->batch > 0 && cfg->k > 0 && cfg->hidden >= 0 && cfg->tasks > 0 && cfg->epochs > 0);
    const ms_arch *arch = cfg->arch ? cfg->arch : ms_arch_default();
    if (cfg->k_min < 0 || cfg->k_min > cfg->k)
        return ms_fail(MS_ERR_ARG, "the smallest K (%d) is larger than the largest (%d)", cfg->k_min, cfg->k);
    if (arch->sequential && cfg->sampler != MS_SAMPLER_WOR)
        return ms_fail(MS_ERR_ARG, "the %s selector draws without replacement only (not --sampling %s)", arch->name,
                       ms_sampler_name(cfg->sampler));
    if (cfg->augment_rotate && (train->d & (train->d - 1)))
        return ms_fail(MS_ERR_ARG, "--augment rotate needs a power-of-two embedding width (%s has %d)", train->pos_name,
                       train->d);
    if (cfg->geometry.on) {
        const ms_geometry_aug *g = &cfg->geometry;
        if (!(g->noise >= 0 && g->noise <= 10 && g->spread >= 1 && g->spread <= 100 && g->axes >= 1 &&
              g->axes <= 100 && g->dirs >= 0 && g->dirs <= MS_GEOMETRY_MAX_DIRS))
            return ms_fail(MS_ERR_ARG, "--augment geometry: noise %g (0 to 10), spread %g and axes %g (1 to 100), dirs %d (0 to %d): out of range",
                           g->noise, g->spread, g->axes, g->dirs, MS_GEOMETRY_MAX_DIRS);
    }
    if (cfg->k > cfg->shape.pool)
        return ms_fail(MS_ERR_ARG, "K = %d is larger than the pool (%d)", cfg->k, cfg->shape.pool);
    if (cfg->samples < 0 || cfg->samples > 4096)
        return ms_fail(MS_ERR_ARG, "--samples %d: expected 1 to 4096 draws per task", cfg->samples);
    if (cfg->samples > 1 && cfg->baseline_greedy)
        return ms_fail(MS_ERR_ARG, "--samples %d gives each draw the leave-one-out baseline: drop --baseline greedy",
                       cfg->samples);
    if (train->d != val->d)
        return ms_fail(MS_ERR_DATA, "%s has %d-dimensional embeddings but %s has %d", train->pos_name,
                       train->d, val->pos_name, val->d);
    /* missing clinical columns are refused before anything is written to out_dir (values
     * missing in single rows are found when a task draws the row) */
    for (int i = 0; cfg->clinical && !cfg->impute_clinical && i < 2; i++) {
        const ms_split *s = i ? val : train;
        if (i == 1 && cfg->val_tasks == 0) break;
        if (!s->clin || s->clin_cols != 7)
            return ms_fail(MS_ERR_DATA, "%s, %s: clinical features need Age, Sex and Frontal/Lateral (or View) columns in both files (use --impute-clinical to fill missing ones)",
                           s->pos_name ? s->pos_name : "split", s->norm_name ? s->norm_name : "split");
    }
    /* with a prevalence range, both ends must fit (most positives; most normals) */
    ms_task_shape hi_shape = cfg->shape;
    if (cfg->pos_frac_hi > cfg->shape.pos_frac) hi_shape.pos_frac = cfg->pos_frac_hi;
    ms_status st = MS_OK;
    for (int e = 0; e < 2 && !st; e++) {
        const ms_task_shape *sh = e ? &hi_shape : &cfg->shape;
        st = ms_task_check(train, sh, cfg->train_cond, cfg->n_train_cond);
        if (!st && cfg->val_tasks > 0) st = ms_task_check(val, sh, cfg->val_cond, cfg->n_val_cond);
    }
    if (st) return st;
    /* one run per folder (a second train into the same --out is refused); the folder and
     * its missing parents are created, and removed again if this run ends with nothing in
     * them */
    ms_lock lock;
    st = ms_lock_acquire(&lock, cfg->out_dir, MS_LOCK_FOLDER);
    if (st) return st;

    trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.s = train;
    tr.cfg = cfg;
    tr.P = cfg->shape.pool;
    tr.B = cfg->batch;
    tr.S = cfg->samples > 1 ? cfg->samples : 1;
    tr.Din = train->d + (cfg->clinical ? MS_NCLIN : 0);
    st = ms_net_init(&tr.params, arch, tr.Din, cfg->hidden);
    if (st) return st;
    MS_CHECK(ms_net_init(&tr.grads, arch, tr.Din, cfg->hidden) == MS_OK);
    MS_CHECK(ms_net_init(&tr.m, arch, tr.Din, cfg->hidden) == MS_OK);
    MS_CHECK(ms_net_init(&tr.v, arch, tr.Din, cfg->hidden) == MS_OK);
    ms_net_randomize_opts(&tr.params, cfg->seed, cfg->arch_opts);
    tr.Kmax = cfg->k;
    const int BS = tr.B * tr.S; /* draws per iteration */
    tr.work = arch->work_new(&tr.params, BS, tr.P, tr.Kmax);
    tr.VB = val_batch(BS, tr.P, cfg->val_tasks);
    tr.vwork = arch->work_new(&tr.params, tr.VB, tr.P, tr.Kmax);
    const int NB = BS > tr.VB ? BS : tr.VB; /* the per-draw arrays serve both */
    {
        int k0 = cfg->k_min > 0 ? cfg->k_min : cfg->k;
        for (int kk = k0; kk < cfg->k && tr.n_val_k < 31; kk *= 2) tr.val_k[tr.n_val_k++] = kk;
        tr.val_k[tr.n_val_k++] = cfg->k;
    }
    tr.x = ms_xmalloc(sizeof(float) * (size_t)NB * tr.P * tr.Din);
    tr.kb = ms_xmalloc(sizeof(int) * (size_t)NB);
    tr.picks = ms_xmalloc(sizeof(int) * (size_t)NB * tr.Kmax);
    tr.npicks = ms_xmalloc(sizeof(int) * (size_t)NB);
    tr.logp = ms_xmalloc(sizeof(double) * (size_t)NB);
    tr.scale = ms_xmalloc(sizeof(double) * (size_t)BS);
    tr.rngs = ms_xmalloc(sizeof(ms_rng) * (size_t)BS);
    tr.reward = ms_xmalloc(sizeof(double) * (size_t)NB);
    tr.baseline = ms_xmalloc(sizeof(double) * (size_t)NB);
    trainer_tasks_alloc(&tr, &cfg->shape);
    tr.nthreads = omp_get_max_threads();
    tr.arenas = ms_xcalloc((size_t)tr.nthreads, sizeof(ms_arena));
    int nmax = train->n_pos > train->n_norm ? train->n_pos : train->n_norm;
    if (val->n_pos > nmax) nmax = val->n_pos;
    if (val->n_norm > nmax) nmax = val->n_norm;
    tr.scratch_n = nmax;
    tr.scratch = ms_xmalloc(sizeof(int) * (size_t)nmax * tr.nthreads);
    tr.rot_buf = ms_xmalloc(sizeof(double) * (size_t)train->d * tr.nthreads);
    tr.rot_sign = ms_xmalloc((size_t)train->d * 3 * tr.nthreads);
    if (cfg->geometry.on) {
        tr.qx = ms_xmalloc(sizeof(float) * (size_t)tr.B * cfg->shape.query * train->d);
        tr.geo_n = ms_train_geometry_work(train->d, cfg->geometry.dirs);
        tr.geo_work = ms_xmalloc(sizeof(double) * tr.geo_n * tr.nthreads);
    }
    if (cfg->clinical && cfg->impute_clinical) {
        ms_clin_means(train->clin, train->n, tr.fill_train_mem);
        ms_clin_means(val->clin, val->n, tr.fill_val_mem);
        tr.fill_train = tr.fill_train_mem;
        tr.fill_val = tr.fill_val_mem;
    }
    int *perm = ms_xmalloc(sizeof(int) * (size_t)cfg->tasks);
    long *ids = ms_xmalloc(sizeof(long) * (size_t)tr.B);

    char p_state[4096], p_best[4096], p_last[4096], p_metrics[4096], sig[512];
    path_in(p_state, sizeof p_state, cfg->out_dir, "state.safetensors");
    path_in(p_best, sizeof p_best, cfg->out_dir, "best.safetensors");
    path_in(p_last, sizeof p_last, cfg->out_dir, "last.safetensors");
    path_in(p_metrics, sizeof p_metrics, cfg->out_dir, "metrics.csv");
    run_signature(sig, sizeof sig, &tr);

    const long ipe = (cfg->tasks + tr.B - 1) / tr.B;
    const long total = ipe * cfg->epochs;
    long start = 0;
    ms_train_state state = {.iteration = 0, .best_val = -1, .best_iteration = -1, .random_val = NAN};
    metrics_buf mb = {0};
    ms_selector_meta meta;
    fill_meta(&meta, &tr, val);
    /* every file from here on is written by the saver's thread, in the order asked */
    ms_saver *saver = ms_saver_start(sig, &meta);
    struct stat sb;
    if (cfg->resume && stat(p_state, &sb) == 0) {
        st = ms_train_state_load(p_state, sig, &tr.params, &tr.m, &tr.v, &state);
        if (!st) st = metrics_load(&mb, p_metrics, state.iteration);
        start = state.iteration;
    } else {
        /* a fresh run (or --resume before any state was saved: nothing to resume, start from
         * scratch). The state is saved before the first validation, so that a run killed at
         * any later moment can be resumed. */
        metrics_add(&mb, metrics_header);
        st = ms_saver_state(saver, p_state, &tr.params, &tr.m, &tr.v, &state);
    }
    if (!st && isnan(state.random_val) && cfg->val_tasks > 0) {
        double auc;
        st = validate(&tr, val, &auc, &state.random_val);
        if (!st && state.best_val < 0) {
            /* the untrained selector is the first "best" */
            state.best_val = auc;
            state.best_iteration = 0;
            st = ms_saver_net(saver, p_best, &tr.params);
        }
        if (!st) st = ms_saver_state(saver, p_state, &tr.params, &tr.m, &tr.v, &state);
    }

    ms_progress prog;
    ms_progress_begin(&prog, "train", total);
    ms_progress_add(&prog, start);
    double t0 = ms_now(), t_metrics = t0;
    long done_here = 0;
    for (long it = start; !st && it < total; it++) {
        if (cfg->max_iterations > 0 && done_here >= cfg->max_iterations) break;
        long epoch = it / ipe, j = it % ipe;
        if (j == 0 || it == start) {
            ms_rng r;
            ms_rng_init(&r, cfg->seed, STREAM_EPOCH_ORDER, (uint64_t)epoch);
            for (int i = 0; i < cfg->tasks; i++) perm[i] = i;
            ms_rng_shuffle(&r, perm, cfg->tasks);
        }
        int nb = (int)(cfg->tasks - j * tr.B < tr.B ? cfg->tasks - j * tr.B : tr.B);
        for (int b = 0; b < nb; b++) ids[b] = perm[j * tr.B + b];
        double lr = cfg->lr;
        if (cfg->lr_decay_epoch > 0 && epoch + 1 >= cfg->lr_decay_epoch) lr *= cfg->lr_decay;
        st = train_step(&tr, it, ids, nb);
        if (st) break;
        ms_adam_step(tr.params.params, tr.grads.params, tr.m.params, tr.v.params, tr.params.count,
                     it + 1, lr, 0.9, 0.999, 1e-8);
        double rw = 0, bl = 0;
        int nd = nb * tr.S; /* draws of this iteration */
        for (int q = 0; q < nd; q++) rw += tr.reward[q], bl += tr.baseline[q];
        rw /= nd, bl /= nd;
        done_here++;
        int last_it = it + 1 == total || (cfg->max_iterations > 0 && done_here >= cfg->max_iterations);
        int do_val = cfg->val_tasks > 0 && ((it + 1) % cfg->val_every == 0 || it + 1 == total);
        double vauc = NAN;
        if (do_val) {
            st = validate(&tr, val, &vauc, NULL);
            if (!st && vauc > state.best_val) {
                state.best_val = vauc;
                state.best_iteration = (int)(it + 1);
                st = ms_saver_net(saver, p_best, &tr.params);
            }
        }
        char line[256], vs[40] = "";
        /* 9 significant digits: what users plot reads back without visible rounding */
        if (!isnan(vauc)) snprintf(vs, sizeof vs, "%.9g", vauc);
        snprintf(line, sizeof line, "%ld,%ld,%.9g,%.9g,%.9g,%s,%.9g,%.2f\n", it + 1, epoch + 1, rw, bl,
                 rw - bl, vs, lr, ms_now() - t0);
        metrics_add(&mb, line);
        state.iteration = it + 1;
        int stop = 0;
        if (!st && cfg->on_iteration) {
            ms_train_progress tp = {.iteration = it + 1, .total = total, .epoch = epoch + 1, .reward = rw,
                                    .baseline = bl, .advantage = rw - bl, .val_auroc = vauc,
                                    .best_val = state.best_val, .best_iteration = state.best_iteration,
                                    .lr = lr, .seconds = ms_now() - t0};
            stop = cfg->on_iteration(&tp, cfg->on_iteration_ctx) != 0;
        }
        /* metrics.csv before every state save (so it never has fewer rows than the state),
         * and otherwise at most once a second (a sync per tiny iteration would dominate) */
        int save_state = do_val || last_it || stop;
        if (!st && (save_state || ms_now() - t_metrics >= 1.0)) {
            st = ms_saver_text(saver, p_metrics, mb.s, mb.n);
            t_metrics = ms_now();
        }
        if (!st && save_state) st = ms_saver_state(saver, p_state, &tr.params, &tr.m, &tr.v, &state);
        ms_progress_add(&prog, 1);
        if (stop) {
            summary->stopped = 1;
            break;
        }
    }
    ms_progress_end(&prog);
    if (!st && state.iteration == total) st = ms_saver_net(saver, p_last, &tr.params);
    ms_status saved = ms_saver_finish(saver); /* every file written (or the first failure) */
    if (!st) st = saved;
    free(mb.s);
    ms_lock_release(&lock);

    summary->iterations = (int)state.iteration;
    summary->best_val = state.best_val;
    summary->best_iteration = state.best_iteration;
    summary->random_val = state.random_val;
    summary->seconds = ms_now() - t0;
    summary->tasks_per_second = summary->seconds > 0 ? done_here * (double)tr.B / summary->seconds : 0;

    for (int i = 0; i < tr.nthreads; i++) ms_arena_free(&tr.arenas[i]);
    free(tr.arenas);
    free(tr.scratch);
    free(tr.rot_buf);
    free(tr.rot_sign);
    free(tr.qx);
    free(tr.geo_work);
    free(perm);
    free(ids);
    free(tr.tasks);
    free(tr.task_mem);
    free(tr.y_mem);
    free(tr.x);
    free(tr.kb);
    free(tr.picks);
    free(tr.npicks);
    free(tr.logp);
    free(tr.scale);
    free(tr.rngs);
    free(tr.reward);
    free(tr.baseline);
    ms_selector_meta_free(&meta);
    arch->work_free(tr.work);
    arch->work_free(tr.vwork);
    ms_net_free(&tr.params);
    ms_net_free(&tr.grads);
    ms_net_free(&tr.m);
    ms_net_free(&tr.v);
    return st;
}
