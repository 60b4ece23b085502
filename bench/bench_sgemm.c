/* bench/bench_sgemm.c: the machine's matrix-multiply ceilings, the yardsticks for medselect's
 * speed. For each shape it times
 *   f32       ms_gemm in f32 (oneDNN's sgemm on medselect's shape-only blocking: the path
 *             every product of the library takes)
 *   bf16      ms_gemm in bf16 (bf16 operands rounded inside the call, fp32 accumulation)
 *   dnnl      dnnl_sgemm called directly with oneDNN's own threading (no blocking of ours)
 *   dnnl_bf16 oneDNN's dnnl_gemm_bf16bf16f32 with its own threading on operands rounded to
 *             bf16 beforehand (outside the timing): the machine's bf16 ceiling
 *   openblas  cblas_sgemm of OpenBLAS when a libopenblas.so.0 can be loaded (medselect does
 *             not link it; reported for comparison only)
 * on row-major float32 matrices: one warm-up call, then `reps` timed calls (default 5); the
 * median time gives GFLOP/s = 2 M N K / t. Shapes: square 2048, and the selector's
 * products at the paper's size (B 64 tasks x pool 1000, D 512, H 256): the input
 * projection (64000 x 512 -> 2048), one recurrent step (64 x 256 -> 1024) and the weight
 * gradient dW_ih (2048 x 512, inner 64000, A transposed).
 * The headline figures are the square 2048 ones. The last line of stdout is one JSON object:
 *   {"name": "sgemm", "gflops": F32, "bf16_gflops": BF16, "dnnl_gflops": D,
 *    "dnnl_bf16_gflops": DB, "openblas_gflops": O or null, "threads": T,
 *    "by_shape": {"NAME": {...}, ...}}
 * Usage: bench_sgemm [--threads T] [--reps R] [--quick]
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

#include "medselect/common.h"
#include "medselect/gemm.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef void (*cblas_sgemm_fn)(int, int, int, int, int, int, float, const float *, int,
                               const float *, int, float, float *, int);
typedef void (*openblas_threads_fn)(int);
static cblas_sgemm_fn openblas_sgemm;

/* exported by oneDNN 2.x but not declared in its public header (as in src/common/ms_gemm.c) */
dnnl_status_t dnnl_gemm_bf16bf16f32(char transa, char transb, dnnl_dim_t M, dnnl_dim_t N,
                                    dnnl_dim_t K, float alpha, const ms_bf16 *A, dnnl_dim_t lda,
                                    const ms_bf16 *B, dnnl_dim_t ldb, float beta, float *C,
                                    dnnl_dim_t ldc);
/* the current shape's operands rounded to bf16 once, for IMPL_DNNL_BF16 */
static ms_bf16 *A16, *B16;

typedef struct {
    const char *name;
    char ta, tb;
    int M, N, K;
} shape;

enum { IMPL_F32, IMPL_BF16, IMPL_DNNL, IMPL_DNNL_BF16, IMPL_OPENBLAS, NIMPL };
static const char *const impl_name[NIMPL] = {"f32", "bf16", "dnnl", "dnnl_bf16", "openblas"};

static void run(int impl, const shape *s, const float *A, const float *B, float *C) {
    int lda = s->ta == 'N' ? s->K : s->M, ldb = s->tb == 'N' ? s->N : s->K;
    switch (impl) {
    case IMPL_F32:
        ms_gemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N, MS_PREC_F32);
        break;
    case IMPL_BF16:
        ms_gemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N, MS_PREC_BF16);
        break;
    case IMPL_DNNL:
        dnnl_sgemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N);
        break;
    case IMPL_DNNL_BF16:
        dnnl_gemm_bf16bf16f32(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A16, lda, B16, ldb, 0.0f, C, s->N);
        break;
    default: /* CblasRowMajor 101, CblasNoTrans 111, CblasTrans 112 */
        openblas_sgemm(101, s->ta == 'N' ? 111 : 112, s->tb == 'N' ? 111 : 112, s->M, s->N, s->K,
                       1.0f, A, lda, B, ldb, 0.0f, C, s->N);
    }
}

/* Median GFLOP/s of `reps` calls after one warm-up. */
static double rate(int impl, const shape *s, int reps, const float *A, const float *B, float *C) {
    double *t = ms_xmalloc(sizeof(double) * (size_t)reps);
    for (int r = -1; r < reps; r++) {
        double t0 = ms_now();
        run(impl, s, A, B, C);
        if (r >= 0) t[r] = ms_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    free(t);
    return 2.0 * s->M * (double)s->N * s->K / med * 1e-9;
}

int main(int argc, char **argv) {
    int threads = 2, reps = 5, quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else {
            fprintf(stderr, "usage: bench_sgemm [--threads T] [--reps R] [--quick]\n"
                            "  GEMM ceilings: medselect's f32 and bf16 GEMM (oneDNN), dnnl_sgemm,\n"
                            "  oneDNN's bf16 GEMM, and OpenBLAS when installed (default T 2, R 5; --quick: square\n"
                            "  2048 only)\n");
            return strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0;
        }
    }
    if (threads < 1 || reps < 1) return 2;
    ms_set_threads(threads);
    void *ob = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (ob) {
        void *sym = dlsym(ob, "cblas_sgemm"), *thr = dlsym(ob, "openblas_set_num_threads");
        memcpy(&openblas_sgemm, &sym, sizeof sym);
        if (thr) {
            openblas_threads_fn f;
            memcpy(&f, &thr, sizeof thr);
            f(threads);
        }
    }
    const shape shapes[] = {{"square 2048", 'N', 'N', 2048, 2048, 2048},
                            {"input projection 64000x512 -> 2048", 'N', 'T', 64000, 2048, 512},
                            {"recurrent step 64x256 -> 1024", 'N', 'T', 64, 1024, 256},
                            {"dW_ih 2048x512, inner 64000 (A^T)", 'T', 'N', 2048, 512, 64000}};
    int nshapes = quick ? 1 : 4;
    double g[4][NIMPL];
    for (int s = 0; s < nshapes; s++) {
        const shape *sh = &shapes[s];
        size_t na = (size_t)sh->M * sh->K, nb = (size_t)sh->K * sh->N, nc = (size_t)sh->M * sh->N;
        float *A = ms_xmalloc(sizeof(float) * na), *B = ms_xmalloc(sizeof(float) * nb);
        float *C = ms_xcalloc(nc, sizeof(float));
        ms_rng r;
        ms_rng_init(&r, 1234, 0, (uint64_t)s);
        for (size_t i = 0; i < na; i++) A[i] = (float)(ms_rng_uniform(&r) - 0.5);
        for (size_t i = 0; i < nb; i++) B[i] = (float)(ms_rng_uniform(&r) - 0.5);
        if (ms_bf16_supported()) {
            A16 = ms_xmalloc(sizeof(ms_bf16) * na);
            B16 = ms_xmalloc(sizeof(ms_bf16) * nb);
            ms_bf16_from_f32(A16, A, na);
            ms_bf16_from_f32(B16, B, nb);
        }
        /* tiny products are timed in groups so that the clock resolution does not matter */
        int rr = sh->M * (double)sh->N * sh->K < 1e8 ? reps * 20 : reps;
        for (int im = 0; im < NIMPL; im++) {
            g[s][im] = -1;
            if ((im == IMPL_BF16 || im == IMPL_DNNL_BF16) && !ms_bf16_supported()) continue;
            if (im == IMPL_OPENBLAS && !openblas_sgemm) continue;
            g[s][im] = rate(im, sh, rr, A, B, C);
            fprintf(stderr, "%-36s %-8s %7.1f GFLOP/s (%d threads)\n", sh->name, impl_name[im],
                    g[s][im], threads);
        }
        free(A);
        free(B);
        free(C);
        free(A16);
        free(B16);
        A16 = B16 = NULL;
    }
    printf("{\"name\": \"sgemm\"");
    const char *key[NIMPL] = {"gflops", "bf16_gflops", "dnnl_gflops", "dnnl_bf16_gflops", "openblas_gflops"};
    for (int im = 0; im < NIMPL; im++) {
        if (g[0][im] < 0) printf(", \"%s\": null", key[im]);
        else printf(", \"%s\": %.2f", key[im], g[0][im]);
    }
    printf(", \"threads\": %d, \"by_shape\": {", threads);
    for (int s = 0; s < nshapes; s++) {
        printf("%s\"%s\": {", s ? ", " : "", shapes[s].name);
        for (int im = 0; im < NIMPL; im++) {
            if (g[s][im] < 0) printf("%s\"%s\": null", im ? ", " : "", impl_name[im]);
            else printf("%s\"%s\": %.2f", im ? ", " : "", impl_name[im], g[s][im]);
        }
        printf("}");
    }
    printf("}}\n");
    if (ob) dlclose(ob);
    return 0;
}
