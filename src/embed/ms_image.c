/* ms_image.c: image files to 8-bit gray/RGB pixels (libpng, libjpeg-turbo, DICOM through
 * ms_dicom.cpp), PIL-compatible antialiased resampling, RGB -> gray conversion, and the
 * preprocessing that turns an image into the network's normalised input.
 *
 * Decoders write into a caller-owned ms_image whose buffer only grows, and read rows straight
 * into it: decoding a list of same-sized files allocates nothing of ours after the first.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <png.h>

#include "embed/ms_embed_internal.h"

/* Largest accepted image, in samples (w * h * c): 1 GiB of 8-bit samples. */
#define MS_IMAGE_MAX_SAMPLES ((size_t)1 << 30)

void ms_image_init(ms_image *im) { memset(im, 0, sizeof *im); }

void ms_image_free(ms_image *im) {
    free(im->px);
    memset(im, 0, sizeof *im);
}

void ms_image_reserve(ms_image *im, int w, int h, int c) {
    MS_CHECK(w >= 1 && h >= 1 && (c == 1 || c == 3));
    size_t n = (size_t)w * h * c;
    if (n > im->cap) {
        free(im->px);
        im->px = ms_xmalloc(n);
        im->cap = n;
    }
    im->w = w;
    im->h = h;
    im->c = c;
}

/* Called right after the header is read, before the decoder allocates anything for the
 * pixels (a 460-byte progressive JPEG can declare 65500 x 65500). The decoded image (w*h*c
 * bytes) must fit the size budget as well as the fixed sample limit. */
static ms_status check_size(const char *path, unsigned long w, unsigned long h, int c) {
    if (w < 1 || h < 1) return ms_fail(MS_ERR_DATA, "%s: image has no pixels (%lux%lu)", path, w, h);
    if ((double)w * (double)h * c > (double)MS_IMAGE_MAX_SAMPLES || w > 1000000 || h > 1000000)
        return ms_fail(MS_ERR_DATA, "%s: image too large (%lux%lu, at most %zu samples)", path, w, h,
                       (size_t)MS_IMAGE_MAX_SAMPLES);
    return ms_check_alloc(ms_mul_sat(ms_mul_sat(w, h), (uint64_t)c), "the decoded image", path);
}

/* ---- PNG ----------------------------------------------------------------------------------- */

typedef struct {
    jmp_buf jb;
    char msg[200];
} png_errctx;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_errctx *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    longjmp(e->jb, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg; /* library code prints nothing; warnings (e.g. unknown chunks) are not errors */
}

static ms_status load_png(ms_image *im, FILE *fp, const char *path) {
    png_errctx e;
    e.msg[0] = 0;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &e, png_on_error, png_on_warning);
    if (!png) return ms_fail(MS_ERR_NOMEM, "%s: cannot create a PNG reader", path);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return ms_fail(MS_ERR_NOMEM, "%s: cannot create a PNG reader", path);
    }
    if (setjmp(e.jb)) {
        png_destroy_read_struct(&png, &info, NULL);
        return ms_fail(MS_ERR_DATA, "%s: corrupt PNG: %s", path, e.msg);
    }
    png_init_io(png, fp);
    png_read_info(png, info);
    int ct = png_get_color_type(png, info), bd = png_get_bit_depth(png, info);
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY && bd < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (bd == 16) png_set_scale_16(png); /* v * 255 / 65535, rounded */
    if (ct & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    /* tRNS is left alone (not expanded to alpha), i.e. ignored like alpha */
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    unsigned long w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int ch = png_get_channels(png, info);
    ms_status st = ch == 1 || ch == 3 ? check_size(path, w, h, ch)
                                      : ms_fail(MS_ERR_DATA, "%s: PNG decodes to %d channels", path, ch);
    if (st) {
        png_destroy_read_struct(&png, &info, NULL);
        return st;
    }
    ms_image_reserve(im, (int)w, (int)h, ch);
    for (int p = 0; p < passes; p++)
        for (unsigned long y = 0; y < h; y++) png_read_row(png, im->px + y * w * (unsigned long)ch, NULL);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    return MS_OK;
}

/* ---- JPEG ---------------------------------------------------------------------------------- */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    int warned;
} jpeg_errctx;

static void jpeg_on_error(j_common_ptr c) {
    jpeg_errctx *e = (jpeg_errctx *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

static void jpeg_on_message(j_common_ptr c, int level) {
    jpeg_errctx *e = (jpeg_errctx *)c->err;
    if (level < 0 && !e->warned) { /* corrupt-data warnings: the image is damaged */
        (*c->err->format_message)(c, e->msg);
        e->warned = 1;
    }
}

static ms_status load_jpeg(ms_image *im, FILE *fp, const char *path) {
    struct jpeg_decompress_struct d;
    jpeg_errctx e;
    memset(&e, 0, sizeof e);
    d.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = jpeg_on_error;
    e.pub.emit_message = jpeg_on_message;
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&d);
        return ms_fail(MS_ERR_DATA, "%s: corrupt JPEG: %s", path, e.msg);
    }
    jpeg_create_decompress(&d);
    jpeg_stdio_src(&d, fp);
    jpeg_read_header(&d, TRUE);
    if (d.jpeg_color_space == JCS_CMYK || d.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&d);
        return ms_fail(MS_ERR_DATA, "%s: CMYK JPEG is not supported", path);
    }
    d.out_color_space = d.jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE : JCS_RGB;
    /* checked after the header and before jpeg_start_decompress, which allocates the
     * whole-image coefficient buffers of a progressive file */
    ms_status st = check_size(path, d.image_width, d.image_height, d.out_color_space == JCS_GRAYSCALE ? 1 : 3);
    if (st) {
        jpeg_destroy_decompress(&d);
        return st;
    }
    jpeg_start_decompress(&d);
    int ch = d.output_components;
    if (ch != 1 && ch != 3) {
        jpeg_destroy_decompress(&d);
        return ms_fail(MS_ERR_DATA, "%s: JPEG decodes to %d channels", path, ch);
    }
    ms_image_reserve(im, (int)d.output_width, (int)d.output_height, ch);
    while (d.output_scanline < d.output_height) {
        JSAMPROW row = im->px + (size_t)d.output_scanline * d.output_width * (size_t)ch;
        jpeg_read_scanlines(&d, &row, 1);
    }
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    if (e.warned) return ms_fail(MS_ERR_DATA, "%s: corrupt JPEG: %s", path, e.msg);
    return MS_OK;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

int ms_is_dicom(const unsigned char *head, size_t n) { return n >= 132 && !memcmp(head + 128, "DICM", 4); }

#ifndef MS_HAVE_DICOM
ms_status ms_dicom_load(ms_image *im, const char *path) {
    (void)im;
    return ms_fail(MS_ERR_DATA, "%s: DICOM support not built", path);
}
#endif

ms_status ms_image_load(ms_image *im, const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return ms_fail(MS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char head[132];
    size_t n = fread(head, 1, sizeof head, fp);
    if (n < sizeof head && ferror(fp)) { /* e.g. a directory */
        ms_status e = ms_fail(MS_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
        fclose(fp);
        return e;
    }
    ms_status st;
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 8 && !memcmp(head, png_sig, 8)) {
        rewind(fp);
        st = load_png(im, fp, path);
    } else if (n >= 3 && head[0] == 0xff && head[1] == 0xd8 && head[2] == 0xff) {
        rewind(fp);
        st = load_jpeg(im, fp, path);
    } else if (ms_is_dicom(head, n)) {
        fclose(fp);
        return ms_dicom_load(im, path);
    } else {
        st = ms_fail(MS_ERR_DATA, "%s: not a PNG, JPEG or DICOM file", path);
    }
    fclose(fp);
    return st;
}

/* ---- resampling ---------------------------------------------------------------------------- */

static double sinc(double x) {
    if (x == 0.0) return 1.0;
    x *= 3.14159265358979323846;
    return sin(x) / x;
}

static double filter_eval(ms_resample f, double x) {
    x = fabs(x);
    switch (f) {
    case MS_RESAMPLE_BILINEAR:
        return x < 1.0 ? 1.0 - x : 0.0;
    case MS_RESAMPLE_BICUBIC: {
        const double a = -0.5;
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
        if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
        return 0.0;
    }
    case MS_RESAMPLE_LANCZOS:
        return x < 3.0 ? sinc(x) * sinc(x / 3.0) : 0.0;
    }
    return 0.0;
}

static double filter_support(ms_resample f) {
    return f == MS_RESAMPLE_BILINEAR ? 1.0 : f == MS_RESAMPLE_BICUBIC ? 2.0 : 3.0;
}

/* Weights for resampling n_in samples to n_out: output i averages inputs lo[i] ..
 * lo[i] + cnt[i] - 1 with weights w[i * ksize + j] (normalised to sum 1). The output
 * sample's centre maps to (i + 0.5) * n_in / n_out in input coordinates; when shrinking,
 * the filter is widened by n_in / n_out. Returns ksize. */
static int resample_coeffs(ms_arena *a, int n_in, int n_out, ms_resample f, int **lo, int **cnt, double **w) {
    double scale = (double)n_in / n_out, fs = scale > 1.0 ? scale : 1.0;
    double support = filter_support(f) * fs;
    int ksize = (int)ceil(support) * 2 + 1;
    *lo = MS_ARENA_NEW(a, int, n_out);
    *cnt = MS_ARENA_NEW(a, int, n_out);
    *w = MS_ARENA_NEW(a, double, (size_t)n_out * ksize);
    for (int i = 0; i < n_out; i++) {
        double center = (i + 0.5) * scale;
        int x0 = (int)(center - support + 0.5), x1 = (int)(center + support + 0.5);
        if (x0 < 0) x0 = 0;
        if (x1 > n_in) x1 = n_in;
        int m = x1 - x0;
        MS_CHECK(m >= 1 && m <= ksize);
        double *k = *w + (size_t)i * ksize, sum = 0.0;
        for (int j = 0; j < m; j++) {
            k[j] = filter_eval(f, (j + x0 - center + 0.5) / fs);
            sum += k[j];
        }
        if (sum != 0.0)
            for (int j = 0; j < m; j++) k[j] /= sum;
        (*lo)[i] = x0;
        (*cnt)[i] = m;
    }
    return ksize;
}

static uint8_t round8(double v) {
    double r = floor(v + 0.5);
    return (uint8_t)(r < 0.0 ? 0.0 : r > 255.0 ? 255.0 : r);
}

/* One pass along x (horizontal) or y: dst (hd, wd, c) from src (hs, ws, c). */
static void resample_pass(uint8_t *dst, const uint8_t *src, int ws, int hs, int c, int n_out, int horizontal,
                          ms_resample f, ms_arena *a) {
    int *lo, *cnt;
    double *w;
    int ksize = resample_coeffs(a, horizontal ? ws : hs, n_out, f, &lo, &cnt, &w);
    if (horizontal) {
        for (int y = 0; y < hs; y++)
            for (int x = 0; x < n_out; x++) {
                const double *k = w + (size_t)x * ksize;
                for (int ch = 0; ch < c; ch++) {
                    double s = 0.0;
                    const uint8_t *p = src + ((size_t)y * ws + lo[x]) * c + ch;
                    for (int j = 0; j < cnt[x]; j++) s += k[j] * p[(size_t)j * c];
                    dst[((size_t)y * n_out + x) * c + ch] = round8(s);
                }
            }
    } else {
        const size_t row = (size_t)ws * c;
        for (int y = 0; y < n_out; y++) {
            const double *k = w + (size_t)y * ksize;
            for (size_t i = 0; i < row; i++) {
                double s = 0.0;
                const uint8_t *p = src + (size_t)lo[y] * row + i;
                for (int j = 0; j < cnt[y]; j++) s += k[j] * p[(size_t)j * row];
                dst[(size_t)y * row + i] = round8(s);
            }
        }
    }
}

void ms_image_resize(ms_image *dst, const ms_image *src, int w, int h, ms_resample f, ms_arena *scratch) {
    MS_CHECK(dst != src && w >= 1 && h >= 1);
    const int c = src->c;
    const uint8_t *cur = src->px;
    int cw = src->w;
    if (w != src->w) {
        uint8_t *t = MS_ARENA_NEW(scratch, uint8_t, (size_t)w * src->h * c);
        resample_pass(t, cur, cw, src->h, c, w, 1, f, scratch);
        cur = t;
        cw = w;
    }
    ms_image_reserve(dst, w, h, c);
    if (h != src->h)
        resample_pass(dst->px, cur, cw, src->h, c, h, 0, f, scratch);
    else
        memcpy(dst->px, cur, (size_t)w * h * c);
}

void ms_image_to_gray(ms_image *im) {
    if (im->c == 1) return;
    const size_t n = (size_t)im->w * im->h;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = im->px + 3 * i;
        im->px[i] = (uint8_t)((19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 32768u) >> 16);
    }
    im->c = 1;
}

/* ---- preprocessing ------------------------------------------------------------------------- */

/* Python's round() for the crop offset (half to even), as torchvision's CenterCrop. */
static int round_half_even_div2(int d) { return d % 2 == 0 ? d / 2 : ((d / 2) % 2 == 0 ? d / 2 : d / 2 + 1); }

void ms_preprocess(float *x, ms_image *im, const ms_embed_config *cfg, int cin, ms_arena *scratch) {
    const int H = cfg->height, W = cfg->width;
    MS_CHECK(cin == 3 || (cin == 1 && cfg->gray));
    const uint8_t *px = im->px;
    int stride_w = im->w, off_y = 0, off_x = 0;
    ms_image rs;
    if (im->w != W || im->h != H) {
        /* scale so that the image covers H x W, the limiting side exactly */
        int nh, nw;
        if ((long)H * im->w >= (long)W * im->h) {
            nh = H;
            nw = (int)((long)im->w * H / im->h);
        } else {
            nw = W;
            nh = (int)((long)im->h * W / im->w);
        }
        if (nw < W) nw = W;
        if (nh < H) nh = H;
        ms_image_init(&rs);
        rs.cap = (size_t)nw * nh * im->c;
        rs.px = MS_ARENA_NEW(scratch, uint8_t, rs.cap);
        ms_image_resize(&rs, im, nw, nh, cfg->resample, scratch);
        px = rs.px;
        stride_w = nw;
        off_y = round_half_even_div2(nh - H);
        off_x = round_half_even_div2(nw - W);
    }
    const int c = im->c;
    const size_t hw = (size_t)H * W;
    for (int y = 0; y < H; y++)
        for (int xx = 0; xx < W; xx++) {
            const uint8_t *p = px + ((size_t)(y + off_y) * stride_w + xx + off_x) * c;
            uint8_t rgb[3];
            if (c == 1)
                rgb[0] = rgb[1] = rgb[2] = p[0];
            else if (cfg->gray)
                rgb[0] = rgb[1] = rgb[2] =
                    (uint8_t)((19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 32768u) >> 16);
            else
                rgb[0] = p[0], rgb[1] = p[1], rgb[2] = p[2];
            for (int ch = 0; ch < cin; ch++) {
                /* float32 arithmetic in the order of the reference: u8 / 255, - mean, / std */
                float v = (float)rgb[ch] / 255.0f;
                x[ch * hw + (size_t)y * W + xx] = (v - cfg->mean[ch]) / cfg->std[ch];
            }
        }
}
