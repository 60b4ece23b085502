/* test_train_cli.c: black-box tests of `medselect train`, `medselect select` and
 * `evaluate --model` on the synthetic data written by `medselect demo --write-data`:
 *  - a small train run: the summary line and the files of the run;
 *  - a run killed with SIGKILL once its first state is saved, then resumed with --resume,
 *    ends with a last.safetensors byte-identical to an uninterrupted run's (the checkpoint
 *    metadata holds nothing time-dependent) and one metrics row per iteration;
 *  - select: the worklist (rank, Path, logit, probability; K distinct items by decreasing
 *    logit, the top K of the scores file), the scores file (one row per item, probabilities
 *    summing to 1), --sample reproducible per seed, --strategy kmedoids, and a checkpoint
 *    holding only the ten tensors (as saved from PyTorch) giving the same worklist;
 *  - evaluate --model lists a "medselect" row;
 *  - errors: exit code 2, one stderr line naming the file, no output file left;
 *  - --help of train and select mentions every option used here. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "medselect/gemm.h"
#include "medselect/io.h"
#include "medselect/safetensors.h"
#include "ms_test.h"

static char g_data[4096]; /* the demo's data folder */

/* ---- helpers --------------------------------------------------------------------------- */

/* snprintf that aborts on truncation (paths and command lines here are far shorter) */
static void fmt(char *buf, size_t n, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmt(char *buf, size_t n, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int k = vsnprintf(buf, n, f, ap);
    va_end(ap);
    MS_CHECK(k >= 0 && (size_t)k < n);
}


static int count_lines(const char *s) {
    int n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

static const char *data(const char *file) {
    static char buf[8][4096];
    static int slot;
    char *b = buf[slot++ & 7];
    fmt(b, 4096, "%s/%s", g_data, file);
    return b;
}

static const char *in_dir(const char *dir, const char *file) {
    static char buf[8][4096];
    static int slot;
    char *b = buf[slot++ & 7];
    fmt(b, 4096, "%s/%s", dir, file);
    return b;
}

static void rm_run(const char *dir) {
    const char *files[] = {"best.safetensors", "last.safetensors", "state.safetensors", "metrics.csv"};
    for (int i = 0; i < 4; i++) unlink(in_dir(dir, files[i]));
}

/* The train command of the tests on the demo data, with `tasks` meta-train tasks. */
static const char *train_args(const char *out, int tasks, const char *extra) {
    static char buf[8192];
    fmt(buf, sizeof buf,
             "train --train-pos-csv %s/train_pos.csv --train-norm-csv %s/train_norm.csv "
             "--val-pos-csv %s/val_pos.csv --val-norm-csv %s/val_norm.csv --seen finding_a,finding_b "
             "--pool 20 --query 10 -k 4 --hidden 8 --batch-size 8 --tasks %d --epochs 1 --val-tasks 8 "
             "--val-every 2 --out %s %s",
             g_data, g_data, g_data, g_data, tasks, out, extra);
    return buf;
}

/* Checks metrics.csv: header plus rows for iterations 1..rows, in order. */
static int metrics_rows_ok(const char *path, int rows) {
    char *s = ms_read_file(path, NULL);
    if (!s) return 0;
    int ok = strncmp(s, "iteration,epoch,reward,baseline,advantage,val_auroc,lr,seconds\n", 63) == 0;
    int want = 1;
    for (char *p = strchr(s, '\n'); ok && p && p[1]; p = strchr(p + 1, '\n'), want++)
        ok = strtol(p + 1, NULL, 10) == want;
    ok = ok && want - 1 == rows && count_lines(s) == rows + 1;
    if (!ok) fprintf(stderr, "%s: expected %d rows, got %d lines\n", path, rows, count_lines(s) - 1);
    free(s);
    return ok;
}

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = ms_read_file(a, &na), *y = ms_read_file(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* Runs the CLI and expects exit `code`, one stderr line containing `needle` and no file
 * `absent` (may be NULL). */
static void expect_error(const char *what, const char *args, int code, const char *needle, const char *absent) {
    if (absent) unlink(absent);
    char *out = NULL, *err = NULL;
    int rc = ms_run_cli(args, &out, &err);
    int ok = rc == code && err && strstr(err, needle) && count_lines(err) == 1 && (!absent || !ms_file_exists(absent));
    if (!ok) fprintf(stderr, "case '%s': exit %d (want %d), stderr: %s", what, rc, code, err ? err : "(none)\n");
    MS_EXPECT(ok);
    free(out);
    free(err);
}

/* ---- worklists ------------------------------------------------------------------------- */
typedef struct {
    int n;
    char **path;
    double *logit, *prob; /* NAN when empty */
    int *rank;
} list;

static void list_free(list *l) {
    for (int i = 0; i < l->n; i++) free(l->path[i]);
    free(l->path), free(l->logit), free(l->prob), free(l->rank);
    memset(l, 0, sizeof *l);
}

/* Reads a worklist (ranked) or scores file through the library's CSV reader. */
static int list_read(list *l, const char *path, int ranked) {
    memset(l, 0, sizeof *l);
    ms_csv c;
    if (ms_csv_read(&c, path)) {
        fprintf(stderr, "%s\n", ms_last_error());
        return 0;
    }
    int off = ranked ? 1 : 0;
    int ok = c.n_cols == 3 + off && (!ranked || strcmp(c.header[0], "rank") == 0) &&
             strcmp(c.header[off], "Path") == 0 && strcmp(c.header[off + 1], "logit") == 0 &&
             strcmp(c.header[off + 2], "probability") == 0;
    if (ok) {
        l->n = c.n_rows;
        l->path = calloc((size_t)c.n_rows + 1, sizeof(char *));
        l->logit = calloc((size_t)c.n_rows + 1, sizeof(double));
        l->prob = calloc((size_t)c.n_rows + 1, sizeof(double));
        l->rank = calloc((size_t)c.n_rows + 1, sizeof(int));
        for (int i = 0; i < c.n_rows; i++) {
            char **row = c.cell + (size_t)i * c.n_cols;
            l->rank[i] = ranked ? atoi(row[0]) : i + 1;
            l->path[i] = strdup(row[off]);
            l->logit[i] = *row[off + 1] ? strtod(row[off + 1], NULL) : NAN;
            l->prob[i] = *row[off + 2] ? strtod(row[off + 2], NULL) : NAN;
        }
    } else {
        fprintf(stderr, "%s: unexpected header\n", path);
    }
    ms_csv_free(&c);
    return ok;
}

static int list_distinct(const list *l) {
    for (int i = 0; i < l->n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(l->path[i], l->path[j]) == 0) return 0;
    return 1;
}

static int list_same(const list *a, const list *b) {
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->path[i], b->path[i]) != 0) return 0;
    return 1;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_train_run(const char *run) {
    rm_run(run);
    char *out = NULL, *err = NULL;
    int rc = ms_run_cli(train_args(run, 32, ""), &out, &err);
    MS_EXPECT(rc == 0);
    if (rc) fprintf(stderr, "train failed: %s", err ? err : "");
    MS_EXPECT(out && strstr(out, "medselect train: 4 iterations") && strstr(out, "best meta-validation AUROC") &&
              strstr(out, "random selection") && strstr(out, "best.safetensors"));
    const char *files[] = {"best.safetensors", "last.safetensors", "state.safetensors", "metrics.csv"};
    for (int i = 0; i < 4; i++) MS_EXPECT(ms_file_exists(in_dir(run, files[i])));
    MS_EXPECT(metrics_rows_ok(in_dir(run, "metrics.csv"), 4));
    free(out), free(err);

    /* --json summary */
    char args[8192], json[4096];
    fmt(json, sizeof json, "%s", ms_tmp("train.json"));
    unlink(json);
    fmt(args, sizeof args, "%s", train_args(ms_tmp("run_json"), 32, ""));
    strcat(args, " --json ");
    strcat(args, json);
    rc = ms_run_cli(args, &out, &err);
    char *js = ms_read_file(json, NULL);
    MS_EXPECT(rc == 0 && js && strstr(js, "\"iterations\": 4") && strstr(js, "\"best_val_auroc\""));
    free(js), free(out), free(err);
}

/* Starts the CLI in the background; returns its pid (the shell execs the binary). */
static pid_t spawn_cli(const char *args) {
    const char *cli = getenv("MS_CLI");
    if (!cli) cli = "./medselect";
    size_t n = strlen(cli) + strlen(args) + 64;
    char *cmd = malloc(n);
    fmt(cmd, n, "exec %s %s >/dev/null 2>&1 </dev/null", cli, args);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    free(cmd);
    return pid;
}

/* One attempt: an uninterrupted run of `tasks` tasks in ref, the same run in `run` killed
 * with SIGKILL as soon as its first state file appears. Returns 1 when the kill hit the run
 * before it finished (0: it had finished already, try a longer run). */
static int kill_attempt(const char *ref, const char *run, int tasks) {
    rm_run(ref);
    rm_run(run);
    char *out = NULL, *err = NULL;
    int rc = ms_run_cli(train_args(ref, tasks, ""), &out, &err);
    MS_EXPECT(rc == 0);
    free(out), free(err);
    pid_t pid = spawn_cli(train_args(run, tasks, ""));
    MS_EXPECT(pid > 0);
    const char *state = in_dir(run, "state.safetensors");
    int status = 0, exited = 0;
    struct timespec nap = {0, 1000000};
    while (!ms_file_exists(state)) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            exited = 1;
            break;
        }
        nanosleep(&nap, NULL);
    }
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    int killed = !exited && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    int finished = ms_file_exists(in_dir(run, "last.safetensors"));
    MS_EXPECT(exited ? WIFEXITED(status) && WEXITSTATUS(status) == 0 : killed);
    ms_st_file f;
    const char *it = NULL;
    if (ms_st_read(&f, state) == MS_OK) it = ms_st_meta(&f, "iteration");
    char *m = ms_read_file(in_dir(run, "metrics.csv"), NULL);
    printf("kill at %d tasks: %s (state at iteration %s, metrics.csv %d lines)\n", tasks,
           killed && !finished ? "killed mid-run" : "the run had finished", it ? it : "?", count_lines(m));
    free(m);
    ms_st_free(&f);
    return killed && !finished;
}

static void test_kill_resume(void) {
    char ref[1024], run[1024];
    fmt(ref, sizeof ref, "%s", ms_tmp("run_ref"));
    fmt(run, sizeof run, "%s", ms_tmp("run_killed"));
    /* 60 iterations (a validation and a state every 2); longer runs if the kill came late */
    int tasks = 8 * 60, hit = 0;
    for (int attempt = 0; attempt < 3 && !hit; attempt++, tasks *= 4) hit = kill_attempt(ref, run, tasks);
    MS_EXPECT(hit);
    if (!hit) return;
    tasks /= 4;
    int iters = tasks / 8;
    MS_EXPECT(ms_file_exists(in_dir(run, "state.safetensors")));

    char args[16384], want[64];
    fmt(args, sizeof args, "%s --resume", train_args(run, tasks, ""));
    fmt(want, sizeof want, "medselect train: %d iterations", iters);
    char *out = NULL, *err = NULL;
    int rc = ms_run_cli(args, &out, &err);
    MS_EXPECT(rc == 0 && out && strstr(out, want));
    if (rc) fprintf(stderr, "resume failed: %s", err ? err : "");
    free(out), free(err);
    /* the whole files: the checkpoint metadata (clinical, K, sampler, seed, data
     * fingerprints, version) holds nothing time-dependent */
    int same = same_file(in_dir(ref, "last.safetensors"), in_dir(run, "last.safetensors"));
    if (!same) fprintf(stderr, "resumed last.safetensors differs from the uninterrupted run's\n");
    MS_EXPECT(same);
    MS_EXPECT(same_file(in_dir(ref, "best.safetensors"), in_dir(run, "best.safetensors")));
    MS_EXPECT(metrics_rows_ok(in_dir(run, "metrics.csv"), iters));

    /* a resume with another learning rate is refused and changes nothing */
    fmt(args, sizeof args, "%s --resume --lr 0.01", train_args(run, tasks, ""));
    expect_error("resume with other settings", args, 2, "state.safetensors", NULL);
    MS_EXPECT(same_file(in_dir(ref, "last.safetensors"), in_dir(run, "last.safetensors")));
    MS_EXPECT(metrics_rows_ok(in_dir(run, "metrics.csv"), iters));
}

static void test_select(const char *run) {
    const char *best = in_dir(run, "best.safetensors");
    char W[4096], S[4096], args[8192];
    fmt(W, sizeof W, "%s", ms_tmp("W.csv"));
    fmt(S, sizeof S, "%s", ms_tmp("S.csv"));
    unlink(W), unlink(S);
    fmt(args, sizeof args, "select --model %s --pool %s -k 5 --out %s --scores %s", best, data("test_pos.csv"), W, S);
    char *out = NULL, *err = NULL;
    int rc = ms_run_cli(args, &out, &err);
    MS_EXPECT(rc == 0);
    if (rc) fprintf(stderr, "select failed: %s", err ? err : "");
    free(out), free(err);

    list w, s;
    ms_csv pool;
    MS_CHECK(ms_csv_read(&pool, data("test_pos.csv")) == MS_OK);
    if (list_read(&w, W, 1) && list_read(&s, S, 0)) {
        MS_EXPECT(w.n == 5);
        MS_EXPECT(list_distinct(&w));
        int ranks = 1, decreasing = 1, consistent = 1;
        for (int i = 0; i < w.n; i++) {
            ranks &= w.rank[i] == i + 1;
            if (i) decreasing &= w.logit[i - 1] >= w.logit[i];
            /* the worklist row agrees with the scores row of the same image */
            int found = 0;
            for (int j = 0; j < s.n; j++)
                if (strcmp(s.path[j], w.path[i]) == 0) {
                    found = 1;
                    consistent &= s.logit[j] == w.logit[i] && s.prob[j] == w.prob[i];
                }
            consistent &= found;
        }
        MS_EXPECT(ranks);
        MS_EXPECT(decreasing);
        MS_EXPECT(consistent);
        /* scores: one row per pool image, in the pool's order; probabilities sum to 1 and
         * follow the logits (softmax); the worklist is the top 5 */
        MS_EXPECT(s.n == pool.n_rows);
        int order = s.n == pool.n_rows, monotone = 1;
        double sum = 0, min_w = INFINITY;
        for (int i = 0; i < w.n; i++) min_w = fmin(min_w, w.logit[i]);
        int above = 0;
        for (int j = 0; j < s.n; j++) {
            if (order) order = strcmp(s.path[j], pool.cell[(size_t)j * pool.n_cols + ms_csv_col(&pool, "Path")]) == 0;
            sum += s.prob[j];
            above += s.logit[j] > min_w;
            /* p_j / p_0 = exp(logit_j - logit_0), to the printed precision */
            double r = s.prob[j] / s.prob[0], e = exp(s.logit[j] - s.logit[0]);
            monotone &= fabs(r - e) <= 1e-4 * e + 1e-9;
        }
        MS_EXPECT(order);
        printf("select: probabilities sum to %.8f over %d items\n", sum, s.n);
        MS_EXPECT(fabs(sum - 1.0) < 1e-4);
        MS_EXPECT(monotone);
        MS_EXPECT(above < 5); /* no unlisted item scores above the worklist's last */
    } else {
        MS_EXPECT(0);
    }
    ms_csv_free(&pool);

    /* --sample: reproducible per seed, another seed another draw */
    list a, b, c;
    int ok = 1;
    fmt(args, sizeof args, "select --model %s --pool %s -k 5 --out %s --sample --seed 3", best, data("test_pos.csv"), W);
    ok &= ms_run_cli(args, NULL, NULL) == 0 && list_read(&a, W, 1);
    ok &= ms_run_cli(args, NULL, NULL) == 0 && list_read(&b, W, 1);
    fmt(args, sizeof args, "select --model %s --pool %s -k 5 --out %s --sample --seed 4", best, data("test_pos.csv"), W);
    ok &= ms_run_cli(args, NULL, NULL) == 0 && list_read(&c, W, 1);
    MS_EXPECT(ok);
    if (ok) {
        MS_EXPECT(a.n == 5 && list_distinct(&a));
        MS_EXPECT(list_same(&a, &b));
        MS_EXPECT(!list_same(&a, &c));
        MS_EXPECT(!list_same(&a, &w)); /* a draw from 1200 items is not the top 5 */
        list_free(&a), list_free(&b), list_free(&c);
    }

    /* --threads 1 gives the same worklist as the default */
    fmt(args, sizeof args, "select --model %s --pool %s -k 5 --out %s --threads 1", best, data("test_pos.csv"), W);
    MS_EXPECT(ms_run_cli(args, NULL, NULL) == 0 && list_read(&a, W, 1));
    MS_EXPECT(list_same(&a, &w));
    list_free(&a);

    /* --precision: an unknown value is a usage error naming it (nothing written); bf16 on
     * a CPU without AVX512_BF16 is one too; where it runs, every logit is within 0.02 of
     * the f32 one (bf16 operands: 8 significant bits) */
    fmt(args, sizeof args, "select --model %s --pool %s -k 5 --out %s --precision fp16", best, data("test_pos.csv"), W);
    expect_error("--precision fp16", args, 1, "fp16", W);
    fmt(args, sizeof args, "select --model %s --pool %s -k 5 --out %s --scores %s --precision bf16", best,
        data("test_pos.csv"), W, S);
    if (!ms_bf16_supported()) {
        expect_error("--precision bf16 without AVX512_BF16", args, 1, "AVX512_BF16", W);
    } else if (ms_run_cli(args, NULL, NULL) == 0 && list_read(&a, S, 0)) {
        double md = 0;
        int same = a.n == s.n;
        for (int j = 0; same && j < a.n; j++) {
            same &= strcmp(a.path[j], s.path[j]) == 0;
            md = fmax(md, fabs(a.logit[j] - s.logit[j]));
        }
        printf("select --precision bf16: largest logit difference to f32 %.3g\n", md);
        MS_EXPECT(same && md > 0 && md < 0.02);
        list_free(&a);
    } else {
        MS_EXPECT(0);
    }

    /* a baseline strategy: 5 distinct rows, logit and probability empty */
    fmt(args, sizeof args, "select --strategy kmedoids --pool %s -k 5 --out %s", data("test_pos.csv"), W);
    rc = ms_run_cli(args, NULL, NULL);
    MS_EXPECT(rc == 0 && list_read(&a, W, 1));
    if (rc == 0 && a.n) {
        MS_EXPECT(a.n == 5 && list_distinct(&a));
        int empty = 1;
        for (int i = 0; i < a.n; i++) empty &= isnan(a.logit[i]) && isnan(a.prob[i]) && a.rank[i] == i + 1;
        MS_EXPECT(empty);
    }
    list_free(&a);

    /* a checkpoint holding only the ten tensors (no metadata): the same worklist */
    ms_st_file f;
    char bare[4096];
    fmt(bare, sizeof bare, "%s", ms_tmp("bare.safetensors"));
    MS_EXPECT(ms_st_read(&f, best) == MS_OK);
    MS_EXPECT(f.n == 10 && f.n_meta > 0);
    ms_st_entry e[10];
    for (int i = 0; i < f.n && i < 10; i++) {
        e[i].name = f.tensors[i].name;
        e[i].dtype = f.tensors[i].dtype;
        e[i].ndim = f.tensors[i].ndim;
        e[i].shape = f.tensors[i].shape;
        e[i].data = f.tensors[i].data;
    }
    MS_EXPECT(ms_st_write(bare, e, f.n < 10 ? f.n : 10, NULL, 0) == MS_OK);
    ms_st_free(&f);
    MS_EXPECT(ms_st_read(&f, bare) == MS_OK && f.n_meta == 0);
    ms_st_free(&f);
    fmt(args, sizeof args, "select --model %s --pool %s -k 5 --out %s", bare, data("test_pos.csv"), W);
    rc = ms_run_cli(args, NULL, NULL);
    MS_EXPECT(rc == 0 && list_read(&a, W, 1));
    MS_EXPECT(list_same(&a, &w));
    for (int i = 0; i < a.n && i < w.n; i++) MS_EXPECT(a.logit[i] == w.logit[i]);
    list_free(&a);
    list_free(&w);
    list_free(&s);
}

static void test_evaluate(const char *run) {
    char args[8192];
    fmt(args, sizeof args,
             "evaluate --pos-csv %s --norm-csv %s --conditions finding_a,finding_b --pool 20 --query 10 -k 4 "
             "--tasks 10 --strategies random --bootstrap 100 --model %s",
             data("test_pos.csv"), data("test_norm.csv"), in_dir(run, "best.safetensors"));
    char *out = NULL, *err = NULL;
    int rc = ms_run_cli(args, &out, &err);
    MS_EXPECT(rc == 0 && out && strstr(out, "| 4 | medselect | 10 |") && strstr(out, "| 4 | random | 10 |"));
    if (rc) fprintf(stderr, "evaluate --model failed: %s", err ? err : "");
    free(out), free(err);
}

/* Writes a copy of a demo CSV without the Age, Sex and Frontal/Lateral columns (the demo's
 * CSVs have no quoted fields). */
static void write_without_clinical(const char *from, const char *to) {
    ms_csv c;
    MS_CHECK(ms_csv_read(&c, from) == MS_OK);
    FILE *f = fopen(to, "w");
    MS_CHECK(f != NULL);
    for (int r = -1; r < c.n_rows; r++) {
        int first = 1;
        for (int j = 0; j < c.n_cols; j++) {
            const char *h = c.header[j];
            if (!strcmp(h, "Age") || !strcmp(h, "Sex") || !strcmp(h, "Frontal/Lateral")) continue;
            fprintf(f, "%s%s", first ? "" : ",", r < 0 ? h : c.cell[(size_t)r * c.n_cols + j]);
            first = 0;
        }
        fputc('\n', f);
    }
    MS_CHECK(fclose(f) == 0);
    ms_csv_free(&c);
}

/* Another architecture through the same commands: train --arch relational with K and
 * prevalence ranges, then select (a ranking: the K 3 worklist is the first 3 rows of the
 * K 6 one) and evaluate; bad architecture options are usage errors. */
static void test_relational(void) {
    char run[4096], args[8192];
    fmt(run, sizeof run, "%s", ms_tmp("run_rel"));
    rm_run(run);
    char *out = NULL, *err = NULL;
    int rc = ms_run_cli(train_args(run, 32, "--arch relational -k 2:6 --pos-frac 0.2:0.5 --hidden 4 --lr 0.01"), &out, &err);
    MS_EXPECT(rc == 0 && ms_file_exists(in_dir(run, "best.safetensors")));
    if (rc) fprintf(stderr, "relational train failed: %s", err ? err : "");
    free(out), free(err);
    const char *best = in_dir(run, "best.safetensors");
    const char *W6 = ms_tmp("rel_w6.csv"), *W3 = ms_tmp("rel_w3.csv");
    fmt(args, sizeof args, "select --model %s --pool %s -k 6 --out %s", best, data("test_pos.csv"), W6);
    MS_EXPECT(ms_run_cli(args, NULL, NULL) == 0);
    fmt(args, sizeof args, "select --model %s --pool %s -k 3 --out %s", best, data("test_pos.csv"), W3);
    MS_EXPECT(ms_run_cli(args, NULL, NULL) == 0);
    list a, b;
    memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
    if (list_read(&a, W6, 1) && list_read(&b, W3, 1)) {
        int same = a.n == 6 && b.n == 3;
        for (int i = 0; same && i < 3; i++) same = strcmp(a.path[i], b.path[i]) == 0;
        MS_EXPECT(same);
    } else {
        MS_EXPECT(0);
    }
    list_free(&a), list_free(&b);
    fmt(args, sizeof args,
        "evaluate --pos-csv %s --norm-csv %s --conditions finding_a,finding_b --pool 20 --query 10 -k 2,4 "
        "--tasks 10 --strategies random --bootstrap 100 --model %s",
        data("test_pos.csv"), data("test_norm.csv"), best);
    rc = ms_run_cli(args, &out, &err);
    MS_EXPECT(rc == 0 && out && strstr(out, "| 4 | medselect relational | 10 |"));
    free(out), free(err);
    expect_error("unknown architecture", train_args(ms_tmp("run_bad"), 32, "--arch hyper"), 1, "bilstm,relational", NULL);
    expect_error("relational with clinical input", train_args(ms_tmp("run_bad"), 32, "--arch relational --clinical"), 1,
                 "clinical", NULL);
    expect_error("K range upside down", train_args(ms_tmp("run_bad"), 32, "-k 6:2"), 1, "-k 6:2", NULL);
    expect_error("negative geometry noise", train_args(ms_tmp("run_bad"), 32, "--augment geometry:noise=-1"), 1,
                 "noise=-1", NULL);
    expect_error("unknown geometry option", train_args(ms_tmp("run_bad"), 32, "--augment geometry:tilt=2"), 1,
                 "tilt", NULL);
    expect_error("unknown augmentation", train_args(ms_tmp("run_bad"), 32, "--augment shear"), 1,
                 "geometry", NULL);
}

static void test_errors(const char *run) {
    const char *best = in_dir(run, "best.safetensors");
    char W[4096], args[8192];
    fmt(W, sizeof W, "%s", ms_tmp("W_err.csv"));

    /* truncated checkpoint: its first 100 bytes */
    size_t n;
    char *bytes = ms_read_file(best, &n);
    MS_CHECK(bytes && n > 100);
    char trunc[4096];
    fmt(trunc, sizeof trunc, "%s", ms_tmp("truncated.safetensors"));
    FILE *f = fopen(trunc, "wb");
    MS_CHECK(f && fwrite(bytes, 1, 100, f) == 100 && fclose(f) == 0);
    free(bytes);
    fmt(args, sizeof args, "select --model %s --pool %s -k 5 --out %s", trunc, data("test_pos.csv"), W);
    expect_error("truncated checkpoint", args, 2, "truncated.safetensors", W);

    /* a foreign file: a CSV renamed .safetensors */
    char foreign[4096];
    fmt(foreign, sizeof foreign, "%s", ms_tmp("foreign.safetensors"));
    bytes = ms_read_file(data("test_pos.csv"), &n);
    f = fopen(foreign, "wb");
    MS_CHECK(bytes && f && fwrite(bytes, 1, n, f) == n && fclose(f) == 0);
    free(bytes);
    fmt(args, sizeof args, "select --model %s --pool %s -k 5 --out %s", foreign, data("test_pos.csv"), W);
    expect_error("foreign checkpoint", args, 2, "foreign.safetensors", W);

    /* K larger than the pool */
    fmt(args, sizeof args, "select --model %s --pool %s -k 5000 --out %s", best, data("test_pos.csv"), W);
    expect_error("K larger than the pool", args, 2, "test_pos.csv", W);

    /* a pool of 3-dimensional embeddings (CSV + NPY) */
    char tiny[4096], tiny_npy[4096];
    fmt(tiny, sizeof tiny, "%s", ms_tmp("tiny.csv"));
    fmt(tiny_npy, sizeof tiny_npy, "%s", ms_tmp("tiny.npy"));
    ms_write_text(tiny, "Path\na.png\nb.png\nc.png\nd.png\ne.png\nf.png\n");
    float x[18];
    for (int i = 0; i < 18; i++) x[i] = (float)sin(0.7 * i);
    MS_CHECK(ms_npy_write(tiny_npy, x, 6, 3) == MS_OK);
    fmt(args, sizeof args, "select --model %s --pool %s -k 2 --out %s", best, tiny, W);
    expect_error("pool of another dimension", args, 2, "tiny.csv", W);
    /* ... which a baseline accepts */
    fmt(args, sizeof args, "select --strategy kmedoids --pool %s -k 2 --out %s", tiny, W);
    MS_EXPECT(ms_run_cli(args, NULL, NULL) == 0 && ms_file_exists(W));
    unlink(W);

    /* train: an unknown condition */
    char bad[4096];
    fmt(bad, sizeof bad, "%s", ms_tmp("run_bad"));
    rm_run(bad);
    fmt(args, sizeof args, "%s", train_args(bad, 32, ""));
    char *seen = strstr(args, "finding_a,finding_b");
    memcpy(seen, "finding_a,finding_z", 19);
    expect_error("unknown --seen condition", args, 2, "finding_z", in_dir(bad, "best.safetensors"));
    MS_EXPECT(!ms_file_exists(in_dir(bad, "metrics.csv")));

    /* train --clinical on files without clinical columns */
    const char *parts[4] = {"train_pos", "train_norm", "val_pos", "val_norm"};
    char csv[4][4096], emb[4][4096];
    for (int i = 0; i < 4; i++) {
        char name[64];
        fmt(name, sizeof name, "noclin_%s.csv", parts[i]);
        fmt(csv[i], sizeof csv[i], "%s", ms_tmp(name));
        char src[64];
        fmt(src, sizeof src, "%s.csv", parts[i]);
        write_without_clinical(data(src), csv[i]);
        fmt(src, sizeof src, "%s.hdf5", parts[i]);
        fmt(emb[i], sizeof emb[i], "%s", data(src));
    }
    const char *common = "--seen finding_a,finding_b --pool 20 --query 10 -k 4 --hidden 8 --batch-size 8 "
                         "--tasks 16 --epochs 1 --val-tasks 8 --val-every 2";
    fmt(args, sizeof args,
             "train --train-pos-csv %s --train-pos-emb %s --train-norm-csv %s --train-norm-emb %s "
             "--val-pos-csv %s --val-pos-emb %s --val-norm-csv %s --val-norm-emb %s %s --out %s --clinical",
             csv[0], emb[0], csv[1], emb[1], csv[2], emb[2], csv[3], emb[3], common, bad);
    expect_error("--clinical without clinical columns", args, 2, "noclin_train_pos.csv", in_dir(bad, "best.safetensors"));
    MS_EXPECT(!ms_file_exists(in_dir(bad, "metrics.csv")) && !ms_file_exists(in_dir(bad, "state.safetensors")));
    /* ... which --impute-clinical accepts */
    strcat(args, " --impute-clinical");
    char *out = NULL, *err = NULL;
    int rc = ms_run_cli(args, &out, &err);
    MS_EXPECT(rc == 0 && ms_file_exists(in_dir(bad, "best.safetensors")));
    if (rc) fprintf(stderr, "--impute-clinical: %s", err ? err : "");
    free(out), free(err);
    rm_run(bad);

    /* a clinical selector meets a row without Age: evaluate and select name the line;
     * select --impute-clinical fills it */
    char clin[4096], blank_csv[4096], blank_emb[4096], w[4096];
    fmt(clin, sizeof clin, "%s", ms_tmp("clinrun"));
    fmt(args, sizeof args, "%s", train_args(clin, 16, "--clinical"));
    rc = ms_run_cli(args, NULL, NULL);
    MS_EXPECT(rc == 0);
    fmt(blank_csv, sizeof blank_csv, "%s", ms_tmp("blankage_pos.csv"));
    fmt(blank_emb, sizeof blank_emb, "%s", data("test_pos.hdf5"));
    {
        char *text = ms_read_file(data("test_pos.csv"), NULL);
        MS_CHECK(text != NULL);
        /* the fourth line (third data row) loses its Age: "path,AGE,..." -> "path,,..." */
        char *line = text;
        for (int i = 0; i < 3; i++) line = strchr(line, '\n') + 1;
        char *c1 = strchr(line, ','), *c2 = strchr(c1 + 1, ',');
        memmove(c1 + 1, c2, strlen(c2) + 1);
        ms_write_text(blank_csv, text);
        free(text);
    }
    fmt(w, sizeof w, "%s", ms_tmp("blank_w.csv"));
    fmt(args, sizeof args, "select --model %s --pool %s --emb %s -k 3 --out %s", in_dir(clin, "best.safetensors"),
        blank_csv, blank_emb, w);
    expect_error("clinical selector, missing Age (select)", args, 2, "line 4", w);
    strcat(args, " --impute-clinical");
    MS_EXPECT(ms_run_cli(args, NULL, NULL) == 0 && ms_file_exists(w));
    fmt(args, sizeof args,
        "evaluate --pos-csv %s --pos-emb %s --norm-csv %s --conditions finding_a --pool 20 --query 10 -k 4 "
        "--tasks 4 --model %s --json %s",
        blank_csv, blank_emb, data("test_norm.csv"), in_dir(clin, "best.safetensors"), w);
    expect_error("clinical selector, missing Age (evaluate)", args, 2, "line 4: missing Age", w);
    rm_run(clin);
}

static void test_help(void) {
    char *out = NULL, *err = NULL;
    int rc = ms_run_cli("train --help", &out, &err);
    MS_EXPECT(rc == 0 && out);
    const char *train_opts[] = {"--train-pos-csv", "--train-norm-csv", "--val-pos-csv", "--val-norm-csv",
                                "--train-pos-emb", "--train-norm-emb", "--val-pos-emb", "--val-norm-emb",
                                "--seen", "--pool", "--query", "-k", "--hidden", "--batch-size", "--tasks",
                                "--epochs", "--val-tasks", "--val-every", "--out", "--resume", "--lr",
                                "--clinical", "--impute-clinical", "--json", "--threads", NULL};
    for (int i = 0; out && train_opts[i]; i++) {
        if (!strstr(out, train_opts[i])) fprintf(stderr, "train --help does not mention %s\n", train_opts[i]);
        MS_EXPECT(strstr(out, train_opts[i]) != NULL);
    }
    free(out), free(err);
    rc = ms_run_cli("select --help", &out, &err);
    MS_EXPECT(rc == 0 && out);
    const char *select_opts[] = {"--model", "--strategy", "--pool", "-k", "--out", "--scores", "--sample",
                                 "--seed", "--threads", "kmedoids", NULL};
    for (int i = 0; out && select_opts[i]; i++) {
        if (!strstr(out, select_opts[i])) fprintf(stderr, "select --help does not mention %s\n", select_opts[i]);
        MS_EXPECT(strstr(out, select_opts[i]) != NULL);
    }
    free(out), free(err);
}

int main(void) {
    /* the commands' OpenMP threads sleep rather than spin while waiting: on a machine shared
     * with other work, spinning threads make these many short runs many times slower */
    setenv("OMP_WAIT_POLICY", "passive", 0);
    fmt(g_data, sizeof g_data, "%s", ms_tmp("data"));
    char args[8192];
    fmt(args, sizeof args, "demo --no-train --tasks 5 --write-data %s", g_data);
    char *out = NULL, *err = NULL;
    int rc = ms_run_cli(args, &out, &err);
    MS_EXPECT(rc == 0 && ms_file_exists(data("train_pos.hdf5")) && ms_file_exists(data("val_norm.csv")));
    free(out), free(err);
    if (rc) return ms_test_summary();

    char run[4096];
    fmt(run, sizeof run, "%s", ms_tmp("run"));
    double t = ms_now();
    test_help();
    test_train_run(run);
    printf("train: %.1f s\n", ms_now() - t), t = ms_now();
    test_kill_resume();
    printf("kill + resume: %.1f s\n", ms_now() - t), t = ms_now();
    test_select(run);
    test_evaluate(run);
    printf("select + evaluate: %.1f s\n", ms_now() - t), t = ms_now();
    test_relational();
    printf("relational: %.1f s\n", ms_now() - t), t = ms_now();
    test_errors(run);
    printf("errors: %.1f s\n", ms_now() - t);
    return ms_test_summary();
}
