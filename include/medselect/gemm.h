/* medselect/gemm.h: the one matrix-multiply entry point of the library.
 *
 *   C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C
 *
 * All matrices are row-major; op(X) is X or its transpose ('N' or 'T'); lda/ldb/ldc are the
 * row strides of the matrices as stored (so A stored (M, K) when 'N', (K, M) when 'T').
 * beta = 0 ignores C's previous content (NaN included). Every matrix product of the library
 * goes through here: the selector's forward/backward and batched scoring, the predictor,
 * the strategies' distance products and the embedder's im2col convolutions.
 *
 * Backend: oneDNN's CPU GEMM (dnnl_sgemm; bf16 operands with fp32 accumulation through
 * oneDNN's gemm_bf16bf16f32), which selects AVX-512 / AVX512_BF16 / AVX2 kernels at run time.
 * Beside it, ms_gemm_ref is the plain triple loop (double accumulation) the tests compare
 * with.
 *
 * Threads and reproducibility. Called outside an OpenMP parallel region, ms_gemm splits C into
 * blocks whose sizes depend on (M, N, K) only, computes each block over the whole K on one
 * thread, and runs the blocks on ms_get_threads() threads. Called inside a parallel region,
 * it computes the blocks on the calling thread. Either way each element of C is produced by
 * the same single-threaded kernel with the same operands in the same order, so f32 and bf16
 * results are bitwise independent of the thread count.
 *
 * Precision. MS_PREC_F32: fp32 operands and accumulation. MS_PREC_BF16: A and B are rounded
 * to bfloat16 (round to nearest even; 8 significant bits), products are accumulated in fp32,
 * C stays fp32. bf16 needs a CPU with AVX512_BF16 (ms_bf16_supported); requesting it
 * elsewhere is a contract violation in the kernels and a clear error through
 * ms_precision_check, which every command calls when parsing --precision.
 */
#ifndef MEDSELECT_GEMM_H
#define MEDSELECT_GEMM_H

#include <stdint.h>

#include "medselect/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    MS_PREC_F32 = 0,  /* fp32 operands, fp32 accumulation (the default) */
    MS_PREC_BF16 = 1, /* bf16 operands, fp32 accumulation, fp32 result */
} ms_precision;

/* A bfloat16 value: the upper 16 bits of an IEEE float. */
typedef uint16_t ms_bf16;

/* C = alpha op(A) op(B) + beta C with A, B, C fp32 in memory; see the overview.
 * With MS_PREC_BF16 the operands are rounded into scratch memory that ms_gemm owns (grown
 * once per thread, reused), so hot loops that multiply by the same weights many times
 * should convert them once and call ms_gemm_bf16 instead. */
void ms_gemm(char ta, char tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc, ms_precision prec);

/* The same product with operands already in bf16 (fp32 accumulation, fp32 C). */
void ms_gemm_bf16(char ta, char tb, int M, int N, int K, float alpha, const ms_bf16 *A, int lda,
                  const ms_bf16 *B, int ldb, float beta, float *C, int ldc);

/* The same as one single-threaded call on the calling thread, without ms_gemm's blocking
 * into slabs (each slab re-reads the other operand): for products that already run one
 * per thread, such as an LSTM direction's weight gradient, where K (the rows summed over) is
 * long. The summation order depends on the shapes only, so results are bitwise the same for
 * any thread count, inside or outside a parallel region (not necessarily the bits of
 * ms_gemm_bf16, which may block differently). */
void ms_gemm_bf16_1t(char ta, char tb, int M, int N, int K, float alpha, const ms_bf16 *A,
                     int lda, const ms_bf16 *B, int ldb, float beta, float *C, int ldc);

/* Packed weights: a matrix W that multiplies many left operands (the recurrent weights of
 * the LSTM, used once per time step) prepared once in the kernel's own blocked layout, so
 * that each product does not re-pack it. Products
 *
 *   C (M, N) = A (M, K) op(W) (K, N)      (alpha 1, beta 0: C's old content is ignored)
 *
 * run single-threaded on the calling thread through oneDNN's matmul primitive (created for
 * one thread, so the summation order depends on the shapes only: results are bitwise the
 * same for any thread count and inside or outside a parallel region). A and C are
 * row-major with row strides lda and ldc; with MS_PREC_BF16 the weights are rounded to bf16
 * (round to nearest even) when packed and A is already bf16 (ms_gemm_packed_run_bf16).
 * The object keeps a few primitives, one per (M, lda, ldc) met so far (created on
 * first use, then reused: no allocation once every shape has been seen). One thread at a
 * time may use an object; give each thread its own. The reference is ms_gemm_ref on the
 * unpacked operands (test_gemm compares them). */
typedef struct ms_gemm_packed ms_gemm_packed;

/* A packed (K, N) weight op(W) of the given precision; W as ms_gemm's B: stored (K, N) when
 * tw = 'N', (N, K) when 'T', row stride ldw. Contents are read now (and by each update). */
ms_gemm_packed *ms_gemm_pack(char tw, int N, int K, const float *W, int ldw, ms_precision prec);
/* Re-packs new values of the same shape (after an optimiser step). */
void ms_gemm_pack_update(ms_gemm_packed *P, const float *W, int ldw);
void ms_gemm_packed_free(ms_gemm_packed *P);
/* C (M, N) = A (M, K) op(W); fp32 A (MS_PREC_F32 objects). */
void ms_gemm_packed_run(ms_gemm_packed *P, int M, const float *A, int lda, float *C, int ldc);
/* The same with a bf16 A (MS_PREC_BF16 objects). */
void ms_gemm_packed_run_bf16(ms_gemm_packed *P, int M, const ms_bf16 *A, int lda, float *C,
                             int ldc);

/* Reference: the plain triple loop, double accumulation. With MS_PREC_BF16 the operands are
 * rounded to bf16 first, so it is the exact product the bf16 kernel approximates. */
void ms_gemm_ref(char ta, char tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc, ms_precision prec);

/* fp32 -> bf16 with round to nearest even (NaN stays NaN), and back (exact).
 * ms_bf16_from_f32 spreads large arrays over the threads (outside a parallel region);
 * ms_bf16_round_n runs on the calling thread (rows inside a parallel region). Both are
 * vectorised and give bitwise the result of ms_bf16_round on each element. */
void ms_bf16_from_f32(ms_bf16 *dst, const float *src, size_t n);
void ms_bf16_round_n(ms_bf16 *dst, const float *src, size_t n);
static inline ms_bf16 ms_bf16_round(float x) {
    union { float f; uint32_t u; } v = {x};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (ms_bf16)((v.u >> 16) | 0x40u); /* quiet NaN */
    return (ms_bf16)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
static inline float ms_bf16_to_f32(ms_bf16 h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

/* The process-wide precision of the selector's and the embedder's products (MS_PREC_F32
 * until set): LSTM caches take it when they are created (ms_lstm_cache_init) and the
 * ResNet-18 convolutions read it on every call. The predictor's and the strategies'
 * products always run in f32: they feed distances |a|^2 + |b|^2 - 2 a.b and cosine
 * similarities of near-unit vectors, where 8-bit operands would cancel badly, and they are
 * a small share of the time. Set it before starting work (like ms_set_threads). */
void ms_set_precision(ms_precision p);
ms_precision ms_get_precision(void);

/* 1 when this CPU runs bf16 products natively (AVX512_BF16), else 0. */
int ms_bf16_supported(void);

/* "f32" / "bf16". */
const char *ms_precision_name(ms_precision p);
/* Parses "f32" or "bf16" (MS_ERR_ARG with a one-line message otherwise) and checks that the
 * CPU supports it (MS_ERR_ARG naming the missing instruction set when it does not). */
ms_status ms_precision_parse(const char *s, ms_precision *out);
/* MS_ERR_ARG when `p` cannot run on this CPU. */
ms_status ms_precision_check(ms_precision p);

#ifdef __cplusplus
}
#endif

#endif
