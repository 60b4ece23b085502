/* test_tasks.c: invariants of the meta-task sampler: sizes and exact class counts, pool and
 * query disjoint, labels true to the data, determinism per (seed, stream, index) whatever the
 * order, uniform condition frequencies, and the "not enough positives" error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/io.h"
#include "medselect/tasks.h"
#include "ms_test.h"

/* positives: 240 rows, condition c positive on rows with (i % 3 == c) plus condition 2 also on
 * every 5th row; condition 3 ("rare") on rows 0..9 only. */
static void make_split(ms_split *s) {
    const int np = 240, nn = 300, d = 4, nc = 4;
    float *pos = malloc(sizeof(float) * np * d), *norm = malloc(sizeof(float) * nn * d);
    float *lab = calloc((size_t)np * nc, sizeof(float));
    for (int i = 0; i < np * d; i++) pos[i] = (float)(i % 7) + 1.0f;
    for (int i = 0; i < nn * d; i++) norm[i] = (float)(i % 5) - 2.5f;
    for (int i = 0; i < np; i++) {
        lab[i * nc + i % 3] = 1;
        if (i % 5 == 0) lab[i * nc + 2] = 1;
        if (i < 10) lab[i * nc + 3] = 1;
    }
    const char *names[] = {"Effusion", "Infiltration", "Pleural Effusion", "Rare_One"};
    ms_split_from_arrays(s, pos, np, norm, nn, d, lab, nc, names);
    free(pos), free(norm), free(lab);
}

static int is_pos(const ms_split *s, int cond, int row) {
    for (int j = 0; j < s->cond_count[cond]; j++)
        if (s->cond_rows[cond][j] == row) return 1;
    return 0;
}

/* Grouped sampling on the shipped NIH test split grouped by PatientID: every pool has
 * distinct patients, class counts and disjointness hold, tasks are a pure function of the
 * index, patients do repeat without grouping, and the check reports when groups are too few. */
static void test_grouped(void) {
    char pos[4096], norm[4096];
    snprintf(pos, sizeof pos, "%s", ms_data("data/nih1000/embeddings/test_pos.csv"));
    snprintf(norm, sizeof norm, "%s", ms_data("data/nih1000/embeddings/test_norm.csv"));
    ms_split s;
    ms_status st = ms_split_load(&s, pos, NULL, norm, NULL, MS_UNCERTAIN_POSITIVE);
    MS_EXPECT(st == MS_OK);
    if (st) return;
    MS_EXPECT(ms_split_group_by(&s, "NoSuchColumn") == MS_ERR_DATA && strstr(ms_last_error(), "NoSuchColumn"));
    MS_EXPECT(s.group == NULL);
    uint64_t fp = s.fingerprint;
    MS_EXPECT(ms_split_group_by(&s, "patientid") == MS_OK);
    MS_EXPECT(s.group && s.n_groups == 93 && s.fingerprint != fp); /* 93 test patients (data README) */
    int conds[2] = {ms_split_find_condition(&s, "Effusion"), ms_split_find_condition(&s, "Infiltration")};
    ms_task_shape sh = {.pool = 16, .pos_frac = 0.5, .query = 20, .query_pos_frac = 0.5};
    MS_EXPECT(ms_task_check(&s, &sh, conds, 2) == MS_OK);
    int *scratch = malloc(sizeof(int) * (size_t)s.n);
    ms_task t, u;
    ms_task_alloc(&t, &sh, NULL);
    ms_task_alloc(&u, &sh, NULL);
    int bad_group = 0, bad_count = 0, bad_disjoint = 0, bad_det = 0, bad_label = 0;
    for (int i = 0; i < 300; i++) {
        ms_task_sample(&t, &s, &sh, conds, 2, 5, 0, (uint64_t)i, scratch);
        ms_task_sample(&u, &s, &sh, conds, 2, 5, 0, (uint64_t)i, scratch);
        bad_det += memcmp(t.pool, u.pool, sizeof(int) * 16) || memcmp(t.query, u.query, sizeof(int) * 20);
        int np = 0, nq = 0;
        for (int a = 0; a < 16; a++) {
            np += t.pool_y[a];
            for (int b = a + 1; b < 16; b++) bad_group += s.group[t.pool[a]] == s.group[t.pool[b]];
            for (int b = 0; b < 20; b++) bad_disjoint += t.pool[a] == t.query[b];
            bad_label += t.pool_y[a] ? !is_pos(&s, t.cond, t.pool[a]) : t.pool[a] < s.n_pos;
        }
        for (int b = 0; b < 20; b++) {
            nq += t.query_y[b];
            bad_label += t.query_y[b] ? !is_pos(&s, t.cond, t.query[b]) : t.query[b] < s.n_pos;
        }
        bad_count += np != 8 || nq != 10;
    }
    if (bad_group || bad_count || bad_disjoint || bad_det || bad_label)
        fprintf(stderr, "grouped: %d repeated groups, %d counts, %d overlaps, %d nondeterministic, %d labels\n",
                bad_group, bad_count, bad_disjoint, bad_det, bad_label);
    MS_EXPECT(!bad_group && !bad_count && !bad_disjoint && !bad_det && !bad_label);
    /* without grouping the same shape repeats patients in most pools */
    int *g = s.group;
    s.group = NULL;
    int repeats = 0;
    for (int i = 0; i < 100; i++) {
        ms_task_sample(&t, &s, &sh, conds, 2, 5, 0, (uint64_t)i, scratch);
        int rep = 0;
        for (int a = 0; a < 16; a++)
            for (int b = a + 1; b < 16; b++) rep |= g[t.pool[a]] == g[t.pool[b]];
        repeats += rep;
    }
    s.group = g;
    MS_EXPECT(repeats > 50);
    /* Cardiomegaly's 31 test positives come from 8 patients */
    int cardio = ms_split_find_condition(&s, "Cardiomegaly");
    MS_EXPECT(ms_task_check(&s, &sh, &cardio, 1) == MS_OK); /* 8 pool positives: exactly fits */
    ms_task_shape big = {.pool = 30, .pos_frac = 0.5, .query = 20, .query_pos_frac = 0.5};
    MS_EXPECT(ms_task_check(&s, &big, &cardio, 1) == MS_ERR_DATA &&
              strstr(ms_last_error(), "condition 'Cardiomegaly' has positives from 8 groups of patientid, a pool of 15 "
                                      "positives without repeated groups needs 15"));
    ms_task_free(&t);
    ms_task_free(&u);
    free(scratch);
    ms_split_free(&s);
    /* a split built from arrays has no CSV to group by */
    make_split(&s);
    MS_EXPECT(ms_split_group_by(&s, "PatientID") == MS_ERR_ARG);
    ms_split_free(&s);
}

int main(void) {
    test_grouped();
    ms_split s;
    make_split(&s);
    MS_EXPECT(s.n_pos == 240 && s.n_norm == 300 && s.n == 540);
    MS_EXPECT(s.cond_count[0] == 80 && s.cond_count[3] == 10);
    MS_EXPECT(ms_split_find_condition(&s, "pleural_effusion") == 2);
    MS_EXPECT(ms_split_find_condition(&s, "rare one") == 3);
    MS_EXPECT(ms_split_find_condition(&s, "Edema") == -1);

    ms_task_shape sh = {.pool = 31, .pos_frac = 0.5, .query = 15, .query_pos_frac = 0.5};
    MS_EXPECT(ms_task_pool_pos(&sh) == 16 && ms_task_query_pos(&sh) == 8);
    int conds[3] = {0, 1, 2};
    MS_EXPECT(ms_task_check(&s, &sh, conds, 3) == MS_OK);
    int rare[1] = {3};
    MS_EXPECT(ms_task_check(&s, &sh, rare, 1) == MS_ERR_DATA);
    MS_EXPECT(strstr(ms_last_error(), "Rare_One") != NULL && strstr(ms_last_error(), "10 positives") != NULL);

    int *scratch = malloc(sizeof(int) * 300);
    ms_task t, u;
    ms_task_alloc(&t, &sh, NULL);
    ms_task_alloc(&u, &sh, NULL);
    int freq[3] = {0, 0, 0}, bad_size = 0, bad_disjoint = 0, bad_label = 0, bad_count = 0;
    const int N = 3000;
    for (int i = 0; i < N; i++) {
        ms_task_sample(&t, &s, &sh, conds, 3, 42, 0, (uint64_t)i, scratch);
        freq[t.cond]++;
        int pp = 0, qp = 0;
        char *seen = calloc((size_t)s.n, 1);
        for (int j = 0; j < t.P; j++) {
            if (seen[t.pool[j]]++) bad_disjoint++;
            pp += t.pool_y[j];
            if (t.pool_y[j] != (t.pool[j] < s.n_pos && is_pos(&s, t.cond, t.pool[j]))) bad_label++;
            if (!t.pool_y[j] && t.pool[j] < s.n_pos) bad_label++; /* negatives are normals */
        }
        for (int j = 0; j < t.Q; j++) {
            if (seen[t.query[j]]++) bad_disjoint++;
            qp += t.query_y[j];
            if (t.query_y[j] != (t.query[j] < s.n_pos && is_pos(&s, t.cond, t.query[j]))) bad_label++;
        }
        free(seen);
        if (t.P != 31 || t.Q != 15) bad_size++;
        if (pp != 16 || qp != 8) bad_count++;
    }
    MS_EXPECT(bad_size == 0);
    MS_EXPECT(bad_disjoint == 0);
    MS_EXPECT(bad_label == 0);
    MS_EXPECT(bad_count == 0);
    /* uniform over 3 conditions: each within 1000 +- 90 (about 3.5 sd) */
    for (int c = 0; c < 3; c++) {
        if (freq[c] < 910 || freq[c] > 1090) fprintf(stderr, "condition %d drawn %d times of %d\n", c, freq[c], N);
        MS_EXPECT(freq[c] >= 910 && freq[c] <= 1090);
    }

    /* determinism: task 17 is the same whether sampled first or after others */
    ms_task_sample(&t, &s, &sh, conds, 3, 42, 0, 17, scratch);
    for (int i = 0; i < 5; i++) ms_task_sample(&u, &s, &sh, conds, 3, 42, 0, (uint64_t)i, scratch);
    ms_task_sample(&u, &s, &sh, conds, 3, 42, 0, 17, scratch);
    MS_EXPECT(t.cond == u.cond && !memcmp(t.pool, u.pool, sizeof(int) * 31) && !memcmp(t.query, u.query, sizeof(int) * 15));
    MS_EXPECT(!memcmp(t.pool_y, u.pool_y, 31) && !memcmp(t.query_y, u.query_y, 15));
    /* other index, stream or seed: a different task */
    ms_task_sample(&u, &s, &sh, conds, 3, 42, 0, 18, scratch);
    MS_EXPECT(memcmp(t.pool, u.pool, sizeof(int) * 31) != 0);
    ms_task_sample(&u, &s, &sh, conds, 3, 42, 1, 17, scratch);
    MS_EXPECT(memcmp(t.pool, u.pool, sizeof(int) * 31) != 0);
    ms_task_sample(&u, &s, &sh, conds, 3, 43, 0, 17, scratch);
    MS_EXPECT(memcmp(t.pool, u.pool, sizeof(int) * 31) != 0);
    /* shuffled: positives are not all at the front */
    int front = 0;
    for (int j = 0; j < 16; j++) front += t.pool_y[j];
    MS_EXPECT(front < 16);

    /* not enough normals */
    ms_task_shape big = {.pool = 400, .pos_frac = 0.1, .query = 20, .query_pos_frac = 0.5};
    MS_EXPECT(ms_task_check(&s, &big, conds, 1) == MS_ERR_DATA);
    MS_EXPECT(strstr(ms_last_error(), "normal") != NULL);

    ms_task_free(&t);
    ms_task_free(&u);
    free(scratch);
    ms_split_free(&s);
    return ms_test_summary();
}
