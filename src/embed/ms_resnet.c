/* ms_resnet.c: ResNet-18 inference: convolution (im2col + one sgemm per layer and micro-batch,
 * batch norm already folded into weights and bias), max pool, residual blocks, global
 * average pool, and the batched multi-threaded forward over a preallocated workspace. The
 * plain direct kernels sit beside the optimized ones; tests check that they agree.
 *
 * Activations are (C, b, H, W) ("CBHW", see ms_embed_internal.h). Threads split the batch:
 * each thread runs whole micro-batches through the network with its own buffers and
 * single-threaded GEMMs (ms_gemm runs on its calling thread inside a parallel region),
 * which keeps every core busy even at 64x64, where each GEMM is too small to split. The
 * micro-batch is as many images as fit a fixed per-thread memory budget, so that the
 * GEMMs of small images are wide while large images (320x320) stay within memory.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#ifdef __AVX512BF16__
#include <immintrin.h>
#endif

#include "embed/ms_embed_internal.h"
#include "medselect/gemm.h"

/* ---- im2col and convolution ------------------------------------------------------------ */

void ms_im2col(float *col, const float *in, int cin, int b, int h, int w, int k, int stride,
               int pad) {
    const int ho = ms_conv_out(h, k, stride, pad), wo = ms_conv_out(w, k, stride, pad);
    const size_t n = (size_t)b * ho * wo;
    for (int ci = 0; ci < cin; ci++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                float *row = col + ((size_t)(ci * k + ky) * k + kx) * n;
                /* ox is valid when 0 <= ox*s - p + kx < w */
                int lo = 0;
                while (lo < wo && lo * stride - pad + kx < 0) lo++;
                int hi = wo; /* exclusive */
                while (hi > lo && (hi - 1) * stride - pad + kx >= w) hi--;
                for (int img = 0; img < b; img++) {
                    const float *plane = in + ((size_t)ci * b + img) * h * w;
                    for (int oy = 0; oy < ho; oy++) {
                        float *dst = row + ((size_t)img * ho + oy) * wo;
                        int iy = oy * stride - pad + ky;
                        if (iy < 0 || iy >= h) {
                            memset(dst, 0, sizeof(float) * (size_t)wo);
                            continue;
                        }
                        const float *src = plane + (size_t)iy * w - pad + kx;
                        for (int ox = 0; ox < lo; ox++) dst[ox] = 0.0f;
                        if (stride == 1)
                            memcpy(dst + lo, src + lo, sizeof(float) * (size_t)(hi - lo));
                        else if (stride == 2)
                            for (int ox = lo; ox < hi; ox++) dst[ox] = src[2 * ox];
                        else
                            for (int ox = lo; ox < hi; ox++) dst[ox] = src[ox * stride];
                        for (int ox = hi; ox < wo; ox++) dst[ox] = 0.0f;
                    }
                }
            }
}

/* dst[0..n) = bf16(src[0..n)): vcvtneps2bf16 (round to nearest even) where the CPU has it.
 * It reads denormal inputs as zero, unlike ms_bf16_round (activations are never that small
 * in practice; the tests compare with ms_bf16_round on normal values). */
static void round_row_bf16(ms_bf16 *dst, const float *src, int n) {
    int i = 0;
#ifdef __AVX512BF16__
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m256i v = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
        _mm256_mask_storeu_epi16(dst + i, m, v);
        return;
    }
#endif
    for (; i < n; i++) dst[i] = ms_bf16_round(src[i]);
}

void ms_im2col_bf16(ms_bf16 *col, const float *in, int cin, int b, int h, int w, int k,
                    int stride, int pad) {
    const int ho = ms_conv_out(h, k, stride, pad), wo = ms_conv_out(w, k, stride, pad);
    const size_t n = (size_t)b * ho * wo;
    for (int ci = 0; ci < cin; ci++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                ms_bf16 *row = col + ((size_t)(ci * k + ky) * k + kx) * n;
                int lo = 0;
                while (lo < wo && lo * stride - pad + kx < 0) lo++;
                int hi = wo;
                while (hi > lo && (hi - 1) * stride - pad + kx >= w) hi--;
                for (int img = 0; img < b; img++) {
                    const float *plane = in + ((size_t)ci * b + img) * h * w;
                    for (int oy = 0; oy < ho; oy++) {
                        ms_bf16 *dst = row + ((size_t)img * ho + oy) * wo;
                        int iy = oy * stride - pad + ky;
                        if (iy < 0 || iy >= h) {
                            memset(dst, 0, sizeof(ms_bf16) * (size_t)wo);
                            continue;
                        }
                        const float *src = plane + (size_t)iy * w - pad + kx;
                        for (int ox = 0; ox < lo; ox++) dst[ox] = 0;
                        if (stride == 1) {
                            round_row_bf16(dst + lo, src + lo, hi - lo);
                        } else { /* gather the strided pixels, then round them together */
                            float tmp[256];
                            for (int o0 = lo; o0 < hi; o0 += 256) {
                                int m = hi - o0 < 256 ? hi - o0 : 256;
                                for (int q = 0; q < m; q++) tmp[q] = src[(size_t)(o0 + q) * stride];
                                round_row_bf16(dst + o0, tmp, m);
                            }
                        }
                        for (int ox = hi; ox < wo; ox++) dst[ox] = 0;
                    }
                }
            }
}

/* out[co, :] = act(out[co, :] + b[co] + residual[co, :]) */
static void conv_epilogue(float *out, const float *residual, const float *bias, int cout,
                          size_t n, int relu) {
    for (int co = 0; co < cout; co++) {
        float *o = out + (size_t)co * n;
        const float *r = residual ? residual + (size_t)co * n : NULL;
        const float bc = bias[co];
        if (r && relu) {
#pragma omp simd
            for (size_t i = 0; i < n; i++) {
                float v = o[i] + bc + r[i];
                o[i] = v > 0.0f ? v : 0.0f;
            }
        } else if (r) {
#pragma omp simd
            for (size_t i = 0; i < n; i++) o[i] = o[i] + bc + r[i];
        } else if (relu) {
#pragma omp simd
            for (size_t i = 0; i < n; i++) {
                float v = o[i] + bc;
                o[i] = v > 0.0f ? v : 0.0f;
            }
        } else {
#pragma omp simd
            for (size_t i = 0; i < n; i++) o[i] += bc;
        }
    }
}

void ms_conv_forward(float *out, float *col, const float *in, const float *residual,
                     const ms_conv *c, int b, int h, int w, int relu) {
    const int ho = ms_conv_out(h, c->k, c->stride, c->pad), wo = ms_conv_out(w, c->k, c->stride, c->pad);
    const int n = b * ho * wo, kk = c->cin * c->k * c->k;
    if (ms_get_precision() == MS_PREC_BF16 && c->wb && !(c->k == 1 && c->stride == 1 && c->pad == 0)) {
        /* bf16: im2col straight into bf16 (col holds kk * n floats, we use half), weights
         * rounded at load; out(cout, n) = Wb(cout, kk) @ colb(kk, n) in fp32 */
        ms_bf16 *colb = (ms_bf16 *)col;
        ms_im2col_bf16(colb, in, c->cin, b, h, w, c->k, c->stride, c->pad);
        ms_gemm_bf16('N', 'N', c->cout, n, kk, 1.0f, c->wb, kk, colb, n, 0.0f, out, n);
        conv_epilogue(out, residual, c->b, c->cout, (size_t)n, relu);
        return;
    }
    const float *rhs = in;
    if (!(c->k == 1 && c->stride == 1 && c->pad == 0)) {
        ms_im2col(col, in, c->cin, b, h, w, c->k, c->stride, c->pad);
        rhs = col;
    }
    /* out(cout, n) = W(cout, kk) @ rhs(kk, n) */
    ms_gemm('N', 'N', c->cout, n, kk, 1.0f, c->w, kk, rhs, n, 0.0f, out, n, ms_get_precision());
    conv_epilogue(out, residual, c->b, c->cout, (size_t)n, relu);
}

void ms_conv_forward_ref(float *out, const float *in, const float *residual, const ms_conv *c,
                         int b, int h, int w, int relu) {
    const int k = c->k, s = c->stride, p = c->pad;
    const int ho = ms_conv_out(h, k, s, p), wo = ms_conv_out(w, k, s, p);
    for (int co = 0; co < c->cout; co++)
        for (int img = 0; img < b; img++)
            for (int oy = 0; oy < ho; oy++)
                for (int ox = 0; ox < wo; ox++) {
                    double acc = c->b[co];
                    for (int ci = 0; ci < c->cin; ci++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int iy = oy * s - p + ky, ix = ox * s - p + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                acc += (double)c->w[((co * c->cin + ci) * k + ky) * k + kx] *
                                       in[(((size_t)ci * b + img) * h + iy) * w + ix];
                            }
                    size_t o = (((size_t)co * b + img) * ho + oy) * wo + ox;
                    if (residual) acc += residual[o];
                    if (relu && acc < 0) acc = 0;
                    out[o] = (float)acc;
                }
}

/* ---- pooling --------------------------------------------------------------------------- */

void ms_maxpool_forward(float *out, const float *in, int c, int b, int h, int w) {
    const int ho = ms_conv_out(h, 3, 2, 1), wo = ms_conv_out(w, 3, 2, 1);
    for (size_t pl = 0; pl < (size_t)c * b; pl++) {
        const float *src = in + pl * h * w;
        float *dst = out + pl * ho * wo;
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++) {
                float m = -INFINITY;
                for (int ky = 0; ky < 3; ky++) {
                    int iy = 2 * oy - 1 + ky;
                    if (iy < 0 || iy >= h) continue;
                    for (int kx = 0; kx < 3; kx++) {
                        int ix = 2 * ox - 1 + kx;
                        if (ix < 0 || ix >= w) continue;
                        float v = src[iy * w + ix];
                        if (v > m) m = v;
                    }
                }
                dst[oy * wo + ox] = m;
            }
    }
}

void ms_avgpool_forward(float *out, const float *in, int c, int b, int h, int w) {
    const size_t hw = (size_t)h * w;
    for (int ch = 0; ch < c; ch++)
        for (int img = 0; img < b; img++) {
            const float *src = in + ((size_t)ch * b + img) * hw;
            float s = 0.0f;
            for (size_t i = 0; i < hw; i++) s += src[i];
            out[(size_t)img * c + ch] = s / (float)hw;
        }
}

/* ---- blocks and the network ------------------------------------------------------------ */

static void conv_any(float *out, float *col, const float *in, const float *res, const ms_conv *c,
                     int b, int h, int w, int relu, int ref) {
    if (ref)
        ms_conv_forward_ref(out, in, res, c, b, h, w, relu);
    else
        ms_conv_forward(out, col, in, res, c, b, h, w, relu);
}

static void block_any(float *out, float *t, float *d, float *col, const float *in,
                      const ms_block *blk, int b, int h, int w, int *ho, int *wo, int ref) {
    const ms_conv *c1 = &blk->c1;
    *ho = ms_conv_out(h, 3, c1->stride, 1);
    *wo = ms_conv_out(w, 3, c1->stride, 1);
    conv_any(t, col, in, NULL, c1, b, h, w, 1, ref);
    const float *shortcut = in;
    if (blk->has_down) {
        conv_any(d, col, in, NULL, &blk->down, b, h, w, 0, ref);
        shortcut = d;
    }
    conv_any(out, col, t, shortcut, &blk->c2, b, *ho, *wo, 1, ref);
}

void ms_block_forward(float *out, float *t, float *d, float *col, const float *in,
                      const ms_block *blk, int b, int h, int w, int *ho, int *wo) {
    block_any(out, t, d, col, in, blk, b, h, w, ho, wo, 0);
}

void ms_resnet_forward_micro(const ms_resnet *net, float *out, const float *x, int cin, int b,
                             int H, int W, float *bufs[4], float *col, int ref) {
    MS_CHECK(cin == 3 || (cin == 1 && net->gray_folded));
    /* (b, cin, H, W) -> (cin, b, H, W) */
    const size_t hw = (size_t)H * W;
    for (int img = 0; img < b; img++)
        for (int ci = 0; ci < cin; ci++)
            memcpy(bufs[0] + ((size_t)ci * b + img) * hw, x + ((size_t)img * cin + ci) * hw,
                   sizeof(float) * hw);
    const ms_conv *c1 = cin == 3 ? &net->conv1 : &net->conv1_gray;
    conv_any(bufs[1], col, bufs[0], NULL, c1, b, H, W, 1, ref);
    int h = ms_conv_out(H, 7, 2, 3), w = ms_conv_out(W, 7, 2, 3);
    ms_maxpool_forward(bufs[2], bufs[1], net->width, b, h, w);
    h = ms_conv_out(h, 3, 2, 1);
    w = ms_conv_out(w, 3, 2, 1);
    int cur = 2;
    for (int i = 0; i < 8; i++) {
        /* the three buffers other than cur, in a fixed order */
        int o[3], n = 0;
        for (int j = 0; j < 4; j++)
            if (j != cur) o[n++] = j;
        int ho, wo;
        block_any(bufs[o[0]], bufs[o[1]], bufs[o[2]], col, bufs[cur], &net->blk[i], b, h, w, &ho,
                  &wo, ref);
        cur = o[0];
        h = ho;
        w = wo;
    }
    ms_avgpool_forward(out, bufs[cur], net->dim, b, h, w);
}

static size_t conv_col(const ms_conv *c, int b, int h, int w) {
    if (c->k == 1 && c->stride == 1 && c->pad == 0) return 0;
    return (size_t)c->cin * c->k * c->k * b * ms_conv_out(h, c->k, c->stride, c->pad) *
           ms_conv_out(w, c->k, c->stride, c->pad);
}

void ms_resnet_ws_sizes(const ms_resnet *net, int b, int H, int W, size_t *act, size_t *col) {
    size_t a = (size_t)3 * b * H * W, cl = conv_col(&net->conv1, b, H, W);
    int h = ms_conv_out(H, 7, 2, 3), w = ms_conv_out(W, 7, 2, 3);
    if ((size_t)net->width * b * h * w > a) a = (size_t)net->width * b * h * w;
    h = ms_conv_out(h, 3, 2, 1);
    w = ms_conv_out(w, 3, 2, 1);
    for (int i = 0; i < 8; i++) {
        const ms_block *blk = &net->blk[i];
        size_t c = conv_col(&blk->c1, b, h, w);
        if (blk->has_down && conv_col(&blk->down, b, h, w) > c) c = conv_col(&blk->down, b, h, w);
        int ho = ms_conv_out(h, 3, blk->c1.stride, 1), wo = ms_conv_out(w, 3, blk->c1.stride, 1);
        if (conv_col(&blk->c2, b, ho, wo) > c) c = conv_col(&blk->c2, b, ho, wo);
        if (c > cl) cl = c;
        size_t o = (size_t)blk->c1.cout * b * ho * wo;
        if (o > a) a = o;
        h = ho;
        w = wo;
    }
    *act = a;
    *col = cl;
}

/* ---- workspace and batched forward ----------------------------------------------------- */

/* Per-thread memory budget for activations + im2col, in floats (64 MB). */
#define MS_WS_BUDGET ((size_t)16 << 20)
/* Largest micro-batch of the oneDNN path: more images per primitive call amortise the
 * weights' trip through the caches (layer4 alone holds 9 MB of fp32 weights per conv),
 * fewer keep the activations in L2; 8-32 measured within a few percent at 64x64. */
#define MS_DNNL_MICRO 16

struct ms_resnet_ws {
    int max_batch, height, width, threads, micro;
    float **bufs; /* threads * 4 activation buffers of the im2col path (NULL: not needed) */
    float **col;  /* threads im2col buffers */
    ms_rdnn *dn;  /* the oneDNN path, NULL where oneDNN has no optimized kernels */
    ms_precision prec; /* the precision dn runs (the one in force at ms_resnet_ws_new) */
};

/* The oneDNN path's micro-batch: as many images as fit the budget (conv1's output plus two
 * block activations of a quarter of its size each), at most MS_DNNL_MICRO, then evened out
 * over max_batch (8 at 320x320 runs as 4 + 4 rather than 6 + 2). It depends on the input
 * size and max_batch only, never on the thread count, so every image goes through the same
 * primitives whatever the number of threads. */
static int dnnl_micro(const ms_resnet *net, int max_batch, int height, int width) {
    size_t act1, col1;
    ms_resnet_ws_sizes(net, 1, height, width, &act1, &col1);
    size_t per = act1 + act1 / 2 + 1;
    int m = (int)(MS_WS_BUDGET / per);
    if (m > MS_DNNL_MICRO) m = MS_DNNL_MICRO;
    if (m < 1) m = 1;
    if (m > max_batch) m = max_batch;
    int chunks = (max_batch + m - 1) / m;
    return (max_batch + chunks - 1) / chunks;
}

ms_resnet_ws *ms_resnet_ws_new_micro(const ms_resnet *net, int max_batch, int height, int width,
                                     int threads, int micro) {
    MS_CHECK(max_batch >= 1 && height >= 1 && width >= 1 && micro >= 0);
    if (threads <= 0) threads = ms_get_threads();
    ms_resnet_ws *ws = ms_xcalloc(1, sizeof *ws);
    ws->max_batch = max_batch;
    ws->height = height;
    ws->width = width;
    ws->threads = threads;
    /* the oneDNN path for the precision in force now; a forward at the other precision
     * takes the im2col path */
    ws->prec = ms_get_precision();
    ws->dn = ms_rdnn_new(net, height, width, micro ? micro : dnnl_micro(net, max_batch, height, width), threads,
                         ws->prec);
    if (ws->dn && !ms_bf16_supported()) return ws; /* f32 is the only precision: no im2col buffers */
    size_t act1, col1;
    ms_resnet_ws_sizes(net, 1, height, width, &act1, &col1);
    int chunk = (max_batch + threads - 1) / threads;
    size_t per = 4 * act1 + col1;
    int m = (int)(MS_WS_BUDGET / per);
    if (m < 1) m = 1;
    if (m > chunk) m = chunk;
    ws->micro = m;
    size_t act, col;
    ms_resnet_ws_sizes(net, m, height, width, &act, &col);
    ws->bufs = ms_xcalloc((size_t)threads * 4, sizeof(float *));
    ws->col = ms_xcalloc((size_t)threads, sizeof(float *));
    for (int t = 0; t < threads; t++) {
        for (int j = 0; j < 4; j++) ws->bufs[4 * t + j] = ms_xmalloc(sizeof(float) * act);
        ws->col[t] = ms_xmalloc(sizeof(float) * (col ? col : 1));
    }
    return ws;
}

ms_resnet_ws *ms_resnet_ws_new(const ms_resnet *net, int max_batch, int height, int width,
                               int threads) {
    return ms_resnet_ws_new_micro(net, max_batch, height, width, threads, 0);
}

int ms_resnet_ws_dnnl(const ms_resnet_ws *ws) { return ws->dn ? ms_rdnn_micro(ws->dn) : 0; }

void ms_resnet_ws_free(ms_resnet_ws *ws) {
    if (!ws) return;
    if (ws->bufs)
        for (int t = 0; t < ws->threads; t++) {
            for (int j = 0; j < 4; j++) free(ws->bufs[4 * t + j]);
            free(ws->col[t]);
        }
    free(ws->bufs);
    free(ws->col);
    ms_rdnn_free(ws->dn);
    free(ws);
}

static void forward_range(const ms_resnet *net, ms_resnet_ws *ws, const float *x, int cin,
                          int i0, int i1, float *out, int t) {
    const size_t in_img = (size_t)cin * ws->height * ws->width;
    for (int i = i0; i < i1; i += ws->micro) {
        int nb = i1 - i < ws->micro ? i1 - i : ws->micro;
        ms_resnet_forward_micro(net, out + (size_t)i * net->dim, x + (size_t)i * in_img, cin, nb,
                                ws->height, ws->width, ws->bufs + 4 * t, ws->col[t], 0);
    }
}

/* The oneDNN path: micro-batches [0, m), [m, 2m), ... (the last may be smaller), handed to
 * the threads one at a time. */
static void forward_dnnl(const ms_resnet *net, ms_resnet_ws *ws, const float *x, int cin, int B,
                         float *out) {
    const int m = ms_rdnn_micro(ws->dn), chunks = (B + m - 1) / m;
    const size_t in_img = (size_t)cin * ws->height * ws->width;
    const int nt = ws->threads < chunks ? ws->threads : chunks;
    if (nt <= 1) {
        for (int k = 0; k < chunks; k++) {
            int i = k * m, nb = B - i < m ? B - i : m;
            ms_rdnn_forward_micro(ws->dn, 0, x + (size_t)i * in_img, cin, nb, out + (size_t)i * net->dim);
        }
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int k = 0; k < chunks; k++) {
        int i = k * m, nb = B - i < m ? B - i : m;
        ms_rdnn_forward_micro(ws->dn, omp_get_thread_num(), x + (size_t)i * in_img, cin, nb,
                              out + (size_t)i * net->dim);
    }
}

void ms_resnet_forward(const ms_resnet *net, ms_resnet_ws *ws, const float *x, int cin, int B,
                       float *out) {
    MS_CHECK(B >= 0 && B <= ws->max_batch);
    MS_CHECK(cin == 3 || (cin == 1 && net->gray_folded));
    if (B == 0) return;
    if (ws->dn && ms_get_precision() == ws->prec) {
        forward_dnnl(net, ws, x, cin, B, out);
        return;
    }
    MS_CHECK(ws->bufs);
    if (ws->threads > 1 && B >= ws->threads) {
#pragma omp parallel num_threads(ws->threads)
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            int i0 = (int)((long)B * t / nt), i1 = (int)((long)B * (t + 1) / nt);
            forward_range(net, ws, x, cin, i0, i1, out, t);
        }
    } else {
        /* fewer images than threads: one image stream, ms_gemm's blocking spreads each product */
        forward_range(net, ws, x, cin, 0, B, out, 0);
    }
}
