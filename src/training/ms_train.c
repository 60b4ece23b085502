/* ms_train.c: REINFORCE meta-training of the BiLSTM selector (see train.h).
 *
 * Memory: the LSTM cache (48*B*P*H bytes), the batch input x (B, P, D'), logits and their
 * gradients (B, P), and one arena per thread for the per-task reward computation are sized
 * once before the first iteration; the loop itself allocates nothing. */
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
    c->hidden = 256;
    c->sampler = MS_SAMPLER_WOR;
    c->pred = MS_PRED_COSINE;
    c->seed = 0;
}

/* Task streams: meta-train and meta-validation tasks never coincide. */
enum { STREAM_TRAIN_TASKS = 101, STREAM_VAL_TASKS = 102, STREAM_EPOCH_ORDER = 103 };

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
            dst[D + j] = v;
        }
    }
    return MS_OK;
}

/* ---- Adam, PyTorch's update rule --------------------------------------------------------
 * m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
 * p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)                                */
void ms_adam_step(float *p, const float *g, float *m, float *v, size_t n, long t, double lr,
                  double b1, double b2, double eps) {
    double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
    /* 1 - b is formed in double and then rounded, as PyTorch does with its Python-float
     * coefficients: (1.0f - (float)0.999) would be 1.3e-5 off in relative terms. */
    float fb1 = (float)b1, fb2 = (float)b2, cb1 = (float)(1.0 - b1), cb2 = (float)(1.0 - b2);
    float step = (float)(lr / bc1);
    float sbc2 = (float)sqrt(bc2);
    for (size_t i = 0; i < n; i++) {
        m[i] = fb1 * m[i] + cb1 * g[i];
        v[i] = fb2 * v[i] + cb2 * g[i] * g[i];
        float denom = sqrtf(v[i]) / sbc2 + (float)eps;
        p[i] -= step * m[i] / denom;
    }
}

/* Reward of one selection: AUROC on the query set of the predictor built from picks. */
static double task_auroc(const ms_split *s, const ms_task *t, const int *picks, int n_picks,
                         ms_pred_kind pred, ms_arena *ws) {
    int D = s->d, Q = t->Q;
    const float *feat = pred == MS_PRED_COSINE ? s->unit : s->emb;
    float *sel = MS_ARENA_NEW(ws, float, (size_t)n_picks * D);
    uint8_t *sel_y = MS_ARENA_NEW(ws, uint8_t, n_picks);
    float *qry = MS_ARENA_NEW(ws, float, (size_t)Q * D);
    float *scores = MS_ARENA_NEW(ws, float, Q);
    float *work = MS_ARENA_NEW(ws, float, (size_t)Q * n_picks + Q + n_picks);
    int *aw = MS_ARENA_NEW(ws, int, 2 * Q);
    for (int j = 0; j < n_picks; j++) {
        memcpy(sel + (size_t)j * D, feat + (size_t)t->pool[picks[j]] * D, sizeof(float) * (size_t)D);
        sel_y[j] = t->pool_y[picks[j]];
    }
    ms_gather_rows(qry, feat, t->query, Q, D);
    ms_predict(scores, qry, Q, sel, sel_y, n_picks, D, pred, work);
    double auc = 0.5;
    ms_status st = ms_auroc(scores, t->query_y, Q, &auc, aw);
    MS_CHECK(st == MS_OK); /* the query always holds both classes (ms_task_check) */
    return auc;
}

typedef struct {
    const ms_split *s;
    const ms_train_config *cfg;
    int Din, P, B;
    ms_lstm_params params, grads, m, v;
    ms_lstm_cache cache;
    float *x;        /* (B, P, Din) */
    float *logits;   /* (B, P) */
    float *dlogits;  /* (B, P) */
    ms_task *tasks;  /* (B) */
    int *task_mem;
    uint8_t *y_mem;
    double *reward, *baseline; /* (B) */
    int nthreads;
    ms_arena *arenas; /* (nthreads) */
    int *scratch;     /* (nthreads, max(n_pos, n_norm)) */
    int scratch_n;
    /* --impute-clinical: each split's feature means, computed once (NULL: no imputation) */
    float fill_train_mem[MS_NCLIN], fill_val_mem[MS_NCLIN];
    const float *fill_train, *fill_val;
} trainer;

static void trainer_tasks_alloc(trainer *tr, const ms_task_shape *sh) {
    int P = sh->pool, Q = sh->query, B = tr->B;
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

/* Samples tasks ids[0..nb) of `stream` from split s into tr->tasks and builds x. */
static ms_status build_batch(trainer *tr, const ms_split *s, const float *fill, const int *cond,
                             int n_cond, uint64_t stream, const long *ids, int nb) {
    const ms_train_config *cfg = tr->cfg;
    ms_status first = MS_OK;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nb; b++) {
        int *scratch = tr->scratch + (size_t)omp_get_thread_num() * tr->scratch_n;
        ms_task_sample(&tr->tasks[b], s, &cfg->shape, cond, n_cond, cfg->seed, stream, (uint64_t)ids[b], scratch);
        ms_status st = ms_selector_input(tr->x + (size_t)b * tr->P * tr->Din, s, tr->tasks[b].pool, tr->P,
                                         cfg->clinical, fill);
        if (st) {
#pragma omp critical(ms_train_err)
            if (!first) first = st;
        }
    }
    return first;
}

/* Mean greedy-top-K AUROC (and random AUROC) over the fixed meta-validation tasks. */
static ms_status validate(trainer *tr, const ms_split *val, double *auc_out, double *random_out) {
    const ms_train_config *cfg = tr->cfg;
    double sum = 0, rsum = 0;
    long *ids = ms_xmalloc(sizeof(long) * (size_t)tr->B);
    ms_status st = MS_OK;
    for (int start = 0; start < cfg->val_tasks && !st; start += tr->B) {
        int nb = cfg->val_tasks - start < tr->B ? cfg->val_tasks - start : tr->B;
        for (int b = 0; b < nb; b++) ids[b] = start + b;
        st = build_batch(tr, val, tr->fill_val, cfg->val_cond, cfg->n_val_cond, STREAM_VAL_TASKS, ids, nb);
        if (st) break;
        ms_lstm_forward(tr->logits, &tr->cache, tr->x, &tr->params, nb, tr->P);
#pragma omp parallel for schedule(static)
        for (int b = 0; b < nb; b++) {
            ms_arena *ws = &tr->arenas[omp_get_thread_num()];
            ms_arena_reset(ws);
            int *picks = MS_ARENA_NEW(ws, int, cfg->k);
            ms_policy_topk(picks, tr->logits + (size_t)b * tr->P, tr->P, cfg->k, ws);
            tr->reward[b] = task_auroc(val, &tr->tasks[b], picks, cfg->k, cfg->pred, ws);
            if (random_out) {
                ms_rng r;
                ms_rng_init(&r, cfg->seed, MS_STREAM_BASELINE, 0x7fffffffULL + (uint64_t)(start + b));
                int *scr = MS_ARENA_NEW(ws, int, tr->P);
                ms_rng_choose(&r, tr->P, cfg->k, picks, scr);
                tr->baseline[b] = task_auroc(val, &tr->tasks[b], picks, cfg->k, cfg->pred, ws);
            }
        }
        /* summed in task order, so the mean does not depend on the thread count */
        for (int b = 0; b < nb; b++) {
            sum += tr->reward[b];
            if (random_out) rsum += tr->baseline[b];
        }
    }
    free(ids);
    if (st) return st;
    *auc_out = sum / cfg->val_tasks;
    if (random_out) *random_out = rsum / cfg->val_tasks;
    return MS_OK;
}

/* One REINFORCE iteration over tasks ids[0..nb). Fills reward/baseline and leaves the mean
 * gradient of the loss in tr->grads. */
static ms_status train_step(trainer *tr, long it, const long *ids, int nb) {
    const ms_train_config *cfg = tr->cfg;
    const ms_split *s = tr->s;
    ms_status st = build_batch(tr, s, tr->fill_train, cfg->train_cond, cfg->n_train_cond, STREAM_TRAIN_TASKS, ids, nb);
    if (st) return st;
    ms_lstm_forward(tr->logits, &tr->cache, tr->x, &tr->params, nb, tr->P);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nb; b++) {
        ms_arena *ws = &tr->arenas[omp_get_thread_num()];
        ms_arena_reset(ws);
        uint64_t id = ((uint64_t)it << 16) ^ (uint64_t)b;
        ms_rng r;
        ms_rng_init(&r, cfg->seed, MS_STREAM_POLICY, id);
        int *picks = MS_ARENA_NEW(ws, int, cfg->k);
        double logp;
        float *dl = tr->dlogits + (size_t)b * tr->P;
        int n = ms_policy_sample(picks, &logp, dl, cfg->sampler, tr->logits + (size_t)b * tr->P, tr->P, cfg->k, &r, ws);
        tr->reward[b] = task_auroc(s, &tr->tasks[b], picks, n, cfg->pred, ws);
        ms_rng_init(&r, cfg->seed, MS_STREAM_BASELINE, id);
        int *scr = MS_ARENA_NEW(ws, int, tr->P);
        ms_rng_choose(&r, tr->P, cfg->k, picks, scr);
        tr->baseline[b] = task_auroc(s, &tr->tasks[b], picks, cfg->k, cfg->pred, ws);
    }
    /* loss = -(1/nb) sum_b adv_b * logp_b  =>  dL/dlogits_b = -(adv_b / nb) * dlogp_b */
    for (int b = 0; b < nb; b++) {
        float scale = (float)(-(tr->reward[b] - tr->baseline[b]) / nb);
        float *dl = tr->dlogits + (size_t)b * tr->P;
        for (int t = 0; t < tr->P; t++) dl[t] *= scale;
    }
    ms_lstm_params_zero(&tr->grads);
    ms_lstm_backward(&tr->grads, tr->dlogits, &tr->cache, tr->x, &tr->params);
    return MS_OK;
}

static ms_status ensure_dir(const char *dir) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ms_fail(MS_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
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
    snprintf(buf, n, "P%d f%.6g Q%d q%.6g K%d B%d E%d N%d V%d every%d lr%.9g decay%.6g@%d H%d s%d clin%d imp%d pred%d seed%llu data%016llx",
             c->shape.pool, c->shape.pos_frac, c->shape.query, c->shape.query_pos_frac, c->k, c->batch,
             c->epochs, c->tasks, c->val_tasks, c->val_every, c->lr, c->lr_decay, c->lr_decay_epoch,
             c->hidden, (int)c->sampler, c->clinical, c->impute_clinical, (int)c->pred,
             (unsigned long long)c->seed, (unsigned long long)tr->s->fingerprint);
}

/* Rewrites metrics.csv keeping the header and the rows of iterations <= last (drops rows
 * written after the last saved state, and a partial line from a kill). */
static ms_status metrics_truncate(const char *path, long last) {
    FILE *f = fopen(path, "rb");
    if (!f) return ms_fail(MS_ERR_IO, "%s: cannot open for resuming: %s", path, strerror(errno));
    ms_outfile o;
    ms_status st = ms_out_open(&o, path);
    if (st) {
        fclose(f);
        return st;
    }
    char line[1024];
    int first = 1;
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        if (!len || line[len - 1] != '\n') break; /* partial last line */
        if (first) {
            fputs(line, o.f);
            first = 0;
            continue;
        }
        long it = strtol(line, NULL, 10);
        if (it <= last) fputs(line, o.f);
    }
    fclose(f);
    return ms_out_commit(&o);
}

ms_status ms_train(const ms_split *train, const ms_split *val, const ms_train_config *cfg,
                   ms_train_summary *summary) {
    memset(summary, 0, sizeof *summary);
    MS_CHECK(cfg->batch > 0 && cfg->k > 0 && cfg->hidden > 0 && cfg->tasks > 0 && cfg->epochs > 0);
    if (cfg->k > cfg->shape.pool)
        return ms_fail(MS_ERR_ARG, "K = %d is larger than the pool (%d)", cfg->k, cfg->shape.pool);
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
    ms_status st = ms_task_check(train, &cfg->shape, cfg->train_cond, cfg->n_train_cond);
    if (!st && cfg->val_tasks > 0) st = ms_task_check(val, &cfg->shape, cfg->val_cond, cfg->n_val_cond);
    if (st) return st;
    st = ensure_dir(cfg->out_dir);
    if (st) return st;

    trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.s = train;
    tr.cfg = cfg;
    tr.P = cfg->shape.pool;
    tr.B = cfg->batch;
    tr.Din = train->d + (cfg->clinical ? MS_NCLIN : 0);
    ms_lstm_params_init(&tr.params, tr.Din, cfg->hidden);
    ms_lstm_params_init(&tr.grads, tr.Din, cfg->hidden);
    ms_lstm_params_init(&tr.m, tr.Din, cfg->hidden);
    ms_lstm_params_init(&tr.v, tr.Din, cfg->hidden);
    ms_lstm_params_randomize(&tr.params, cfg->seed);
    ms_lstm_cache_init(&tr.cache, tr.Din, cfg->hidden, tr.B, tr.P);
    tr.x = ms_xmalloc(sizeof(float) * (size_t)tr.B * tr.P * tr.Din);
    tr.logits = ms_xmalloc(sizeof(float) * (size_t)tr.B * tr.P);
    tr.dlogits = ms_xmalloc(sizeof(float) * (size_t)tr.B * tr.P);
    tr.reward = ms_xmalloc(sizeof(double) * (size_t)tr.B);
    tr.baseline = ms_xmalloc(sizeof(double) * (size_t)tr.B);
    trainer_tasks_alloc(&tr, &cfg->shape);
    tr.nthreads = omp_get_max_threads();
    tr.arenas = ms_xcalloc((size_t)tr.nthreads, sizeof(ms_arena));
    int nmax = train->n_pos > train->n_norm ? train->n_pos : train->n_norm;
    if (val->n_pos > nmax) nmax = val->n_pos;
    if (val->n_norm > nmax) nmax = val->n_norm;
    tr.scratch_n = nmax;
    tr.scratch = ms_xmalloc(sizeof(int) * (size_t)nmax * tr.nthreads);
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
    FILE *mf = NULL;
    ms_selector_meta meta;
    fill_meta(&meta, &tr, val);
    if (cfg->resume) {
        st = ms_train_state_load(p_state, sig, &tr.params, &tr.m, &tr.v, &state);
        if (!st) st = metrics_truncate(p_metrics, state.iteration);
        start = state.iteration;
    }
    if (!st) {
        mf = fopen(p_metrics, cfg->resume ? "ab" : "wb");
        if (!mf) st = ms_fail(MS_ERR_IO, "%s: cannot open: %s", p_metrics, strerror(errno));
        else if (!cfg->resume) fputs("iteration,epoch,reward,baseline,advantage,val_auroc,lr,seconds\n", mf);
    }
    if (!st && isnan(state.random_val) && cfg->val_tasks > 0) {
        double auc;
        st = validate(&tr, val, &auc, &state.random_val);
        if (!st && state.best_val < 0) {
            /* the untrained selector is the first "best" */
            state.best_val = auc;
            state.best_iteration = 0;
            st = ms_checkpoint_save(p_best, &tr.params, &meta);
        }
    }

    ms_progress prog;
    ms_progress_begin(&prog, "train", total);
    ms_progress_add(&prog, start);
    double t0 = ms_now();
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
        ms_adam_step(tr.params.memory, tr.grads.memory, tr.m.memory, tr.v.memory, tr.params.count,
                     it + 1, lr, 0.9, 0.999, 1e-8);
        double rw = 0, bl = 0;
        for (int b = 0; b < nb; b++) rw += tr.reward[b], bl += tr.baseline[b];
        rw /= nb, bl /= nb;
        done_here++;
        int last_it = it + 1 == total || (cfg->max_iterations > 0 && done_here >= cfg->max_iterations);
        int do_val = cfg->val_tasks > 0 && ((it + 1) % cfg->val_every == 0 || it + 1 == total);
        double vauc = NAN;
        if (do_val) {
            st = validate(&tr, val, &vauc, NULL);
            if (!st && vauc > state.best_val) {
                state.best_val = vauc;
                state.best_iteration = (int)(it + 1);
                st = ms_checkpoint_save(p_best, &tr.params, &meta);
            }
        }
        fprintf(mf, "%ld,%ld,%.6f,%.6f,%.6f,", it + 1, epoch + 1, rw, bl, rw - bl);
        if (!isnan(vauc)) fprintf(mf, "%.6f", vauc);
        fprintf(mf, ",%.3g,%.2f\n", lr, ms_now() - t0);
        fflush(mf);
        state.iteration = it + 1;
        if (!st && (do_val || last_it)) st = ms_train_state_save(p_state, sig, &tr.params, &tr.m, &tr.v, &state);
        ms_progress_add(&prog, 1);
    }
    ms_progress_end(&prog);
    if (!st && state.iteration == total) st = ms_checkpoint_save(p_last, &tr.params, &meta);
    if (mf && fclose(mf) != 0 && !st) st = ms_fail(MS_ERR_IO, "%s: cannot write", p_metrics);

    summary->iterations = (int)state.iteration;
    summary->best_val = state.best_val;
    summary->best_iteration = state.best_iteration;
    summary->random_val = state.random_val;
    summary->seconds = ms_now() - t0;
    summary->tasks_per_second = summary->seconds > 0 ? done_here * (double)tr.B / summary->seconds : 0;

    for (int i = 0; i < tr.nthreads; i++) ms_arena_free(&tr.arenas[i]);
    free(tr.arenas);
    free(tr.scratch);
    free(perm);
    free(ids);
    free(tr.tasks);
    free(tr.task_mem);
    free(tr.y_mem);
    free(tr.x);
    free(tr.logits);
    free(tr.dlogits);
    free(tr.reward);
    free(tr.baseline);
    ms_selector_meta_free(&meta);
    ms_lstm_cache_free(&tr.cache);
    ms_lstm_params_free(&tr.params);
    ms_lstm_params_free(&tr.grads);
    ms_lstm_params_free(&tr.m);
    ms_lstm_params_free(&tr.v);
    return st;
}
