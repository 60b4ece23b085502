/* medselect/train.h: meta-training the MedSelect selector with REINFORCE, and the trained
 * selector as a selection strategy.
 *
 * One iteration takes a batch of B meta-train tasks (task i is a pure function of (seed, i);
 * the epoch's order is a seeded permutation), runs the BiLSTM on all pools at once, and per
 * task draws a selection of K items from the policy (sampler: without replacement by
 * default, or the reference's multinomial). The reward is the AUROC on the query set of the
 * predictor built from the selected items; the baseline is the AUROC with K random distinct
 * items of the same pool; loss = -mean_b (reward_b - baseline_b) * log p(selection_b).
 * Adam (PyTorch's update rule) steps on the mean gradient. Every `val_every` iterations the
 * selector is scored on fixed meta-validation tasks with greedy top-K selection; the best
 * weights are kept (best.safetensors). Everything random is a function of (seed, iteration,
 * task), so a run interrupted at any point and resumed from its state file ends with the same
 * weights as an uninterrupted one.
 *
 * Files in the output directory (all written atomically):
 *   best.safetensors   weights with the best meta-validation AUROC (PyTorch names)
 *   last.safetensors   weights after the last iteration
 *   state.safetensors  weights + Adam moments + progress, for --resume
 *   metrics.csv        iteration, epoch, reward, baseline, advantage, val_auroc, lr, seconds
 */
#ifndef MEDSELECT_TRAIN_H
#define MEDSELECT_TRAIN_H

#include "medselect/model.h"
#include "medselect/policy.h"
#include "medselect/predictor.h"
#include "medselect/strategy.h"
#include "medselect/tasks.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    ms_task_shape shape;   /* pool/query of every task (reference 1000/100, half positive) */
    int k;                 /* labels per task (reference 20) */
    int batch;             /* tasks per iteration (64) */
    int epochs;            /* passes over the meta-train tasks (5) */
    int tasks;             /* fixed meta-train tasks (10000) */
    int val_tasks;         /* fixed meta-validation tasks (1000) */
    int val_every;         /* iterations between validations (30) */
    double lr;             /* Adam learning rate (1e-4) */
    double lr_decay;       /* factor applied from epoch lr_decay_epoch on (0.1) */
    int lr_decay_epoch;    /* 1-based epoch where the decay starts (3); 0: never */
    int hidden;            /* H (256) */
    ms_sampler sampler;    /* MS_SAMPLER_WOR (without replacement, default) or multinomial */
    int clinical;          /* append the 3 clinical features to the selector input */
    int impute_clinical;   /* replace missing clinical values by the split's mean */
    ms_pred_kind pred;     /* predictor of the reward (cosine) */
    uint64_t seed;
    const int *train_cond; /* conditions of meta-train tasks (indices into train split) */
    int n_train_cond;
    const int *val_cond;   /* conditions of meta-validation tasks (indices into val split) */
    int n_val_cond;
    const char *out_dir;   /* created when missing */
    int resume;            /* continue from out_dir/state.safetensors */
    int max_iterations;    /* stop after this many iterations in this call (0: no limit);
                              for tests of resumption */
} ms_train_config;

void ms_train_defaults(ms_train_config *c);

typedef struct {
    int iterations;        /* iterations completed in total */
    double best_val;       /* best meta-validation AUROC */
    int best_iteration;
    double random_val;     /* meta-validation AUROC of random selection, for reference */
    double seconds;        /* wall time of this call */
    double tasks_per_second;
} ms_train_summary;

/* Trains (or resumes) as configured. The input of the selector is the split's embedding
 * rows as stored (plus clinical features), as in the reference code. */
ms_status ms_train(const ms_split *train, const ms_split *val, const ms_train_config *cfg,
                   ms_train_summary *summary);

/* Builds the selector input of one pool: x (n, D [+3]) from rows of the split. A missing
 * clinical value is replaced by fill[j] when fill is not NULL (see ms_clin_means), else it is
 * an MS_ERR_DATA naming the file and line. */
ms_status ms_selector_input(float *x, const ms_split *s, const int *rows, int n, int clinical,
                            const float *fill);
/* fill (3): the mean of each clinical feature over the rows of clin (n, 3) where it is
 * present (0 when clin is NULL or a feature is never present): the imputation of
 * --impute-clinical. */
void ms_clin_means(const float *clin, int n, float fill[MS_NCLIN]);

/* ---- the trained selector as a strategy ----------------------------------------------- */
typedef struct {
    ms_lstm_params params;
    int clinical;      /* input is D + 3 */
    int sample;        /* 0: greedy top-K (default); 1: a draw from the policy */
    ms_sampler sampler;
} ms_selector;

/* Wraps a selector (ownership moves into the strategy) as strategy "medselect". The pool's
 * raw rows (and clinical features when the selector uses them) are its input. */
ms_strategy *ms_selector_strategy(ms_selector *sel);

#ifdef __cplusplus
}
#endif
#endif
