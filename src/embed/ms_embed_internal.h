/* ms_embed_internal.h: the embed module's internal pieces: the network's layout in memory,
 * the layer kernels (exposed so that tests can check each layer against PyTorch and the
 * optimized kernels against the plain ones), the safetensors reader and the DICOM bridge.
 *
 * Activations inside the network use the "CBHW" layout: (C, b, H, W), i.e. one row of
 * b*H*W values per channel, so that a convolution over a whole micro-batch is one GEMM
 * out(Cout, b*Ho*Wo) = W(Cout, Cin*k*k) @ col(Cin*k*k, b*Ho*Wo).
 */
#ifndef MS_EMBED_INTERNAL_H
#define MS_EMBED_INTERNAL_H

#include "medselect/embed.h"
#include "medselect/gemm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A convolution with its batch norm folded in: y = w * x + b. */
typedef struct {
    int cin, cout, k, stride, pad;
    float *w; /* (cout, cin, k, k) */
    float *b; /* (cout) */
    ms_bf16 *wb; /* w rounded to bf16 once at load (NULL: rounded on every bf16 call) */
} ms_conv;

typedef struct {
    ms_conv c1, c2;
    ms_conv down; /* 1x1 stride-2 projection of the shortcut; used when has_down */
    int has_down;
} ms_block;

struct ms_resnet {
    ms_embed_config cfg;
    ms_conv conv1;      /* 7x7 stride 2 pad 3, 3 -> w channels */
    ms_conv conv1_gray; /* the same with weights summed over the 3 input channels */
    int gray_folded;    /* conv1_gray usable: gray model with equal mean/std */
    ms_block blk[8];    /* layer1.0, layer1.1, ..., layer4.1 */
    int width;          /* w = conv1 output channels */
    int dim;            /* 8 w */
    float *params;      /* one allocation holding every w and b */
    ms_bf16 *params_bf16; /* every conv's wb (NULL on a CPU without AVX512_BF16) */
};

/* Output size of a convolution or pooling along one axis. */
static inline int ms_conv_out(int n, int k, int stride, int pad) { return (n + 2 * pad - k) / stride + 1; }

/* ---- layer kernels (CBHW layout) ----------------------------------------------------- */

/* col is (cin*k*k, b*ho*wo): row (ci, ky, kx), column (img, oy, ox) holds
 * in[ci, img, oy*s - p + ky, ox*s - p + kx], 0 outside the image. in is (cin, b, h, w). */
void ms_im2col(float *col, const float *in, int cin, int b, int h, int w, int k, int stride,
               int pad);
/* The same matrix with every value rounded to bf16 (ms_bf16_round), written directly: the
 * bf16 convolution never materialises the fp32 im2col matrix. */
void ms_im2col_bf16(ms_bf16 *col, const float *in, int cin, int b, int h, int w, int k,
                    int stride, int pad);

/* out = act(conv(in) + bias + residual): out is (cout, b, ho, wo), in is (cin, b, h, w),
 * residual NULL or shaped like out, relu 0/1. col is scratch of (cin*k*k, b*ho*wo) floats
 * (unused for 1x1 stride-1 convolutions in f32). im2col + single sgemm call. At
 * ms_get_precision() == MS_PREC_BF16 with c->wb set, the im2col matrix is written in bf16
 * into col (half its room) and multiplied by c->wb with ms_gemm_bf16 (fp32 accumulation);
 * without c->wb, ms_gemm rounds both operands per call. */
void ms_conv_forward(float *out, float *col, const float *in, const float *residual,
                     const ms_conv *c, int b, int h, int w, int relu);
/* The plain direct loop nest, same contract (no col). */
void ms_conv_forward_ref(float *out, const float *in, const float *residual, const ms_conv *c,
                         int b, int h, int w, int relu);

/* 3x3 stride-2 pad-1 max pooling (padding never wins): out is (c, b, ho, wo), in (c, b, h, w). */
void ms_maxpool_forward(float *out, const float *in, int c, int b, int h, int w);
/* out is (b, c): the mean of each plane of in (c, b, h, w). */
void ms_avgpool_forward(float *out, const float *in, int c, int b, int h, int w);

/* One residual block: out = relu(c2(relu(c1(in))) + shortcut(in)). t, d: scratch activations
 * of out's size; col: im2col scratch. Sizes h, w are the input's; *ho, *wo receive the output's. */
void ms_block_forward(float *out, float *t, float *d, float *col, const float *in,
                      const ms_block *blk, int b, int h, int w, int *ho, int *wo);

/* The whole network on one micro-batch with the given buffers: x is (b, cin, H, W) NCHW.
 * bufs are 4 activation buffers, col the im2col buffer; sized by ms_resnet_ws_new.
 * ref = 1 runs the plain kernels. */
void ms_resnet_forward_micro(const ms_resnet *net, float *out, const float *x, int cin, int b,
                             int H, int W, float *bufs[4], float *col, int ref);
/* Floats needed by one activation buffer and by col for a micro-batch of b images. */
void ms_resnet_ws_sizes(const ms_resnet *net, int b, int H, int W, size_t *act, size_t *col);

/* ---- the oneDNN path (ms_resnet_dnnl.c) ---------------------------------------------- */

/* The network on oneDNN's convolution and pooling primitives, activations in its blocked
 * channel layout, for images of H x W in micro-batches of at most `micro`, run by up to
 * `threads` threads (each with its own buffers). prec f32, or bf16: weights, input and the
 * activations between layers (residual sums included) rounded to bf16, fp32 accumulation
 * and bias inside each convolution. NULL when oneDNN offers no optimized kernel on this CPU
 * for a layer (then the im2col path runs), or when the environment variable MS_EMBED_IM2COL
 * is set. */
typedef struct ms_rdnn ms_rdnn;
ms_rdnn *ms_rdnn_new(const ms_resnet *net, int H, int W, int micro, int threads, ms_precision prec);
void ms_rdnn_free(ms_rdnn *r);
int ms_rdnn_micro(const ms_rdnn *r);
/* out (n, dim) for x (n, cin, H, W) NCHW, n <= micro, on thread slot t (0 <= t < threads):
 * one thread's work, single-threaded. The primitives for a given n are made on first use. */
void ms_rdnn_forward_micro(ms_rdnn *r, int t, const float *x, int cin, int n, float *out);

/* ms_resnet_ws_new with the oneDNN path's micro-batch fixed (0: chosen from the input size
 * and max_batch, as ms_resnet_ws_new does); for tests. */
ms_resnet_ws *ms_resnet_ws_new_micro(const ms_resnet *net, int max_batch, int height, int width,
                                     int threads, int micro);
/* The oneDNN path's micro-batch size, 0 when the workspace has no oneDNN path. */
int ms_resnet_ws_dnnl(const ms_resnet_ws *ws);

/* ---- weights ------------------------------------------------------------------------- */
/* Model weights are read with the io module's safetensors reader (medselect/safetensors.h),
 * which validates the whole layout; these add the checks the network needs. */
#include "medselect/safetensors.h"

/* Copies F32 tensor `name`, which must have the given shape (ndim values), into dst
 * (prod(shape) floats) and checks that every value is finite. MS_ERR_DATA "FILE: tensor
 * NAME: missing" / "has shape [..], expected [..]" / "dtype .., expected F32, F16 or BF16". */
ms_status ms_weights_get_f32(const ms_st_file *f, const char *name, int ndim, const int *shape,
                             float *dst);
/* Shape of tensor `name` (up to 8 dims); MS_ERR_DATA when missing. */
ms_status ms_weights_shape(const ms_st_file *f, const char *name, int *ndim, int shape[8]);

/* ---- DICOM --------------------------------------------------------------------------- */
/* Decodes a DICOM file into an 8-bit image (see ms_image_load). Implemented in ms_dicom.cpp
 * when built with MS_HAVE_DICOM; otherwise an error "FILE: DICOM support not built". */
ms_status ms_dicom_load(ms_image *im, const char *path);
int ms_is_dicom(const unsigned char *head, size_t n);

#ifdef __cplusplus
}
#endif
#endif
