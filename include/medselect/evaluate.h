/* medselect/evaluate.h: the meta-test protocol of the paper, for any set of strategies.
 *
 * For each condition group (e.g. "seen" and "unseen"), `tasks` tasks are sampled. Task i of a
 * group is a pure function of (seed, the group's condition list, task shape, i): the group's
 * stream is a hash of its condition names (ms_eval_group_stream), not its position, so the
 * same list gives the same tasks whether it is the first or the second group, called "seen",
 * "unseen" or "all". On every task each strategy selects K items for every requested K, the
 * predictor is built from their labels and scored on the query set, and the AUROC is
 * recorded. All strategies see the same tasks, so comparisons are paired. Work is split
 * across threads by task; results do not depend on the thread count.
 *
 * Budgets and rankings: a strategy whose selections are nested (strategy.h: `ranking`, e.g.
 * random, k-center, MaxHerding, the greedy selector) selects once at the largest K and every
 * K is scored on a prefix of that one order, as a labeling team working down one worklist
 * would; the others (k-medoids, k-means, TypiClust, ProbCover) are run once per K. The
 * prefix of a ranking equals its selection at that K (tested), so this changes the cost,
 * not the numbers.
 *
 * ms_eval_summarize then reports, per group, K, strategy and condition (and for the group as
 * a whole): mean AUROC with a 95% bootstrap CI over tasks, the paired difference against
 * the first strategy (normally random) with its bootstrap CI and Wilcoxon signed-rank
 * p-value, and optionally the same against a second strategy per (group, K) (`versus`, e.g.
 * the best baseline chosen on a validation split with ms_eval_best).
 */
#ifndef MEDSELECT_EVALUATE_H
#define MEDSELECT_EVALUATE_H

#include "medselect/metrics.h"
#include "medselect/policy.h"
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
    ms_decode decode;    /* the learned selector's decoding rule, stated in every report (the
                            strategy applies it: ms_selector.decode) */
    int per_k;           /* 1: run ranking strategies once per K too (no prefix scoring) */
    /* versus_on: rows also carry the paired difference against strategy versus[g][ki]
     * (an index into the strategies) */
    int versus_on;
    int versus_best; /* versus is "the best baseline" (for the reports' wording) */
    int versus[MS_MAX_GROUPS][MS_MAX_K];
    char versus_note[MS_MAX_GROUPS][512]; /* printed above group g's table (how versus was chosen) */
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
    uint64_t stream[MS_MAX_GROUPS]; /* each group's stream (ms_eval_group_stream) */
    double seconds;
} ms_eval_result;

/* A group's task stream: a hash of its condition names in list order (case, '_' and ' '
 * do not matter). The CLI sorts each list by name, so "--unseen B,A" and "--conditions A,B"
 * sample the same tasks. */
uint64_t ms_eval_group_stream(const ms_split *s, const ms_eval_group *grp);

/* The strategy seed for task i of the group with stream `stream`: distinct per task,
 * identical across strategies and K (so that random at K=10 and K=20 are nested draws of
 * the same permutation). */
uint64_t ms_eval_task_seed(uint64_t seed, uint64_t stream, long i);

/* Runs the protocol. `prog` may be NULL. On a strategy error the first error is returned;
 * when prog's cancel hook asks to stop (common.h), MS_ERR_CANCELLED after the tasks under
 * way finish. On any error *res is left empty. */
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
    int vs;             /* with cfg->versus_on: the versus strategy of (g, ki), else -1 */
    ms_ci vdiff;        /* paired difference against strategy vs (0 for vs itself) */
    double vp;          /* its Wilcoxon p-value (NAN for vs itself) */
} ms_eval_row;

/* The strategy among candidates (n_cand indices) with the highest mean AUROC over the tasks
 * of group g at K index ki of r (lowest index on ties). Used on a VALIDATION run to choose
 * the baseline that test rows are compared with, so that the choice never sees test tasks. */
int ms_eval_best(const ms_eval_result *r, int g, int ki, const int *candidates, int n_cand);
/* Mean AUROC of strategy si over group g's tasks at K index ki. */
double ms_eval_mean(const ms_eval_result *r, int g, int ki, int si);

/* ---- the best baseline, chosen on a validation split ------------------------------------
 *
 * A comparison against "the strongest baseline" is honest only when that baseline is chosen
 * without looking at the tasks it is then compared on. ms_eval_validate runs candidate
 * strategies on a VALIDATION split with the evaluation's task shape, K, seed, predictor and
 * decoding; ms_eval_versus_best then sets cfg's versus choice per group and K (what
 * `medselect evaluate --versus best` does), and ms_analyze_choose_b (analyze.h) picks B of an
 * analysis (`medselect analyze --b best`). The CLI and the Python package both call these.
 *
 * Validation tasks of group g: the group's conditions (resolved by name in the validation
 * split, synonyms included, in the group's order) that the validation split holds enough
 * images of for one task; when it holds none of them, every condition of any group of cfg
 * that it can hold, in canonical (name) order. ms_eval_validation_note says which. E.g. NIH's
 * val split has 15 Atelectasis images, too few for a pool of 30 with 15 positives plus a
 * query, so a group {Atelectasis, Cardiomegaly} is validated on the command's other
 * conditions that fit.
 *
 * Example (evaluate against the best of strats[0..nb), the baselines):
 *   int cand[] = {0, 1, 2};
 *   ms_eval_versus_best(&cfg, &test, &val, 0, strats, cand, 3, NULL);  // cfg.versus[g][ki] set
 *   ms_evaluate(&res, &test, &cfg, strats, n, prog);                   // rows carry vdiff, vp
 */
typedef struct {
    ms_eval_config cfg; /* the validation tasks: a copy of the evaluation's config with their
                           task count and each group's validation conditions (indices into
                           the validation split; these arrays are owned here) */
    ms_eval_result res; /* the candidates' AUROCs on them (strategy i = candidate i) */
} ms_eval_validation;

/* Evaluates cand[0..n_cand) on validation tasks of `val` for every group of cfg (an
 * evaluation config of split `test`): tasks per group (<= 0: cfg->tasks), groups as above.
 * prog may be NULL. MS_ERR_DATA (one line naming val's positives CSV) when val's embeddings
 * have another width than test's or val holds too few images of every condition of cfg for
 * one task; strategy errors as ms_evaluate. On success free *v with ms_eval_validation_free;
 * on error it is left empty. */
ms_status ms_eval_validate(ms_eval_validation *v, const ms_split *val, const ms_split *test,
                           const ms_eval_config *cfg, int tasks, ms_strategy *const *cand, int n_cand,
                           ms_progress *prog);
void ms_eval_validation_free(ms_eval_validation *v);
/* The sentence the reports print above group g's table: the validation split, its tasks'
 * count and conditions (and why, when they are not the group's own), and per K the chosen
 * candidate cand[best[ki]] with its validation mean, e.g. "Best baseline chosen on the
 * validation split (val_pos.csv; 1000 tasks of Effusion, Infiltration): K 5 herding 0.690,
 * K 10 herding 0.713." Truncated to n bytes. */
void ms_eval_validation_note(char *buf, size_t n, const ms_eval_validation *v, const ms_split *val,
                             const ms_split *test, const ms_eval_config *cfg, int g, ms_strategy *const *cand,
                             const int *best);
/* `--versus best`: validates strats[cand[0..n_cand)] (the baselines: never a learned selector
 * under test) with ms_eval_validate (val_tasks as its `tasks`), and sets cfg->versus_on,
 * cfg->versus_best, cfg->versus[g][ki] (the candidate with the highest validation mean of
 * group g at K index ki, ms_eval_best; an index into strats) and cfg->versus_note[g]. Errors as
 * ms_eval_validate. */
ms_status ms_eval_versus_best(ms_eval_config *cfg, const ms_split *test, const ms_split *val, int val_tasks,
                              ms_strategy *const *strats, const int *cand, int n_cand, ms_progress *prog);

/* Writes every task's AUROC as CSV (atomically): group,task,condition,k, then one column per
 * strategy label. One line per (group, task, K). */
ms_status ms_eval_write_per_task(const char *path, const ms_eval_result *r, const ms_eval_config *cfg,
                                 const ms_split *s, ms_strategy *const *strats);

/* Computes the summary rows (caller frees *rows). boot_reps: bootstrap resamples. */
void ms_eval_summarize(const ms_eval_result *r, const ms_eval_config *cfg, int boot_reps,
                       ms_eval_row **rows, int *n_rows);

/* Markdown tables: per group and K, one row per strategy (mean AUROC [95% CI], difference
 * against strategy 0 [95% CI], Wilcoxon p), then the same per condition. */
void ms_eval_print_markdown(FILE *f, const ms_eval_result *r, const ms_eval_config *cfg,
                            const ms_split *s, ms_strategy *const *strats,
                            const ms_eval_row *rows, int n_rows);
/* The same numbers as JSON (with the configuration), written atomically to path ("-" for
 * stdout). ms_eval_json returns that text (newline-terminated, malloc'd: the caller frees
 * it), for callers that parse it in memory. */
char *ms_eval_json(const ms_eval_result *r, const ms_eval_config *cfg, const ms_split *s,
                   ms_strategy *const *strats, const ms_eval_row *rows, int n_rows);
ms_status ms_eval_write_json(const char *path, const ms_eval_result *r, const ms_eval_config *cfg,
                             const ms_split *s, ms_strategy *const *strats,
                             const ms_eval_row *rows, int n_rows);

#ifdef __cplusplus
}
#endif
#endif
