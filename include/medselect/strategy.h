/* medselect/strategy.h: selection strategies. A strategy maps an unlabeled pool to K
 * distinct item indices (in its order of preference). The learned MedSelect selector is a
 * strategy like the baselines (see model.h / policy.h), so evaluate, select and analyze
 * treat them all alike.
 *
 * Built in (see each strategy's .c file in src/strategies for its definition). All work on
 * pool->x (unit rows); options and defaults in brackets:
 *   random      K distinct items uniformly at random
 *   kmedoids    k-medoids (alternating, Voronoi iteration) with k-medoids++ seeding on
 *               cosine distance 1 - x.y; the K medoids (the paper's clustering baseline)
 *               [iters=300]
 *   kmeans      greedy k-means++ seeding, Lloyd to convergence (squared L2), then per
 *               centroid, largest cluster first, the nearest item not yet chosen [iters=300]
 *   kcenter     k-center greedy (Coreset), L2, first item from the seed
 *   typiclust   TypiClust: K k-means clusters, clusters of <= min_cluster items skipped,
 *               largest first, the most typical item (inverse mean SQUARED L2 distance to
 *               its min(knn, m/2) nearest cluster members, as the authors' code)
 *               [knn=20, min_cluster=auto: min(5, floor(n / 2K)); the authors use 5]
 *   probcover   ProbCover: greedy max coverage of L2 delta-balls; delta=auto picks the
 *               largest of 0.05, 0.10, ..., 1.50 with k-means (K) pseudo-label purity >=
 *               alpha [delta=auto, alpha=0.95, max_edges=16777216: larger graphs are refused]
 *   herding     MaxHerding: greedy generalized coverage with the Gaussian kernel
 *               exp(-|x-y|^2 / (2 sigma^2)); the (n, n) kernel is kept in float when
 *               n <= dense_max [sigma=1.0, dense_max=12000]; the seed is not used
 * Options follow the name: "probcover:delta=0.4", "kmeans:iters=300", "herding:sigma=0.5".
 *
 * Rankings and budgets. Some strategies produce a ranking: their selection at K is the first
 * K items of their selection at any larger K (same pool and seed), so one ordered worklist
 * serves every budget. They set `ranking` and evaluate scores prefixes of one order:
 *   ranking     random (a prefix of one permutation), kcenter (greedy), herding (greedy
 *               coverage gain), the learned selector (greedy top-K of its logits; the
 *               sequential selectors' greedy decode)
 *   per K       kmedoids, kmeans (K clusters), typiclust (K clusters), probcover (delta=auto
 *               is chosen from K-means pseudo-labels at K): their K-subset changes with K,
 *               so they are run once per budget
 * Memory: O(n d) scratch from the arena, except herding's dense kernel (4 n^2 bytes) and
 * ProbCover's graph (8 bytes per edge with its transpose).
 */
#ifndef MEDSELECT_STRATEGY_H
#define MEDSELECT_STRATEGY_H

#include "medselect/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int n, d;
    const float *x;    /* (n, d) rows scaled to unit L2 norm */
    const float *raw;  /* (n, d) rows as stored */
    const float *clin; /* (n, 3) clinical features [age, sex, frontal] (io.h) or NULL */
} ms_pool;

typedef struct ms_strategy ms_strategy;
struct ms_strategy {
    char name[32];   /* short name, e.g. "kmedoids" */
    char label[96];  /* name with its options, for tables */
    /* Writes k distinct indices in [0, pool->n) to out. Scratch memory comes from `ws` (the
     * caller resets it between calls). Randomness only from `seed`. Returns MS_OK or a
     * data error (e.g. k > n). Must be safe to call from several threads at once with
     * different ws. */
    ms_status (*select)(const ms_strategy *s, const ms_pool *pool, int k, uint64_t seed,
                        int *out, ms_arena *ws);
    void *ctx;                 /* the strategy's parameters or model; owned */
    void (*free_ctx)(void *ctx);
    /* Optional, for strategies that score items with a model (the learned selector): scores
     * n pools of equal size at once, scores (n, pool size), so that the model's matrix
     * products run batched. Only pool->raw and pool->clin are read. Called from one thread
     * at a time. select_scored then selects from one pool's scores exactly as select would
     * (select's own scoring may differ from the batched one by float rounding only). */
    ms_status (*score)(const ms_strategy *s, const ms_pool *pools, int n, float *scores);
    ms_status (*select_scored)(const ms_strategy *s, const float *scores, int n_items, int k,
                               uint64_t seed, int *out, ms_arena *ws);
    int score_batch;           /* pools per score call that suit the model's memory */
    /* Optional, beside score: the same scores (up to float rounding) for n pools of T items
     * given as rows of one matrix, x (N, d) as stored with clin (N, 3) or NULL, and rows
     * (n, T) indices into them; what depends on a row alone is computed once per call (the
     * evaluation draws every pool from one split). prog (may be NULL) gets one unit per
     * pool and is polled for cancellation between batches. Called from one thread. */
    ms_status (*score_rows)(const ms_strategy *s, const float *x, const float *clin, int N,
                            int d, const int *rows, int n, int T, float *scores,
                            ms_progress *prog);
    /* 1 when select(k) always returns the first k items of select(k') for every k < k' on
     * the same pool and seed (see "Rankings and budgets" above); evaluate then selects once
     * at the largest K and scores prefixes. 0 when the selection depends on K. */
    int ranking;
};

/* A strategy defined by the caller (e.g. a language binding wrapping a user's function):
 * `select` as documented in the struct (it is called from several OpenMP threads at once, so
 * it must be thread-safe or serialise itself); ctx is owned by the strategy and released by
 * free_ctx (may be NULL) in ms_strategy_free. name and label are copied (label NULL: the
 * name), truncated to the struct's fields. Free with ms_strategy_free. */
typedef ms_status (*ms_select_fn)(const ms_strategy *s, const ms_pool *pool, int k, uint64_t seed,
                                  int *out, ms_arena *ws);
ms_strategy *ms_strategy_new(const char *name, const char *label, ms_select_fn select, void *ctx,
                             void (*free_ctx)(void *ctx));

/* score_rows' contract through `score` alone: gathers the pools given as rows (n, T) of x
 * (N, d) and clin (N, 3) or NULL, score_batch pools at a time, and scores them with
 * s->score (which must be set), one progress unit per pool, polling for cancellation
 * between batches. What evaluate does for a strategy without score_rows, and what a
 * score_rows does when it cannot prepare the rows. */
ms_status ms_strategy_score_gathered(const ms_strategy *s, const float *x, const float *clin,
                                     int d, const int *rows, int n, int T, float *scores,
                                     ms_progress *prog);

/* Creates a strategy from "name" or "name:key=value,key=value". Unknown name or option:
 * MS_ERR_ARG with a message listing what is valid. */
ms_status ms_strategy_create(ms_strategy **out, const char *spec);
void ms_strategy_free(ms_strategy *s);
/* Comma-separated names of the built-in strategies, e.g. for --help. */
const char *ms_strategy_names(void);

/* Registration hook for strategy families: each builtin file defines
 *   ms_status ms_<family>_create(ms_strategy *s, const char *name, const char *opts);
 * filling select/ctx/free_ctx; opts is the part after ':' ("" when none). */
typedef ms_status (*ms_strategy_ctor)(ms_strategy *s, const char *opts);

/* Parses "key=value" pairs from opts; helpers for ctors. *found 1 when present.
 * Returns MS_ERR_ARG for a malformed value. */
ms_status ms_opt_double(const char *opts, const char *key, double *val, int *found);
ms_status ms_opt_int(const char *opts, const char *key, int *val, int *found);
ms_status ms_opt_string(const char *opts, const char *key, char *buf, size_t n, int *found);
/* MS_ERR_ARG naming the first key in opts not in the NULL-terminated list `known`. */
ms_status ms_opt_check(const char *strategy, const char *opts, const char *const *known);

#ifdef __cplusplus
}
#endif
#endif
