/* ms_validate.c: choosing the baseline on a validation split (evaluate.h,
 * ms_eval_validate / ms_eval_versus_best), so that test tasks never take part in the choice. */
#include "medselect/evaluate.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* strcmp on canonical names: lower case, '_' read as ' ' */
static int canon_cmp(const char *a, const char *b) {
    for (;; a++, b++) {
        int x = tolower((unsigned char)(*a == '_' ? ' ' : *a)), y = tolower((unsigned char)(*b == '_' ? ' ' : *b));
        if (x != y || !x) return x - y;
    }
}

void ms_eval_validation_free(ms_eval_validation *v) {
    for (int g = 0; g < v->cfg.n_groups; g++) {
        free(v->cfg.group[g].cond);
        v->cfg.group[g].cond = NULL;
    }
    v->cfg.n_groups = 0;
    ms_eval_result_free(&v->res);
}

ms_status ms_eval_validate(ms_eval_validation *v, const ms_split *val, const ms_split *test,
                           const ms_eval_config *cfg, int tasks, ms_strategy *const *cand, int n_cand,
                           ms_progress *prog) {
    MS_CHECK(n_cand >= 1);
    memset(v, 0, sizeof *v);
    if (val->d != test->d)
        return ms_fail(MS_ERR_DATA, "%s: embeddings have %d columns, the evaluated split %d", val->pos_name, val->d,
                       test->d);
    ms_eval_config *vcfg = &v->cfg;
    *vcfg = *cfg;
    vcfg->tasks = tasks > 0 ? tasks : cfg->tasks;
    vcfg->keep_selections = 0;
    vcfg->versus_on = 0;
    for (int g = 0; g < cfg->n_groups; g++) vcfg->group[g].cond = NULL;
    ms_status st = MS_OK;
    /* every condition of cfg that the validation split can hold, for the fallback */
    int *fit_all = ms_xmalloc(sizeof(int) * (size_t)(val->n_cond > 0 ? val->n_cond : 1));
    int n_fit_all = 0;
    for (int g = 0; g < cfg->n_groups && !st; g++) {
        const ms_eval_group *tg = &cfg->group[g];
        char **names = ms_xcalloc((size_t)tg->n_cond, sizeof *names);
        for (int i = 0; i < tg->n_cond; i++) names[i] = ms_xstrdup(test->cond[tg->cond[i]]);
        int *idx = ms_xmalloc(sizeof(int) * (size_t)tg->n_cond);
        if (ms_split_resolve(val, names, tg->n_cond, idx)) st = MS_ERR_DATA;
        ms_strv_free(names, tg->n_cond);
        int n = 0;
        for (int i = 0; i < tg->n_cond && !st; i++)
            if (ms_task_check(val, &cfg->shape, &idx[i], 1) == MS_OK) {
                idx[n++] = idx[i];
                int dup = 0;
                for (int j = 0; j < n_fit_all; j++) dup |= fit_all[j] == idx[n - 1];
                if (!dup) fit_all[n_fit_all++] = idx[n - 1];
            }
        vcfg->group[g].cond = idx;
        vcfg->group[g].n_cond = n;
    }
    for (int g = 0; g < cfg->n_groups && !st; g++) {
        ms_eval_group *vg = &vcfg->group[g];
        if (vg->n_cond > 0) continue;
        if (n_fit_all == 0) {
            st = ms_fail(MS_ERR_DATA,
                         "%s: the validation split holds too few images of every condition for one task "
                         "(pool %d with %d positive, query %d with %d positive)",
                         val->pos_name, cfg->shape.pool, ms_task_pool_pos(&cfg->shape), cfg->shape.query,
                         ms_task_query_pos(&cfg->shape));
            break;
        }
        vg->cond = ms_xrealloc(vg->cond, sizeof(int) * (size_t)n_fit_all);
        memcpy(vg->cond, fit_all, sizeof(int) * (size_t)n_fit_all);
        vg->n_cond = n_fit_all;
        /* the fallback list in canonical order, as a group's own list (its task stream) */
        for (int i = 1; i < vg->n_cond; i++)
            for (int j = i; j > 0 && canon_cmp(val->cond[vg->cond[j - 1]], val->cond[vg->cond[j]]) > 0; j--) {
                int tmp = vg->cond[j];
                vg->cond[j] = vg->cond[j - 1];
                vg->cond[j - 1] = tmp;
            }
    }
    free(fit_all);
    if (!st) st = ms_evaluate(&v->res, val, vcfg, cand, n_cand, prog);
    if (st) ms_eval_validation_free(v);
    return st;
}

void ms_eval_validation_note(char *buf, size_t n, const ms_eval_validation *v, const ms_split *val,
                             const ms_split *test, const ms_eval_config *cfg, int g, ms_strategy *const *cand,
                             const int *best) {
    const ms_eval_config *vcfg = &v->cfg;
    /* did the validation tasks keep exactly the group's conditions? */
    int same = vcfg->group[g].n_cond == cfg->group[g].n_cond;
    for (int c = 0; same && c < cfg->group[g].n_cond; c++)
        same = canon_cmp(val->cond[vcfg->group[g].cond[c]], test->cond[cfg->group[g].cond[c]]) == 0;
    size_t len = (size_t)snprintf(buf, n, "Best baseline chosen on the validation split (%s; %d tasks of ",
                                  val->pos_name ? val->pos_name : "", v->res.tasks);
    for (int c = 0; c < vcfg->group[g].n_cond && len < n; c++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", c ? ", " : "", val->cond[vcfg->group[g].cond[c]]);
    if (!same && len < n)
        len += (size_t)snprintf(buf + len, n - len, ", because it holds too few images of %s for one task",
                                vcfg->group[g].n_cond == cfg->group[g].n_cond ? "the group's conditions"
                                                                              : "some of the group's conditions");
    for (int ki = 0; ki < vcfg->n_k && len < n; ki++)
        len += (size_t)snprintf(buf + len, n - len, "%s K %d %s %.3f", ki ? "," : "):", vcfg->k[ki],
                                cand[best[ki]]->label, ms_eval_mean(&v->res, g, ki, best[ki]));
    if (len < n) snprintf(buf + len, n - len, ".");
}

ms_status ms_eval_versus_best(ms_eval_config *cfg, const ms_split *test, const ms_split *val, int val_tasks,
                              ms_strategy *const *strats, const int *cand, int n_cand, ms_progress *prog) {
    MS_CHECK(n_cand >= 1);
    cfg->versus_on = 1;
    cfg->versus_best = 1;
    ms_strategy **cs = ms_xmalloc(sizeof *cs * (size_t)n_cand);
    for (int i = 0; i < n_cand; i++) cs[i] = strats[cand[i]];
    ms_eval_validation v;
    ms_status st = ms_eval_validate(&v, val, test, cfg, val_tasks, cs, n_cand, prog);
    if (!st) {
        int *all = ms_xmalloc(sizeof(int) * (size_t)n_cand);
        for (int i = 0; i < n_cand; i++) all[i] = i;
        int best[MS_MAX_K];
        for (int g = 0; g < cfg->n_groups; g++) {
            for (int ki = 0; ki < cfg->n_k; ki++) best[ki] = ms_eval_best(&v.res, g, ki, all, n_cand);
            ms_eval_validation_note(cfg->versus_note[g], sizeof cfg->versus_note[g], &v, val, test, cfg, g, cs, best);
            for (int ki = 0; ki < cfg->n_k; ki++) cfg->versus[g][ki] = cand[best[ki]];
        }
        free(all);
        ms_eval_validation_free(&v);
    }
    free(cs);
    return st;
}
