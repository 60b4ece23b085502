/* test_compat.c: compatibility with the MedSelect authors' PyTorch code, against fixtures
 * that tests/fixtures/gen_compat.py computed by running their code (tests/fixtures/compat):
 *  - clinical inputs: our selector input of a task's pool equals their RandomTaskDataset's
 *    (embedding, then get_age_sex_lat's [sex, age, frontal]);
 *  - checkpoints: their LSTMSelector's weights, converted by tools/convert_checkpoint.py, as
 *    a tensors-only file (clinical inferred from D + 3) and as a medselect file from before
 *    the clinical_order key (columns [age, sex, frontal], reordered on load), all give their
 *    logits; a saved clinical checkpoint records clinical_order; the clinical decision
 *    (metadata, inference, --clinical) and its errors;
 *  - the reference's multinomial evaluation: a selection with repeats scored by the
 *    prototype classifier equals their meanPred.forward_selected (a repeat counts twice),
 *    and the selector strategy's multinomial decoding returns the K draws with repeats;
 *  - the CLI: select --scores with %.9g logits, --clinical, evaluate/analyze --decode and the
 *    rule in every report. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/checkpoint.h"
#include "medselect/io.h"
#include "medselect/predictor.h"
#include "medselect/safetensors.h"
#include "medselect/train.h"
#include "ms_test.h"

#define ED 6 /* embedding size of the fixtures */
#define NP 12 /* pool size */
#define NC (ED + MS_NCLIN)

static const char *fx(const char *name) {
    static char buf[8][1024];
    static int slot;
    char *b = buf[slot++ % 8];
    snprintf(b, 1024, "%s", ms_fixture(name));
    return b;
}

static float *load_f(const char *name, long want) {
    int nd;
    long shape[4];
    double *d = ms_load_npy_d(fx(name), &nd, shape);
    long n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    MS_CHECK(n == want);
    float *f = malloc(sizeof(float) * (size_t)n);
    for (long i = 0; i < n; i++) f[i] = (float)d[i];
    free(d);
    return f;
}

/* ---- 1. their feature code ----------------------------------------------------------------- */
static void test_features(void) {
    float *x = load_f("compat/task_x.npy", NP * NC);
    ms_split s;
    MS_CHECK(ms_split_load(&s, fx("compat/pos.csv"), NULL, fx("compat/norm.csv"), NULL, MS_UNCERTAIN_POSITIVE) == MS_OK);
    MS_EXPECT(s.clin_cols == 7);
    int rows[NP];
    for (int i = 0; i < NP; i++) { /* the split row of each pool item, by its embedding */
        rows[i] = -1;
        for (int r = 0; r < s.n && rows[i] < 0; r++)
            if (memcmp(s.emb + (size_t)r * ED, x + (size_t)i * NC, sizeof(float) * ED) == 0) rows[i] = r;
        MS_CHECK(rows[i] >= 0);
    }
    float ours[NP * NC];
    MS_EXPECT(ms_selector_input(ours, &s, rows, NP, 1, NULL) == MS_OK);
    ms_expect_close_f("selector input vs their RandomTaskDataset(use_asl=True)", ours, x, NP * NC, 1e-6, 1e-6);
    /* the columns are not symmetric: the old [age, sex, frontal] order would fail this */
    int differs = 0;
    for (int i = 0; i < NP; i++) differs |= fabsf(x[i * NC + ED] - x[i * NC + ED + 1]) > 0.1f;
    MS_EXPECT(differs);

    /* select's path: a pool table's features through ms_clin_to_input */
    ms_table t;
    MS_CHECK(ms_table_load(&t, fx("compat/pool.csv"), NULL) == MS_OK);
    float row[MS_NCLIN];
    for (int i = 0; i < NP; i++) {
        ms_clin_to_input(row, t.clin + (size_t)i * MS_NCLIN);
        ms_expect_close_f("pool table clinical columns vs theirs", row, x + (size_t)i * NC + ED, MS_NCLIN, 1e-6, 1e-6);
    }
    ms_table_free(&t);
    ms_split_free(&s);
    free(x);
}

/* ---- 2. checkpoints ------------------------------------------------------------------------ */
static void logits_of(const ms_lstm_params *p, const float *x, float *out) {
    ms_lstm_cache c;
    ms_lstm_cache_init(&c, p->D, p->H, 1, NP);
    ms_lstm_forward(out, &c, x, p, 1, NP);
    ms_lstm_cache_free(&c);
}

static void check_ckpt(const char *file, int want_clin_meta, int want_permuted, const float *x, const float *ref) {
    ms_lstm_params p;
    ms_selector_meta m;
    char what[256];
    if (ms_checkpoint_load(fx(file), &p, &m) != MS_OK) {
        fprintf(stderr, "%s: %s\n", file, ms_last_error());
        MS_EXPECT(0);
        return;
    }
    MS_EXPECT(m.clinical == want_clin_meta);
    MS_EXPECT(m.clinical_permuted == want_permuted);
    int clinical = -1;
    MS_EXPECT(ms_selector_resolve_clinical(file, &m, p.D, "pool.csv", ED, 0, &clinical) == MS_OK);
    MS_EXPECT(clinical == 1);
    MS_EXPECT(strcmp(m.clinical_order, MS_CLIN_ORDER) == 0 || strcmp(m.clinical_order, "age,sex,frontal") == 0);
    float got[NP];
    logits_of(&p, x, got);
    snprintf(what, sizeof what, "%s: logits vs their LSTMSelector", file);
    ms_expect_close_f(what, got, ref, NP, 2e-6, 1e-5);
    ms_lstm_params_free(&p);
    ms_selector_meta_free(&m);
}

static void test_checkpoints(void) {
    float *x = load_f("compat/task_x.npy", NP * NC), *ref = load_f("compat/logits_clinical.npy", NP);
    check_ckpt("compat/converted_clinical.safetensors", 1, 0, x, ref);
    check_ckpt("compat/old_order_clinical.safetensors", 1, 1, x, ref);
    check_ckpt("compat/tensors_only_clinical.safetensors", -1, 0, x, ref);

    /* the test can fail: the old file read without reordering scores differently */
    ms_st_file f;
    MS_CHECK(ms_st_read(&f, fx("compat/old_order_clinical.safetensors")) == MS_OK);
    ms_lstm_params raw;
    ms_lstm_params_init(&raw, NC, 5);
    for (int i = 0; i < MS_LSTM_NTENSORS; i++)
        MS_CHECK(ms_st_to_f32(&f, ms_st_find(&f, ms_lstm_tensor_name(i)), raw.t[i]) == MS_OK);
    ms_st_free(&f);
    float wrong[NP];
    logits_of(&raw, x, wrong);
    double dmax = 0;
    for (int i = 0; i < NP; i++) dmax = fmax(dmax, fabs(wrong[i] - ref[i]));
    MS_EXPECT(dmax > 1e-3);

    /* saving a clinical selector records the order; it loads back unchanged */
    ms_selector_meta m;
    ms_selector_meta_init(&m);
    m.clinical = 1;
    const char *path = ms_tmp("saved_clinical.safetensors");
    MS_CHECK(ms_checkpoint_save(path, &raw, &m) == MS_OK);
    ms_st_file g;
    MS_CHECK(ms_st_read(&g, path) == MS_OK);
    const char *order = ms_st_meta(&g, "clinical_order");
    MS_EXPECT(order && strcmp(order, MS_CLIN_ORDER) == 0);
    ms_st_free(&g);
    ms_lstm_params q;
    ms_selector_meta m2;
    MS_CHECK(ms_checkpoint_load(path, &q, &m2) == MS_OK);
    MS_EXPECT(m2.clinical_permuted == 0);
    MS_EXPECT(memcmp(q.t[MS_LSTM_W_IH], raw.t[MS_LSTM_W_IH], sizeof(float) * raw.size[MS_LSTM_W_IH]) == 0);
    ms_lstm_params_free(&q);
    ms_selector_meta_free(&m2);

    /* an explicit clinical_order other than ours is reordered too; a malformed one is refused */
    ms_st_entry e[MS_LSTM_NTENSORS];
    int64_t shapes[MS_LSTM_NTENSORS][2];
    for (int i = 0; i < MS_LSTM_NTENSORS; i++) {
        e[i].name = ms_lstm_tensor_name(i);
        e[i].dtype = MS_ST_F32;
        e[i].ndim = ms_lstm_tensor_shape(i, NC, 5, shapes[i]);
        e[i].shape = shapes[i];
        e[i].data = raw.t[i];
    }
    const char *kv_old[] = {"clinical_order", "age,sex,frontal"};
    const char *p2 = ms_tmp("foreign_old_order.safetensors");
    MS_CHECK(ms_st_write(p2, e, MS_LSTM_NTENSORS, kv_old, 1) == MS_OK);
    MS_CHECK(ms_checkpoint_load(p2, &q, &m2) == MS_OK);
    MS_EXPECT(m2.clinical == 1 && m2.clinical_permuted == 1);
    float got[NP];
    logits_of(&q, x, got);
    ms_expect_close_f("explicit clinical_order=age,sex,frontal reordered", got, ref, NP, 2e-6, 1e-5);
    ms_lstm_params_free(&q);
    ms_selector_meta_free(&m2);
    const char *kv_bad[] = {"clinical_order", "sex,age,sex"};
    MS_CHECK(ms_st_write(p2, e, MS_LSTM_NTENSORS, kv_bad, 1) == MS_OK);
    MS_EXPECT(ms_checkpoint_load(p2, &q, &m2) == MS_ERR_DATA);
    MS_EXPECT(strstr(ms_last_error(), "clinical_order") && strstr(ms_last_error(), p2));
    ms_lstm_params_free(&raw);

    /* the clinical decision */
    int c = -1;
    ms_selector_meta_init(&m);
    MS_EXPECT(ms_selector_resolve_clinical("ck", &m, ED, "data", ED, 0, &c) == MS_OK && c == 0);
    MS_EXPECT(ms_selector_resolve_clinical("ck", &m, ED + 3, "data", ED, 0, &c) == MS_OK && c == 1);
    MS_EXPECT(strcmp(m.clinical_order, MS_CLIN_ORDER) == 0 && m.clinical == 1);
    ms_selector_meta_init(&m);
    MS_EXPECT(ms_selector_resolve_clinical("ck", &m, ED + 3, "data", ED, 1, &c) == MS_OK && c == 1);
    ms_selector_meta_init(&m);
    MS_EXPECT(ms_selector_resolve_clinical("ck", &m, ED, "data", ED, 1, &c) == MS_ERR_DATA);
    MS_EXPECT(strstr(ms_last_error(), "ck:") && strstr(ms_last_error(), "+3 clinical"));
    MS_EXPECT(ms_selector_resolve_clinical("ck", &m, ED + 5, "data", ED, 0, &c) == MS_ERR_DATA);
    MS_EXPECT(strstr(ms_last_error(), "neither"));
    m.clinical = 0;
    MS_EXPECT(ms_selector_resolve_clinical("ck", &m, ED, "data", ED, 1, &c) == MS_ERR_DATA);
    MS_EXPECT(strstr(ms_last_error(), "--clinical"));
    MS_EXPECT(ms_selector_resolve_clinical("ck", &m, ED + 3, "data", ED, 0, &c) == MS_ERR_DATA);
    m.clinical = 1;
    MS_EXPECT(ms_selector_resolve_clinical("ck", &m, ED, "data", ED, 0, &c) == MS_ERR_DATA);
    free(x);
    free(ref);
}

/* ---- 3. the reference's multinomial evaluation ------------------------------------------------ */
static void test_multinomial(void) {
    float *x = load_f("compat/task_x.npy", NP * NC), *q = load_f("compat/query_x.npy", 8 * ED);
    float *idxf = load_f("compat/dup_idx.npy", 10), *yf = load_f("compat/dup_y.npy", 10);
    int nd;
    long shape[4];
    double *ref = ms_load_npy_d(fx("compat/dup_scores.npy"), &nd, shape);
    const int K = 10, Q = 8;
    float sel[10 * ED], qu[8 * ED], work[8 * 10 + 8 + 10], scores[8];
    uint8_t y[10];
    for (int j = 0; j < K; j++) {
        for (int k = 0; k < ED; k++) sel[j * ED + k] = x[(int)idxf[j] * NC + k];
        y[j] = yf[j] > 0.5f;
    }
    ms_rows_unit(sel, sel, K, ED);
    ms_rows_unit(qu, q, Q, ED);
    ms_predict(scores, qu, Q, sel, y, K, ED, MS_PRED_COSINE, work);
    double got[8];
    for (int i = 0; i < Q; i++) got[i] = scores[i];
    ms_expect_close_d("classifier on a selection with repeats vs their meanPred", got, ref, Q, 1e-5, 1e-5);
    /* scoring the distinct images only would differ (so the check above can fail) */
    float dsel[10 * ED];
    uint8_t dy[10];
    int m = 0;
    for (int j = 0; j < K; j++) {
        int dup = 0;
        for (int i = 0; i < j; i++) dup |= idxf[i] == idxf[j];
        if (dup) continue;
        memcpy(dsel + m * ED, sel + j * ED, sizeof(float) * ED);
        dy[m++] = y[j];
    }
    MS_EXPECT(m < K);
    ms_predict(scores, qu, Q, dsel, dy, m, ED, MS_PRED_COSINE, work);
    double dmax = 0;
    for (int i = 0; i < Q; i++) dmax = fmax(dmax, fabs(scores[i] - ref[i]));
    MS_EXPECT(dmax > 1e-3);

    /* the selector strategy's decoding rules on the fixture pool */
    ms_table t;
    MS_CHECK(ms_table_load(&t, fx("compat/pool.csv"), NULL) == MS_OK);
    ms_arena ws;
    ms_arena_init(&ws);
    for (int rule = MS_DECODE_GREEDY; rule <= MS_DECODE_MULTINOMIAL; rule++) {
        ms_selector s;
        memset(&s, 0, sizeof s);
        ms_selector_meta meta;
        MS_CHECK(ms_net_load(fx("compat/converted_clinical.safetensors"), &s.net, &meta) == MS_OK);
        s.clinical = 1;
        s.decode = (ms_decode)rule;
        ms_selector_meta_free(&meta);
        ms_strategy *st = ms_selector_strategy(&s);
        MS_EXPECT(strcmp(st->label, rule == MS_DECODE_GREEDY ? "medselect"
                                    : rule == MS_DECODE_SAMPLE ? "medselect (sample)" : "medselect (multinomial)") == 0);
        ms_pool pool = {.n = NP, .d = ED, .x = NULL, .raw = t.emb, .clin = t.clin};
        float logits[NP];
        MS_CHECK(st->score(st, &pool, 1, logits) == MS_OK);
        int repeats = 0;
        for (uint64_t seed = 0; seed < 20; seed++) {
            int pick[10];
            ms_arena_reset(&ws);
            MS_CHECK(st->select_scored(st, logits, NP, K, seed, pick, &ws) == MS_OK);
            int distinct = 0;
            for (int j = 0; j < K; j++) {
                MS_EXPECT(pick[j] >= 0 && pick[j] < NP);
                int seen = 0;
                for (int i = 0; i < j; i++) seen |= pick[i] == pick[j];
                distinct += !seen;
            }
            if (rule != MS_DECODE_MULTINOMIAL) {
                MS_EXPECT(distinct == K);
                continue;
            }
            repeats += distinct < K;
            /* the same draws as the policy's multinomial sampler with the task's stream */
            ms_rng r;
            ms_rng_init(&r, seed, MS_STREAM_POLICY, 0);
            int items[10], counts[NP];
            int n = ms_policy_sample_multinomial(items, counts, logits, NP, K, &r, &ws);
            MS_EXPECT(n == distinct);
            for (int i = 0; i < NP; i++) {
                int c = 0;
                for (int j = 0; j < K; j++) c += pick[j] == i;
                MS_EXPECT(c == counts[i]);
            }
        }
        if (rule == MS_DECODE_MULTINOMIAL) MS_EXPECT(repeats > 0); /* 10 draws of 12: repeats are the rule */
        ms_strategy_free(st);
    }
    ms_arena_free(&ws);
    ms_table_free(&t);
    free(x);
    free(q);
    free(idxf);
    free(yf);
    free(ref);
}

/* ---- 4. the command line ---------------------------------------------------------------------- */
/* Reads the logit column of a select --scores file (Path,logit,probability) into out (NP). */
static int read_scores(const char *path, float *out) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[1024];
    int n = 0;
    if (!fgets(line, sizeof line, f)) n = -1;
    while (n >= 0 && n < NP && fgets(line, sizeof line, f)) {
        char *c = strchr(line, ',');
        if (!c) break;
        out[n++] = strtof(c + 1, NULL);
    }
    fclose(f);
    return n;
}

static void test_cli(void) {
    char args[4096];
    char *out = NULL, *err = NULL;
    float *ref = load_f("compat/logits_clinical.npy", NP), *x = load_f("compat/task_x.npy", NP * NC);
    const char *files[] = {"converted_clinical", "old_order_clinical", "tensors_only_clinical"};
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args, "select --model %s --pool %s -k 3 --out %s --scores %s", fx(files[i]),
                 fx("compat/pool.csv"), ms_tmp("wl.csv"), ms_tmp("scores.csv"));
        /* fx() prefixes the fixture folder; the compat files live in its compat/ */
        char model[1024];
        snprintf(model, sizeof model, "compat/%s.safetensors", files[i]);
        snprintf(args, sizeof args, "select --model %s --pool %s -k 3 --out %s --scores %s", fx(model),
                 fx("compat/pool.csv"), ms_tmp("wl.csv"), ms_tmp("scores.csv"));
        int rc = ms_run_cli(args, &out, &err);
        if (rc != 0) fprintf(stderr, "%s: %s", files[i], err ? err : "");
        MS_EXPECT(rc == 0);
        float got[NP];
        MS_EXPECT(read_scores(ms_tmp("scores.csv"), got) == NP);
        char what[128];
        snprintf(what, sizeof what, "select --scores with %s vs their logits", files[i]);
        ms_expect_close_f(what, got, ref, NP, 2e-6, 1e-5);
        free(out);
        free(err);
    }
    /* %.9g: the printed logits read back as exactly the floats the library computes */
    {
        ms_lstm_params p;
        ms_selector_meta m;
        MS_CHECK(ms_checkpoint_load(fx("compat/converted_clinical.safetensors"), &p, &m) == MS_OK);
        float mine[NP], got[NP];
        logits_of(&p, x, mine);
        snprintf(args, sizeof args, "select --model %s --pool %s -k 3 --out %s --scores %s --threads 1",
                 fx("compat/converted_clinical.safetensors"), fx("compat/pool.csv"), ms_tmp("wl.csv"), ms_tmp("scores.csv"));
        MS_EXPECT(ms_run_cli(args, NULL, NULL) == 0);
        MS_EXPECT(read_scores(ms_tmp("scores.csv"), got) == NP);
        MS_EXPECT(memcmp(got, mine, sizeof got) == 0);
        ms_lstm_params_free(&p);
        ms_selector_meta_free(&m);
    }
    /* --clinical against a checkpoint that says clinical=0: exit 2, one line naming it */
    snprintf(args, sizeof args, "select --clinical --model %s --pool %s -k 3 --out %s", fx("compat/converted_plain.safetensors"),
             fx("compat/pool.csv"), ms_tmp("wl2.csv"));
    MS_EXPECT(ms_run_cli(args, &out, &err) == 2);
    MS_EXPECT(err && strstr(err, "converted_plain.safetensors") && strstr(err, "--clinical") && !ms_file_exists(ms_tmp("wl2.csv")));
    free(out);
    free(err);
    snprintf(args, sizeof args, "select --clinical --strategy random --pool %s -k 3 --out %s", fx("compat/pool.csv"), ms_tmp("wl2.csv"));
    MS_EXPECT(ms_run_cli(args, NULL, NULL) == 1);

    /* --uncertain's help says what the authors' code counts as positive */
    const char *cmds[] = {"evaluate", "analyze", "train"};
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args, "%s --help", cmds[i]);
        MS_EXPECT(ms_run_cli(args, &out, NULL) == 0);
        MS_EXPECT(out && strstr(out, "code counts only 1.0 as positive") && strstr(out, "use negative"));
        MS_EXPECT(out && (i == 2 || strstr(out, "--decode RULE")));
        free(out);
    }

    /* evaluate: the decoding rule in the text and the JSON report; --clinical forces */
    const char *rules[] = {"greedy", "sample", "multinomial"};
    for (int r = 0; r < 3; r++) {
        snprintf(args, sizeof args,
                 "evaluate --pos-csv %s --norm-csv %s --conditions Effusion --pool 12 --query 6 -k 2,4 --tasks 10 "
                 "--strategies random --model %s %s%s --clinical --json %s",
                 fx("compat/pos.csv"), fx("compat/norm.csv"), fx("compat/tensors_only_clinical.safetensors"),
                 r ? "--decode " : "", r ? rules[r] : "", ms_tmp("ev.json"));
        int rc = ms_run_cli(args, &out, &err);
        if (rc) fprintf(stderr, "%s", err ? err : "");
        MS_EXPECT(rc == 0);
        char want[64];
        snprintf(want, sizeof want, "decoding rule: %s:", rules[r]);
        MS_EXPECT(out && strstr(out, want));
        char *js = ms_read_file(ms_tmp("ev.json"), NULL);
        snprintf(want, sizeof want, "\"decode\":\t\"%s\"", rules[r]);
        MS_EXPECT(js && strstr(js, want) && strstr(js, "\"decode_rule\""));
        free(js);
        free(out);
        free(err);
    }
    snprintf(args, sizeof args, "evaluate --pos-csv %s --norm-csv %s --conditions Effusion --pool 12 --query 6 -k 4 --decode sample",
             fx("compat/pos.csv"), fx("compat/norm.csv"));
    MS_EXPECT(ms_run_cli(args, NULL, &err) == 1 && err && strstr(err, "--decode needs --model"));
    free(err);
    snprintf(args, sizeof args, "evaluate --pos-csv %s --norm-csv %s --model %s --decode topk",
             fx("compat/pos.csv"), fx("compat/norm.csv"), fx("compat/converted_clinical.safetensors"));
    MS_EXPECT(ms_run_cli(args, NULL, &err) == 1 && err && strstr(err, "greedy, sample, multinomial"));
    free(err);
    /* analyze: the rule in report.md and the JSON */
    snprintf(args, sizeof args,
             "analyze --pos-csv %s --norm-csv %s --conditions Effusion --pool 12 --query 6 -k 4 --tasks 10 "
             "--a %s --b kmeans --decode multinomial --permutations 50 --bootstrap 100 --out %s --json %s",
             fx("compat/pos.csv"), fx("compat/norm.csv"), fx("compat/converted_clinical.safetensors"), ms_tmp("an"),
             ms_tmp("an.json"));
    /* analyze draws figures with cairo, whose fontconfig caches live until the process
     * ends (test_analyze releases them in-process); under LeakSanitizer they are not ours */
    const char *asan = getenv("ASAN_OPTIONS");
    char saved[512];
    snprintf(saved, sizeof saved, "%s", asan ? asan : "");
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    int rc = ms_run_cli(args, &out, &err);
    if (asan) setenv("ASAN_OPTIONS", saved, 1);
    else unsetenv("ASAN_OPTIONS");
    if (rc) fprintf(stderr, "%s", err ? err : "");
    MS_EXPECT(rc == 0);
    char rep[1024];
    snprintf(rep, sizeof rep, "%s/report.md", ms_tmp("an"));
    char *md = ms_read_file(rep, NULL), *js = ms_read_file(ms_tmp("an.json"), NULL);
    MS_EXPECT(md && strstr(md, "decoding rule: multinomial:"));
    MS_EXPECT(js && strstr(js, "\"decode\":\t\"multinomial\""));
    free(md);
    free(js);
    free(out);
    free(err);
    free(ref);
    free(x);
}

int main(void) {
    test_features();
    test_checkpoints();
    test_multinomial();
    test_cli();
    return ms_test_summary();
}
