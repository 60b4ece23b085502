/* medselect/evaluate.h: the meta-test protocol of the paper, for any set of strategies.
 *
 * For each condition group (e.g. "seen" and "unseen"), `tasks` tasks are sampled (task i of
 * group g is a pure function of (seed, g, i)); on every task each strategy selects K items
 * for every requested K, the predictor is built from their labels and scored on the query
 * set, and the AUROC is recorded. All strategies see the same tasks, so comparisons are
 * paired. Work is split across threads by task; results do not depend on the thread count.
 *
 * ms_eval_summarize then reports, per group, K, strategy and condition (and for the group as
 * a whole): mean AUROC with a 95% bootstrap CI over tasks, and the paired difference against
 * the first strategy (normally random) with its bootstrap CI and Wilcoxon signed-rank p-value.
 */
#ifndef MEDSELECT_EVALUATE_H
#define MEDSELECT_EVALUATE_H

#include "medselect/metrics.h"
#include "medselect/predictor.h"
#include "medselect/strategy.h"
#include "medselect/tasks.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MS_MAX_K 16
#define MS_MAX_GROUPS 4

typedef struct {
    char name[32];  /* "seen", "unseen", "all" */
    int n_cond;
    int *cond;      /* condition indices into the split; owned by the caller */
} ms_eval_group;

typedef struct {
    ms_task_shape shape;
    int n_k;
    int k[MS_MAX_K];
    int tasks;          /* tasks per group */
    uint64_t seed;
    ms_pred_kind pred;
    int n_groups;
    ms_eval_group group[MS_MAX_GROUPS];
    int keep_selections; /* store every selection (for analysis) */
} ms_eval_config;

typedef struct {
    int n_groups, n_k, n_strat, tasks;
    /* auroc[((g * n_k + ki) * n_strat + s) * tasks + i] */
    double *auroc;
    /* task_cond[g * tasks + i]: condition index of that task */
    int *task_cond;
    /* with keep_selections: sel[(((g * n_k + ki) * n_strat + s) * tasks + i) * kmax + j] pool
     * positions (0..P-1) of the j-th pick, kmax = largest K */
    int *sel;
    int kmax;
    double seconds;
} ms_eval_result;

/* The strategy seed for task i of group g: distinct per task, identical across strategies
 * and K (so that random at K=10 and K=20 are nested draws of the same permutation). */
uint64_t ms_eval_task_seed(uint64_t seed, int g, long i);

/* Runs the protocol. `prog` may be NULL. On a strategy error the first error is returned. */
ms_status ms_evaluate(ms_eval_result *res, const ms_split *s, const ms_eval_config *cfg,
                      ms_strategy *const *strats, int n_strat, ms_progress *prog);
void ms_eval_result_free(ms_eval_result *r);

typedef struct {
    int g, ki, s;       /* group, K index, strategy */
    int cond;           /* condition index, or -1 for the whole group */
    int n;              /* tasks */
    ms_ci auroc;        /* mean AUROC, 95% bootstrap CI */
    ms_ci diff;         /* paired difference against strategy 0 */
    double p;           /* Wilcoxon signed-rank p-value of the difference (NAN for strategy 0) */
} ms_eval_row;

/* Computes the summary rows (caller frees *rows). boot_reps: bootstrap resamples. */
void ms_eval_summarize(const ms_eval_result *r, const ms_eval_config *cfg, int boot_reps,
                       ms_eval_row **rows, int *n_rows);

/* Markdown tables: per group and K, one row per strategy (mean AUROC [95% CI], difference
 * against strategy 0 [95% CI], Wilcoxon p), then the same per condition. */
void ms_eval_print_markdown(FILE *f, const ms_eval_result *r, const ms_eval_config *cfg,
                            const ms_split *s, ms_strategy *const *strats,
                            const ms_eval_row *rows, int n_rows);
/* The same numbers as JSON (with the configuration), written atomically to path ("-" for
 * stdout). */
ms_status ms_eval_write_json(const char *path, const ms_eval_result *r, const ms_eval_config *cfg,
                             const ms_split *s, ms_strategy *const *strats,
                             const ms_eval_row *rows, int n_rows);

#ifdef __cplusplus
}
#endif
#endif
