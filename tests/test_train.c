/* test_train.c: the selector's meta-training (train.h) and the trained selector as a
 * strategy, on small synthetic splits (synth.h):
 *  - Adam against torch.optim.Adam (fixtures from tests/fixtures/gen_train.py);
 *  - the files of a run (best/last/state safetensors, metrics.csv with one row per
 *    iteration and val_auroc every val_every iterations) and the checkpoint's metadata;
 *  - determinism: the same seed twice, and 1 versus 2 threads, give bit-identical weights;
 *  - resumption: a run stopped after 5 iterations (and one whose metrics.csv ran ahead of its
 *    state, with a torn last line) and resumed ends bit-identical to an uninterrupted run,
 *    with one metrics row per iteration; a resume with another learning rate is refused;
 *  - clinical features: used when present, MS_ERR_DATA when missing unless imputed;
 *  - the selector strategy: K distinct items, greedy = top-K of the forward logits, the same
 *    for 1 and 2 threads;
 *  - a learning signal: on a rare-positive setting the best meta-validation AUROC beats
 *    random selection.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "medselect/checkpoint.h"
#include "medselect/safetensors.h"
#include "medselect/synth.h"
#include "medselect/train.h"
#include "model/ms_arch_bilstm.h"
#include "ms_test.h"
#include "training/ms_train_internal.h"

static ms_split g_train, g_val, g_test;
static int g_seen[6] = {0, 1, 2, 3, 4, 5};

/* ---- helpers --------------------------------------------------------------------------- */

static void rm_run(const char *dir) {
    const char *files[] = {"best.safetensors", "last.safetensors", "state.safetensors", "metrics.csv"};
    for (int i = 0; i < 4; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
}

static char *run_dir(const char *name) {
    static char buf[8][4096];
    static int slot;
    char *b = buf[slot++ & 7];
    snprintf(b, 4096, "%s", ms_tmp(name));
    rm_run(b);
    return b;
}

static const char *in_dir(const char *dir, const char *file) {
    static char buf[8][4096];
    static int slot;
    char *b = buf[slot++ & 7];
    snprintf(b, 4096, "%s/%s", dir, file);
    return b;
}

/* The tiny model of most tests: 64 tasks of batch 8 -> 8 iterations per epoch, 16 in all. */
static void tiny_config(ms_train_config *c, const char *dir) {
    ms_train_defaults(c);
    c->shape.pool = 20;
    c->shape.pos_frac = 0.5;
    c->shape.query = 10;
    c->shape.query_pos_frac = 0.5;
    c->k = 4;
    c->hidden = 8;
    c->batch = 8;
    c->tasks = 64;
    c->epochs = 2;
    c->val_tasks = 16;
    c->val_every = 4;
    c->lr = 1e-2;
    c->lr_decay_epoch = 2;
    c->seed = 11;
    c->train_cond = g_seen;
    c->n_train_cond = 6;
    c->val_cond = g_seen;
    c->n_val_cond = 6;
    c->out_dir = dir;
}

/* Reads a checkpoint's tensors (in the order of model.h) into p (initialised here). */
static int load_weights(const char *path, ms_lstm_params *p) {
    ms_selector_meta m;
    ms_status st = ms_checkpoint_load(path, p, &m);
    if (st) {
        fprintf(stderr, "cannot load %s: %s\n", path, ms_last_error());
        return 0;
    }
    ms_selector_meta_free(&m);
    return 1;
}

/* 1 when the two checkpoints hold bit-identical tensors; else prints the largest relative
 * difference to *rel (if not NULL). */
static int same_weights(const char *a, const char *b, double *rel) {
    ms_lstm_params pa, pb;
    memset(&pa, 0, sizeof pa), memset(&pb, 0, sizeof pb);
    if (!load_weights(a, &pa)) return 0;
    if (!load_weights(b, &pb)) {
        ms_lstm_params_free(&pa);
        return 0;
    }
    int same = pa.count == pb.count && pa.D == pb.D && pa.H == pb.H &&
               memcmp(pa.memory, pb.memory, sizeof(float) * pa.count) == 0;
    if (rel) {
        double md = 0, mr = 0;
        for (size_t i = 0; pa.count == pb.count && i < pa.count; i++) {
            md = fmax(md, fabs((double)pa.memory[i] - pb.memory[i]));
            mr = fmax(mr, fabs((double)pb.memory[i]));
        }
        *rel = pa.count == pb.count ? (mr > 0 ? md / mr : md) : INFINITY;
    }
    ms_lstm_params_free(&pa);
    ms_lstm_params_free(&pb);
    return same;
}


/* Checks metrics.csv: the header, rows for iterations 1..rows in order, each once, with
 * 8 fields; val_auroc filled exactly at multiples of val_every and at the run's last
 * iteration `total`. */
static void check_metrics(const char *path, long rows, long total, int val_every) {
    char *s = ms_read_file(path, NULL);
    MS_EXPECT(s != NULL);
    if (!s) return;
    const char *header = "iteration,epoch,reward,baseline,advantage,val_auroc,lr,seconds\n";
    MS_EXPECT(strncmp(s, header, strlen(header)) == 0);
    long expect = 1;
    int rows_ok = 1, val_ok = 1;
    char *save = NULL;
    char *line = strtok_r(s + strlen(header), "\n", &save);
    for (; line; line = strtok_r(NULL, "\n", &save), expect++) {
        char *f[9] = {0};
        int nf = 0;
        char *p = line;
        f[nf++] = p;
        for (; *p; p++)
            if (*p == ',') {
                *p = 0;
                if (nf < 9) f[nf++] = p + 1;
            }
        if (nf != 8 || strtol(f[0], NULL, 10) != expect) {
            fprintf(stderr, "metrics row %ld: %d fields, iteration %s\n", expect, nf, f[0]);
            rows_ok = 0;
            break;
        }
        int want_val = expect % val_every == 0 || expect == total;
        double v = want_val && *f[5] ? strtod(f[5], NULL) : NAN;
        if (want_val != (*f[5] != 0) || (want_val && !(v >= 0 && v <= 1))) {
            fprintf(stderr, "metrics row %ld: val_auroc '%s'\n", expect, f[5]);
            val_ok = 0;
        }
    }
    if (expect - 1 != rows) fprintf(stderr, "metrics.csv has %ld rows, want %ld\n", expect - 1, rows);
    MS_EXPECT(rows_ok && expect - 1 == rows);
    MS_EXPECT(val_ok);
    free(s);
}

/* ---- Adam against PyTorch -------------------------------------------------------------- */
static void test_adam(void) {
    long sh[4];
    double *p0 = ms_load_npy_d(ms_fixture("train/adam_p0.npy"), NULL, sh);
    int n = (int)sh[0];
    double *g = ms_load_npy_d(ms_fixture("train/adam_g.npy"), NULL, NULL);
    double *pr = ms_load_npy_d(ms_fixture("train/adam_p.npy"), NULL, NULL);
    double *mr = ms_load_npy_d(ms_fixture("train/adam_m.npy"), NULL, NULL);
    double *vr = ms_load_npy_d(ms_fixture("train/adam_v.npy"), NULL, NULL);
    float *p = malloc(sizeof(float) * n), *gf = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n);
    float *m = calloc((size_t)n, sizeof(float)), *v = calloc((size_t)n, sizeof(float));
    for (int i = 0; i < n; i++) p[i] = (float)p0[i];
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < n; i++) gf[i] = (float)g[(size_t)s * n + i], ref[i] = (float)pr[(size_t)s * n + i];
        ms_adam_step(p, gf, m, v, (size_t)n, s + 1, 1e-3, 0.9, 0.999, 1e-8);
        char what[64];
        snprintf(what, sizeof what, "Adam parameters after step %d", s + 1);
        /* updates are ~1e-3: 1e-9 absolute is ~1e-6 of an update; rtol covers float rounding */
        ms_expect_close_f(what, p, ref, (size_t)n, 1e-9, 1e-6);
    }
    /* the moments are sums of terms of either sign (PyTorch forms them with fused
     * multiply-adds): compared relative to the largest entry */
    for (int i = 0; i < n; i++) ref[i] = (float)mr[i];
    ms_expect_relerr_f("Adam exp_avg after 3 steps", m, ref, (size_t)n, 1e-6);
    for (int i = 0; i < n; i++) ref[i] = (float)vr[i];
    ms_expect_relerr_f("Adam exp_avg_sq after 3 steps", v, ref, (size_t)n, 1e-6);
    free(p0), free(g), free(pr), free(mr), free(vr), free(p), free(gf), free(ref), free(m), free(v);
}

/* The vectorised, threaded Adam step against the plain loop: bitwise, on 1 and 2 threads,
 * over an odd length (vector tails) with gradients of all magnitudes; both leave the
 * gradient zeroed. */
static void test_adam_ref(void) {
    const size_t n = 200003;
    float *g = malloc(sizeof(float) * n), *gk = malloc(sizeof(float) * n), *p[3], *m[3], *v[3];
    for (int k = 0; k < 3; k++) {
        p[k] = malloc(sizeof(float) * n), m[k] = calloc(n, sizeof(float)), v[k] = calloc(n, sizeof(float));
        for (size_t i = 0; i < n; i++) p[k][i] = (float)(0.01 * ((double)(i % 997) - 498.0));
    }
    ms_rng r;
    ms_rng_init(&r, 7, 0, 0);
    int same = 1, zeroed = 1;
    for (long t = 1; t <= 4; t++) {
        for (size_t i = 0; i < n; i++)
            g[i] = (float)((2.0 * ms_rng_uniform(&r) - 1.0) * pow(10.0, -6.0 + 6.0 * ms_rng_uniform(&r)));
        for (int k = 0; k < 3; k++) {
            memcpy(gk, g, sizeof(float) * n);
            if (k == 0) {
                ms_adam_step_ref(p[0], gk, m[0], v[0], n, t, 1e-3, 0.9, 0.999, 1e-8);
            } else {
                ms_set_threads(k);
                ms_adam_step(p[k], gk, m[k], v[k], n, t, 1e-3, 0.9, 0.999, 1e-8);
            }
            for (size_t i = 0; i < n; i++) zeroed &= gk[i] == 0.0f && !signbit(gk[i]);
        }
    }
    for (int k = 1; k < 3; k++) {
        size_t bad = n;
        for (size_t i = 0; i < n && bad == n; i++)
            if (memcmp(&p[k][i], &p[0][i], 4) || memcmp(&m[k][i], &m[0][i], 4) || memcmp(&v[k][i], &v[0][i], 4))
                bad = i;
        if (bad < n) {
            fprintf(stderr, "Adam step (%d threads) differs from the plain loop at %zu: p %.9g vs %.9g\n", k, bad,
                    p[k][bad], p[0][bad]);
            same = 0;
        }
    }
    MS_EXPECT(same);
    MS_EXPECT(zeroed);
    free(gk);
    for (int k = 0; k < 3; k++) free(p[k]), free(m[k]), free(v[k]);
    free(g);
}

/* ---- a run, its files, determinism ----------------------------------------------------- */
static void test_run_files(void) {
    char *dir = run_dir("run_a");
    ms_train_config c;
    tiny_config(&c, dir);
    ms_train_summary s;
    ms_set_threads(2);
    ms_status st = ms_train(&g_train, &g_val, &c, &s);
    MS_EXPECT(st == MS_OK);
    if (st) {
        fprintf(stderr, "ms_train: %s\n", ms_last_error());
        return;
    }
    MS_EXPECT(s.iterations == 16);
    MS_EXPECT(s.best_val >= 0 && s.best_val <= 1);
    MS_EXPECT(s.best_iteration >= 0 && s.best_iteration <= 16 && s.best_iteration % 4 == 0);
    MS_EXPECT(s.random_val > 0 && s.random_val < 1);
    const char *files[] = {"best.safetensors", "last.safetensors", "state.safetensors", "metrics.csv"};
    for (int i = 0; i < 4; i++) MS_EXPECT(ms_file_exists(in_dir(dir, files[i])));
    check_metrics(in_dir(dir, "metrics.csv"), 16, 16, 4);
    /* the learning rate decays by 0.1 from epoch 2 (iteration 9) on */
    char *mt = ms_read_file(in_dir(dir, "metrics.csv"), NULL);
    MS_EXPECT(mt && strstr(mt, "\n8,1,") && strstr(mt, "\n9,2,"));
    if (mt) {
        char *r8 = strstr(mt, "\n8,1,"), *r9 = strstr(mt, "\n9,2,");
        MS_EXPECT(r8 && strstr(r8, ",0.01,") && strstr(r8, ",0.01,") < strstr(r8 + 1, "\n"));
        MS_EXPECT(r9 && strstr(r9, ",0.001,") && strstr(r9, ",0.001,") < strstr(r9 + 1, "\n"));
        free(mt);
    }

    /* best.safetensors: the selector with its metadata */
    ms_lstm_params p;
    ms_selector_meta m;
    st = ms_checkpoint_load(in_dir(dir, "best.safetensors"), &p, &m);
    MS_EXPECT(st == MS_OK);
    if (!st) {
        MS_EXPECT(p.D == g_train.d && p.H == 8);
        MS_EXPECT(m.format_version == 1);
        MS_EXPECT(m.clinical == 0);
        MS_EXPECT(m.K == 4);
        MS_EXPECT(strcmp(m.sampler, "without-replacement") == 0);
        MS_EXPECT(m.has_seed && m.seed == 11);
        char fp[64];
        snprintf(fp, sizeof fp, "%016llx", (unsigned long long)g_train.fingerprint);
        MS_EXPECT(m.data && strstr(m.data, fp));
        snprintf(fp, sizeof fp, "%016llx", (unsigned long long)g_val.fingerprint);
        MS_EXPECT(m.data && strstr(m.data, fp));
        ms_lstm_params_free(&p);
        ms_selector_meta_free(&m);
    }
    /* the state holds weights + both Adam moments, and progress 16 */
    ms_st_file f;
    st = ms_st_read(&f, in_dir(dir, "state.safetensors"));
    MS_EXPECT(st == MS_OK);
    if (!st) {
        MS_EXPECT(f.n == 3 * MS_LSTM_NTENSORS);
        const char *it = ms_st_meta(&f, "iteration");
        MS_EXPECT(it && strcmp(it, "16") == 0);
        ms_st_free(&f);
    }
    /* last equals the weights in the state */
    ms_lstm_params pl;
    ms_net ps, pm, pv;
    MS_CHECK(ms_net_init(&ps, &ms_arch_bilstm, g_train.d, 8) == MS_OK);
    MS_CHECK(ms_net_init(&pm, &ms_arch_bilstm, g_train.d, 8) == MS_OK);
    MS_CHECK(ms_net_init(&pv, &ms_arch_bilstm, g_train.d, 8) == MS_OK);
    ms_train_state ts;
    if (load_weights(in_dir(dir, "last.safetensors"), &pl)) {
        ms_st_file sf;
        if (ms_st_read(&sf, in_dir(dir, "state.safetensors")) == MS_OK) {
            const char *sig = ms_st_meta(&sf, "signature");
            MS_EXPECT(sig != NULL);
            st = ms_train_state_load(in_dir(dir, "state.safetensors"), sig ? sig : "", &ps, &pm, &pv, &ts);
            MS_EXPECT(st == MS_OK && ts.iteration == 16);
            MS_EXPECT(memcmp(ps.params, pl.memory, sizeof(float) * pl.count) == 0);
            /* Adam's second moment is non-negative and not all zero after 16 steps */
            int vpos = 0, vneg = 0;
            for (size_t i = 0; i < pv.count; i++) vpos += pv.params[i] > 0, vneg += pv.params[i] < 0;
            MS_EXPECT(vpos > 0 && vneg == 0);
            ms_st_free(&sf);
        }
        ms_lstm_params_free(&pl);
    }
    ms_net_free(&ps), ms_net_free(&pm), ms_net_free(&pv);

    /* the weights moved away from the initialisation */
    ms_lstm_params init;
    ms_lstm_params_init(&init, g_train.d, 8);
    ms_lstm_params_randomize(&init, 11);
    ms_lstm_params last;
    if (load_weights(in_dir(dir, "last.safetensors"), &last)) {
        MS_EXPECT(memcmp(init.memory, last.memory, sizeof(float) * init.count) != 0);
        ms_lstm_params_free(&last);
    }
    ms_lstm_params_free(&init);

    /* determinism: the same seed again, and with 1 thread */
    char *dir2 = run_dir("run_a2");
    c.out_dir = dir2;
    st = ms_train(&g_train, &g_val, &c, &s);
    MS_EXPECT(st == MS_OK);
    MS_EXPECT(same_weights(in_dir(dir, "last.safetensors"), in_dir(dir2, "last.safetensors"), NULL));
    MS_EXPECT(same_weights(in_dir(dir, "best.safetensors"), in_dir(dir2, "best.safetensors"), NULL));
    char *dir1 = run_dir("run_a1");
    c.out_dir = dir1;
    ms_set_threads(1);
    st = ms_train(&g_train, &g_val, &c, &s);
    ms_set_threads(2);
    MS_EXPECT(st == MS_OK);
    double rel = INFINITY;
    int same = same_weights(in_dir(dir, "last.safetensors"), in_dir(dir1, "last.safetensors"), &rel);
    printf("1 vs 2 threads: last.safetensors %s (largest relative difference %.3g)\n",
           same ? "bit-identical" : "differs", rel);
    MS_EXPECT(same);
    /* another seed gives other weights */
    char *dir3 = run_dir("run_a3");
    c.out_dir = dir3;
    c.seed = 12;
    st = ms_train(&g_train, &g_val, &c, &s);
    MS_EXPECT(st == MS_OK);
    MS_EXPECT(!same_weights(in_dir(dir, "last.safetensors"), in_dir(dir3, "last.safetensors"), NULL));
}

/* metrics.csv without its last column (the seconds), NULL when unreadable. */
static char *metrics_untimed(const char *path) {
    char *s = ms_read_file(path, NULL);
    if (!s) return NULL;
    char *out = s, *line = s;
    for (char *p = s;; p++) {
        if (*p != '\n' && *p) continue;
        char *comma = NULL;
        for (char *q = line; q < p; q++)
            if (*q == ',') comma = q;
        size_t n = (size_t)((comma ? comma : p) - line);
        memmove(out, line, n);
        out += n;
        if (!*p) break;
        *out++ = '\n';
        line = p + 1;
    }
    *out = 0;
    return s;
}

/* Validation from row indices (the bilstm's prepare_rows: the val split projected once)
 * against validation from built input batches (run(), forced by a projection budget of 0):
 * the same AUROCs, so the same metrics and checkpoints, bitwise. */
static void test_val_rows(void) {
    ms_train_config c;
    char *dir = run_dir("run_vrows"), *dir0 = run_dir("run_vbatch");
    tiny_config(&c, dir);
    c.epochs = 1;
    c.val_tasks = 4 * g_val.n / c.shape.pool + 8; /* the split is under a quarter of the scored items */
    ms_train_summary s, s0;
    ms_set_threads(2);
    ms_status st = ms_train(&g_train, &g_val, &c, &s);
    size_t budget = ms_bilstm_proj_budget;
    ms_bilstm_proj_budget = 0;
    c.out_dir = dir0;
    if (!st) st = ms_train(&g_train, &g_val, &c, &s0);
    ms_bilstm_proj_budget = budget;
    MS_EXPECT(st == MS_OK);
    if (st) return;
    MS_EXPECT(s.best_val == s0.best_val && s.random_val == s0.random_val && s.best_iteration == s0.best_iteration);
    MS_EXPECT(same_weights(in_dir(dir, "best.safetensors"), in_dir(dir0, "best.safetensors"), NULL));
    MS_EXPECT(same_weights(in_dir(dir, "last.safetensors"), in_dir(dir0, "last.safetensors"), NULL));
    char *a = metrics_untimed(in_dir(dir, "metrics.csv")), *b = metrics_untimed(in_dir(dir0, "metrics.csv"));
    MS_EXPECT(a && b && strcmp(a, b) == 0);
    if (a && b && strcmp(a, b)) fprintf(stderr, "metrics differ:\n%s\nvs\n%s\n", a, b);
    free(a);
    free(b);
}

/* ---- resumption ------------------------------------------------------------------------ */
static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    MS_CHECK(a && b);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) MS_CHECK(fwrite(buf, 1, n, b) == n);
    fclose(a);
    MS_CHECK(fclose(b) == 0);
}

static void test_resume(void) {
    /* the uninterrupted reference: test_run_files' run_a (same config) */
    const char *ref = ms_tmp("run_a");
    ms_train_config c;
    ms_train_summary s;

    /* stopped after 5 iterations: state at 5 (not a validation point), no last.safetensors */
    char *dir = run_dir("run_resume");
    tiny_config(&c, dir);
    c.max_iterations = 5;
    ms_status st = ms_train(&g_train, &g_val, &c, &s);
    MS_EXPECT(st == MS_OK && s.iterations == 5);
    MS_EXPECT(!ms_file_exists(in_dir(dir, "last.safetensors")));
    MS_EXPECT(ms_file_exists(in_dir(dir, "state.safetensors")));
    check_metrics(in_dir(dir, "metrics.csv"), 5, 16, 4);

    /* a resume with another learning rate is refused, and leaves the files alone */
    ms_train_config other = c;
    other.lr = 3e-3;
    other.resume = 1;
    other.max_iterations = 0;
    st = ms_train(&g_train, &g_val, &other, &s);
    MS_EXPECT(st == MS_ERR_DATA);
    MS_EXPECT(strstr(ms_last_error(), "state.safetensors") && strstr(ms_last_error(), "other settings"));
    MS_EXPECT(!ms_file_exists(in_dir(dir, "last.safetensors")));
    check_metrics(in_dir(dir, "metrics.csv"), 5, 16, 4);
    /* a resume without a state (a run killed before saving one) starts from scratch and
     * ends as the uninterrupted run; the missing parent folders of --out are created */
    char *empty = run_dir("run_nostate");
    char nested[4200];
    snprintf(nested, sizeof nested, "%s/new/parents", empty);
    rm_run(nested); /* a previous run of this test left one */
    other = c;
    other.out_dir = nested;
    other.resume = 1;
    other.max_iterations = 0;
    st = ms_train(&g_train, &g_val, &other, &s);
    MS_EXPECT(st == MS_OK && s.iterations == 16);
    MS_EXPECT(same_weights(in_dir(ref, "last.safetensors"), in_dir(nested, "last.safetensors"), NULL));
    MS_EXPECT(!ms_file_exists(in_dir(nested, ".medselect.lock"))); /* released */

    /* resume to the end */
    c.resume = 1;
    c.max_iterations = 0;
    st = ms_train(&g_train, &g_val, &c, &s);
    MS_EXPECT(st == MS_OK && s.iterations == 16);
    double rel = INFINITY;
    int same = same_weights(in_dir(ref, "last.safetensors"), in_dir(dir, "last.safetensors"), &rel);
    if (!same) fprintf(stderr, "resumed run differs: largest relative difference %.3g\n", rel);
    MS_EXPECT(same);
    MS_EXPECT(same_weights(in_dir(ref, "best.safetensors"), in_dir(dir, "best.safetensors"), NULL));
    check_metrics(in_dir(dir, "metrics.csv"), 16, 16, 4);

    /* as after a kill: metrics.csv ran ahead of the state (rows 6, 7 and a torn line) */
    dir = run_dir("run_resume2");
    tiny_config(&c, dir);
    c.max_iterations = 5;
    st = ms_train(&g_train, &g_val, &c, &s);
    MS_EXPECT(st == MS_OK);
    copy_file(in_dir(dir, "state.safetensors"), in_dir(dir, "state5"));
    c.resume = 1;
    c.max_iterations = 2;
    st = ms_train(&g_train, &g_val, &c, &s);
    MS_EXPECT(st == MS_OK && s.iterations == 7);
    copy_file(in_dir(dir, "state5"), in_dir(dir, "state.safetensors"));
    unlink(in_dir(dir, "state5"));
    FILE *f = fopen(in_dir(dir, "metrics.csv"), "ab");
    fputs("8,1,0.5", f);
    fclose(f);
    c.max_iterations = 0;
    st = ms_train(&g_train, &g_val, &c, &s);
    MS_EXPECT(st == MS_OK && s.iterations == 16);
    MS_EXPECT(same_weights(in_dir(ref, "last.safetensors"), in_dir(dir, "last.safetensors"), NULL));
    check_metrics(in_dir(dir, "metrics.csv"), 16, 16, 4);

    /* resuming a finished run changes nothing */
    st = ms_train(&g_train, &g_val, &c, &s);
    MS_EXPECT(st == MS_OK && s.iterations == 16);
    MS_EXPECT(same_weights(in_dir(ref, "last.safetensors"), in_dir(dir, "last.safetensors"), NULL));
    check_metrics(in_dir(dir, "metrics.csv"), 16, 16, 4);
}

/* ---- clinical features ----------------------------------------------------------------- */
static void test_clinical(void) {
    char *dir = run_dir("run_clin");
    ms_train_config c;
    tiny_config(&c, dir);
    c.clinical = 1;
    c.epochs = 1;
    ms_train_summary s;
    MS_EXPECT(g_train.clin != NULL && g_train.clin_cols == 7);
    ms_status st = ms_train(&g_train, &g_val, &c, &s);
    MS_EXPECT(st == MS_OK);
    if (st) fprintf(stderr, "clinical training: %s\n", ms_last_error());
    ms_lstm_params p;
    ms_selector_meta m;
    if (!st && ms_checkpoint_load(in_dir(dir, "best.safetensors"), &p, &m) == MS_OK) {
        MS_EXPECT(m.clinical == 1 && p.D == g_train.d + MS_NCLIN);
        ms_lstm_params_free(&p);
        ms_selector_meta_free(&m);
    } else {
        MS_EXPECT(0);
    }

    /* the same embeddings without clinical columns */
    ms_split tr, va;
    const ms_split *src[2] = {&g_train, &g_val};
    ms_split *dst[2] = {&tr, &va};
    for (int k = 0; k < 2; k++) {
        const ms_split *a = src[k];
        float *lab = calloc((size_t)a->n_pos * a->n_cond, sizeof(float));
        for (int ci = 0; ci < a->n_cond; ci++)
            for (int j = 0; j < a->cond_count[ci]; j++) lab[(size_t)a->cond_rows[ci][j] * a->n_cond + ci] = 1;
        ms_split_from_arrays(dst[k], a->emb, a->n_pos, a->emb + (size_t)a->n_pos * a->d, a->n_norm, a->d, lab,
                             a->n_cond, (const char *const *)a->cond);
        free(lab);
    }
    MS_EXPECT(tr.clin == NULL);
    dir = run_dir("run_noclin");
    c.out_dir = dir;
    st = ms_train(&tr, &va, &c, &s);
    MS_EXPECT(st == MS_ERR_DATA);
    MS_EXPECT(strstr(ms_last_error(), "clinical") && strstr(ms_last_error(), "(positives array)"));
    /* refused before anything is written */
    MS_EXPECT(!ms_file_exists(in_dir(dir, "metrics.csv")) && !ms_file_exists(in_dir(dir, "best.safetensors")));
    c.impute_clinical = 1;
    st = ms_train(&tr, &va, &c, &s);
    MS_EXPECT(st == MS_OK);
    MS_EXPECT(ms_file_exists(in_dir(dir, "last.safetensors")));
    ms_split_free(&tr);
    ms_split_free(&va);
}

/* ---- the selector as a strategy -------------------------------------------------------- */
static void selector_from(const char *path, ms_selector *sel, int sample) {
    memset(sel, 0, sizeof *sel);
    ms_selector_meta m;
    MS_CHECK(ms_net_load(path, &sel->net, &m) == MS_OK);
    sel->clinical = m.clinical == 1;
    sel->decode = sample ? MS_DECODE_SAMPLE : MS_DECODE_GREEDY;
    sel->sampler = MS_SAMPLER_WOR;
    ms_selector_meta_free(&m);
}

static void test_selector(void) {
    const char *ckpt = in_dir(ms_tmp("run_a"), "best.safetensors");
    if (!ms_file_exists(ckpt)) {
        MS_EXPECT(0);
        return;
    }
    const int n = 30, K = 4, D = g_test.d;
    /* a pool of test rows: 10 positives and 20 normals */
    int rows[30];
    for (int i = 0; i < n; i++) rows[i] = i < 10 ? i : g_test.n_pos + i;
    float *raw = malloc(sizeof(float) * n * D), *unit = malloc(sizeof(float) * n * D);
    ms_gather_rows(raw, g_test.emb, rows, n, D);
    ms_gather_rows(unit, g_test.unit, rows, n, D);
    ms_pool pool = {.n = n, .d = D, .x = unit, .raw = raw, .clin = NULL};

    /* reference logits */
    ms_selector sel;
    selector_from(ckpt, &sel, 0);
    ms_lstm_cache cache;
    ms_lstm_params view;
    ms_net_lstm_view(&sel.net, sel.net.params, &view);
    ms_lstm_cache_init(&cache, D, sel.net.H, 1, n);
    float logits[30];
    ms_lstm_forward(logits, &cache, raw, &view, 1, n);
    ms_lstm_cache_free(&cache);
    int order[30];
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = 0; i < n; i++) /* selection sort by decreasing logit, ties by index */
        for (int j = i + 1; j < n; j++)
            if (logits[order[j]] > logits[order[i]] || (logits[order[j]] == logits[order[i]] && order[j] < order[i])) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }

    ms_strategy *strat = ms_selector_strategy(&sel);
    MS_EXPECT(strcmp(strat->name, "medselect") == 0);
    MS_EXPECT(sel.net.params == NULL); /* ownership moved */
    ms_arena ws;
    ms_arena_init(&ws);
    int pick1[4], pick2[4];
    ms_set_threads(1);
    MS_EXPECT(strat->select(strat, &pool, K, 0, pick1, &ws) == MS_OK);
    ms_arena_reset(&ws);
    ms_set_threads(2);
    MS_EXPECT(strat->select(strat, &pool, K, 0, pick2, &ws) == MS_OK);
    ms_arena_reset(&ws);
    MS_EXPECT(memcmp(pick1, pick2, sizeof pick1) == 0);
    int distinct = 1, topk = 1;
    for (int i = 0; i < K; i++) {
        if (pick1[i] < 0 || pick1[i] >= n) distinct = 0;
        for (int j = 0; j < i; j++) distinct &= pick1[i] != pick1[j];
        /* the set of picks is the top K (as a set: ties in order aside) */
        int found = 0;
        for (int j = 0; j < K; j++) found |= pick1[i] == order[j];
        topk &= found;
    }
    MS_EXPECT(distinct);
    MS_EXPECT(topk);
    /* strictly: picks in decreasing logit order */
    for (int i = 1; i < K; i++) MS_EXPECT(logits[pick1[i - 1]] >= logits[pick1[i]]);

    /* from several threads at once, each with its own arena: the same picks */
    int par[4][4];
    int okp = 1;
#pragma omp parallel for num_threads(2)
    for (int r = 0; r < 4; r++) {
        ms_arena w;
        ms_arena_init(&w);
        if (strat->select(strat, &pool, K, 0, par[r], &w) != MS_OK) okp = 0;
        ms_arena_free(&w);
    }
    for (int r = 0; r < 4; r++) okp &= memcmp(par[r], pick1, sizeof pick1) == 0;
    MS_EXPECT(okp);

    /* K larger than the pool, and a pool of another dimension: data errors */
    int big[40];
    MS_EXPECT(strat->select(strat, &pool, n + 1, 0, big, &ws) == MS_ERR_DATA);
    ms_arena_reset(&ws);
    ms_pool wrong = pool;
    wrong.d = D - 1;
    MS_EXPECT(strat->select(strat, &wrong, K, 0, pick2, &ws) == MS_ERR_DATA);
    ms_arena_reset(&ws);
    ms_strategy_free(strat);

    /* sampled: K distinct, reproducible per seed, the same for 1 and 2 threads */
    selector_from(ckpt, &sel, 1);
    strat = ms_selector_strategy(&sel);
    int sa[4], sb[4], sc[4];
    ms_set_threads(1);
    MS_EXPECT(strat->select(strat, &pool, K, 5, sa, &ws) == MS_OK);
    ms_arena_reset(&ws);
    ms_set_threads(2);
    MS_EXPECT(strat->select(strat, &pool, K, 5, sb, &ws) == MS_OK);
    ms_arena_reset(&ws);
    MS_EXPECT(memcmp(sa, sb, sizeof sa) == 0);
    distinct = 1;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < i; j++) distinct &= sa[i] != sa[j];
    MS_EXPECT(distinct);
    int differs = 0;
    for (uint64_t seed = 6; seed < 16 && !differs; seed++) {
        MS_EXPECT(strat->select(strat, &pool, K, seed, sc, &ws) == MS_OK);
        ms_arena_reset(&ws);
        differs = memcmp(sa, sc, sizeof sa) != 0;
    }
    MS_EXPECT(differs);
    ms_strategy_free(strat);

    /* a clinical selector refuses a pool without clinical features */
    const char *cckpt = in_dir(ms_tmp("run_clin"), "best.safetensors");
    if (ms_file_exists(cckpt)) {
        selector_from(cckpt, &sel, 0);
        strat = ms_selector_strategy(&sel);
        MS_EXPECT(strat->select(strat, &pool, K, 0, pick2, &ws) == MS_ERR_DATA);
        ms_arena_reset(&ws);
        float *clin = malloc(sizeof(float) * n * MS_NCLIN);
        ms_gather_rows(clin, g_test.clin, rows, n, MS_NCLIN);
        ms_pool cp = pool;
        cp.clin = clin;
        MS_EXPECT(strat->select(strat, &cp, K, 0, pick2, &ws) == MS_OK);
        ms_arena_reset(&ws);
        ms_strategy_free(strat);
        free(clin);
    }
    ms_arena_free(&ws);
    free(raw);
    free(unit);
}

/* ---- a learning signal -----------------------------------------------------------------
 * Rare positives (4 of a pool of 40), K = 5: random selection often labels no positive at
 * all. After 80 REINFORCE iterations the selector must beat both random selection and the
 * untrained selector (the validation AUROC of the initial weights, measured by a run with
 * lr 0). The synthetic conditions are made stronger (effect 2) in this test's data so that
 * there is something to learn in few iterations. */
static void test_learns(const ms_split *tr, const ms_split *va) {
    char *dir = run_dir("run_learn");
    ms_train_config c;
    ms_train_defaults(&c);
    c.shape.pool = 40;
    c.shape.pos_frac = 0.1;
    c.shape.query = 20;
    c.shape.query_pos_frac = 0.5;
    c.k = 5;
    c.hidden = 16;
    c.batch = 32;
    c.tasks = 32 * 80;
    c.epochs = 1;
    c.val_tasks = 128;
    c.val_every = 10;
    c.lr = 3e-3;
    c.lr_decay_epoch = 0;
    c.seed = 4;
    c.train_cond = g_seen;
    c.n_train_cond = 6;
    c.val_cond = g_seen;
    c.n_val_cond = 6;
    c.out_dir = dir;
    ms_train_summary s, s0;
    double t0 = ms_now();
    ms_status st = ms_train(tr, va, &c, &s);
    MS_EXPECT(st == MS_OK);
    double secs = ms_now() - t0;
    /* the untrained selector: one iteration with lr 0 leaves the initial weights the best */
    ms_train_config z = c;
    z.lr = 0;
    z.tasks = c.batch;
    z.out_dir = run_dir("run_learn0");
    st = ms_train(tr, va, &z, &s0);
    MS_EXPECT(st == MS_OK && s0.best_iteration == 0);
    MS_EXPECT(s0.random_val == s.random_val);
    printf("learning signal: %d iterations in %.1f s; best val AUROC %.4f at iteration %d; random selection %.4f "
           "(margin %+.4f); untrained selector %.4f (margin %+.4f)\n",
           s.iterations, secs, s.best_val, s.best_iteration, s.random_val, s.best_val - s.random_val, s0.best_val,
           s.best_val - s0.best_val);
    MS_EXPECT(s.best_iteration > 0);
    MS_EXPECT(s.best_val > s.random_val + 0.05);
    MS_EXPECT(s.best_val > s0.best_val + 0.03);
}

int main(void) {
    ms_synth_config sc;
    ms_synth_defaults(&sc);
    sc.d = 16;
    sc.n_pos[0] = 600, sc.n_pos[1] = 400, sc.n_pos[2] = 200;
    sc.n_norm[0] = 400, sc.n_norm[1] = 300, sc.n_norm[2] = 200;
    sc.seed = 5;
    ms_synth_generate(&sc, &g_train, &g_val, &g_test);

    double t = ms_now();
    test_adam();
    test_adam_ref();
    test_run_files();
    test_val_rows();
    printf("run + determinism: %.1f s\n", ms_now() - t), t = ms_now();
    test_resume();
    printf("resume: %.1f s\n", ms_now() - t), t = ms_now();
    test_clinical();
    test_selector();
    printf("clinical + selector: %.1f s\n", ms_now() - t), t = ms_now();
    ms_split_free(&g_test);
    ms_split_free(&g_val);
    ms_split_free(&g_train);
    /* the learning-signal data: clearer conditions (effect 2) */
    sc.effect = 2.0;
    ms_synth_generate(&sc, &g_train, &g_val, &g_test);
    test_learns(&g_train, &g_val);
    printf("learning signal: %.1f s\n", ms_now() - t);

    ms_split_free(&g_train);
    ms_split_free(&g_val);
    ms_split_free(&g_test);
    return ms_test_summary();
}
