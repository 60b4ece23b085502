/* medselect/tasks.h: meta-tasks (episodes), sampled as the reference code does.
 *
 * A task picks a condition c uniformly from the allowed set, then an unlabeled pool of P
 * rows with ceil(P * pos_frac) positives for c (the rest normals) and a disjoint query set of
 * Q rows with ceil(Q * query_pos_frac) positives; both shuffled. Task i of stream s is a pure
 * function of (seed, s, i): tasks may be built in parallel, in any order, and reproduce.
 */
#ifndef MEDSELECT_TASKS_H
#define MEDSELECT_TASKS_H

#include "medselect/io.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int pool;              /* P, reference 1000 */
    double pos_frac;       /* reference 0.5 */
    int query;             /* Q, reference 100 */
    double query_pos_frac; /* reference 0.5 */
} ms_task_shape;

typedef struct {
    int cond;         /* index into the split's conditions */
    int P, Q;
    int *pool;        /* (P) rows of the split */
    uint8_t *pool_y;  /* (P) 1 when positive for cond, 0 for a normal */
    int *query;       /* (Q) rows of the split, disjoint from pool */
    uint8_t *query_y; /* (Q) */
} ms_task;

int ms_task_pool_pos(const ms_task_shape *sh);  /* ceil(P * pos_frac) */
int ms_task_query_pos(const ms_task_shape *sh); /* ceil(Q * query_pos_frac) */

/* Checks that every listed condition has enough positives and the split enough normals
 * for one task; the error names the file, the condition and the counts.
 *
 * Grouped splits (ms_split_group_by, e.g. by patient): the pool holds at most one image per
 * group; the query is drawn as usual from the rows not in the pool (so a query image may
 * share a group with a pool image). A grouped pool fits when the condition's positives come
 * from at least pool-positives groups and the normals from at least pool-normals +
 * pool-positives groups (a pool positive's group may also hold normals, which that pool can
 * then not use); the query still needs query-positives more positive rows and query-normals
 * more normal rows. When this does not hold the check fails with the counts. */
ms_status ms_task_check(const ms_split *s, const ms_task_shape *sh, const int *conds, int n_conds);

/* Allocates a task's arrays for the shape from the arena (or malloc when arena is NULL:
 * free with ms_task_free). */
void ms_task_alloc(ms_task *t, const ms_task_shape *sh, ms_arena *arena);
void ms_task_free(ms_task *t);

/* Samples task `index` of `stream` into t (allocated for sh). scratch: max(n_pos, n_norm)
 * ints. Pure function of (s, sh, conds, seed, stream, index). */
void ms_task_sample(ms_task *t, const ms_split *s, const ms_task_shape *sh, const int *conds,
                    int n_conds, uint64_t seed, uint64_t stream, uint64_t index, int *scratch);

/* Copies the rows `rows` (n) of src (.., d) into dst (n, d). */
void ms_gather_rows(float *dst, const float *src, const int *rows, int n, int d);

#ifdef __cplusplus
}
#endif
#endif
