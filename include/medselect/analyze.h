/* medselect/analyze.h: what two strategies select, compared (`medselect analyze`).
 *
 * Given an evaluation run with keep_selections (evaluate.h), two strategies A and B that saw
 * the same meta-test tasks, and one K, ms_analyze collects, for every selected image and every
 * selection of A and of B:
 *   per selected image (pooled over every task of every group; an image picked in several
 *   tasks counts once per pick):
 *     age          de-standardized clin[0] * MS_AGE_SD + MS_AGE_MEAN in years (images without
 *                  an age are skipped; unavailable when the split has no Age column)
 *     l1/l2/linf   L1, L2 and L-infinity norms of the embedding row as stored
 *     cos_centroid cosine similarity of the image's unit row to the pool centroid of its task
 *                  (the mean of the pool's unit rows, normalised)
 *   per selection (one value per task, over every group):
 *     pair_cos     mean pairwise cosine similarity of the K selected unit rows (the lower,
 *                  the more diverse; unavailable for K = 1)
 *     pos_frac     fraction of positives among the K selected (class balance)
 * and compares A's values with B's by the Wasserstein-1 distance (ms_wasserstein1) with a
 * permutation p-value, (1 + #{W* >= W}) / (1 + perms), under one of two schemes:
 *   MS_AN_TASK_SWAP (the default of the CLI): each permutation swaps A's and B's selections of
 *     a task with probability 1/2, task by task. This is the valid test for this design: the
 *     same tasks are shared by A and B, and on a small split the same images are picked again
 *     and again across tasks, so the pooled values are far from independent.
 *   MS_AN_POOLED: ms_wasserstein_perm_test on the pooled values, as if every value were an
 *     independent draw. On real splits (hundreds of images, thousands of tasks) this is
 *     anti-conservative: repeated picks of the same images count as new evidence.
 * Sex (female/male, clin[1]) and view (frontal/lateral, clin[2]) of the selected images form
 * 2x2 tables (rows A, B) tested with Pearson's chi-square test (ms_chi2_test) and Fisher's
 * exact test (ms_fisher_exact), which treat the pooled picks as independent (anti-conservative
 * for the same reason), and by a task-swap permutation test of the difference of the level-0
 * shares (p_perm), which does not. The view is only frontal versus lateral: the io module maps
 * a View column's PA and AP both to frontal, so AP versus PA is not distinguished.
 * Every available p-value of one analysis (one K) forms one family adjusted by
 * Benjamini-Hochberg (ms_bh_adjust).
 *
 * ms_analysis_write_report renders a directory with report.md and PNG figures (ECDFs of A
 * versus B for each quantity, whose area between the curves is the Wasserstein-1 distance,
 * and a bar chart of the mean AUROC per condition per strategy with 95% CIs), drawn with
 * cairo; ms_analysis_write_json writes the same numbers as JSON. The directory and its
 * missing parents are created; all files are written completely before any is published
 * (report.md last, medselect/output.h), so on failure none is, and a folder created for
 * them is removed again.
 *
 * Example:
 *   int bi; char note[512];                                        // choose B on validation
 *   ms_analyze_choose_b(&bi, note, sizeof note, &val_split, &split, &cfg, 0, baselines, nb, NULL);
 *   int b = index_in_strats(baselines[bi]);
 *   cfg.keep_selections = 1;
 *   ms_evaluate(&res, &split, &cfg, strats, n, NULL);
 *   ms_analysis an;
 *   ms_analyze(&an, &split, &cfg, &res, 1, b, 0, 2000, 0, MS_AN_TASK_SWAP);
 *   ms_eval_summarize(&res, &cfg, 2000, &rows, &n_rows);
 *   ms_analysis_report rep = {&split, &cfg, &res, strats, &an, 1, rows, n_rows, "...", note};
 *   ms_analysis_write_report("out", &rep);
 *   ms_analysis_free(&an);
 */
#ifndef MEDSELECT_ANALYZE_H
#define MEDSELECT_ANALYZE_H

#include "medselect/evaluate.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    MS_AN_AGE = 0,
    MS_AN_L1,
    MS_AN_L2,
    MS_AN_LINF,
    MS_AN_COS_CENTROID,
    MS_AN_PAIR_COS,
    MS_AN_POS_FRAC,
    MS_AN_NQUANT
} ms_an_quantity_id;

typedef enum {
    MS_AN_TASK_SWAP = 0, /* swap A's and B's selections within tasks */
    MS_AN_POOLED = 1,    /* shuffle the pooled values (ms_wasserstein_perm_test) */
} ms_an_scheme;

typedef struct {
    const char *name;  /* "age", "l1_norm", "l2_norm", "linf_norm", "cos_centroid",
                          "pairwise_cos", "pos_frac" (static strings) */
    const char *title; /* for tables and figures, e.g. "L2 norm of the embedding" */
    int per_selection; /* 0: one value per selected image; 1: one value per selection */
    int available;     /* 0: not measurable here (no Age column, K = 1): the fields below
                          are 0 / NAN and no test is run */
    int na, nb;        /* number of values */
    double *a, *b;     /* (na), (nb) values of A and B, owned */
    double mean_a, mean_b;
    double w1;         /* Wasserstein-1 distance between the two empirical distributions */
    double p, p_bh;    /* permutation p-value and its Benjamini-Hochberg adjustment */
} ms_an_quantity;

typedef enum { MS_AN_SEX = 0, MS_AN_VIEW, MS_AN_NPROP } ms_an_prop_id;

typedef struct {
    const char *name;     /* "sex" or "view" */
    const char *level[2]; /* {"female", "male"} or {"frontal", "lateral"} */
    int available;        /* 0 when the split lacks the column or no selected image has it */
    long table[4];        /* [[A level0, A level1], [B level0, B level1]] counts of selected
                             images (pooled over tasks, missing values skipped) */
    double chi2;          /* Pearson statistic (no continuity correction) */
    int dof;              /* 1, or 0 when a row or column is empty (then p = 1) */
    double p_chi2, p_fisher, p_chi2_bh, p_fisher_bh;
    double p_perm, p_perm_bh; /* task-swap permutation test of |share A - share B| of level 0 */
} ms_an_prop;

typedef struct {
    int ki, k;          /* the K analysed: cfg->k[ki] */
    int sa, sb;         /* strategy indices into the evaluation */
    int perms;          /* permutations per test */
    uint64_t seed;      /* seed of the permutation tests */
    ms_an_scheme scheme; /* how the Wasserstein-1 tests permute */
    int n_sel;          /* selections per strategy: groups x tasks */
    ms_an_quantity q[MS_AN_NQUANT];
    ms_an_prop prop[MS_AN_NPROP];
} ms_analysis;

/* Analyses strategies sa and sb (indices into the evaluation, may be equal) at K index ki of
 * an evaluation `res` run on split s with cfg and keep_selections set (else MS_CHECK aborts).
 * Each task is regenerated with ms_task_sample exactly as ms_evaluate draws it, to map the
 * stored pool positions to split rows. perms >= 1 permutations per test, under `scheme` for
 * the Wasserstein-1 tests (the proportion tests' p_perm always swaps within tasks). The test
 * of quantity q uses its own random stream derived from (seed, q), so results do not depend
 * on the thread count or the order of the quantities. Quantities are tested in parallel
 * (OpenMP). On return *an owns its value arrays: free with ms_analysis_free. The values of
 * task i of group g are stored in task order (g * tasks + i), K per task for the per-image
 * quantities (fewer for age when some are missing), in pick order. */
ms_status ms_analyze(ms_analysis *an, const ms_split *s, const ms_eval_config *cfg,
                     const ms_eval_result *res, int sa, int sb, int ki, int perms, uint64_t seed,
                     ms_an_scheme scheme);
void ms_analysis_free(ms_analysis *an);

/* The strategy other than `exclude` (-1: none excluded) with the highest mean AUROC over
 * every group, K and task of res (ties: the lower index); -1 when there is none. Call it on
 * a VALIDATION run (as `analyze --b best` does) so that the choice of B never sees the test
 * tasks it is then compared on. */
int ms_analyze_best(const ms_eval_result *res, int exclude);
/* `analyze --b best`: evaluates the candidates cand[0..n_cand) (the baselines, not A) on
 * validation tasks of val (ms_eval_validate, evaluate.h: val_tasks per group, <= 0 for
 * cfg->tasks) and sets *b to the index in cand of the one with the highest mean over every
 * group and K there (ms_analyze_best), and note (n bytes) to how it was chosen, for
 * ms_analysis_report.b_note: "best baseline on the validation split (200 tasks per group;
 * seen: Effusion, Infiltration; unseen: ...)" naming each group's validation conditions.
 * Errors as ms_eval_validate. */
ms_status ms_analyze_choose_b(int *b, char *note, size_t n, const ms_split *val, const ms_split *test,
                              const ms_eval_config *cfg, int val_tasks, ms_strategy *const *cand, int n_cand,
                              ms_progress *prog);

/* Everything a report shows. an[n_an] are analyses of the same evaluation (e.g. one per K);
 * rows/n_rows come from ms_eval_summarize(res, cfg, ...). command: the command line that made
 * the report, shown verbatim (NULL: omitted). */
typedef struct {
    const ms_split *split;
    const ms_eval_config *cfg;
    const ms_eval_result *res;
    ms_strategy *const *strats; /* (res->n_strat) */
    const ms_analysis *an;
    int n_an;
    const ms_eval_row *rows;
    int n_rows;
    const char *command;
    const char *b_note; /* how B was chosen, e.g. "best baseline on the validation split ..." (NULL: omitted) */
} ms_analysis_report;

/* Writes DIR/report.md and its figures DIR/k<K>_<quantity>.png (one ECDF figure per available
 * quantity) and DIR/k<K>_auroc.png per analysis. DIR is created if missing (its parent must
 * exist). The figures are rendered in memory first; each file is written atomically, and if
 * one fails the files written before it are removed. */
ms_status ms_analysis_write_report(const char *dir, const ms_analysis_report *r);
/* The same numbers as JSON, atomically to path ("-": stdout). Layout: {"medselect_version",
 * "config": {...}, "analyses": [{"k", "a", "b", "permutations", "seed", "selections",
 * "quantities": [{"name", "per", "n_a", "n_b", "mean_a", "mean_b", "w1", "p", "p_bh"}],
 * "scheme", "proportions": [{"name", "levels", "table", "chi2", "dof", "p_chi2",
 * "p_fisher", "p_perm", "p_chi2_bh", "p_fisher_bh", "p_perm_bh"}]}], "auroc": [{"group", "condition", "k", "strategy",
 * "tasks", "mean", "lo", "hi"}]}; unavailable numbers are null. */
ms_status ms_analysis_write_json(const char *path, const ms_analysis_report *r);
/* That JSON text (newline-terminated, malloc'd: the caller frees it). */
char *ms_analysis_json(const ms_analysis_report *r);

#ifdef __cplusplus
}
#endif
#endif
