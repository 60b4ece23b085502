/* ms_test.c: implementation of the test harness (see ms_test.h). */
#define _POSIX_C_SOURCE 200809L
#include "ms_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "medselect/arch.h"
#include "medselect/io.h"
#include "medselect/synth.h"

int ms_test_passed = 0, ms_test_failed = 0;

void ms_test_expect(int ok, const char *file, int line, const char *what) {
    if (ok) {
        ms_test_passed++;
    } else {
        ms_test_failed++;
        fprintf(stderr, "FAIL %s:%d: %s\n", file, line, what);
    }
}

#define CLOSE_BODY(T)                                                                        \
    size_t worst = 0;                                                                        \
    double worst_excess = 0, worst_diff = 0, maxdiff = 0;                                    \
    int ok = 1;                                                                              \
    for (size_t i = 0; i < n; i++) {                                                         \
        double g = (double)got[i], r = (double)ref[i];                                       \
        double diff = fabs(g - r), tol = atol + rtol * fabs(r);                              \
        if (diff > maxdiff || isnan(diff)) maxdiff = diff;                                   \
        if (!(diff <= tol)) {                                                                \
            double ex = isnan(diff) ? INFINITY : diff - tol;                                 \
            if (ok || ex > worst_excess) worst = i, worst_excess = ex, worst_diff = diff;    \
            ok = 0;                                                                          \
        }                                                                                    \
    }                                                                                        \
    if (ok) {                                                                                \
        ms_test_passed++;                                                                    \
    } else {                                                                                 \
        ms_test_failed++;                                                                    \
        fprintf(stderr,                                                                      \
                "FAIL %s: element %zu got %.9g ref %.9g diff %.3g (atol %.1g rtol %.1g); "   \
                "largest difference %.3g\n",                                                 \
                what, worst, (double)got[worst], (double)ref[worst], worst_diff, atol, rtol, \
                maxdiff);                                                                    \
    }                                                                                        \
    return ok;

int ms_expect_close_f(const char *what, const float *got, const float *ref, size_t n,
                      double atol, double rtol) {
    CLOSE_BODY(float)
}

int ms_expect_close_d(const char *what, const double *got, const double *ref, size_t n,
                      double atol, double rtol) {
    CLOSE_BODY(double)
}

int ms_expect_relerr_f(const char *what, const float *got, const float *ref, size_t n, double tol) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (d > md || isnan(d)) md = d;
        if (fabs((double)ref[i]) > mr) mr = fabs((double)ref[i]);
    }
    double rel = mr > 0 ? md / mr : md;
    int ok = rel <= tol;
    if (ok) ms_test_passed++;
    else {
        ms_test_failed++;
        fprintf(stderr, "FAIL %s: relative error %.3g > %.1g (largest difference %.3g, max |ref| %.3g)\n",
                what, rel, tol, md, mr);
    }
    return ok;
}

static const char *env_path(const char *var, const char *fallback, const char *name) {
    static char buf[8][4096];
    static int slot = 0;
    const char *root = getenv(var);
    if (!root) root = fallback;
    char *b = buf[slot++ & 7];
    snprintf(b, 4096, "%s/%s", root, name);
    return b;
}

const char *ms_fixture(const char *name) { return env_path("MS_FIXTURES", "tests/fixtures", name); }
const char *ms_data(const char *name) { return env_path("MS_DATA", ".", name); }
const char *ms_shared(const char *name) { return ms_data(name); }
const char *ms_tmp(const char *name) {
    const char *root = getenv("MS_TMP");
    if (!root) root = "/tmp/medselect-test";
    /* mkdir -p: each test has its own folder so that tests can run in parallel */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", root);
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(dir, 0755);
            *p = '/';
        }
    mkdir(dir, 0755);
    return env_path("MS_TMP", "/tmp/medselect-test", name);
}

int ms_shared_available(void) {
    return access(ms_shared("data/nih1000/embeddings/test_pos.csv"), R_OK) == 0;
}

int ms_file_exists(const char *path) { return access(path, F_OK) == 0; }

char *ms_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = 0;
    fclose(f);
    if (len) *len = got;
    return s;
}

int ms_run_cli(const char *args, char **out, char **err) {
    const char *cli = getenv("MS_CLI");
    if (!cli) cli = "./medselect";
    char o[4096], e[4096];
    snprintf(o, sizeof o, "%s", ms_tmp("cli.stdout"));
    snprintf(e, sizeof e, "%s", ms_tmp("cli.stderr"));
    size_t n = strlen(cli) + strlen(args) + 2 * 4096 + 64;
    char *cmd = malloc(n);
    snprintf(cmd, n, "%s %s >%s 2>%s </dev/null", cli, args, o, e);
    int rc = system(cmd);
    free(cmd);
    if (out) *out = ms_read_file(o, NULL);
    if (err) *err = ms_read_file(e, NULL);
    if (rc == -1 || !WIFEXITED(rc)) return -1;
    return WEXITSTATUS(rc);
}

void ms_write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        abort();
    }
}

double *ms_load_npy_d(const char *path, int *ndim, long shape[4]) {
    /* Minimal NPY reader for fixtures (little-endian <f4, <f8, <i8), independent of the
     * library's reader so that a bug there cannot hide in the reference values. */
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "missing fixture %s\n", path);
        abort();
    }
    unsigned char pre[10];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) abort();
    size_t hl;
    if (pre[6] == 1) hl = pre[8] | (pre[9] << 8);
    else {
        unsigned char b[2];
        if (fread(b, 1, 2, f) != 2) abort();
        hl = pre[8] | (pre[9] << 8) | ((size_t)b[0] << 16) | ((size_t)b[1] << 24);
    }
    char *h = calloc(1, hl + 1);
    if (fread(h, 1, hl, f) != hl) abort();
    int es = strstr(h, "<f4") ? 4 : 8;
    int isint = strstr(h, "<i8") != NULL;
    long sh[4] = {1, 1, 1, 1};
    int nd = 0;
    char *p = strchr(strstr(h, "shape"), '(') + 1;
    while (*p && *p != ')') {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        sh[nd++] = strtol(p, &p, 10);
    }
    long total = 1;
    for (int i = 0; i < nd; i++) total *= sh[i];
    double *out = malloc(sizeof(double) * (size_t)(total ? total : 1));
    for (long i = 0; i < total; i++) {
        unsigned char b[8];
        if (fread(b, 1, (size_t)es, f) != (size_t)es) abort();
        if (es == 4) {
            float v;
            memcpy(&v, b, 4);
            out[i] = v;
        } else if (isint) {
            int64_t v;
            memcpy(&v, b, 8);
            out[i] = (double)v;
        } else {
            double v;
            memcpy(&v, b, 8);
            out[i] = v;
        }
    }
    fclose(f);
    free(h);
    if (ndim) *ndim = nd;
    if (shape)
        for (int i = 0; i < 4; i++) shape[i] = sh[i];
    return out;
}

int ms_test_summary(void) {
    printf("%d passed, %d failed\n", ms_test_passed, ms_test_failed);
    return ms_test_failed ? 1 : 0;
}

double *ms_load_npy_all(const char *path, size_t *n) {
    int nd;
    long shape[4];
    double *d = ms_load_npy_d(path, &nd, shape);
    size_t c = 1;
    for (int i = 0; i < nd; i++) c *= (size_t)shape[i];
    if (n) *n = c;
    return d;
}

float *ms_load_npy_f32(const char *path, size_t *n) {
    size_t c;
    double *d = ms_load_npy_all(path, &c);
    float *f = malloc(sizeof(float) * (c ? c : 1));
    for (size_t i = 0; i < c; i++) f[i] = (float)d[i];
    free(d);
    if (n) *n = c;
    return f;
}

void ms_random_orthogonal(double *Q, int D, uint64_t seed) {
    ms_rng r;
    ms_rng_init(&r, seed, 99, 0);
    for (int i = 0; i < D * D; i++) Q[i] = ms_rng_normal(&r);
    for (int c = 0; c < D; c++) {
        for (int p = 0; p < c; p++) {
            double dot = 0;
            for (int i = 0; i < D; i++) dot += Q[i * D + c] * Q[i * D + p];
            for (int i = 0; i < D; i++) Q[i * D + c] -= dot * Q[i * D + p];
        }
        double n = 0;
        for (int i = 0; i < D; i++) n += Q[i * D + c] * Q[i * D + c];
        n = sqrt(n);
        for (int i = 0; i < D; i++) Q[i * D + c] /= n;
    }
}

void ms_expect_net_thread_independent(ms_net *net, int B, int T, int K) {
    const int D = net->D;
    float *x = malloc(sizeof(float) * (size_t)B * T * D);
    ms_rng r;
    ms_rng_init(&r, 1, 2, 3);
    for (int i = 0; i < B * T * D; i++) x[i] = (float)ms_rng_normal(&r) + 1.0f;
    int *k = malloc(sizeof(int) * (size_t)B), *n = malloc(sizeof(int) * (size_t)B);
    int *picks[2];
    double *logp[2], *scale = malloc(sizeof(double) * (size_t)B);
    float *g[2];
    ms_rng *rng = malloc(sizeof(ms_rng) * (size_t)B);
    for (int b = 0; b < B; b++) k[b] = 3 + b % 5, scale[b] = 0.1 * (b - 2);
    for (int rep = 0; rep < 2; rep++) {
        ms_set_threads(rep + 1);
        void *w = net->arch->work_new(net, B, T, K);
        for (int b = 0; b < B; b++) ms_rng_init(&rng[b], 5, MS_STREAM_POLICY, (uint64_t)b);
        ms_net_mode m = {.sampler = MS_SAMPLER_WOR, .greedy = 0};
        picks[rep] = calloc((size_t)B * K, sizeof(int));
        logp[rep] = malloc(sizeof(double) * (size_t)B);
        net->arch->run(net, w, x, B, T, k, K, m, rng, picks[rep], n, logp[rep], NULL);
        g[rep] = calloc(net->count, sizeof(float));
        net->arch->backward(net, w, x, scale, g[rep]);
        net->arch->work_free(w);
    }
    MS_EXPECT(memcmp(picks[0], picks[1], sizeof(int) * (size_t)B * K) == 0);
    MS_EXPECT(memcmp(logp[0], logp[1], sizeof(double) * (size_t)B) == 0);
    MS_EXPECT(memcmp(g[0], g[1], sizeof(float) * net->count) == 0);
    int nz = 0;
    for (size_t q = 0; q < net->count; q++) nz += g[0][q] != 0;
    MS_EXPECT(nz > (int)net->count / 2);
    for (int rep = 0; rep < 2; rep++) free(picks[rep]), free(logp[rep]), free(g[rep]);
    free(x), free(k), free(n), free(scale), free(rng);
}

void ms_test_small_splits(ms_split *tr, ms_split *va) {
    ms_synth_config sc;
    ms_synth_defaults(&sc);
    sc.d = 16;
    sc.n_pos[0] = 400, sc.n_pos[1] = 200, sc.n_pos[2] = 50;
    sc.n_norm[0] = 300, sc.n_norm[1] = 150, sc.n_norm[2] = 50;
    ms_split te;
    ms_synth_generate(&sc, tr, va, &te);
    ms_split_free(&te);
}
