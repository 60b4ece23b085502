/* ms_gemm.c: the GEMM layer (see gemm.h): oneDNN's fp32 and bf16 GEMM run block by block
 * on a shape-only blocking (bitwise results for any thread count), operand rounding to
 * bf16, the CPU check, and the plain reference loop.
 *
 * Blocking. C (M, N) is cut along its longer side into nblk slabs; nblk grows with the
 * work (one slab per MS_GEMM_BLOCK_FLOP floating-point operations) but a slab is never
 * thinner than MS_GEMM_MIN_SLAB rows/columns, because each slab re-packs the other operand.
 * Each slab is one single-threaded oneDNN call over the whole K: oneDNN runs sequentially
 * when called inside an OpenMP parallel region, so no element of C is ever split across
 * threads and the summation order is a function of the shapes only.
 */
#define _GNU_SOURCE
#include "medselect/gemm.h"

#include <cpuid.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif
#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

/* oneDNN exports its bf16 GEMM with dnnl_sgemm's row-major convention but does not declare
 * it in the public header of the 2.x series; bfloat16_t there is a 16-bit struct passed by
 * pointer, so uint16_t is ABI-compatible. */
dnnl_status_t dnnl_gemm_bf16bf16f32(char transa, char transb, dnnl_dim_t M, dnnl_dim_t N,
                                    dnnl_dim_t K, float alpha, const ms_bf16 *A, dnnl_dim_t lda,
                                    const ms_bf16 *B, dnnl_dim_t ldb, float beta, float *C,
                                    dnnl_dim_t ldc);

enum { MS_GEMM_MIN_SLAB = 256, MS_GEMM_MAX_BLOCKS = 64 };
#define MS_GEMM_BLOCK_FLOP (1.0 * (1 << 30))

/* ---- CPU and precision ------------------------------------------------------------------ */

int ms_bf16_supported(void) {
    static int cached = -1;
    if (cached < 0) {
        unsigned a = 0, b = 0, c = 0, d = 0;
        /* CPUID leaf 7, sub-leaf 1: EAX bit 5 = AVX512_BF16 */
        int ok = __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5));
        cached = ok ? 1 : 0;
    }
    return cached;
}

static ms_precision g_precision = MS_PREC_F32;

void ms_set_precision(ms_precision p) {
    MS_CHECK(p == MS_PREC_F32 || (p == MS_PREC_BF16 && ms_bf16_supported()));
    g_precision = p;
}

ms_precision ms_get_precision(void) { return g_precision; }

const char *ms_precision_name(ms_precision p) { return p == MS_PREC_BF16 ? "bf16" : "f32"; }

ms_status ms_precision_check(ms_precision p) {
    if (p == MS_PREC_BF16 && !ms_bf16_supported())
        return ms_fail(MS_ERR_ARG, "--precision bf16: this CPU has no AVX512_BF16 instructions "
                                   "(use --precision f32)");
    return MS_OK;
}

ms_status ms_precision_parse(const char *s, ms_precision *out) {
    if (s && strcmp(s, "f32") == 0) *out = MS_PREC_F32;
    else if (s && strcmp(s, "bf16") == 0) *out = MS_PREC_BF16;
    else return ms_fail(MS_ERR_ARG, "--precision: unknown value '%s' (f32 or bf16)", s ? s : "");
    return ms_precision_check(*out);
}

/* Round to nearest even, 16 floats at a time: the integer recipe of ms_bf16_round (add
 * 0x7fff plus the lowest kept bit, keep the upper half; NaNs become quiet NaNs), so the
 * result is bitwise the scalar one for every input (denormals included, which
 * vcvtneps2bf16 would flush). The scalar loop is the reference and does the tail. */
void ms_bf16_round_n(ms_bf16 *dst, const float *src, size_t n) {
    size_t i = 0;
#ifdef __AVX512F__
    const __m512i absmask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
    const __m512i quiet = _mm512_set1_epi32(0x40);
    for (; i + 16 <= n; i += 16) {
        __m512i u = _mm512_loadu_si512((const void *)(src + i));
        __m512i hi = _mm512_srli_epi32(u, 16);
        __m512i r = _mm512_srli_epi32(
            _mm512_add_epi32(_mm512_add_epi32(u, bias), _mm512_and_si512(hi, one)), 16);
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, absmask), inf);
        r = _mm512_mask_or_epi32(r, nan, hi, quiet);
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), _mm512_cvtepi32_epi16(r));
    }
#endif
    for (; i < n; i++) dst[i] = ms_bf16_round(src[i]);
}

void ms_bf16_from_f32(ms_bf16 *dst, const float *src, size_t n) {
    /* chunks of 4096 (whole cache lines of both arrays) spread over the threads */
    const size_t chunk = 4096, nchunk = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (n >= (1u << 18) && !omp_in_parallel())
    for (size_t c = 0; c < nchunk; c++) {
        size_t i0 = c * chunk, m = n - i0 < chunk ? n - i0 : chunk;
        ms_bf16_round_n(dst + i0, src + i0, m);
    }
}

/* ---- blocking ----------------------------------------------------------------------------- */

typedef struct {
    int nblk;     /* number of slabs */
    int along_m;  /* 1: slabs are row ranges of C, 0: column ranges */
    int slab;     /* rows/columns per slab (the last may be shorter) */
} blocking;

static blocking plan(int M, int N, int K) {
    blocking b = {1, M >= N, M >= N ? M : N};
    double flop = 2.0 * M * (double)N * K;
    int side = b.along_m ? M : N;
    int want = (int)(flop / MS_GEMM_BLOCK_FLOP) + 1;
    int room = side / MS_GEMM_MIN_SLAB;
    if (want > room) want = room;
    if (want > MS_GEMM_MAX_BLOCKS) want = MS_GEMM_MAX_BLOCKS;
    if (want > 1) {
        b.nblk = want;
        b.slab = (side + want - 1) / want;
        b.slab = (b.slab + 15) / 16 * 16; /* whole vector registers of C */
        b.nblk = (side + b.slab - 1) / b.slab;
    }
    return b;
}

/* One slab: rows [r0, r0+m) or columns [c0, c0+n) of C. Offsets into A and B follow the
 * storage (transposed operands are indexed by column). */
static void run_block(char ta, char tb, int M, int N, int K, float alpha, const void *A, int lda,
                      const void *B, int ldb, float beta, float *C, int ldc, int bf16,
                      const blocking *bl, int i) {
    int r0 = 0, c0 = 0, m = M, n = N;
    if (bl->along_m) {
        r0 = i * bl->slab;
        m = M - r0 < bl->slab ? M - r0 : bl->slab;
    } else {
        c0 = i * bl->slab;
        n = N - c0 < bl->slab ? N - c0 : bl->slab;
    }
    size_t aoff = ta == 'N' ? (size_t)r0 * lda : (size_t)r0;
    size_t boff = tb == 'N' ? (size_t)c0 : (size_t)c0 * ldb;
    float *Cb = C + (size_t)r0 * ldc + c0;
    dnnl_status_t st;
    if (bf16)
        st = dnnl_gemm_bf16bf16f32(ta, tb, m, n, K, alpha, (const ms_bf16 *)A + aoff, lda,
                                   (const ms_bf16 *)B + boff, ldb, beta, Cb, ldc);
    else
        st = dnnl_sgemm(ta, tb, m, n, K, alpha, (const float *)A + aoff, lda,
                        (const float *)B + boff, ldb, beta, Cb, ldc);
    if (st != dnnl_success) ms_abort_at(__FILE__, __LINE__, "oneDNN GEMM refused its arguments");
}

static void check_args(char ta, char tb, int M, int N, int K, const void *A, int lda,
                       const void *B, int ldb, const float *C, int ldc) {
    MS_CHECK((ta == 'N' || ta == 'T') && (tb == 'N' || tb == 'T'));
    MS_CHECK(M >= 0 && N >= 0 && K >= 0 && C);
    MS_CHECK(ldc >= (N > 1 ? N : 1));
    MS_CHECK(lda >= ((ta == 'N' ? K : M) > 1 ? (ta == 'N' ? K : M) : 1));
    MS_CHECK(ldb >= ((tb == 'N' ? N : K) > 1 ? (tb == 'N' ? N : K) : 1));
    MS_CHECK(K == 0 || (A && B));
}

/* C = beta C (also when K = 0, where oneDNN has no product to run). */
static void scale_c(int M, int N, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f) memset(c, 0, sizeof(float) * (size_t)N);
        else
            for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

static void gemm_blocked(char ta, char tb, int M, int N, int K, float alpha, const void *A,
                         int lda, const void *B, int ldb, float beta, float *C, int ldc,
                         int bf16) {
    if (M == 0 || N == 0) return;
    if (K == 0) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    blocking bl = plan(M, N, K);
    int nt = omp_in_parallel() ? 1 : ms_get_threads();
    if (nt > bl.nblk) nt = bl.nblk;
    if (nt <= 1) {
        /* oneDNN would spread a call made outside a parallel region over all threads (and
         * might split K): keep it on this thread. */
#pragma omp parallel num_threads(2) if (!omp_in_parallel() && omp_get_max_threads() > 1)
        {
            if (omp_get_thread_num() == 0)
                for (int i = 0; i < bl.nblk; i++)
                    run_block(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bf16, &bl, i);
        }
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int i = 0; i < bl.nblk; i++)
        run_block(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bf16, &bl, i);
}

/* ---- public entry points ------------------------------------------------------------------ */

/* Grow-only per-thread scratch for rounded operands (never freed while the thread lives; the
 * largest request so far is kept). */
static _Thread_local ms_bf16 *tl_scratch;
static _Thread_local size_t tl_scratch_n;

static ms_bf16 *scratch(size_t n) {
    if (n > tl_scratch_n) {
        free(tl_scratch);
        tl_scratch = ms_xmalloc(sizeof(ms_bf16) * n);
        tl_scratch_n = n;
    }
    return tl_scratch;
}

/* Elements spanned by a stored matrix of `rows` rows of stride ld with `cols` used columns. */
static size_t span(int rows, int cols, int ld) {
    return rows > 0 ? (size_t)(rows - 1) * ld + (size_t)cols : 0;
}

void ms_gemm(char ta, char tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc, ms_precision prec) {
    check_args(ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
    if (prec == MS_PREC_F32) {
        gemm_blocked(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 0);
        return;
    }
    MS_CHECK(prec == MS_PREC_BF16 && ms_bf16_supported());
    if (M == 0 || N == 0 || K == 0) {
        gemm_blocked(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 1);
        return;
    }
    size_t na = ta == 'N' ? span(M, K, lda) : span(K, M, lda);
    size_t nb = tb == 'N' ? span(K, N, ldb) : span(N, K, ldb);
    ms_bf16 *s = scratch(na + nb);
    /* the gaps between rows (ld > cols) are rounded too: harmless, and one flat loop */
    ms_bf16_from_f32(s, A, na);
    ms_bf16_from_f32(s + na, B, nb);
    gemm_blocked(ta, tb, M, N, K, alpha, s, lda, s + na, ldb, beta, C, ldc, 1);
}

void ms_gemm_bf16(char ta, char tb, int M, int N, int K, float alpha, const ms_bf16 *A, int lda,
                  const ms_bf16 *B, int ldb, float beta, float *C, int ldc) {
    check_args(ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
    MS_CHECK(ms_bf16_supported());
    gemm_blocked(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 1);
}

void ms_gemm_bf16_1t(char ta, char tb, int M, int N, int K, float alpha, const ms_bf16 *A,
                     int lda, const ms_bf16 *B, int ldb, float beta, float *C, int ldc) {
    check_args(ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
    MS_CHECK(ms_bf16_supported());
    if (M == 0 || N == 0) return;
    if (K == 0) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    const blocking one = {1, 1, M};
    if (omp_in_parallel()) { /* oneDNN runs sequentially here */
        run_block(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 1, &one, 0);
        return;
    }
    /* outside a parallel region oneDNN would spread the call over all threads */
#pragma omp parallel num_threads(2) if (omp_get_max_threads() > 1)
    {
        if (omp_get_thread_num() == 0)
            run_block(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 1, &one, 0);
    }
}

void ms_gemm_ref(char ta, char tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc, ms_precision prec) {
    check_args(ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                float a = ta == 'N' ? A[(size_t)i * lda + k] : A[(size_t)k * lda + i];
                float b = tb == 'N' ? B[(size_t)k * ldb + j] : B[(size_t)j * ldb + k];
                if (prec == MS_PREC_BF16) {
                    a = ms_bf16_to_f32(ms_bf16_round(a));
                    b = ms_bf16_to_f32(ms_bf16_round(b));
                }
                acc += (double)a * (double)b;
            }
            float *c = C + (size_t)i * ldc + j;
            double prev = beta == 0.0f ? 0.0 : (double)beta * (double)*c;
            *c = (float)((double)alpha * acc + prev);
        }
}

/* ---- packed weights (oneDNN matmul) ----------------------------------------------------
 * The weight is reordered once into the layout the matmul primitive asks for ("any"); each
 * (M, lda, ldc) gets its own primitive, created with oneDNN's thread count set to 1
 * for the creating call, so the kernel's blocking (and so the summation order) does not
 * depend on the caller's thread count; executing it inside or outside a parallel region
 * then runs the same single-threaded blocking. */

enum { PACK_SLOTS = 8 };

typedef struct {
    int M, lda, ldc;
    dnnl_primitive_t prim;
    dnnl_memory_t a, c; /* user-pointer memory objects; data handles are set per call */
    dnnl_memory_t scratch; /* the primitive's own scratchpad (NULL when it needs none) */
} pack_slot;

struct ms_gemm_packed {
    char tw;
    int N, K;
    ms_precision prec;
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    dnnl_memory_desc_t wmd; /* the packed layout (chosen by the first primitive) */
    dnnl_memory_t w;        /* owns the packed data */
    dnnl_primitive_t reorder;
    dnnl_memory_t wsrc;     /* the plain fp32 source, handle set per update */
    pack_slot slot[PACK_SLOTS];
    int nslot, next; /* slots in use; the next one to recycle when all are used */
    /* A plain copy of W (fp32, or rounded to bf16), stored as given (tw), row stride ldp,
     * for the shapes where oneDNN offers no blocked ("brg") kernel: those run through
     * ms_gemm as before (its reference-kernel fallbacks are slow and plan their own threads). */
    void *plain;
    int ldp;
    int brg; /* 1: the packed layout belongs to a brgemm kernel */
};

/* 1 when the primitive descriptor's implementation is oneDNN's brgemm matmul. */
static int pd_is_brg(const_dnnl_primitive_desc_t pd) {
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl) return 0;
    return strncmp(impl, "brg", 3) == 0;
}

#define DNNL_OK(x)                                                                           \
    do {                                                                                     \
        if ((x) != dnnl_success) ms_abort_at(__FILE__, __LINE__, "oneDNN refused: " #x);     \
    } while (0)

/* The matmul primitive descriptor for (M, lda, ldc) with the weight layout `wmd`
 * (format "any" the first time), created for one thread. NULL when oneDNN has no kernel. */
static dnnl_primitive_desc_t packed_pd(const ms_gemm_packed *P, int M, int lda, int ldc,
                                       const dnnl_memory_desc_t *wmd) {
    dnnl_data_type_t dt = P->prec == MS_PREC_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_dims_t ad = {M, P->K}, cd = {M, P->N}, as = {lda, 1}, cs = {ldc, 1};
    dnnl_memory_desc_t amd, cmd;
    DNNL_OK(dnnl_memory_desc_init_by_strides(&amd, 2, ad, dt, as));
    DNNL_OK(dnnl_memory_desc_init_by_strides(&cmd, 2, cd, dnnl_f32, cs));
    dnnl_matmul_desc_t md;
    DNNL_OK(dnnl_matmul_desc_init(&md, &amd, wmd, NULL, &cmd));
    dnnl_primitive_attr_t attr;
    DNNL_OK(dnnl_primitive_attr_create(&attr));
    /* a scratchpad per object: oneDNN's primitive cache hands the same primitive to every
     * object of the same shapes, and two threads may run them at once */
    DNNL_OK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    int saved = omp_get_max_threads();
    omp_set_num_threads(1); /* oneDNN reads its thread count from here when it plans */
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_primitive_desc_create(&pd, &md, attr, P->eng, NULL) != dnnl_success) pd = NULL;
    omp_set_num_threads(saved);
    dnnl_primitive_attr_destroy(attr);
    return pd;
}

static void packed_reorder(ms_gemm_packed *P, const float *W, int ldw) {
    int rows = P->tw == 'N' ? P->K : P->N, cols = P->tw == 'N' ? P->N : P->K;
    for (int r = 0; r < rows; r++) {
        if (P->prec == MS_PREC_BF16)
            ms_bf16_from_f32((ms_bf16 *)P->plain + (size_t)r * P->ldp, W + (size_t)r * ldw, (size_t)cols);
        else
            memcpy((float *)P->plain + (size_t)r * P->ldp, W + (size_t)r * ldw, sizeof(float) * (size_t)cols);
    }
    if (!P->brg) return;
    dnnl_dims_t wd = {P->K, P->N};
    dnnl_dims_t ws = {P->tw == 'N' ? ldw : 1, P->tw == 'N' ? 1 : ldw};
    dnnl_memory_desc_t smd;
    DNNL_OK(dnnl_memory_desc_init_by_strides(&smd, 2, wd, dnnl_f32, ws));
    if (!P->reorder) {
        DNNL_OK(dnnl_memory_create(&P->wsrc, &smd, P->eng, DNNL_MEMORY_NONE));
        dnnl_primitive_desc_t rpd;
        int saved = omp_get_max_threads();
        omp_set_num_threads(1);
        dnnl_status_t s = dnnl_reorder_primitive_desc_create(&rpd, &smd, P->eng, &P->wmd, P->eng, NULL);
        omp_set_num_threads(saved);
        DNNL_OK(s);
        DNNL_OK(dnnl_primitive_create(&P->reorder, rpd));
        dnnl_primitive_desc_destroy(rpd);
    }
    DNNL_OK(dnnl_memory_set_data_handle(P->wsrc, (void *)W));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, P->wsrc}, {DNNL_ARG_TO, P->w}};
    DNNL_OK(dnnl_primitive_execute(P->reorder, P->stream, 2, args));
    DNNL_OK(dnnl_stream_wait(P->stream));
}

static dnnl_engine_t packed_engine(void) {
    static dnnl_engine_t eng;
#pragma omp critical(ms_gemm_engine)
    if (!eng) DNNL_OK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    return eng;
}

ms_gemm_packed *ms_gemm_pack(char tw, int N, int K, const float *W, int ldw, ms_precision prec) {
    MS_CHECK((tw == 'N' || tw == 'T') && N > 0 && K > 0 && W);
    MS_CHECK(ldw >= (tw == 'N' ? N : K));
    MS_CHECK(prec == MS_PREC_F32 || (prec == MS_PREC_BF16 && ms_bf16_supported()));
    ms_gemm_packed *P = ms_xcalloc(1, sizeof *P);
    P->tw = tw, P->N = N, P->K = K, P->prec = prec;
    P->eng = packed_engine();
    DNNL_OK(dnnl_stream_create(&P->stream, P->eng, dnnl_stream_default_flags));
    /* the layout comes from a primitive for a typical left operand (64 rows) */
    dnnl_dims_t wd = {K, N};
    dnnl_memory_desc_t any;
    DNNL_OK(dnnl_memory_desc_init_by_tag(&any, 2, wd, prec == MS_PREC_BF16 ? dnnl_bf16 : dnnl_f32,
                                         dnnl_format_tag_any));
    P->ldp = tw == 'N' ? N : K;
    P->plain = ms_xmalloc((prec == MS_PREC_BF16 ? sizeof(ms_bf16) : sizeof(float)) *
                          (size_t)(tw == 'N' ? K : N) * (size_t)P->ldp);
    dnnl_primitive_desc_t pd = packed_pd(P, 64, K, N, &any);
    if (pd && pd_is_brg(pd)) {
        P->brg = 1;
        P->wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        DNNL_OK(dnnl_memory_create(&P->w, &P->wmd, P->eng, DNNL_MEMORY_ALLOCATE));
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    packed_reorder(P, W, ldw);
    return P;
}

void ms_gemm_pack_update(ms_gemm_packed *P, const float *W, int ldw) {
    MS_CHECK(P && W && ldw >= (P->tw == 'N' ? P->N : P->K));
    packed_reorder(P, W, ldw);
}

void ms_gemm_packed_free(ms_gemm_packed *P) {
    if (!P) return;
    for (int i = 0; i < P->nslot; i++) {
        if (P->slot[i].prim) dnnl_primitive_destroy(P->slot[i].prim);
        if (P->slot[i].a) dnnl_memory_destroy(P->slot[i].a);
        if (P->slot[i].c) dnnl_memory_destroy(P->slot[i].c);
        if (P->slot[i].scratch) dnnl_memory_destroy(P->slot[i].scratch);
    }
    if (P->reorder) dnnl_primitive_destroy(P->reorder);
    if (P->wsrc) dnnl_memory_destroy(P->wsrc);
    if (P->w) dnnl_memory_destroy(P->w);
    free(P->plain);
    dnnl_stream_destroy(P->stream);
    free(P);
}

static pack_slot *packed_slot(ms_gemm_packed *P, int M, int lda, int ldc) {
    for (int i = 0; i < P->nslot; i++) {
        pack_slot *s = &P->slot[i];
        if (s->M == M && s->lda == lda && s->ldc == ldc) return s;
    }
    pack_slot *s;
    if (P->nslot < PACK_SLOTS) {
        s = &P->slot[P->nslot++];
    } else { /* recycle round-robin */
        s = &P->slot[P->next];
        P->next = (P->next + 1) % PACK_SLOTS;
        if (s->prim) dnnl_primitive_destroy(s->prim);
        if (s->a) dnnl_memory_destroy(s->a);
        if (s->c) dnnl_memory_destroy(s->c);
        if (s->scratch) dnnl_memory_destroy(s->scratch);
    }
    dnnl_primitive_desc_t pd = packed_pd(P, M, lda, ldc, &P->wmd);
    s->M = M, s->lda = lda, s->ldc = ldc;
    s->prim = NULL, s->a = s->c = s->scratch = NULL;
    if (pd && !pd_is_brg(pd)) {
        dnnl_primitive_desc_destroy(pd);
        pd = NULL;
    }
    if (!pd) return s; /* no blocked kernel for this M: the plain path */
    DNNL_OK(dnnl_primitive_create(&s->prim, pd));
    DNNL_OK(dnnl_memory_create(&s->a, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), P->eng,
                               DNNL_MEMORY_NONE));
    DNNL_OK(dnnl_memory_create(&s->c, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), P->eng,
                               DNNL_MEMORY_NONE));
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    s->scratch = NULL;
    if (smd && dnnl_memory_desc_get_size(smd) > 0)
        DNNL_OK(dnnl_memory_create(&s->scratch, smd, P->eng, DNNL_MEMORY_ALLOCATE));
    dnnl_primitive_desc_destroy(pd);
    return s;
}

static void packed_run(ms_gemm_packed *P, int M, const void *A, int lda, float *C, int ldc) {
    MS_CHECK(P && M >= 0 && C);
    MS_CHECK(lda >= P->K && ldc >= P->N);
    if (M == 0) return;
    MS_CHECK(A);
    pack_slot *s = P->brg ? packed_slot(P, M, lda, ldc) : NULL;
    if (!s || !s->prim) { /* the plain path: ms_gemm's single-threaded shape-only blocking */
        if (P->prec == MS_PREC_BF16)
            ms_gemm_bf16('N', P->tw, M, P->N, P->K, 1.0f, A, lda, P->plain, P->ldp, 0.0f, C, ldc);
        else
            ms_gemm('N', P->tw, M, P->N, P->K, 1.0f, A, lda, P->plain, P->ldp, 0.0f, C, ldc, MS_PREC_F32);
        return;
    }
    DNNL_OK(dnnl_memory_set_data_handle(s->a, (void *)A));
    DNNL_OK(dnnl_memory_set_data_handle(s->c, C));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, s->a}, {DNNL_ARG_WEIGHTS, P->w}, {DNNL_ARG_DST, s->c},
                               {DNNL_ARG_SCRATCHPAD, s->scratch}};
    /* planned for one thread, and run with oneDNN's thread count at 1 too (it reads it
     * again when it distributes the work) */
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    DNNL_OK(dnnl_primitive_execute(s->prim, P->stream, s->scratch ? 4 : 3, args));
    DNNL_OK(dnnl_stream_wait(P->stream));
    omp_set_num_threads(saved);
}

void ms_gemm_packed_run(ms_gemm_packed *P, int M, const float *A, int lda, float *C, int ldc) {
    MS_CHECK(P && P->prec == MS_PREC_F32);
    packed_run(P, M, A, lda, C, ldc);
}

void ms_gemm_packed_run_bf16(ms_gemm_packed *P, int M, const ms_bf16 *A, int lda, float *C,
                             int ldc) {
    MS_CHECK(P && P->prec == MS_PREC_BF16);
    packed_run(P, M, A, lda, C, ldc);
}
