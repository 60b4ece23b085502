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
 * Files in the output directory (all written atomically, medselect/output.h):
 *   best.safetensors   weights with the best meta-validation AUROC (PyTorch names)
 *   last.safetensors   weights after the last iteration
 *   state.safetensors  weights + Adam moments + progress, for --resume; saved at iteration 0
 *                      (before the first validation), at every validation and at the end
 *   metrics.csv        iteration, epoch, reward, baseline, advantage, val_auroc, lr, seconds;
 *                      rewritten whole before every state save (and at most once a
 *                      second in between), so it never has fewer rows than the state
 * The directory (and its missing parents) is created; while a run uses it, it holds the lock
 * file .medselect.lock with the run's pid, and a second run into it is refused (MS_ERR_IO
 * naming the folder and that pid). A run that fails before saving anything removes the
 * folders it created. A run killed at any moment resumes (resume = 1) from its last state;
 * with no state saved yet, resume starts from scratch.
 */
#ifndef MEDSELECT_TRAIN_H
#define MEDSELECT_TRAIN_H

#include "medselect/arch.h"
#include "medselect/model.h"
#include "medselect/policy.h"
#include "medselect/predictor.h"
#include "medselect/strategy.h"
#include "medselect/tasks.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the trainer reports after each iteration to cfg->on_iteration (the numbers of the
 * iteration's metrics.csv row plus the best validation so far). */
typedef struct {
    long iteration;        /* iterations completed, 1-based */
    long total;            /* iterations of the whole run (epochs x batches per epoch) */
    long epoch;            /* 1-based */
    double reward, baseline, advantage; /* means over the iteration's tasks */
    double val_auroc;      /* meta-validation AUROC, NAN when no validation ran this iteration */
    double best_val;       /* best meta-validation AUROC so far */
    int best_iteration;
    double lr;
    double seconds;        /* since this call started */
} ms_train_progress;

/* --augment geometry: a random change of one task's embedding geometry, a stand-in for
 * another hospital or scanner seen through the same encoder. With m the pool's mean row,
 * e = y - m for every pool and query row y, and r^2 = mean over the pool of |e|^2:
 *   c   = spread^(2U - 1)               concentration: all rows pulled towards the pool
 *                                       mean (c < 1: higher cosines) or pushed out (c > 1)
 *   v_1..v_dirs orthonormal directions in the pool's span (Gram-Schmidt of E^T g, g ~ N(0, I_P),
 *                                       so the pool's high-variance directions are likelier)
 *   f_l = axes^(2U - 1)                 a factor per direction (anisotropy)
 *   nu  = noise U                       noise level
 *   y' = m + c (e + sum_l (f_l - 1) (v_l . e) v_l) + nu r / sqrt(D) n,   n ~ N(0, I_D) per row
 * (U uniform on [0, 1), one draw each, in the order c, f_1..f_dirs, nu, g, pool noise, query
 * noise). The mean noise energy of a row is nu^2 r^2. No rotation or global scale is drawn:
 * they leave every relational feature unchanged. c moves the typicality and the herding and
 * k-center terms (through the unit rows) but not the centred features (centred cosines,
 * k-NN density, distance from the mean relative to the pool's); the direction factors and the
 * noise move all of them. */
#define MS_GEOMETRY_MAX_DIRS 64
typedef struct {
    int on;        /* 0: no change */
    double noise;  /* largest noise level nu, 0 to 10 (0.5) */
    double spread; /* concentration factor c within [1/spread, spread], 1 to 100 (2) */
    double axes;   /* direction factors within [1/axes, axes], 1 to 100 (2) */
    int dirs;      /* directions, 0 to 64 (4) */
} ms_geometry_aug;

/* g = the defaults above, on. */
void ms_geometry_defaults(ms_geometry_aug *g);
/* "noise=N,spread=S,axes=A,dirs=K" (any subset, any order; NULL or "": the defaults) into
 * g (on). An unknown key, a value that is not a number or out of its range: MS_ERR_ARG. */
ms_status ms_geometry_parse(const char *opts, ms_geometry_aug *g);
/* The options as parse reads them back, e.g. "noise=0.5,spread=2,axes=2,dirs=4". */
void ms_geometry_format(char *buf, size_t n, const ms_geometry_aug *g);

typedef struct {
    ms_task_shape shape;   /* pool/query of every task (reference 1000/100, half positive) */
    const ms_arch *arch;   /* selector architecture (NULL: the default, bilstm) */
    const char *arch_opts; /* its initialisation options ("key=value,..."; NULL: defaults) */
    int k;                 /* labels per task (reference 20); with k_min: the largest */
    int k_min;             /* 0: one budget k; else every budget of [k_min, k]: each task
                              draws k items in order and its reward (and the validation
                              score of the greedy ranking) is the mean AUROC of the prefixes
                              k_min, 2 k_min, 4 k_min, ... < k and k */
    double pos_frac_hi;    /* > shape.pos_frac: each task draws its pool's positive fraction
                              uniformly from [shape.pos_frac, pos_frac_hi] */
    int batch;             /* tasks per iteration (64) */
    int epochs;            /* passes over the meta-train tasks (5) */
    int tasks;             /* fixed meta-train tasks (10000) */
    int val_tasks;         /* fixed meta-validation tasks (1000) */
    int val_every;         /* iterations between validations (30) */
    double lr;             /* Adam learning rate (1e-4) */
    double lr_decay;       /* factor applied from epoch lr_decay_epoch on (0.1) */
    int lr_decay_epoch;    /* 1-based epoch where the decay starts (3); 0: never */
    int hidden;            /* H (0: the architecture's default, 256 for bilstm) */
    int augment_rotate;    /* 1: every meta-train task's embeddings (not the clinical columns)
                              are multiplied by a fresh random orthogonal matrix (structured:
                              H S3 H S2 H S1, Hadamard and random signs; the width must be a
                              power of two), so that absolute embedding directions carry no
                              reward; validation tasks are not rotated */
    ms_geometry_aug geometry; /* .on: every meta-train task's pool and query embeddings get a
                              random change of geometry (ms_geometry_aug); validation tasks do
                              not; the reward is computed on the changed rows */
    int baseline_greedy;   /* 1: the REINFORCE baseline is the reward of the greedy decode of
                              the current policy (self-critical); 0: K random items (default) */
    int samples;           /* S > 1: S ordered draws per task, each with the leave-one-out
                              baseline (the mean reward of the task's other S - 1 draws), the
                              loss averaged over all B S draws; lower variance than one draw
                              against K random items (0 or 1: one draw; not with
                              baseline_greedy) */
    ms_sampler sampler;    /* MS_SAMPLER_WOR (without replacement, default) or multinomial */
    int clinical;          /* append the 3 clinical features to the selector input */
    int impute_clinical;   /* replace missing clinical values by the split's mean */
    ms_pred_kind pred;     /* predictor of the reward (cosine) */
    uint64_t seed;
    const int *train_cond; /* conditions of meta-train tasks (indices into train split) */
    int n_train_cond;
    const int *val_cond;   /* conditions of meta-validation tasks (indices into val split) */
    int n_val_cond;
    const char *out_dir;   /* created with its parents when missing; locked while in use */
    int resume;            /* continue from out_dir/state.safetensors (from scratch if absent) */
    int max_iterations;    /* stop after this many iterations in this call (0: no limit);
                              for tests of resumption */
    /* Optional (NULL: none): called on the calling thread after every iteration, once its
     * validation and metrics.csv row are done. A non-zero return stops training there: the
     * state is saved as after max_iterations (so `resume` continues exactly) and ms_train
     * returns MS_OK with summary->stopped set. Used by bindings for progress callbacks and
     * Ctrl-C. */
    int (*on_iteration)(const ms_train_progress *p, void *ctx);
    void *on_iteration_ctx;
} ms_train_config;

void ms_train_defaults(ms_train_config *c);

typedef struct {
    int iterations;        /* iterations completed in total */
    double best_val;       /* best meta-validation AUROC */
    int best_iteration;
    double random_val;     /* meta-validation AUROC of random selection, for reference */
    double seconds;        /* wall time of this call */
    double tasks_per_second;
    int stopped;           /* 1 when on_iteration stopped the run */
} ms_train_summary;

/* Trains (or resumes) as configured. The input of the selector is the split's embedding
 * rows as stored (plus clinical features), as in the reference code. */
ms_status ms_train(const ms_split *train, const ms_split *val, const ms_train_config *cfg,
                   ms_train_summary *summary);

/* The selector's clinical input columns follow the embedding in the authors' order
 * [sex, age, frontal] (their get_age_sex_lat): sex female 1 / male 0, age standardized
 * (age - MS_AGE_MEAN) / MS_AGE_SD, frontal 1 / lateral 0. Tables (io.h) keep them as
 * [age, sex, frontal]; ms_clin_to_input is the one place that reorders. Checkpoints record
 * the order in their metadata (checkpoint.h, "clinical_order"). */
#define MS_CLIN_ORDER "sex,age,frontal"
/* in (3): one row of table clinical features [age, sex, frontal]; out (3): the selector's
 * input order [sex, age, frontal]. */
static inline void ms_clin_to_input(float *out, const float *in) {
    out[0] = in[1];
    out[1] = in[0];
    out[2] = in[2];
}

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
    ms_net net;        /* any architecture (arch.h) */
    int clinical;      /* input is D + 3 */
    ms_decode decode;  /* greedy top-K (default), a draw without replacement, or the
                          reference's multinomial (policy.h) */
    ms_sampler sampler;
} ms_selector;

/* Wraps a selector (ownership moves into the strategy) as strategy "medselect". The pool's
 * raw rows (and clinical features when the selector uses them) are its input. Its label
 * names the decoding rule unless it is greedy ("medselect (sample)", "medselect
 * (multinomial)"). Under MS_DECODE_MULTINOMIAL, select returns the K draws in order of
 * first draw with repeats kept (the one exception to a strategy's K distinct items). */
ms_strategy *ms_selector_strategy(ms_selector *sel);
/* One pool through a selector strategy made by ms_selector_strategy: k picks in order into
 * out (greedy, or a draw seeded by seed with sel->sample) and, when logits0 (pool->n) is
 * not NULL, the first step's logit of every item (for a static architecture: its score). */
ms_status ms_selector_run(const ms_strategy *s, const ms_pool *pool, int k, uint64_t seed,
                          int *out, float *logits0, ms_arena *ws);

#ifdef __cplusplus
}
#endif
#endif
