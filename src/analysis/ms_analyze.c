/* ms_analyze.c: the quantities behind `medselect analyze` (see analyze.h). Every task of the
 * evaluation is regenerated from (seed, group, index) to map each stored pool position to its
 * split row; per-image and per-selection values are gathered for strategies A and B, then
 * compared with the metrics module's statistics (Wasserstein-1 distance and its pooled
 * permutation test, chi-square, Fisher's exact test, Benjamini-Hochberg). The one scheme
 * implemented here is the task-swap permutation, which the metrics module has no use for:
 * it permutes whole selections within tasks and calls ms_wasserstein1 for each draw. */
#include "medselect/analyze.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name, *title;
    int per_selection;
} quant_info[MS_AN_NQUANT] = {
    [MS_AN_AGE] = {"age", "Age (years)", 0},
    [MS_AN_L1] = {"l1_norm", "L1 norm of the embedding", 0},
    [MS_AN_L2] = {"l2_norm", "L2 norm of the embedding", 0},
    [MS_AN_LINF] = {"linf_norm", "L-infinity norm of the embedding", 0},
    [MS_AN_COS_CENTROID] = {"cos_centroid", "Cosine similarity to the pool centroid", 0},
    [MS_AN_PAIR_COS] = {"pairwise_cos", "Mean pairwise cosine similarity in a selection", 1},
    [MS_AN_POS_FRAC] = {"pos_frac", "Fraction of positives in a selection", 1},
};

/* Growing value arrays of one strategy while the tasks are walked. */
typedef struct {
    double *v[MS_AN_NQUANT];
    int n[MS_AN_NQUANT];
    int *ofs[MS_AN_NQUANT];   /* (n_sel + 1): values of task t are v[ofs[t] .. ofs[t + 1]) */
    long prop[MS_AN_NPROP][2];
    long *task_prop[MS_AN_NPROP]; /* (n_sel, 2) counts of each level per task */
} side_values;

static void side_alloc(side_values *sv, int n_img, int n_sel) {
    memset(sv, 0, sizeof *sv);
    for (int q = 0; q < MS_AN_NQUANT; q++) {
        sv->v[q] = ms_xmalloc(sizeof(double) * (size_t)(quant_info[q].per_selection ? n_sel : n_img));
        sv->ofs[q] = ms_xcalloc((size_t)n_sel + 1, sizeof(int));
    }
    for (int p = 0; p < MS_AN_NPROP; p++) sv->task_prop[p] = ms_xcalloc((size_t)n_sel * 2, sizeof(long));
}

static void side_free_index(side_values *sv) {
    for (int q = 0; q < MS_AN_NQUANT; q++) free(sv->ofs[q]);
    for (int p = 0; p < MS_AN_NPROP; p++) free(sv->task_prop[p]);
}

/* Adds the values of one selection: picks (k) pool positions of task t. centroid: (D) unit
 * vector of the pool (or zero). */
static void add_selection(side_values *sv, int task, const ms_split *s, const ms_task *t,
                          const int *picks, int k, const float *centroid) {
    const int D = s->d;
    int has_age = s->clin && (s->clin_cols & 1), has_sex = s->clin && (s->clin_cols & 2),
        has_view = s->clin && (s->clin_cols & 4);
    int npos = 0;
    for (int j = 0; j < k; j++) {
        int row = t->pool[picks[j]];
        const float *x = s->emb + (size_t)row * D, *u = s->unit + (size_t)row * D;
        double l1 = 0, l2 = 0, linf = 0, cos = 0;
        for (int c = 0; c < D; c++) {
            double a = fabs((double)x[c]);
            l1 += a;
            l2 += a * a;
            if (a > linf) linf = a;
            cos += (double)u[c] * centroid[c];
        }
        sv->v[MS_AN_L1][sv->n[MS_AN_L1]++] = l1;
        sv->v[MS_AN_L2][sv->n[MS_AN_L2]++] = sqrt(l2);
        sv->v[MS_AN_LINF][sv->n[MS_AN_LINF]++] = linf;
        sv->v[MS_AN_COS_CENTROID][sv->n[MS_AN_COS_CENTROID]++] = cos;
        npos += t->pool_y[picks[j]];
        if (has_age) {
            float a = s->clin[(size_t)row * MS_NCLIN + 0];
            if (!isnan(a)) sv->v[MS_AN_AGE][sv->n[MS_AN_AGE]++] = (double)a * MS_AGE_SD + MS_AGE_MEAN;
        }
        if (has_sex) {
            float f = s->clin[(size_t)row * MS_NCLIN + 1];
            if (!isnan(f)) sv->task_prop[MS_AN_SEX][2 * task + (f > 0.5f ? 0 : 1)]++; /* female 1 -> level 0 */
        }
        if (has_view) {
            float f = s->clin[(size_t)row * MS_NCLIN + 2];
            if (!isnan(f)) sv->task_prop[MS_AN_VIEW][2 * task + (f > 0.5f ? 0 : 1)]++; /* frontal 1 -> level 0 */
        }
    }
    sv->v[MS_AN_POS_FRAC][sv->n[MS_AN_POS_FRAC]++] = (double)npos / k;
    if (k >= 2) {
        /* mean over the k (k - 1) / 2 pairs of the cosine of unit rows */
        double sum = 0;
        for (int i = 0; i < k; i++) {
            const float *ui = s->unit + (size_t)t->pool[picks[i]] * D;
            for (int j = i + 1; j < k; j++) {
                const float *uj = s->unit + (size_t)t->pool[picks[j]] * D;
                double dot = 0;
                for (int c = 0; c < D; c++) dot += (double)ui[c] * uj[c];
                sum += dot;
            }
        }
        sv->v[MS_AN_PAIR_COS][sv->n[MS_AN_PAIR_COS]++] = sum / (0.5 * k * (k - 1));
    }
    for (int q = 0; q < MS_AN_NQUANT; q++) sv->ofs[q][task + 1] = sv->n[q];
    for (int p = 0; p < MS_AN_NPROP; p++) {
        sv->prop[p][0] += sv->task_prop[p][2 * task];
        sv->prop[p][1] += sv->task_prop[p][2 * task + 1];
    }
}

/* The unit-normalised mean of the pool's unit rows (zero if the mean is zero). */
static void pool_centroid(float *c, const ms_split *s, const ms_task *t) {
    const int D = s->d;
    double *acc = ms_xcalloc((size_t)D, sizeof(double));
    for (int i = 0; i < t->P; i++) {
        const float *u = s->unit + (size_t)t->pool[i] * D;
        for (int j = 0; j < D; j++) acc[j] += u[j];
    }
    double nrm = 0;
    for (int j = 0; j < D; j++) nrm += acc[j] * acc[j];
    nrm = sqrt(nrm);
    for (int j = 0; j < D; j++) c[j] = nrm > 0 ? (float)(acc[j] / nrm) : 0.0f;
    free(acc);
}

int ms_analyze_best(const ms_eval_result *res, int exclude) {
    int best = -1;
    double best_mean = -INFINITY;
    size_t per = (size_t)res->tasks;
    for (int si = 0; si < res->n_strat; si++) {
        if (si == exclude) continue;
        double sum = 0;
        long n = 0;
        for (int g = 0; g < res->n_groups; g++)
            for (int ki = 0; ki < res->n_k; ki++) {
                const double *a = res->auroc + ((size_t)(g * res->n_k + ki) * res->n_strat + si) * per;
                for (size_t i = 0; i < per; i++) sum += a[i];
                n += (long)per;
            }
        double m = n ? sum / (double)n : -INFINITY;
        if (best < 0 || m > best_mean) {
            best = si;
            best_mean = m;
        }
    }
    return best;
}

ms_status ms_analyze_choose_b(int *b, char *note, size_t n, const ms_split *val, const ms_split *test,
                              const ms_eval_config *cfg, int val_tasks, ms_strategy *const *cand, int n_cand,
                              ms_progress *prog) {
    ms_eval_validation v;
    ms_status st = ms_eval_validate(&v, val, test, cfg, val_tasks, cand, n_cand, prog);
    if (st) return st;
    *b = ms_analyze_best(&v.res, -1);
    size_t len = (size_t)snprintf(note, n, "best baseline on the validation split (%d tasks per group;", v.res.tasks);
    for (int g = 0; g < v.cfg.n_groups && len < n; g++) {
        len += (size_t)snprintf(note + len, n - len, "%s %s:", g ? ";" : "", v.cfg.group[g].name);
        for (int k = 0; k < v.cfg.group[g].n_cond && len < n; k++)
            len += (size_t)snprintf(note + len, n - len, "%s %s", k ? "," : "", val->cond[v.cfg.group[g].cond[k]]);
    }
    if (len < n) snprintf(note + len, n - len, ")");
    ms_eval_validation_free(&v);
    return MS_OK;
}

/* The seed of quantity/test `which`: its own stream so that tests are independent of each
 * other and of the order in which they run. */
static uint64_t test_seed(uint64_t seed, int which) {
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_PERMUTE, 0x414E0000ULL + (uint64_t)which);
    return ms_rng_next(&r);
}

/* Task-swap permutation test of the Wasserstein-1 distance: under the null hypothesis that A
 * and B are exchangeable on every task, swapping the two selections of a task leaves the
 * joint distribution unchanged. Each permutation swaps every task's pair with probability
 * 1/2 and recomputes W1 (ms_wasserstein1); p = (1 + #{W* >= W}) / (1 + perms), the slack as in
 * ms_wasserstein_perm_test. a/b: values with per-task offsets oa/ob (n_tasks + 1). Unlike
 * the pooled test it keeps the values of one selection together, so repeated picks of the
 * same images across tasks do not inflate the evidence. */
static double task_swap_w1(const double *a, const int *oa, const double *b, const int *ob, int n_tasks,
                           int perms, uint64_t seed, double *w_out) {
    int na = oa[n_tasks], nb = ob[n_tasks], nt = na + nb;
    double *x = ms_xmalloc(sizeof(double) * 3 * (size_t)nt), *y = x + nt, *work = y + nt;
    double w = ms_wasserstein1(a, na, b, nb, work);
    *w_out = w;
    double thr = w * (1.0 - 1e-12);
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_PERMUTE, 2);
    long count = 0;
    for (int p = 0; p < perms; p++) {
        int nx = 0, ny = 0;
        for (int t = 0; t < n_tasks; t++) {
            int swap = (int)(ms_rng_next(&r) >> 63);
            const double *xa = swap ? b + ob[t] : a + oa[t], *yb = swap ? a + oa[t] : b + ob[t];
            int lx = swap ? ob[t + 1] - ob[t] : oa[t + 1] - oa[t];
            int ly = swap ? oa[t + 1] - oa[t] : ob[t + 1] - ob[t];
            memcpy(x + nx, xa, sizeof(double) * (size_t)lx);
            memcpy(y + ny, yb, sizeof(double) * (size_t)ly);
            nx += lx;
            ny += ly;
        }
        double ws = nx && ny ? ms_wasserstein1(x, nx, y, ny, work) : 0.0;
        if (ws >= thr) count++;
    }
    free(x);
    return (1.0 + (double)count) / (1.0 + (double)perms);
}

/* The same task-swap scheme for a proportion: statistic |level-0 share of A - that of B| over
 * the pooled counts; ca/cb are (n_tasks, 2) per-task counts. */
static double task_swap_prop(const long *ca, const long *cb, int n_tasks, int perms, uint64_t seed) {
    long a0 = 0, a1 = 0, b0 = 0, b1 = 0;
    for (int t = 0; t < n_tasks; t++) a0 += ca[2 * t], a1 += ca[2 * t + 1], b0 += cb[2 * t], b1 += cb[2 * t + 1];
    if (a0 + a1 == 0 || b0 + b1 == 0) return 1.0;
    double d = fabs((double)a0 / (a0 + a1) - (double)b0 / (b0 + b1)), thr = d * (1.0 - 1e-12);
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_PERMUTE, 3);
    long count = 0;
    for (int p = 0; p < perms; p++) {
        long x0 = 0, x1 = 0, y0 = 0, y1 = 0;
        for (int t = 0; t < n_tasks; t++) {
            const long *u = ca + 2 * t, *v = cb + 2 * t;
            if (ms_rng_next(&r) >> 63) {
                const long *tmp = u;
                u = v;
                v = tmp;
            }
            x0 += u[0], x1 += u[1], y0 += v[0], y1 += v[1];
        }
        double ds = x0 + x1 && y0 + y1 ? fabs((double)x0 / (x0 + x1) - (double)y0 / (y0 + y1)) : 0.0;
        if (ds >= thr) count++;
    }
    return (1.0 + (double)count) / (1.0 + (double)perms);
}

ms_status ms_analyze(ms_analysis *an, const ms_split *s, const ms_eval_config *cfg,
                     const ms_eval_result *res, int sa, int sb, int ki, int perms, uint64_t seed,
                     ms_an_scheme scheme) {
    memset(an, 0, sizeof *an);
    MS_CHECK(res->sel != NULL); /* the evaluation must run with keep_selections */
    MS_CHECK(sa >= 0 && sa < res->n_strat && sb >= 0 && sb < res->n_strat);
    MS_CHECK(ki >= 0 && ki < res->n_k && perms >= 1);
    MS_CHECK(res->n_groups == cfg->n_groups && res->tasks == cfg->tasks && res->n_k == cfg->n_k);
    const int K = cfg->k[ki], D = s->d, n_sel = res->n_groups * res->tasks;
    an->ki = ki;
    an->k = K;
    an->sa = sa;
    an->sb = sb;
    an->perms = perms;
    an->seed = seed;
    an->scheme = scheme;
    an->n_sel = n_sel;

    side_values side[2];
    side_alloc(&side[0], n_sel * K, n_sel);
    side_alloc(&side[1], n_sel * K, n_sel);
    ms_task t;
    ms_task_alloc(&t, &cfg->shape, NULL);
    int *scratch = ms_xmalloc(sizeof(int) * (size_t)(s->n_pos > s->n_norm ? s->n_pos : s->n_norm));
    float *centroid = ms_xmalloc(sizeof(float) * (size_t)D);
    for (int g = 0; g < res->n_groups; g++) {
        const ms_eval_group *grp = &cfg->group[g];
        for (int i = 0; i < res->tasks; i++) {
            ms_task_sample(&t, s, &cfg->shape, grp->cond, grp->n_cond, cfg->seed, res->stream[g],
                           (uint64_t)i, scratch);
            /* the same task as the evaluation's, or the split/config differ from the run's */
            MS_CHECK(t.cond == res->task_cond[g * res->tasks + i]);
            pool_centroid(centroid, s, &t);
            for (int side_i = 0; side_i < 2; side_i++) {
                int si = side_i ? sb : sa;
                size_t idx = ((size_t)(g * res->n_k + ki) * res->n_strat + si) * res->tasks + i;
                const int *picks = res->sel + idx * res->kmax;
                for (int j = 0; j < K; j++) MS_CHECK(picks[j] >= 0 && picks[j] < t.P);
                add_selection(&side[side_i], g * res->tasks + i, s, &t, picks, K, centroid);
            }
        }
    }
    ms_task_free(&t);
    free(scratch);
    free(centroid);

    for (int q = 0; q < MS_AN_NQUANT; q++) {
        ms_an_quantity *qq = &an->q[q];
        qq->name = quant_info[q].name;
        qq->title = quant_info[q].title;
        qq->per_selection = quant_info[q].per_selection;
        qq->a = side[0].v[q];
        qq->b = side[1].v[q];
        qq->na = side[0].n[q];
        qq->nb = side[1].n[q];
        qq->available = qq->na > 0 && qq->nb > 0;
        qq->mean_a = qq->mean_b = qq->w1 = qq->p = qq->p_bh = NAN;
        if (qq->available) {
            qq->mean_a = ms_mean(qq->a, qq->na);
            qq->mean_b = ms_mean(qq->b, qq->nb);
        }
    }
    /* the permutation tests dominate the run time: one quantity per thread */
#pragma omp parallel for schedule(dynamic, 1)
    for (int q = 0; q < MS_AN_NQUANT; q++) {
        ms_an_quantity *qq = &an->q[q];
        if (!qq->available) continue;
        if (scheme == MS_AN_POOLED)
            qq->p = ms_wasserstein_perm_test(qq->a, qq->na, qq->b, qq->nb, perms, test_seed(seed, q), &qq->w1);
        else
            qq->p = task_swap_w1(qq->a, side[0].ofs[q], qq->b, side[1].ofs[q], n_sel, perms, test_seed(seed, q), &qq->w1);
    }

    static const char *const levels[MS_AN_NPROP][2] = {{"female", "male"}, {"frontal", "lateral"}};
    static const char *const prop_names[MS_AN_NPROP] = {"sex", "view"};
    for (int p = 0; p < MS_AN_NPROP; p++) {
        ms_an_prop *pp = &an->prop[p];
        pp->name = prop_names[p];
        pp->level[0] = levels[p][0];
        pp->level[1] = levels[p][1];
        pp->table[0] = side[0].prop[p][0];
        pp->table[1] = side[0].prop[p][1];
        pp->table[2] = side[1].prop[p][0];
        pp->table[3] = side[1].prop[p][1];
        pp->chi2 = pp->p_chi2 = pp->p_fisher = pp->p_chi2_bh = pp->p_fisher_bh = pp->p_perm = pp->p_perm_bh = NAN;
        pp->available = (pp->table[0] + pp->table[1]) > 0 && (pp->table[2] + pp->table[3]) > 0;
        if (!pp->available) continue;
        double tab[4];
        for (int j = 0; j < 4; j++) tab[j] = (double)pp->table[j];
        pp->p_chi2 = ms_chi2_test(tab, 2, 2, &pp->chi2, &pp->dof);
        pp->p_fisher = ms_fisher_exact(pp->table);
        pp->p_perm = task_swap_prop(side[0].task_prop[p], side[1].task_prop[p], n_sel, perms,
                                    test_seed(seed, MS_AN_NQUANT + p));
    }
    side_free_index(&side[0]);
    side_free_index(&side[1]);

    /* Benjamini-Hochberg over every available p-value of this analysis */
    double pv[MS_AN_NQUANT + 3 * MS_AN_NPROP];
    double *dst[MS_AN_NQUANT + 3 * MS_AN_NPROP];
    int np = 0;
    for (int q = 0; q < MS_AN_NQUANT; q++)
        if (an->q[q].available) {
            pv[np] = an->q[q].p;
            dst[np++] = &an->q[q].p_bh;
        }
    for (int p = 0; p < MS_AN_NPROP; p++)
        if (an->prop[p].available) {
            pv[np] = an->prop[p].p_chi2;
            dst[np++] = &an->prop[p].p_chi2_bh;
            pv[np] = an->prop[p].p_fisher;
            dst[np++] = &an->prop[p].p_fisher_bh;
            pv[np] = an->prop[p].p_perm;
            dst[np++] = &an->prop[p].p_perm_bh;
        }
    if (np > 0) {
        double qv[MS_AN_NQUANT + 3 * MS_AN_NPROP];
        ms_bh_adjust(pv, np, qv);
        for (int j = 0; j < np; j++) *dst[j] = qv[j];
    }
    return MS_OK;
}

void ms_analysis_free(ms_analysis *an) {
    for (int q = 0; q < MS_AN_NQUANT; q++) {
        free(an->q[q].a);
        free(an->q[q].b);
    }
    memset(an, 0, sizeof *an);
}
