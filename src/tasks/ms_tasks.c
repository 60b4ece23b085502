/* ms_tasks.c: the meta-task sampler (see tasks.h). A task draws its condition, then
 * ceil(P*f) + ceil(Q*q) distinct positives of that condition and the remaining pool and query
 * items from the normals, all from one generator seeded by (seed, stream, index). The first
 * positives/normals drawn go to the pool and the rest to the query, so the two sets are
 * disjoint by construction. */
#include "medselect/tasks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int ms_task_pool_pos(const ms_task_shape *sh) { return (int)ceil(sh->pool * sh->pos_frac - 1e-9); }
int ms_task_query_pos(const ms_task_shape *sh) {
    return (int)ceil(sh->query * sh->query_pos_frac - 1e-9);
}

ms_status ms_task_check(const ms_split *s, const ms_task_shape *sh, const int *conds, int n_conds) {
    if (sh->pool < 2 || sh->query < 2)
        return ms_fail(MS_ERR_ARG, "pool and query need at least 2 items each");
    int pp = ms_task_pool_pos(sh), qp = ms_task_query_pos(sh);
    if (qp < 1 || qp >= sh->query)
        return ms_fail(MS_ERR_ARG, "a query of %d with %d positives would have a single class",
                       sh->query, qp);
    int need_norm = (sh->pool - pp) + (sh->query - qp);
    if (n_conds < 1) return ms_fail(MS_ERR_ARG, "no condition to sample tasks from");
    for (int i = 0; i < n_conds; i++) {
        int c = conds[i];
        MS_CHECK(c >= 0 && c < s->n_cond);
        if (s->cond_count[c] < pp + qp)
            return ms_fail(MS_ERR_DATA,
                           "%s: condition '%s' has %d positives, a task needs %d (%d pool positives + %d query positives)",
                           s->pos_name, s->cond[c], s->cond_count[c], pp + qp, pp, qp);
    }
    if (s->n_norm < need_norm)
        return ms_fail(MS_ERR_DATA, "%s: %d normal images, a task needs %d (%d pool normals + %d query normals)",
                       s->norm_name, s->n_norm, need_norm, sh->pool - pp, sh->query - qp);
    if (s->group) {
        /* distinct groups among each condition's positives and among the normals */
        unsigned char *seen = ms_xcalloc((size_t)s->n_groups, 1);
        ms_status st = MS_OK;
        for (int i = 0; i < n_conds && !st; i++) {
            int c = conds[i], ng = 0;
            memset(seen, 0, (size_t)s->n_groups);
            for (int j = 0; j < s->cond_count[c]; j++) {
                int g = s->group[s->cond_rows[c][j]];
                ng += !seen[g];
                seen[g] = 1;
            }
            if (ng < pp)
                st = ms_fail(MS_ERR_DATA,
                             "%s: condition '%s' has positives from %d groups of %s, a pool of %d positives without "
                             "repeated groups needs %d",
                             s->pos_name, s->cond[c], ng, s->group_col, pp, pp);
        }
        if (!st) {
            int ng = 0;
            memset(seen, 0, (size_t)s->n_groups);
            for (int j = s->n_pos; j < s->n; j++) {
                ng += !seen[s->group[j]];
                seen[s->group[j]] = 1;
            }
            if (ng < (sh->pool - pp) + pp)
                st = ms_fail(MS_ERR_DATA,
                             "%s: normals from %d groups of %s, a pool of %d normals without repeated groups needs %d "
                             "(%d + %d that the pool's positives may also use)",
                             s->norm_name, ng, s->group_col, sh->pool - pp, sh->pool, sh->pool - pp, pp);
        }
        free(seen);
        if (st) return st;
    }
    return MS_OK;
}

/* 1 when group g is the group of one of pool[0..n). A linear scan: pools are drawn once per
 * task and a scan of P ints per candidate costs less than clearing an n_groups array. */
static int group_used(const ms_split *s, const int *pool, int n, int g) {
    for (int i = 0; i < n; i++)
        if (s->group[pool[i]] == g) return 1;
    return 0;
}

/* Draws `take` rows for the pool from rows base + scratch[0..m) (a partial Fisher-Yates that
 * skips rows whose group the pool already has) into pool[have..], then `qtake` rows for the
 * query from the rest, skipped rows included, into query[qhave..]. Labels y. Grouped splits
 * only. */
static void draw_grouped(ms_rng *r, const ms_split *s, const int *rows, int m, int *scratch, int take, int qtake,
                         ms_task *t, int have, int qhave, uint8_t y) {
    for (int i = 0; i < m; i++) scratch[i] = i;
    int k = 0; /* scratch[0..k) accepted into the pool */
    for (int i = 0; k < take; i++) {
        MS_CHECK(i < m); /* ms_task_check guarantees enough groups */
        int j = i + (int)ms_rng_below(r, (uint32_t)(m - i));
        int tmp = scratch[i];
        scratch[i] = scratch[j];
        scratch[j] = tmp;
        int row = rows ? rows[scratch[i]] : s->n_pos + scratch[i];
        if (group_used(s, t->pool, have + k, s->group[row])) continue;
        tmp = scratch[k];
        scratch[k] = scratch[i];
        scratch[i] = tmp;
        t->pool[have + k] = row;
        t->pool_y[have + k] = y;
        k++;
    }
    for (int i = 0; i < qtake; i++) {
        int a = k + i;
        int j = a + (int)ms_rng_below(r, (uint32_t)(m - a));
        int tmp = scratch[a];
        scratch[a] = scratch[j];
        scratch[j] = tmp;
        t->query[qhave + i] = rows ? rows[scratch[a]] : s->n_pos + scratch[a];
        t->query_y[qhave + i] = y;
    }
}

void ms_task_alloc(ms_task *t, const ms_task_shape *sh, ms_arena *arena) {
    t->P = sh->pool;
    t->Q = sh->query;
    t->cond = -1;
    if (arena) {
        t->pool = MS_ARENA_NEW(arena, int, t->P);
        t->query = MS_ARENA_NEW(arena, int, t->Q);
        t->pool_y = MS_ARENA_NEW(arena, uint8_t, t->P);
        t->query_y = MS_ARENA_NEW(arena, uint8_t, t->Q);
    } else {
        t->pool = ms_xmalloc(sizeof(int) * (size_t)t->P);
        t->query = ms_xmalloc(sizeof(int) * (size_t)t->Q);
        t->pool_y = ms_xmalloc((size_t)t->P);
        t->query_y = ms_xmalloc((size_t)t->Q);
    }
}

void ms_task_free(ms_task *t) {
    free(t->pool);
    free(t->query);
    free(t->pool_y);
    free(t->query_y);
    memset(t, 0, sizeof *t);
}

/* Shuffles rows and labels together. */
static void shuffle_pairs(ms_rng *r, int *rows, uint8_t *y, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)ms_rng_below(r, (uint32_t)i + 1);
        int tr = rows[i];
        rows[i] = rows[j];
        rows[j] = tr;
        uint8_t ty = y[i];
        y[i] = y[j];
        y[j] = ty;
    }
}

void ms_task_sample(ms_task *t, const ms_split *s, const ms_task_shape *sh, const int *conds,
                    int n_conds, uint64_t seed, uint64_t stream, uint64_t index, int *scratch) {
    MS_CHECK(t->P == sh->pool && t->Q == sh->query && n_conds > 0);
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_TASK * 1000003ULL + stream, index);
    int c = conds[ms_rng_below(&r, (uint32_t)n_conds)];
    int pp = ms_task_pool_pos(sh), qp = ms_task_query_pos(sh);
    int pn = sh->pool - pp, qn = sh->query - qp;
    MS_CHECK(s->cond_count[c] >= pp + qp && s->n_norm >= pn + qn);
    t->cond = c;

    if (s->group) {
        /* grouped: the pool has at most one row per group (positives first, then normals
         * avoiding the positives' groups too); the query takes any remaining rows */
        draw_grouped(&r, s, s->cond_rows[c], s->cond_count[c], scratch, pp, qp, t, 0, 0, 1);
        draw_grouped(&r, s, NULL, s->n_norm, scratch, pn, qn, t, pp, qp, 0);
        shuffle_pairs(&r, t->pool, t->pool_y, t->P);
        shuffle_pairs(&r, t->query, t->query_y, t->Q);
        return;
    }

    /* positives: a partial Fisher-Yates over the condition's positive rows */
    int np = s->cond_count[c];
    const int *prow = s->cond_rows[c];
    for (int i = 0; i < np; i++) scratch[i] = i;
    for (int i = 0; i < pp + qp; i++) {
        int j = i + (int)ms_rng_below(&r, (uint32_t)(np - i));
        int tmp = scratch[i];
        scratch[i] = scratch[j];
        scratch[j] = tmp;
        int row = prow[scratch[i]];
        if (i < pp) t->pool[i] = row, t->pool_y[i] = 1;
        else t->query[i - pp] = row, t->query_y[i - pp] = 1;
    }
    /* normals: rows n_pos .. n-1 */
    for (int i = 0; i < s->n_norm; i++) scratch[i] = i;
    for (int i = 0; i < pn + qn; i++) {
        int j = i + (int)ms_rng_below(&r, (uint32_t)(s->n_norm - i));
        int tmp = scratch[i];
        scratch[i] = scratch[j];
        scratch[j] = tmp;
        int row = s->n_pos + scratch[i];
        if (i < pn) t->pool[pp + i] = row, t->pool_y[pp + i] = 0;
        else t->query[qp + i - pn] = row, t->query_y[qp + i - pn] = 0;
    }
    shuffle_pairs(&r, t->pool, t->pool_y, t->P);
    shuffle_pairs(&r, t->query, t->query_y, t->Q);
}

void ms_gather_rows(float *dst, const float *src, const int *rows, int n, int d) {
    for (int i = 0; i < n; i++) memcpy(dst + (size_t)i * d, src + (size_t)rows[i] * d, sizeof(float) * (size_t)d);
}
