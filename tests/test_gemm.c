/* test_gemm.c: the GEMM layer against its reference loop (every transpose combination,
 * strided operands, alpha/beta, empty sizes, shapes that split into many blocks), bf16
 * against the reference on bf16-rounded operands and against fp32 within a stated
 * tolerance, the rounding itself, and bitwise independence of the thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "medselect/gemm.h"
#include "ms_test.h"

static float *rand_mat(size_t n, uint64_t seed) {
    float *x = malloc(sizeof(float) * (n ? n : 1));
    ms_rng r;
    ms_rng_init(&r, seed, 0, 0);
    for (size_t i = 0; i < n; i++) x[i] = (float)(2.0 * ms_rng_uniform(&r) - 1.0);
    return x;
}

typedef struct {
    int M, N, K;
} shape;

/* Runs one product through `prec` and the reference (double accumulation) and compares
 * with atol = tol * K * (|alpha| + 1): fp32 summation of K products of values in [-1, 1]
 * errs by at most about K * 2^-24 * sum |a b| (2 ulp per step, |a b| <= 1). */
static void check_one(char ta, char tb, shape s, float alpha, float beta, int pad,
                      ms_precision prec, double tol) {
    int lda = (ta == 'N' ? s.K : s.M) + pad, ldb = (tb == 'N' ? s.N : s.K) + pad, ldc = s.N + pad;
    lda = lda > 0 ? lda : 1;
    ldb = ldb > 0 ? ldb : 1;
    ldc = ldc > 0 ? ldc : 1;
    int arows = ta == 'N' ? s.M : s.K, brows = tb == 'N' ? s.K : s.N;
    float *A = rand_mat((size_t)arows * lda, 1), *B = rand_mat((size_t)brows * ldb, 2);
    float *C = rand_mat((size_t)s.M * ldc, 3), *R = malloc(sizeof(float) * ((size_t)s.M * ldc + 1));
    memcpy(R, C, sizeof(float) * (size_t)s.M * ldc);
    ms_gemm(ta, tb, s.M, s.N, s.K, alpha, A, lda, B, ldb, beta, C, ldc, prec);
    ms_gemm_ref(ta, tb, s.M, s.N, s.K, alpha, A, lda, B, ldb, beta, R, ldc, prec);
    char what[160];
    snprintf(what, sizeof what, "%s %c%c M=%d N=%d K=%d alpha=%g beta=%g pad=%d",
             ms_precision_name(prec), ta, tb, s.M, s.N, s.K, alpha, beta, pad);
    double atol = tol * (s.K > 0 ? s.K : 1) * (fabs(alpha) + 1.0);
    ms_expect_close_f(what, C, R, (size_t)s.M * ldc, atol, 0.0);
    free(A);
    free(B);
    free(C);
    free(R);
}

static void test_against_reference(ms_precision prec) {
    const shape shapes[] = {{1, 1, 1},     {3, 5, 7},     {17, 33, 65},  {64, 1024, 256},
                            {513, 300, 9}, {0, 4, 4},     {4, 0, 4},     {4, 4, 0},
                            {1100, 70, 40}, {40, 1100, 70}, {300, 301, 302}};
    const char tr[2] = {'N', 'T'};
    /* f32: a sum of K products in fp32 is within ~K eps of the double sum; bf16: the
     * reference rounds the same operands, so only the fp32 accumulation differs */
    double tol = 1.2e-7;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) {
                check_one(tr[a], tr[b], shapes[i], 1.0f, 0.0f, 0, prec, tol);
                check_one(tr[a], tr[b], shapes[i], -2.0f, 1.0f, 3, prec, tol);
                check_one(tr[a], tr[b], shapes[i], 0.5f, 0.25f, 1, prec, tol);
            }
}

/* bf16 against the fp32 product: operands rounded to 8 significant bits give a relative
 * error up to 2^-8 per factor, so each product is off by at most ~2^-7 |a b| and the sum of
 * K random-sign terms by ~2^-7 sqrt(K) typically: we allow 2^-6 sqrt(K) (values in [-1,1]). */
static void test_bf16_vs_f32(void) {
    int M = 200, N = 300, K = 512;
    float *A = rand_mat((size_t)M * K, 4), *B = rand_mat((size_t)K * N, 5);
    float *C = malloc(sizeof(float) * M * N), *F = malloc(sizeof(float) * M * N);
    ms_gemm('N', 'N', M, N, K, 1.0f, A, K, B, N, 0.0f, C, N, MS_PREC_BF16);
    ms_gemm('N', 'N', M, N, K, 1.0f, A, K, B, N, 0.0f, F, N, MS_PREC_F32);
    ms_expect_close_f("bf16 vs f32 product", C, F, (size_t)M * N, sqrt((double)K) / 64.0, 0.0);
    /* and it is a bf16 product, not an fp32 one in disguise */
    double maxd = 0;
    for (int i = 0; i < M * N; i++) maxd = fmax(maxd, fabs((double)C[i] - F[i]));
    MS_EXPECT(maxd > 1e-4);
    free(A);
    free(B);
    free(C);
    free(F);
}

static void test_rounding(void) {
    MS_EXPECT(ms_bf16_round(1.0f) == 0x3f80);
    MS_EXPECT(ms_bf16_round(-2.0f) == 0xc000);
    /* 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0) */
    MS_EXPECT(ms_bf16_round(1.0f + 1.0f / 256.0f) == 0x3f80);
    /* 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even (1 + 2^-6) */
    MS_EXPECT(ms_bf16_round(1.0f + 3.0f / 256.0f) == 0x3f82);
    MS_EXPECT(ms_bf16_round(1.0f + 1.5f / 256.0f) == 0x3f81);
    MS_EXPECT(ms_bf16_to_f32(ms_bf16_round(3.0f)) == 3.0f);
    MS_EXPECT(isnan(ms_bf16_to_f32(ms_bf16_round(NAN))));
    MS_EXPECT(isinf(ms_bf16_to_f32(ms_bf16_round(INFINITY))));
    MS_EXPECT(ms_bf16_to_f32(ms_bf16_round(3.4e38f)) > 3.3e38f ||
              isinf(ms_bf16_to_f32(ms_bf16_round(3.4e38f))));
}

/* The vectorised array rounding (ms_bf16_round_n, ms_bf16_from_f32) against the scalar
 * ms_bf16_round, bit for bit: random bit patterns (every exponent, NaNs with any payload,
 * infinities, denormals), exact ties, and every length 0..40 so the vector tail is hit. */
static void test_rounding_arrays(void) {
    const size_t n = (1u << 19) + 37; /* large enough for ms_bf16_from_f32's threads */
    float *src = malloc(sizeof(float) * n);
    ms_bf16 *a = malloc(sizeof(ms_bf16) * n), *b = malloc(sizeof(ms_bf16) * n);
    ms_rng r;
    ms_rng_init(&r, 7, 0, 0);
    for (size_t i = 0; i < n; i++) {
        union { uint32_t u; float f; } v = {(uint32_t)ms_rng_next(&r)};
        if (i % 5 == 1) v.u = (v.u & 0xffff0000u) | 0x8000u;       /* a tie */
        if (i % 5 == 2) v.u &= 0x807fffffu;                       /* a denormal or zero */
        if (i % 5 == 3) v.u |= 0x7f800000u;                       /* NaN or infinity */
        if (i % 97 == 4) v.u = (v.u & 0x80000000u) | 0x7f800000u; /* infinity */
        if (i % 89 == 5) v.u = 0x7f7fffffu;                       /* rounds up to infinity */
        src[i] = v.f;
    }
    size_t bad = 0;
    for (int threads = 1; threads <= 2; threads++) {
        ms_set_threads(threads);
        memset(a, 0, sizeof(ms_bf16) * n);
        ms_bf16_from_f32(a, src, n);
        for (size_t i = 0; i < n; i++) bad += a[i] != ms_bf16_round(src[i]);
    }
    for (size_t len = 0; len <= 40; len++) {
        memset(b, 0, sizeof(ms_bf16) * 48);
        ms_bf16_round_n(b + 1, src + 3, len); /* unaligned both sides */
        bad += b[0] != 0 || b[len + 1] != 0;  /* nothing written outside */
        for (size_t i = 0; i < len; i++) bad += b[1 + i] != ms_bf16_round(src[3 + i]);
    }
    if (bad) printf("vectorised bf16 rounding: %zu elements differ from ms_bf16_round\n", bad);
    MS_EXPECT(bad == 0);
    free(src);
    free(a);
    free(b);
}

/* The same product with 1, 2, 3 and 4 threads, and from inside a parallel region, must be
 * bitwise identical. Shapes chosen so that the blocking splits (large) and does not (small),
 * including a long-K product that a threaded BLAS would split along K. */
static void test_thread_independence(ms_precision prec) {
    const struct {
        char ta, tb;
        int M, N, K;
    } cases[] = {{'N', 'T', 4000, 1024, 512}, {'T', 'N', 1024, 512, 8000},
                 {'N', 'N', 64, 1024, 256},   {'N', 'T', 48, 40, 60000}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int M = cases[c].M, N = cases[c].N, K = cases[c].K;
        char ta = cases[c].ta, tb = cases[c].tb;
        int lda = ta == 'N' ? K : M, ldb = tb == 'N' ? N : K;
        float *A = rand_mat((size_t)M * K, 6), *B = rand_mat((size_t)K * N, 7);
        float *C1 = calloc((size_t)M * N, sizeof(float)), *Ct = calloc((size_t)M * N, sizeof(float));
        ms_set_threads(1);
        ms_gemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C1, N, prec);
        int same = 1;
        for (int nt = 2; nt <= 4; nt++) {
            ms_set_threads(nt);
            ms_gemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, Ct, N, prec);
            same &= memcmp(C1, Ct, sizeof(float) * (size_t)M * N) == 0;
        }
        ms_set_threads(2);
        memset(Ct, 0, sizeof(float) * (size_t)M * N);
#pragma omp parallel num_threads(2)
        {
#pragma omp single
            ms_gemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, Ct, N, prec);
        }
        same &= memcmp(C1, Ct, sizeof(float) * (size_t)M * N) == 0;
        if (!same)
            printf("%s %c%c M=%d N=%d K=%d differs between thread counts\n",
                   ms_precision_name(prec), ta, tb, M, N, K);
        MS_EXPECT(same);
        free(A);
        free(B);
        free(C1);
        free(Ct);
    }
}

/* ms_gemm_bf16_1t (one single-threaded call) against the reference on rounded operands
 * (strided operands, alpha/beta, a long K), then bitwise the same result with 1, 2 and 4
 * threads, from inside a parallel region, and from a parallel region of one thread. */
static void test_bf16_1t(void) {
    const struct {
        char ta, tb;
        int M, N, K, pad;
        float alpha, beta;
    } cases[] = {{'T', 'N', 96, 80, 3000, 3, 1.0f, 1.0f}, {'N', 'T', 33, 17, 65, 0, -2.0f, 0.5f},
                 {'N', 'N', 300, 64, 40, 1, 1.0f, 0.0f},  {'T', 'T', 5, 7, 9, 2, 0.5f, 0.0f},
                 {'T', 'N', 4, 4, 0, 0, 1.0f, 0.5f}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const int M = cases[c].M, N = cases[c].N, K = cases[c].K, pad = cases[c].pad;
        const char ta = cases[c].ta, tb = cases[c].tb;
        const int lda = (ta == 'N' ? K : M) + pad, ldb = (tb == 'N' ? N : K) + pad, ldc = N + pad;
        const size_t na = (size_t)(ta == 'N' ? M : K) * lda, nb = (size_t)(tb == 'N' ? K : N) * ldb;
        const size_t nc = (size_t)M * ldc;
        float *A = rand_mat(na ? na : 1, 31), *B = rand_mat(nb ? nb : 1, 32), *C0 = rand_mat(nc, 33);
        float *R = malloc(sizeof(float) * nc), *C1 = malloc(sizeof(float) * nc), *Ct = malloc(sizeof(float) * nc);
        ms_bf16 *Ab = malloc(sizeof(ms_bf16) * (na ? na : 1)), *Bb = malloc(sizeof(ms_bf16) * (nb ? nb : 1));
        ms_bf16_from_f32(Ab, A, na);
        ms_bf16_from_f32(Bb, B, nb);
        memcpy(R, C0, sizeof(float) * nc);
        ms_gemm_ref(ta, tb, M, N, K, cases[c].alpha, A, lda, B, ldb, cases[c].beta, R, ldc, MS_PREC_BF16);
        ms_set_threads(1);
        memcpy(C1, C0, sizeof(float) * nc);
        ms_gemm_bf16_1t(ta, tb, M, N, K, cases[c].alpha, Ab, lda, Bb, ldb, cases[c].beta, C1, ldc);
        char what[160];
        snprintf(what, sizeof what, "bf16_1t %c%c M=%d N=%d K=%d pad=%d vs reference", ta, tb, M, N, K, pad);
        ms_expect_close_f(what, C1, R, nc, 1.2e-7 * (K > 0 ? K : 1) * (fabs(cases[c].alpha) + 1.0), 0.0);
        int same = 1;
        for (int nt = 2; nt <= 4; nt += 2) {
            ms_set_threads(nt);
            memcpy(Ct, C0, sizeof(float) * nc);
            ms_gemm_bf16_1t(ta, tb, M, N, K, cases[c].alpha, Ab, lda, Bb, ldb, cases[c].beta, Ct, ldc);
            same &= memcmp(C1, Ct, sizeof(float) * nc) == 0;
        }
        for (int team = 1; team <= 2; team++) {
            ms_set_threads(2);
            memcpy(Ct, C0, sizeof(float) * nc);
#pragma omp parallel num_threads(team)
            {
#pragma omp single
                ms_gemm_bf16_1t(ta, tb, M, N, K, cases[c].alpha, Ab, lda, Bb, ldb, cases[c].beta, Ct, ldc);
            }
            same &= memcmp(C1, Ct, sizeof(float) * nc) == 0;
        }
        if (!same) printf("bf16_1t %c%c M=%d N=%d K=%d differs between thread counts\n", ta, tb, M, N, K);
        MS_EXPECT(same);
        free(A);
        free(B);
        free(C0);
        free(R);
        free(C1);
        free(Ct);
        free(Ab);
        free(Bb);
    }
    ms_set_threads(0);
}

/* Packed weights against the reference loop (both weight orientations, strided A and C,
 * a row count other than the one the layout was chosen for), then bitwise
 * the same results when the object is created and run under 1, 2 and 4 OpenMP threads and
 * from inside a parallel region, and after a re-pack. */
static void test_packed(ms_precision prec) {
    const struct {
        char tw;
        int M, N, K, pad;
    } cases[] = {{'T', 64, 1024, 256, 0}, {'N', 64, 256, 1024, 0}, {'T', 17, 40, 24, 5},
                 {'N', 3, 33, 65, 2},     {'T', 200, 512, 128, 7}, {'T', 1, 64, 16, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int M = cases[c].M, N = cases[c].N, K = cases[c].K, pad = cases[c].pad;
        char tw = cases[c].tw;
        int ldw = (tw == 'N' ? N : K) + pad, lda = K + pad, ldc = N + 2 * pad;
        int wrows = tw == 'N' ? K : N;
        float *W = rand_mat((size_t)wrows * ldw, 11), *W2 = rand_mat((size_t)wrows * ldw, 12);
        float *A = rand_mat((size_t)M * lda, 13);
        float *C = rand_mat((size_t)M * ldc, 14), *R = malloc(sizeof(float) * (size_t)M * ldc);
        float *C0 = malloc(sizeof(float) * (size_t)M * ldc);
        ms_bf16 *Ab = malloc(sizeof(ms_bf16) * (size_t)M * lda);
        ms_bf16_from_f32(Ab, A, (size_t)M * lda);
        memcpy(R, C, sizeof(float) * (size_t)M * ldc);
        memcpy(C0, C, sizeof(float) * (size_t)M * ldc);
        {
            const float beta = 0.0f; /* the reference's; packed products always overwrite C */
            memcpy(C, C0, sizeof(float) * (size_t)M * ldc);
            memcpy(R, C0, sizeof(float) * (size_t)M * ldc);
            ms_gemm_packed *P = ms_gemm_pack(tw, N, K, W2, ldw, prec);
            ms_gemm_pack_update(P, W, ldw); /* the values that count are W's */
            if (prec == MS_PREC_BF16) ms_gemm_packed_run_bf16(P, M, Ab, lda, C, ldc);
            else ms_gemm_packed_run(P, M, A, lda, C, ldc);
            ms_gemm_ref('N', tw, M, N, K, 1.0f, A, lda, W, ldw, beta, R, ldc, prec);
            char what[160];
            snprintf(what, sizeof what, "packed %s W%c M=%d N=%d K=%d pad=%d",
                     ms_precision_name(prec), tw, M, N, K, pad);
            ms_expect_close_f(what, C, R, (size_t)M * ldc, 1.2e-7 * K * 2.0, 0.0);
            /* thread counts: the same bits */
            float *Ct = malloc(sizeof(float) * (size_t)M * ldc);
            int same = 1;
            int saved = omp_get_max_threads();
            for (int nt = 1; nt <= 5; nt++) {
                memcpy(Ct, C0, sizeof(float) * (size_t)M * ldc);
                if (nt <= 4) omp_set_num_threads(nt);
                ms_gemm_packed *Q = NULL;
#pragma omp parallel num_threads(2) if (nt == 5)
                {
#pragma omp single
                    {
                        Q = ms_gemm_pack(tw, N, K, W, ldw, prec);
                        if (prec == MS_PREC_BF16) ms_gemm_packed_run_bf16(Q, M, Ab, lda, Ct, ldc);
                        else ms_gemm_packed_run(Q, M, A, lda, Ct, ldc);
                    }
                }
                ms_gemm_packed_free(Q);
                omp_set_num_threads(saved);
                if (memcmp(C, Ct, sizeof(float) * (size_t)M * ldc)) {
                    double md = 0; int cnt = 0;
                    for (size_t q = 0; q < (size_t)M * ldc; q++) if (C[q] != Ct[q]) cnt++, md = fmax(md, fabs((double)C[q] - Ct[q]));
                    fprintf(stderr, "nt=%d differs: %d elements, max %g\n", nt, cnt, md), same = 0;
                }
            }
            if (!same) fprintf(stderr, "%s differs between thread counts\n", what);
            MS_EXPECT(same);
            free(Ct);
            ms_gemm_packed_free(P);
        }
        free(W), free(W2), free(A), free(C), free(R), free(C0), free(Ab);
    }
}

static void test_precision_names(void) {
    ms_precision p = MS_PREC_BF16;
    MS_EXPECT(ms_precision_parse("f32", &p) == MS_OK && p == MS_PREC_F32);
    MS_EXPECT(ms_precision_parse("fp16", &p) == MS_ERR_ARG);
    MS_EXPECT(strstr(ms_last_error(), "fp16") != NULL);
    ms_status s = ms_precision_parse("bf16", &p);
    MS_EXPECT(ms_bf16_supported() ? (s == MS_OK && p == MS_PREC_BF16) : s == MS_ERR_ARG);
}

int main(void) {
    test_rounding();
    test_rounding_arrays();
    test_precision_names();
    test_against_reference(MS_PREC_F32);
    test_thread_independence(MS_PREC_F32);
    test_packed(MS_PREC_F32);
    if (ms_bf16_supported()) {
        test_against_reference(MS_PREC_BF16);
        test_bf16_vs_f32();
        test_thread_independence(MS_PREC_BF16);
        test_bf16_1t();
        test_packed(MS_PREC_BF16);
    } else {
        printf("bf16 checks skipped: this CPU has no AVX512_BF16\n");
    }
    return ms_test_summary();
}
