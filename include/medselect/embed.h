/* medselect/embed.h: from image files to 512-d embeddings with a ResNet-18 encoder run in C.
 *
 * The pipeline is: decode a file (PNG, JPEG, DICOM) into an 8-bit gray or RGB image
 * (ms_image_load), bring it to the model's input (ms_preprocess: resize the shorter side to
 * the input size with a PIL-compatible antialiased filter, centre crop, gray/RGB conversion,
 * normalisation), then run the network (ms_resnet_forward) over a batch. ms_embed_files does
 * all of it for a list of files, in parallel, with one workspace allocated up front.
 *
 * A model folder holds model.safetensors (a torchvision resnet18 state_dict without fc.*,
 * F32 tensors, torchvision's names) and config.json:
 *
 *   { "input_size": [H, W],                       required
 *     "normalization": {"mean": [m..], "std": [s..]}  required, 1 or 3 values; x = u8/255
 *     "channels": "gray" | "rgb",                 optional; else "gray" when the free-text
 *                                                 "channel_handling" mentions "gray"
 *     "resample": "lanczos" | "bicubic" | "bilinear"   optional, default "lanczos" }
 *
 * A "gray" model sees one 8-bit gray channel copied to its 3 input channels; when the three
 * means and stds are equal, conv1 is run once on the gray channel with its weights summed
 * over the input channels (the same function, a third of the work).
 *
 * Example:
 *     ms_resnet *net;
 *     if (ms_resnet_load(&net, "models/cxr-simclr-resnet18-64")) die(ms_last_error());
 *     float *emb = malloc(sizeof(float) * n * ms_resnet_dim(net));     // (n, 512)
 *     ms_embed_opts o = ms_embed_opts_default();
 *     char **err = calloc(n, sizeof(char *));
 *     ms_status st = ms_embed_files(net, paths, n, &o, emb, err);
 *
 * Errors follow common.h: data and I/O problems return a status and record one line that
 * names the file (ms_last_error()); contract violations abort.
 */
#ifndef MEDSELECT_EMBED_H
#define MEDSELECT_EMBED_H

#include "medselect/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- images ---------------------------------------------------------------------------- */

/* An 8-bit image, pixels interleaved: px is (h, w, c), c = 1 (gray) or 3 (RGB). The buffer
 * is owned by the image and grows only: loading many files into one ms_image allocates only
 * when a larger image arrives. */
typedef struct {
    int w, h, c;
    uint8_t *px;
    size_t cap; /* bytes allocated at px */
} ms_image;

void ms_image_init(ms_image *im);
void ms_image_free(ms_image *im);
/* Makes room for (h, w, c) and sets the size; the pixels are not initialised. */
void ms_image_reserve(ms_image *im, int w, int h, int c);

/* Decodes a file, recognised by its content (not its name):
 *  - PNG, any bit depth and colour type. Gray and gray+alpha give c = 1; RGB, RGBA and
 *    palette give c = 3. Alpha (and tRNS transparency) is dropped, as PIL's convert('L') /
 *    convert('RGB') do. 16-bit samples are scaled to 8 bits with rounding (v * 255 / 65535);
 *    1/2/4-bit gray is expanded to 0..255.
 *  - JPEG (libjpeg-turbo, default islow DCT and fancy upsampling, as PIL): gray gives c = 1,
 *    YCbCr c = 3. CMYK/YCCK JPEGs are an error.
 *  - DICOM (when built with MS_HAVE_DICOM): see ms_dicom_load.
 * Anything else, or a truncated/corrupt file, is MS_ERR_DATA naming the file. */
ms_status ms_image_load(ms_image *im, const char *path);

/* Resampling filters, antialiased as PIL's Image.resize: when shrinking, the filter support
 * is stretched by the scale factor so that every source pixel contributes. */
typedef enum {
    MS_RESAMPLE_BILINEAR = 0, /* triangle, support 1 */
    MS_RESAMPLE_BICUBIC = 1,  /* Keys cubic a = -0.5, support 2 */
    MS_RESAMPLE_LANCZOS = 2,  /* Lanczos-3: sinc(x) sinc(x/3), support 3 */
} ms_resample;

/* PIL-compatible resize of an 8-bit image to (w, h): a horizontal pass then a vertical one
 * (each skipped when that size is unchanged), each output sample the normalised filter
 * average of the samples in its support, rounded to the nearest integer and clamped to
 * 0..255 after each pass as PIL does for 8-bit images. Results equal PIL's within one gray
 * level (PIL uses fixed-point coefficients). dst must not alias src; `scratch` provides the
 * temporary memory (reset by the caller). */
void ms_image_resize(ms_image *dst, const ms_image *src, int w, int h, ms_resample f,
                     ms_arena *scratch);

/* In place: RGB -> gray with PIL's convert('L') rounding, L = (19595 R + 38470 G + 7471 B
 * + 32768) >> 16, i.e. R*299/1000 + G*587/1000 + B*114/1000 rounded. No-op on gray. */
void ms_image_to_gray(ms_image *im);

/* ---- the model ------------------------------------------------------------------------- */

typedef struct {
    int height, width;  /* network input (config input_size) */
    int gray;           /* 1: 8-bit gray copied to the 3 input channels; 0: RGB */
    float mean[3], std[3];
    ms_resample resample;
} ms_embed_config;

/* Reads MODEL_DIR/config.json into *cfg. MS_ERR_DATA naming the file on a missing or bad key. */
ms_status ms_embed_config_read(ms_embed_config *cfg, const char *model_dir);

/* Image -> network input x, which is (cin, H, W) with cin = ms_resnet_input_channels():
 * if the image is not H x W, the shorter side is resized to H (or W) with cfg->resample,
 * keeping the aspect ratio (the other side becomes floor(size * long / short), as
 * torchvision's Resize), then the centre H x W is cropped (offset round((len - size) / 2));
 * then RGB -> gray (gray model) or gray -> RGB (RGB model); then x = (u8 / 255 - mean) / std
 * in float32. `im` is used as scratch (resized in place through `scratch`). */
void ms_preprocess(float *x, ms_image *im, const ms_embed_config *cfg, int cin, ms_arena *scratch);

/* A ResNet-18 with batch norm folded into the convolutions (w' = w * g / sqrt(v + 1e-5),
 * b' = beta - mean * g / sqrt(v + 1e-5)), ready for inference. Opaque. */
typedef struct ms_resnet ms_resnet;

/* Loads MODEL_DIR/model.safetensors and MODEL_DIR/config.json. The widths follow conv1's
 * output channels w (64 for torchvision's resnet18; layers have w, 2w, 4w, 8w channels, the
 * embedding 8w). Every one of the 120 backbone tensors must be present with the shape the
 * architecture implies, F32, finite; num_batches_tracked and extra tensors (fc.*) are
 * not used (but every tensor's dtype, shape and byte span are validated). A missing or misshapen tensor is MS_ERR_DATA naming the tensor. */
ms_status ms_resnet_load(ms_resnet **net, const char *model_dir);
void ms_resnet_free(ms_resnet *net);
const ms_embed_config *ms_resnet_config(const ms_resnet *net);
int ms_resnet_dim(const ms_resnet *net); /* embedding size, 512 for resnet18 */
/* Channels ms_preprocess produces for this model: 1 for a gray model with equal means and
 * stds (conv1 folded over its input channels), else 3. */
int ms_resnet_input_channels(const ms_resnet *net);

/* Workspace for batches of up to max_batch images of height x width (any size >= 1), split
 * over `threads` threads (<= 0: ms_get_threads()). Allocated once; forward allocates nothing. */
typedef struct ms_resnet_ws ms_resnet_ws;
ms_resnet_ws *ms_resnet_ws_new(const ms_resnet *net, int max_batch, int height, int width,
                               int threads);
void ms_resnet_ws_free(ms_resnet_ws *ws);

/* out = avgpool(layer4(...conv1(x))), torchvision's resnet18 with fc = Identity in eval().
 * x is (B, cin, H, W) normalised input with cin = 3, or cin = 1 for a gray copied to 3
 * channels (exactly equivalent; needs ms_resnet_input_channels() == 1);
 * out is (B, dim). B <= max_batch, H and W as given to ms_resnet_ws_new.
 * The convolutions run in the process-wide precision (gemm.h: ms_set_precision); set it
 * before ms_resnet_load, which rounds the weights to bf16 once when the precision is bf16
 * then (otherwise bf16 convolutions round them on every call).
 * Where oneDNN has optimized convolution kernels for the CPU (AVX2 or AVX-512; bf16 needs
 * AVX512_BF16) and the widths fill its channel blocks (multiples of 16), the network runs on
 * oneDNN's convolution primitives at the precision in force when the workspace was made: the
 * batch is cut into micro-batches of a size set by the input size and max_batch, which the
 * threads take one at a time, each image's result bitwise independent of the thread count.
 * At bf16 that path also rounds the activations between layers (residual sums included) to
 * bf16. Otherwise (other CPUs or widths, or a forward at another precision than the
 * workspace's) im2col + GEMM: with B >= threads the batch is split over the threads
 * (single-threaded GEMMs each), else the images run one after the other and ms_gemm spreads
 * each product. */
void ms_resnet_forward(const ms_resnet *net, ms_resnet_ws *ws, const float *x, int cin, int B,
                       float *out);

/* ---- files to embeddings ---------------------------------------------------------------- */

typedef enum { MS_ON_ERROR_FAIL = 0, MS_ON_ERROR_SKIP = 1 } ms_on_error;

typedef struct {
    int batch;            /* images per forward pass (default 32) */
    int threads;          /* <= 0: ms_get_threads() */
    ms_on_error on_error; /* default MS_ON_ERROR_FAIL */
    const char *progress; /* progress bar label on stderr, NULL for none */
} ms_embed_opts;

ms_embed_opts ms_embed_opts_default(void);

/* Embeds n files: out is (n, dim), row i for paths[i]. Files are decoded and preprocessed in
 * parallel, then run through the network in batches of opts->batch.
 * errors is (n): on return errors[i] is NULL when file i was embedded, else a malloc'd
 * one-line message naming the file (the caller frees them); its out row is then NaN.
 * On MS_ON_ERROR_FAIL the first failing file in row order makes the call return MS_ERR_DATA
 * (or MS_ERR_IO) with that file's message; with MS_ON_ERROR_SKIP it returns MS_OK and the
 * caller decides what to do with the failed rows. *n_failed gets their count (may be NULL).
 * Images may have any size: each is brought to the model's input size. */
ms_status ms_embed_files(const ms_resnet *net, const char *const *paths, int n,
                         const ms_embed_opts *opts, float *out, char **errors, int *n_failed);

#ifdef __cplusplus
}
#endif
#endif
