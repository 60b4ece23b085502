/* test_embed.c: the embed module against PyTorch/PIL fixtures (tests/fixtures/gen_embed.py):
 * each ResNet stage of a narrow ResNet-18 with random weights and batch-norm statistics, the
 * optimized convolution against the plain loop nest, gray folding of conv1, PNG/JPEG decoding,
 * PIL-compatible resizing, the file-to-embedding pipeline with its error handling, the
 * safetensors validation, 16-bit (F16/BF16) weights, and parity of the shipped encoder
 * (models/cxr-simclr-resnet18-64, stored in F16) with the PyTorch embeddings of NIH1000 shipped
 * in data/nih1000 (computed with the F32 original): the 267 test-split images, or all 1,000
 * with MS_EMBED_PARITY_ALL=1.
 */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include <hdf5.h>
#include <oneapi/dnnl/dnnl.h>

#include "embed/ms_embed_internal.h"
#include "ms_test.h"

static float *load_f(const char *name, long *count, long shape[4]) {
    int nd;
    long sh[4] = {1, 1, 1, 1};
    double *d = ms_load_npy_d(ms_fixture(name), &nd, sh);
    long n = 1;
    for (int i = 0; i < nd; i++) n *= sh[i];
    float *f = ms_xmalloc(sizeof(float) * (size_t)n);
    for (long i = 0; i < n; i++) f[i] = (float)d[i];
    free(d);
    if (count) *count = n;
    if (shape) memcpy(shape, sh, sizeof sh);
    return f;
}

/* (B, C, H, W) <-> (C, B, H, W) */
static void swap01(float *dst, const float *src, int n0, int n1, size_t inner) {
    for (int i = 0; i < n0; i++)
        for (int j = 0; j < n1; j++)
            memcpy(dst + ((size_t)j * n0 + i) * inner, src + ((size_t)i * n1 + j) * inner, sizeof(float) * inner);
}

static ms_resnet *load_tiny(void) {
    ms_resnet *net = NULL;
    ms_status st = ms_resnet_load(&net, ms_fixture("embed/tiny"));
    if (st) fprintf(stderr, "load tiny: %s\n", ms_last_error());
    MS_EXPECT(st == MS_OK);
    return net;
}

/* ---- layers ------------------------------------------------------------------------------ */

static int cmp_stage(const char *name, const float *cbhw, int c, int b, int h, int w, double atol, double rtol) {
    long n;
    float *ref = load_f(name, &n, NULL);
    MS_EXPECT(n == (long)c * b * h * w);
    float *got = ms_xmalloc(sizeof(float) * (size_t)n);
    swap01(got, cbhw, c, b, (size_t)h * w); /* (C, B, ...) -> (B, C, ...) */
    int ok = ms_expect_close_f(name, got, ref, (size_t)n, atol, rtol);
    free(got);
    free(ref);
    return ok;
}

static void test_stages(void) {
    ms_resnet *net = load_tiny();
    if (!net) return;
    MS_EXPECT(ms_resnet_dim(net) == 24);
    MS_EXPECT(ms_resnet_input_channels(net) == 3); /* rgb config */
    const ms_embed_config *cfg = ms_resnet_config(net);
    MS_EXPECT(cfg->height == 40 && cfg->width == 36 && !cfg->gray);
    MS_EXPECT(fabsf(cfg->mean[2] - 0.55f) < 1e-7f && fabsf(cfg->std[1] - 0.25f) < 1e-7f);
    long shape[4];
    float *x = load_f("embed/tiny_x.npy", NULL, shape);
    const int B = 2, H = 40, W = 36;
    for (int ref = 0; ref < 2; ref++) {
        size_t act, col;
        ms_resnet_ws_sizes(net, B, H, W, &act, &col);
        float *buf[5];
        for (int i = 0; i < 5; i++) buf[i] = ms_xmalloc(sizeof(float) * act);
        float *colb = ms_xmalloc(sizeof(float) * col);
        swap01(buf[0], x, B, 3, (size_t)H * W);
        if (ref)
            ms_conv_forward_ref(buf[1], buf[0], NULL, &net->conv1, B, H, W, 1);
        else
            ms_conv_forward(buf[1], colb, buf[0], NULL, &net->conv1, B, H, W, 1);
        int h = 20, w = 18;
        cmp_stage("embed/tiny_conv1.npy", buf[1], 3, B, h, w, 1e-5, 1e-4);
        ms_maxpool_forward(buf[2], buf[1], 3, B, h, w);
        h = 10, w = 9;
        cmp_stage("embed/tiny_pool.npy", buf[2], 3, B, h, w, 1e-5, 1e-4);
        float *cur = buf[2];
        for (int l = 0; l < 4; l++) {
            for (int bi = 0; bi < 2; bi++) {
                float *o[3], *nx;
                int k = 0;
                for (int i = 0; i < 5 && k < 3; i++)
                    if (buf[i] != cur) o[k++] = buf[i];
                int ho, wo;
                if (ref) {
                    const ms_block *blk = &net->blk[2 * l + bi];
                    ho = ms_conv_out(h, 3, blk->c1.stride, 1), wo = ms_conv_out(w, 3, blk->c1.stride, 1);
                    ms_conv_forward_ref(o[1], cur, NULL, &blk->c1, B, h, w, 1);
                    const float *sc = cur;
                    if (blk->has_down) {
                        ms_conv_forward_ref(o[2], cur, NULL, &blk->down, B, h, w, 0);
                        sc = o[2];
                    }
                    ms_conv_forward_ref(o[0], o[1], sc, &blk->c2, B, ho, wo, 1);
                } else {
                    ms_block_forward(o[0], o[1], o[2], colb, cur, &net->blk[2 * l + bi], B, h, w, &ho, &wo);
                }
                nx = o[0];
                cur = nx;
                h = ho;
                w = wo;
            }
            char name[64];
            snprintf(name, sizeof name, "embed/tiny_layer%d.npy", l + 1);
            cmp_stage(name, cur, 3 << l, B, h, w, 1e-5, 1e-4);
        }
        float out[2 * 24];
        ms_avgpool_forward(out, cur, 24, B, h, w);
        float *ref_out = load_f("embed/tiny_out.npy", NULL, NULL);
        ms_expect_close_f(ref ? "avgpool (plain kernels)" : "avgpool", out, ref_out, 48, 1e-5, 1e-4);
        free(ref_out);
        for (int i = 0; i < 5; i++) free(buf[i]);
        free(colb);
    }
    free(x);
    ms_resnet_free(net);
}

static void test_forward(void) {
    ms_resnet *net = load_tiny();
    if (!net) return;
    float *x = load_f("embed/tiny_x.npy", NULL, NULL);
    float *ref = load_f("embed/tiny_out.npy", NULL, NULL);
    for (int threads = 1; threads <= 2; threads++)
        for (int maxb = 2; maxb <= 5; maxb += 3) {
            ms_resnet_ws *ws = ms_resnet_ws_new(net, maxb, 40, 36, threads);
            float out[2 * 24];
            ms_resnet_forward(net, ws, x, 3, 2, out);
            char what[64];
            snprintf(what, sizeof what, "forward threads=%d max_batch=%d", threads, maxb);
            ms_expect_close_f(what, out, ref, 48, 1e-5, 1e-4);
            /* one image at a time gives the same rows */
            ms_resnet_forward(net, ws, x + 3 * 40 * 36, 3, 1, out);
            ms_expect_close_f("forward of image 1 alone", out, ref + 24, 24, 1e-5, 1e-4);
            if (ms_bf16_supported()) {
                /* bf16 products (weights rounded at load, bf16 im2col) stay close to the
                 * PyTorch reference */
                float ob[2 * 24];
                ms_set_precision(MS_PREC_BF16);
                ms_resnet_forward(net, ws, x, 3, 2, ob);
                ms_set_precision(MS_PREC_F32);
                ms_expect_close_f("bf16 forward vs reference", ob, ref, 48, 3e-2, 3e-2);
            }
            ms_resnet_ws_free(ws);
        }
    /* gray folding: x with three equal channels through conv1 vs conv1_gray */
    float *g1 = ms_xmalloc(sizeof(float) * 2 * 40 * 36), *g3 = ms_xmalloc(sizeof(float) * 2 * 3 * 40 * 36);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 40 * 36; i++) {
            g1[b * 40 * 36 + i] = x[b * 3 * 40 * 36 + i];
            for (int c = 0; c < 3; c++) g3[(b * 3 + c) * 40 * 36 + i] = x[b * 3 * 40 * 36 + i];
        }
    net->gray_folded = 1;
    ms_resnet_ws *ws = ms_resnet_ws_new(net, 2, 40, 36, 2);
    float o1[48], o3[48];
    ms_resnet_forward(net, ws, g1, 1, 2, o1);
    ms_resnet_forward(net, ws, g3, 3, 2, o3);
    ms_expect_close_f("gray-folded conv1 vs 3 equal channels", o1, o3, 48, 1e-5, 1e-4);
    /* odd input sizes the architecture allows: 1x1 and 7x5 run and are finite */
    ms_resnet_ws_free(ws);
    ws = ms_resnet_ws_new(net, 2, 7, 5, 1);
    float *small = ms_xcalloc(2 * 3 * 7 * 5, sizeof(float));
    for (int i = 0; i < 2 * 3 * 7 * 5; i++) small[i] = (float)sin(i);
    ms_resnet_forward(net, ws, small, 3, 2, o1);
    int finite = 1;
    for (int i = 0; i < 48; i++) finite &= isfinite(o1[i]) != 0;
    MS_EXPECT(finite);
    ms_resnet_ws_free(ws);
    free(small);
    free(g1);
    free(g3);
    free(x);
    free(ref);
    ms_resnet_free(net);
}

/* The tiny model's architecture at width `width` (channels width, 2, 4, 8 x width; tiny has
 * 3) with random weights and batch-norm statistics: the oneDNN path needs channel counts
 * that fill its channel blocks, which tiny's do not. */
static ms_resnet *load_wide(int width, unsigned seed) {
    ms_st_file f;
    if (ms_st_read(&f, ms_fixture("embed/tiny/model.safetensors"))) {
        fprintf(stderr, "%s\n", ms_last_error());
        MS_EXPECT(0);
        return NULL;
    }
    ms_rng r;
    ms_rng_init(&r, seed, 0, 0);
    ms_st_entry *e = ms_xmalloc(sizeof(ms_st_entry) * (size_t)f.n);
    int64_t(*shape)[MS_ST_MAXDIM] = ms_xcalloc((size_t)f.n, sizeof *shape);
    float **vals = ms_xcalloc((size_t)f.n, sizeof(float *));
    for (int i = 0; i < f.n; i++) {
        const ms_st_tensor *t = &f.tensors[i];
        e[i] = (ms_st_entry){t->name, t->dtype, t->ndim, t->shape, t->data};
        if (t->dtype != MS_ST_F32) continue;
        size_t n = 1;
        for (int d = 0; d < t->ndim; d++) {
            /* channel dims scale (conv1's 3 input channels stay) */
            int keep = d >= 2 || (d == 1 && !strcmp(t->name, "conv1.weight"));
            shape[i][d] = keep ? t->shape[d] : t->shape[d] / 3 * width;
            n *= (size_t)shape[i][d];
        }
        float *v = vals[i] = ms_xmalloc(sizeof(float) * n);
        const char *leaf = strrchr(t->name, '.') + 1;
        const double fan_in = t->ndim == 4 ? (double)(shape[i][1] * shape[i][2] * shape[i][3]) : 1.0;
        for (size_t j = 0; j < n; j++) {
            double u = ms_rng_uniform(&r);
            v[j] = t->ndim == 4 ? (float)(ms_rng_normal(&r) * sqrt(2.0 / fan_in))
                   : !strcmp(leaf, "weight") || !strcmp(leaf, "running_var") ? (float)(0.5 + u)
                                                                           : (float)(0.2 * (u - 0.5));
        }
        e[i].shape = shape[i];
        e[i].data = v;
    }
    char dir[4096], cmd[16384];
    snprintf(dir, sizeof dir, "%s", ms_tmp("embed_wide"));
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s' '%s/config.json'", dir, ms_fixture("embed/tiny/config.json"), dir);
    MS_EXPECT(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s/model.safetensors", dir);
    MS_EXPECT(ms_st_write(cmd, e, f.n, NULL, 0) == MS_OK);
    ms_resnet *net = NULL;
    ms_status st = ms_resnet_load(&net, dir);
    if (st) fprintf(stderr, "%s\n", ms_last_error());
    MS_EXPECT(st == MS_OK);
    for (int i = 0; i < f.n; i++) free(vals[i]);
    free(vals);
    free(shape);
    free(e);
    ms_st_free(&f);
    return net;
}

/* max over rows of 1 - cosine(a_i, b_i), a and b (n, d) */
static double worst_cos_gap(const float *a, const float *b, int n, int d) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double ab = 0, aa = 0, bb = 0;
        for (int j = 0; j < d; j++) {
            ab += (double)a[(size_t)i * d + j] * b[(size_t)i * d + j];
            aa += (double)a[(size_t)i * d + j] * a[(size_t)i * d + j];
            bb += (double)b[(size_t)i * d + j] * b[(size_t)i * d + j];
        }
        double g = 1.0 - ab / sqrt(aa * bb);
        if (!(g <= worst)) worst = g;
    }
    return worst;
}

/* The oneDNN path (blocked layout, primitives per micro-batch size) against the plain loop
 * nests (ms_resnet_forward_micro with ref = 1) on a width-16 network, at sizes down to 1x1,
 * gray-folded and 3-channel input, micro-batches of 1 and 4 over 7 images (a shorter last
 * one); then thread independence: bitwise the same rows on 1 and 2 threads. The tiny model
 * (3 channels, no oneDNN kernel) must fall back to the im2col path, a 1x1 input may. */
static void test_dnnl_path(void) {
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    const int want_dnnl = !getenv("MS_EMBED_IM2COL") && isa != dnnl_cpu_isa_sse41 && isa != dnnl_cpu_isa_avx &&
                          isa != dnnl_cpu_isa_all;
    ms_resnet *net = load_tiny();
    if (net) {
        ms_resnet_ws *ws = ms_resnet_ws_new(net, 4, 40, 36, 2);
        MS_EXPECT(ms_resnet_ws_dnnl(ws) == 0);
        ms_resnet_ws_free(ws);
        ms_resnet_free(net);
    }
    net = load_wide(16, 5);
    if (!net) return;
    const int dim = ms_resnet_dim(net);
    MS_EXPECT(dim == 128);
    static const int sizes[][2] = {{40, 36}, {64, 64}, {7, 5}, {1, 1}, {33, 17}};
    const int B = 7;
    ms_rng r;
    ms_rng_init(&r, 11, 0, 0);
    float *ref = ms_xmalloc(sizeof(float) * B * dim), *got = ms_xmalloc(sizeof(float) * B * dim),
          *got2 = ms_xmalloc(sizeof(float) * B * dim);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int H = sizes[si][0], W = sizes[si][1];
        for (int cin = 1; cin <= 3; cin += 2) {
            net->gray_folded = cin == 1;
            const size_t nx = (size_t)B * cin * H * W;
            float *x = ms_xmalloc(sizeof(float) * nx);
            for (size_t i = 0; i < nx; i++) x[i] = (float)ms_rng_normal(&r);
            /* the plain kernels, one image at a time */
            size_t act, col;
            ms_resnet_ws_sizes(net, 1, H, W, &act, &col);
            float *bufs[4];
            for (int j = 0; j < 4; j++) bufs[j] = ms_xmalloc(sizeof(float) * act);
            float *cb = ms_xmalloc(sizeof(float) * (col ? col : 1));
            for (int i = 0; i < B; i++)
                ms_resnet_forward_micro(net, ref + (size_t)i * dim, x + (size_t)i * cin * H * W, cin, 1, H, W, bufs,
                                        cb, 1);
            for (int micro = 1; micro <= 4; micro += 3) {
                ms_resnet_ws *w1 = ms_resnet_ws_new_micro(net, B, H, W, 1, micro);
                ms_resnet_ws *w2 = ms_resnet_ws_new_micro(net, B, H, W, 2, micro);
                /* a 1x1 image (conv1's 7x7 window mostly padding) may fall back to im2col */
                const int have = ms_resnet_ws_dnnl(w1) == micro;
                if (have != want_dnnl && H > 1)
                    fprintf(stderr, "%dx%d: the oneDNN path is %s\n", H, W, want_dnnl ? "missing" : "there");
                MS_EXPECT(have == want_dnnl || H == 1);
                ms_resnet_forward(net, w1, x, cin, B, got);
                ms_resnet_forward(net, w2, x, cin, B, got2);
                char what[96];
                snprintf(what, sizeof what, "oneDNN path vs plain kernels %dx%d cin %d micro %d", H, W, cin, micro);
                ms_expect_close_f(what, got, ref, (size_t)B * dim, 1e-5, 1e-4);
                const size_t bytes = sizeof(float) * (size_t)B * dim;
                if (memcmp(got, got2, bytes)) fprintf(stderr, "%s: 1 and 2 threads differ\n", what);
                MS_EXPECT(memcmp(got, got2, bytes) == 0);
                ms_resnet_ws_free(w1);
                ms_resnet_ws_free(w2);
            }
            if (ms_bf16_supported()) {
                /* bf16 (weights, input and activations rounded, fp32 accumulation): close to
                 * the fp32 plain kernels, and the same on 1 and 2 threads */
                ms_set_precision(MS_PREC_BF16);
                ms_resnet_ws *w1 = ms_resnet_ws_new_micro(net, B, H, W, 1, 4);
                ms_resnet_ws *w2 = ms_resnet_ws_new_micro(net, B, H, W, 2, 4);
                const int have = ms_resnet_ws_dnnl(w1) == 4;
                if (have != want_dnnl && H > 1)
                    fprintf(stderr, "%dx%d bf16: the oneDNN path is %s\n", H, W, want_dnnl ? "missing" : "there");
                MS_EXPECT(have == want_dnnl || H == 1);
                ms_resnet_forward(net, w1, x, cin, B, got);
                ms_resnet_forward(net, w2, x, cin, B, got2);
                MS_EXPECT(memcmp(got, got2, sizeof(float) * (size_t)B * dim) == 0);
                /* this random network amplifies rounding (its activations grow to ~100 while
                 * the embeddings are ~1), so the yardstick is the im2col bf16 path (fp32
                 * activations, operands rounded): a workspace made at f32 runs it */
                ms_set_precision(MS_PREC_F32);
                ms_resnet_ws *wi = ms_resnet_ws_new_micro(net, B, H, W, 1, 4);
                ms_set_precision(MS_PREC_BF16);
                ms_resnet_forward(net, wi, x, cin, B, got2);
                ms_set_precision(MS_PREC_F32);
                const double e_dn = worst_cos_gap(got, ref, B, dim), e_im = worst_cos_gap(got2, ref, B, dim);
                if (!(e_dn <= 4 * e_im + 1e-5))
                    fprintf(stderr, "bf16 %dx%d cin %d: worst 1 - cosine to fp32 %.3g (oneDNN) vs %.3g (im2col)\n", H, W,
                            cin, e_dn, e_im);
                MS_EXPECT(e_dn <= 4 * e_im + 1e-5);
                ms_resnet_ws_free(wi);
                ms_resnet_ws_free(w1);
                ms_resnet_ws_free(w2);
            }
            for (int j = 0; j < 4; j++) free(bufs[j]);
            free(cb);
            free(x);
        }
    }
    free(ref), free(got), free(got2);
    ms_resnet_free(net);
}

/* optimized convolution (im2col + sgemm) against the plain loop nest on random shapes */
static void test_conv_kernels(void) {
    static const int cfgs[][6] = {/* cin, cout, k, stride, pad, h */ {5, 7, 3, 1, 1, 9}, {4, 6, 3, 2, 1, 11},
                                  {3, 5, 7, 2, 3, 13}, {6, 8, 1, 2, 0, 10}, {2, 3, 1, 1, 0, 5},
                                  {3, 4, 3, 2, 1, 1}};
    ms_rng r;
    ms_rng_init(&r, 7, 0, 0);
    for (size_t t = 0; t < sizeof cfgs / sizeof cfgs[0]; t++) {
        ms_conv c = {cfgs[t][0], cfgs[t][1], cfgs[t][2], cfgs[t][3], cfgs[t][4], NULL, NULL, NULL};
        const int b = 3, h = cfgs[t][5], w = h + 2;
        const int ho = ms_conv_out(h, c.k, c.stride, c.pad), wo = ms_conv_out(w, c.k, c.stride, c.pad);
        size_t nw = (size_t)c.cout * c.cin * c.k * c.k, nin = (size_t)c.cin * b * h * w,
               nout = (size_t)c.cout * b * ho * wo;
        c.w = ms_xmalloc(sizeof(float) * nw);
        c.b = ms_xmalloc(sizeof(float) * (size_t)c.cout);
        float *in = ms_xmalloc(sizeof(float) * nin), *res = ms_xmalloc(sizeof(float) * nout);
        float *o1 = ms_xmalloc(sizeof(float) * nout), *o2 = ms_xmalloc(sizeof(float) * nout);
        float *col = ms_xmalloc(sizeof(float) * (size_t)c.cin * c.k * c.k * b * ho * wo);
        for (size_t i = 0; i < nw; i++) c.w[i] = (float)ms_rng_normal(&r);
        for (int i = 0; i < c.cout; i++) c.b[i] = (float)ms_rng_normal(&r);
        for (size_t i = 0; i < nin; i++) in[i] = (float)ms_rng_normal(&r);
        for (size_t i = 0; i < nout; i++) res[i] = (float)ms_rng_normal(&r);
        for (int variant = 0; variant < 2; variant++) {
            const float *rs = variant ? res : NULL;
            ms_conv_forward(o1, col, in, rs, &c, b, h, w, variant);
            ms_conv_forward_ref(o2, in, rs, &c, b, h, w, variant);
            char what[96];
            snprintf(what, sizeof what, "conv k%d s%d p%d cin%d h%d %s", c.k, c.stride, c.pad, c.cin, h,
                     variant ? "+res relu" : "");
            ms_expect_close_f(what, o1, o2, nout, 1e-5, 1e-5);
        }
        if (ms_bf16_supported()) {
            /* the bf16 path: im2col written in bf16 equals the fp32 im2col rounded */
            size_t ncol = (size_t)c.cin * c.k * c.k * b * ho * wo;
            ms_bf16 *cb = ms_xmalloc(sizeof(ms_bf16) * (ncol ? ncol : 1));
            ms_im2col(col, in, c.cin, b, h, w, c.k, c.stride, c.pad);
            ms_im2col_bf16(cb, in, c.cin, b, h, w, c.k, c.stride, c.pad);
            size_t bad = 0;
            for (size_t i = 0; i < ncol; i++) bad += cb[i] != ms_bf16_round(col[i]);
            if (bad) fprintf(stderr, "im2col_bf16: %zu of %zu values differ from the rounded fp32 im2col\n", bad, ncol);
            MS_EXPECT(bad == 0);
            free(cb);
            /* the bf16 convolution (weights rounded once into wb) against the plain loop on
             * the rounded weights and input: only the fp32 accumulation order differs */
            ms_conv cr = c;
            cr.w = ms_xmalloc(sizeof(float) * nw);
            c.wb = ms_xmalloc(sizeof(ms_bf16) * nw);
            ms_bf16_from_f32(c.wb, c.w, nw);
            for (size_t i = 0; i < nw; i++) cr.w[i] = ms_bf16_to_f32(c.wb[i]);
            float *inr = ms_xmalloc(sizeof(float) * nin);
            for (size_t i = 0; i < nin; i++) inr[i] = ms_bf16_to_f32(ms_bf16_round(in[i]));
            ms_set_precision(MS_PREC_BF16);
            for (int variant = 0; variant < 2; variant++) {
                const float *rs = variant ? res : NULL;
                ms_conv_forward(o1, col, in, rs, &c, b, h, w, variant);
                ms_conv_forward_ref(o2, inr, rs, &cr, b, h, w, variant);
                char what[96];
                snprintf(what, sizeof what, "bf16 conv k%d s%d p%d cin%d h%d %s", c.k, c.stride, c.pad, c.cin, h,
                         variant ? "+res relu" : "");
                ms_expect_close_f(what, o1, o2, nout, 1e-4, 1e-4);
            }
            ms_set_precision(MS_PREC_F32);
            free(c.wb), free(cr.w), free(inr);
        }
        free(c.w), free(c.b), free(in), free(res), free(o1), free(o2), free(col);
    }
}

/* ---- images -------------------------------------------------------------------------------- */

static void expect_image(const char *file, const char *refname, int c) {
    ms_image im;
    ms_image_init(&im);
    ms_status st = ms_image_load(&im, ms_fixture(file));
    if (st) fprintf(stderr, "%s\n", ms_last_error());
    MS_EXPECT(st == MS_OK);
    long n, sh[4];
    float *ref = load_f(refname, &n, sh);
    if (!st) {
        MS_EXPECT(im.c == c && im.h == sh[0] && im.w == sh[1]);
        if (im.c == c && (long)im.w * im.h * c == n) {
            float *got = ms_xmalloc(sizeof(float) * (size_t)n);
            for (long i = 0; i < n; i++) got[i] = im.px[i];
            ms_expect_close_f(file, got, ref, (size_t)n, 0, 0);
            free(got);
        }
    }
    free(ref);
    ms_image_free(&im);
}

static void test_decode(void) {
    expect_image("embed/png_l16.png", "embed/png_l16_ref.npy", 1);
    expect_image("embed/png_la.png", "embed/png_la_ref.npy", 1);
    expect_image("embed/png_p.png", "embed/png_p_ref.npy", 3);
    expect_image("embed/png_rgba.png", "embed/png_rgba_ref.npy", 3);
    expect_image("embed/png_l1.png", "embed/png_l1_ref.npy", 1);
    expect_image("embed/jpg_rgb.jpg", "embed/jpg_rgb_ref.npy", 3);
    expect_image("embed/jpg_gray.jpg", "embed/jpg_gray_ref.npy", 1);

    /* RGB -> L against PIL's convert('L') (exact) */
    ms_image im;
    ms_image_init(&im);
    MS_EXPECT(ms_image_load(&im, ms_fixture("embed/img_rgb.png")) == MS_OK && im.c == 3);
    ms_image_to_gray(&im);
    long n;
    float *ref = load_f("embed/rgb_L.npy", &n, NULL);
    float *got = ms_xmalloc(sizeof(float) * (size_t)n);
    for (long i = 0; i < n && i < (long)im.w * im.h; i++) got[i] = im.px[i];
    MS_EXPECT(im.c == 1 && n == (long)im.w * im.h);
    ms_expect_close_f("convert L", got, ref, (size_t)n, 0, 0);
    free(got);
    free(ref);

    /* errors name the file */
    const char *bad = ms_tmp("embed_bad.png");
    ms_write_text(bad, "not an image at all");
    MS_EXPECT(ms_image_load(&im, bad) == MS_ERR_DATA && strstr(ms_last_error(), bad) &&
              strstr(ms_last_error(), "not a PNG, JPEG or DICOM"));
    MS_EXPECT(ms_image_load(&im, ms_tmp("embed_missing.png")) == MS_ERR_IO &&
              strstr(ms_last_error(), "embed_missing.png"));
    /* a truncated PNG and a truncated JPEG */
    const char *srcs[2] = {"embed/pipe_0.png", "embed/jpg_rgb.jpg"};
    for (int k = 0; k < 2; k++) {
        FILE *f = fopen(ms_fixture(srcs[k]), "rb");
        unsigned char buf[4096];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        const char *tr = ms_tmp(k ? "embed_trunc.jpg" : "embed_trunc.png");
        f = fopen(tr, "wb");
        fwrite(buf, 1, len / 2, f);
        fclose(f);
        ms_status st = ms_image_load(&im, tr);
        MS_EXPECT(st == MS_ERR_DATA && strstr(ms_last_error(), tr) && strstr(ms_last_error(), "corrupt"));
        if (st != MS_ERR_DATA) fprintf(stderr, "truncated %s: status %d\n", tr, st);
    }
    unsigned char dcm[200] = {0};
    memcpy(dcm + 128, "DICM", 4);
    const char *dp = ms_tmp("embed_x.dcm");
    FILE *f = fopen(dp, "wb");
    fwrite(dcm, 1, sizeof dcm, f);
    fclose(f);
#ifdef MS_HAVE_DICOM
    /* a DICOM preamble without a data set */
    MS_EXPECT(ms_image_load(&im, dp) == MS_ERR_DATA && strstr(ms_last_error(), dp));
    /* DICOM through GDCM: MONOCHROME2 with rescale and min-max, MONOCHROME1 with a window
     * (RLE lossless), RGB planar; YBR_FULL is refused naming the interpretation */
    expect_image("embed/dcm_mono2.dcm", "embed/dcm_mono2_ref.npy", 1);
    expect_image("embed/dcm_mono1.dcm", "embed/dcm_mono1_ref.npy", 1);
    expect_image("embed/dcm_rgb.dcm", "embed/dcm_rgb_ref.npy", 3);
    MS_EXPECT(ms_image_load(&im, ms_fixture("embed/dcm_ybr.dcm")) == MS_ERR_DATA &&
              strstr(ms_last_error(), "dcm_ybr.dcm") && strstr(ms_last_error(), "YBR_FULL"));
#else
    /* DICOM magic without DICOM support gives the documented error */
    MS_EXPECT(ms_image_load(&im, dp) == MS_ERR_DATA && strstr(ms_last_error(), "DICOM support not built"));
#endif
    ms_image_free(&im);
}

static void test_resize(void) {
    static const char *names[3] = {"bilinear", "bicubic", "lanczos"};
    ms_image src, dst;
    ms_image_init(&src);
    ms_image_init(&dst);
    MS_EXPECT(ms_image_load(&src, ms_fixture("embed/img_rgb.png")) == MS_OK);
    ms_arena a;
    ms_arena_init(&a);
    for (int f = 0; f < 3; f++) {
        char name[64];
        /* up: 23x17 -> 29x21 */
        snprintf(name, sizeof name, "embed/rs_%s_up.npy", names[f]);
        long n;
        float *ref = load_f(name, &n, NULL);
        ms_image_resize(&dst, &src, 29, 21, (ms_resample)f, &a);
        ms_arena_reset(&a);
        float *got = ms_xmalloc(sizeof(float) * (size_t)n);
        for (long i = 0; i < n; i++) got[i] = dst.px[i];
        MS_EXPECT(n == 29 * 21 * 3);
        ms_expect_close_f(name, got, ref, (size_t)n, 1.0, 0); /* PIL: fixed-point, within 1 level */
        free(got);
        free(ref);
        /* down: shorter side to 10 + centre crop, through ms_preprocess with a 10x10 RGB config
         * whose mean 0 / std 1/255 give back the 8-bit values */
        snprintf(name, sizeof name, "embed/rs_%s_down.npy", names[f]);
        ref = load_f(name, &n, NULL);
        ms_embed_config cfg = {10, 10, 0, {0, 0, 0}, {1.0f / 255, 1.0f / 255, 1.0f / 255}, (ms_resample)f};
        float x[300], hwc[300];
        ms_image copy;
        ms_image_init(&copy);
        ms_image_reserve(&copy, src.w, src.h, src.c);
        memcpy(copy.px, src.px, (size_t)src.w * src.h * src.c);
        ms_preprocess(x, &copy, &cfg, 3, &a);
        ms_arena_reset(&a);
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 100; i++) hwc[i * 3 + c] = roundf(x[c * 100 + i]);
        MS_EXPECT(n == 300);
        ms_expect_close_f(name, hwc, ref, 300, 1.0, 0);
        ms_image_free(&copy);
        free(ref);
    }
    ms_arena_free(&a);
    ms_image_free(&src);
    ms_image_free(&dst);
}

/* ---- the pipeline ------------------------------------------------------------------------- */

static void make_gray_model(char *dir, size_t cap) {
    snprintf(dir, cap, "%s", ms_tmp("embed_tiny_gray"));
    char p[16384], q[4096];
    snprintf(p, sizeof p, "mkdir -p '%s'", dir);
    MS_EXPECT(system(p) == 0);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    snprintf(q, sizeof q, "%s", ms_fixture("embed/tiny/model.safetensors"));
    char abs[4096];
    MS_EXPECT(realpath(q, abs) != NULL);
    MS_EXPECT(symlink(abs, p) == 0);
    snprintf(p, sizeof p, "cp '%s' '%s/config.json'", ms_fixture("embed/tiny_gray.json"), dir);
    MS_EXPECT(system(p) == 0);
}

static void test_pipeline(void) {
    char dir[4096];
    make_gray_model(dir, sizeof dir);
    ms_resnet *net = NULL;
    MS_EXPECT(ms_resnet_load(&net, dir) == MS_OK);
    if (!net) return;
    MS_EXPECT(ms_resnet_input_channels(net) == 1);
    char paths[6][4096];
    snprintf(paths[0], 4096, "%s", ms_fixture("embed/pipe_0.png"));
    snprintf(paths[1], 4096, "%s", ms_tmp("embed_missing.png"));
    snprintf(paths[2], 4096, "%s", ms_fixture("embed/pipe_1.png"));
    snprintf(paths[3], 4096, "%s", ms_fixture("embed/pipe_2.png"));
    snprintf(paths[4], 4096, "%s", ms_tmp("embed_bad.png"));
    snprintf(paths[5], 4096, "%s", ms_fixture("embed/pipe_0.png"));
    const char *pp[6];
    for (int i = 0; i < 6; i++) pp[i] = paths[i];
    float *ref = load_f("embed/pipe_out.npy", NULL, NULL);
    float out[6 * 24];
    char *err[6];
    for (int batch = 1; batch <= 4; batch += 3) {
        ms_embed_opts o = ms_embed_opts_default();
        o.batch = batch;
        o.threads = 2;
        o.on_error = MS_ON_ERROR_SKIP;
        int nf = -1;
        MS_EXPECT(ms_embed_files(net, pp, 6, &o, out, err, &nf) == MS_OK);
        MS_EXPECT(nf == 2);
        MS_EXPECT(err[0] == NULL && err[2] == NULL && err[3] == NULL && err[5] == NULL);
        MS_EXPECT(err[1] && strstr(err[1], "embed_missing.png"));
        MS_EXPECT(err[4] && strstr(err[4], "embed_bad.png"));
        MS_EXPECT(isnan(out[1 * 24]) && isnan(out[4 * 24 + 23]));
        ms_expect_close_f("pipeline row 0", out, ref, 24, 1e-5, 1e-4);
        ms_expect_close_f("pipeline row 2", out + 2 * 24, ref + 24, 24, 1e-5, 1e-4);
        /* resized with LANCZOS: PIL may differ by one gray level in a few pixels */
        ms_expect_close_f("pipeline row 3 (resized)", out + 3 * 24, ref + 48, 24, 2e-3, 2e-3);
        ms_expect_close_f("pipeline row 5", out + 5 * 24, ref, 24, 1e-5, 1e-4);
        for (int i = 0; i < 6; i++) free(err[i]);
        /* fail mode: the first bad file in row order */
        o.on_error = MS_ON_ERROR_FAIL;
        ms_status st = ms_embed_files(net, pp, 6, &o, out, err, &nf);
        MS_EXPECT(st == MS_ERR_IO && strstr(ms_last_error(), "embed_missing.png"));
        for (int i = 0; i < 6; i++) free(err[i]);
    }
    free(ref);
    ms_resnet_free(net);
}

/* ---- safetensors validation --------------------------------------------------------------- */

/* Rewrites the tiny model with `edit` applied to its header into DIR, loads it, expects an
 * MS_ERR_DATA whose message contains `want`. */
static void expect_bad_model(const char *what, void (*edit)(cJSON *h), long header_len_override,
                             const char *want) {
    FILE *f = fopen(ms_fixture("embed/tiny/model.safetensors"), "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    unsigned char *raw = ms_xmalloc((size_t)size);
    MS_EXPECT(fread(raw, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | raw[i];
    cJSON *h = cJSON_ParseWithLength((const char *)raw + 8, (size_t)n);
    if (edit) edit(h);
    char *js = cJSON_PrintUnformatted(h);
    uint64_t m = strlen(js);
    char dir[4096], p[16384];
    snprintf(dir, sizeof dir, "%s", ms_tmp("embed_bad_model"));
    snprintf(p, sizeof p, "mkdir -p '%s' && cp '%s' '%s/config.json'", dir, ms_fixture("embed/tiny/config.json"), dir);
    MS_EXPECT(system(p) == 0);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    f = fopen(p, "wb");
    uint64_t hl = header_len_override >= 0 ? (uint64_t)header_len_override : m;
    for (int i = 0; i < 8; i++) fputc((int)((hl >> (8 * i)) & 0xff), f);
    fwrite(js, 1, m, f);
    fwrite(raw + 8 + n, 1, (size_t)size - 8 - n, f);
    fclose(f);
    ms_resnet *net = NULL;
    ms_status st = ms_resnet_load(&net, dir);
    int ok = st == MS_ERR_DATA && strstr(ms_last_error(), want) != NULL && net == NULL;
    if (!ok) fprintf(stderr, "bad model '%s': status %d, message '%s', wanted '%s'\n", what, st, ms_last_error(), want);
    MS_EXPECT(ok);
    ms_resnet_free(net);
    cJSON_free(js);
    cJSON_Delete(h);
    free(raw);
}

static void edit_missing(cJSON *h) { cJSON_DeleteItemFromObject(h, "layer3.1.bn2.running_var"); }
static void edit_shape(cJSON *h) {
    /* [6, 3, 3, 3] -> [3, 6, 3, 3]: same byte span, wrong shape */
    cJSON *s = cJSON_GetObjectItem(cJSON_GetObjectItem(h, "layer2.0.conv1.weight"), "shape");
    cJSON_SetNumberValue(cJSON_GetArrayItem(s, 0), 3);
    cJSON_SetNumberValue(cJSON_GetArrayItem(s, 1), 6);
}
static void edit_span(cJSON *h) {
    cJSON *s = cJSON_GetObjectItem(cJSON_GetObjectItem(h, "layer1.1.conv2.weight"), "shape");
    cJSON_SetNumberValue(cJSON_GetArrayItem(s, 0), 4);
}
static void edit_dtype(cJSON *h) {
    cJSON *d = cJSON_GetObjectItem(cJSON_GetObjectItem(h, "layer4.0.conv1.weight"), "dtype");
    cJSON_SetValuestring(d, "I32");
}
static void edit_offsets(cJSON *h) {
    cJSON *o = cJSON_GetObjectItem(cJSON_GetObjectItem(h, "bn1.bias"), "data_offsets");
    cJSON_SetNumberValue(cJSON_GetArrayItem(o, 0), 1e9);
    cJSON_SetNumberValue(cJSON_GetArrayItem(o, 1), 1e9 + 12);
}

static void test_safetensors(void) {
    expect_bad_model("missing", edit_missing, -1, "tensor layer3.1.bn2.running_var: missing");
    expect_bad_model("shape", edit_shape, -1, "tensor layer2.0.conv1.weight: has shape [3, 6, 3, 3], expected [6, 3, 3, 3]");
    expect_bad_model("span", edit_span, -1, "tensor \"layer1.1.conv2.weight\" spans 324 bytes but its shape and dtype need 432");
    expect_bad_model("dtype", edit_dtype, -1, "tensor layer4.0.conv1.weight: dtype I32, expected F32, F16 or BF16");
    expect_bad_model("offsets", edit_offsets, -1, "tensor \"bn1.bias\" has data_offsets [1000000000, 1000000012] beyond the data section");
    expect_bad_model("header length", NULL, 1L << 40, "header length 1099511627776 exceeds");
    ms_resnet *net = NULL;
    MS_EXPECT(ms_resnet_load(&net, ms_tmp("embed_no_such_model")) == MS_ERR_IO &&
              strstr(ms_last_error(), "config.json"));
}

/* ---- 16-bit weights ------------------------------------------------------------------------ */

/* Every binary16 and bfloat16 bit pattern against the value its fields define, computed
 * independently with ldexp: sign, exponent bias 15 (127), 10 (7) fraction bits, subnormals
 * at exponent 0, inf/NaN at the all-ones exponent. */
static void test_half_decode(void) {
    int bad16 = 0, badbf = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const double sg = (h & 0x8000) ? -1.0 : 1.0;
        int e = (int)((h >> 10) & 31), m = (int)(h & 1023);
        double want = e == 31 ? (m ? NAN : INFINITY) : e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
        want *= sg;
        float got = ms_st_f16_to_f32((uint16_t)h);
        if (isnan(want) ? !isnan(got) : (double)got != want || !signbit(got) != !signbit(want)) bad16++;
        e = (int)((h >> 7) & 255), m = (int)(h & 127);
        want = e == 255 ? (m ? NAN : INFINITY) : e ? ldexp(128 + m, e - 134) : ldexp(m, -133);
        want *= sg;
        got = ms_st_bf16_to_f32((uint16_t)h);
        if (isnan(want) ? !isnan(got) : (double)got != want || !signbit(got) != !signbit(want)) badbf++;
    }
    if (bad16 || badbf) fprintf(stderr, "half decode: %d F16 and %d BF16 patterns wrong\n", bad16, badbf);
    MS_EXPECT(bad16 == 0 && badbf == 0);
}

/* Nearest binary16 bits of a finite x within the F16 range (ties to even), by binary search over
 * the positive patterns 0x0000..0x7bff, whose values ms_st_f16_to_f32 (checked exhaustively above)
 * gives in increasing order. */
static uint16_t f16_round(float x) {
    float a = fabsf(x);
    int lo = 0, hi = 0x7bff;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (ms_st_f16_to_f32((uint16_t)mid) <= a) lo = mid;
        else hi = mid;
    }
    float dl = a - ms_st_f16_to_f32((uint16_t)lo), dh = ms_st_f16_to_f32((uint16_t)hi) - a;
    int r = dl < dh ? lo : dh < dl ? hi : (lo & 1 ? hi : lo);
    return (uint16_t)(r | (signbit(x) ? 0x8000 : 0));
}

/* The tiny model stored as F16 (BF16) loads to exactly the network of the same values stored as
 * F32: a 16-bit file is widened without loss, so their embeddings are bit-identical. */
static void test_half_weights(void) {
    ms_st_file f;
    MS_EXPECT(ms_st_read(&f, ms_fixture("embed/tiny/model.safetensors")) == MS_OK);
    float *x = load_f("embed/tiny_x.npy", NULL, NULL);
    float *ref = load_f("embed/tiny_out.npy", NULL, NULL);
    for (int kind = 0; kind < 2; kind++) { /* 0: F16, 1: BF16 */
        ms_st_entry *e32 = ms_xcalloc((size_t)f.n, sizeof *e32), *e16 = ms_xcalloc((size_t)f.n, sizeof *e16);
        void **bufs = ms_xcalloc(2 * (size_t)f.n, sizeof *bufs);
        for (int i = 0; i < f.n; i++) {
            const ms_st_tensor *t = &f.tensors[i];
            e32[i] = (ms_st_entry){t->name, t->dtype, t->ndim, t->shape, t->data};
            e16[i] = e32[i];
            if (t->dtype != MS_ST_F32) continue;
            float *v = bufs[2 * i] = ms_xmalloc(4 * t->numel);
            uint16_t *b = bufs[2 * i + 1] = ms_xmalloc(2 * t->numel);
            memcpy(v, t->data, 4 * t->numel);
            for (size_t j = 0; j < t->numel; j++) {
                uint32_t u;
                memcpy(&u, &v[j], 4);
                b[j] = kind ? (uint16_t)(u >> 16) : f16_round(v[j]); /* bf16: truncate */
                v[j] = kind ? ms_st_bf16_to_f32(b[j]) : ms_st_f16_to_f32(b[j]);
            }
            e32[i].data = v;
            e16[i] = (ms_st_entry){t->name, kind ? MS_ST_BF16 : MS_ST_F16, t->ndim, t->shape, b};
        }
        ms_resnet *net[2] = {NULL, NULL};
        for (int w = 0; w < 2; w++) {
            char dir[4096], cmd[16384];
            snprintf(dir, sizeof dir, "%s", ms_tmp(w ? "embed_half16" : "embed_half32"));
            snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s' '%s/config.json'", dir,
                     ms_fixture("embed/tiny/config.json"), dir);
            MS_EXPECT(system(cmd) == 0);
            snprintf(cmd, sizeof cmd, "%s/model.safetensors", dir);
            MS_EXPECT(ms_st_write(cmd, w ? e16 : e32, f.n, NULL, 0) == MS_OK);
            ms_status st = ms_resnet_load(&net[w], dir);
            if (st) fprintf(stderr, "%s\n", ms_last_error());
            MS_EXPECT(st == MS_OK);
        }
        if (net[0] && net[1]) {
            float out[2][48];
            for (int w = 0; w < 2; w++) {
                ms_resnet_ws *ws = ms_resnet_ws_new(net[w], 2, 40, 36, 1);
                ms_resnet_forward(net[w], ws, x, 3, 2, out[w]);
                ms_resnet_ws_free(ws);
            }
            const char *what = kind ? "BF16" : "F16";
            if (memcmp(out[0], out[1], sizeof out[0]))
                fprintf(stderr, "%s weights: embeddings differ from the same values stored as F32\n", what);
            MS_EXPECT(memcmp(out[0], out[1], sizeof out[0]) == 0);
            /* and the rounding itself moves the embeddings only a little from the F32 model's */
            char name[64];
            snprintf(name, sizeof name, "%s-rounded tiny model vs F32", what);
            ms_expect_close_f(name, out[1], ref, 48, kind ? 5e-2 : 5e-3, kind ? 5e-2 : 5e-3);
        }
        ms_resnet_free(net[0]);
        ms_resnet_free(net[1]);
        for (int i = 0; i < 2 * f.n; i++) free(bufs[i]);
        free(bufs);
        free(e32);
        free(e16);
    }
    free(x);
    free(ref);
    ms_st_free(&f);
}

/* ---- parity with the PyTorch embeddings of NIH1000 ------------------------------------------ */

static char **read_paths(const char *csv, int *n) {
    FILE *f = fopen(csv, "r");
    if (!f) return NULL;
    char line[8192];
    int cap = 64, k = 0;
    char **v = ms_xmalloc(sizeof(char *) * (size_t)cap);
    MS_EXPECT(fgets(line, sizeof line, f) && !strncmp(line, "Path,", 5));
    while (fgets(line, sizeof line, f)) {
        char *c = strchr(line, ',');
        if (!c) continue;
        *c = 0;
        if (k == cap) v = ms_xrealloc(v, sizeof(char *) * (size_t)(cap *= 2));
        char full[16384];
        snprintf(full, sizeof full, "%s/%s", ms_data("data/nih1000"), line);
        v[k++] = ms_xstrdup(full);
    }
    fclose(f);
    *n = k;
    return v;
}

static float *read_h5(const char *path, int *rows, int *cols) {
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) return NULL;
    hid_t ds = H5Dopen2(file, "dataset", H5P_DEFAULT);
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[2] = {0, 0};
    MS_EXPECT(H5Sget_simple_extent_ndims(sp) == 2);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    float *x = ms_xmalloc(sizeof(float) * (size_t)(dims[0] * dims[1]));
    MS_EXPECT(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    H5Sclose(sp);
    H5Dclose(ds);
    H5Fclose(file);
    *rows = (int)dims[0];
    *cols = (int)dims[1];
    return x;
}

/* bf16: the model loaded and run at bf16 (weights, input and, on the oneDNN path, the
 * activations between layers rounded): measured over all 1,000 images, worst 1 - cosine
 * 7.0e-6 and worst relative error 6.9e-3 */
static void test_parity_nih1000(ms_precision prec) {
    MS_EXPECT(ms_shared_available()); /* data/ and models/ ship with the repository */
    ms_set_precision(prec); /* before loading: the bf16 weights are made at load */
    ms_resnet *net = NULL;
    ms_status st = ms_resnet_load(&net, ms_data("models/cxr-simclr-resnet18-64"));
    if (st) fprintf(stderr, "%s\n", ms_last_error());
    MS_EXPECT(st == MS_OK);
    if (!net) return;
    MS_EXPECT(ms_resnet_dim(net) == 512 && ms_resnet_input_channels(net) == 1);
    /* the test split (267 images) by default; all six files (1,000 images) with
     * MS_EMBED_PARITY_ALL=1 */
    static const char *files[6] = {"test_pos", "test_norm", "train_pos", "train_norm", "val_pos", "val_norm"};
    const char *all = getenv("MS_EMBED_PARITY_ALL");
    const int n_files = all && !strcmp(all, "1") ? 6 : 2;
    double worst_cos = 1.0, worst_rel = 0.0;
    int total = 0;
    double t0 = ms_now();
    for (int fi = 0; fi < n_files; fi++) {
        char name[256];
        snprintf(name, sizeof name, "data/nih1000/embeddings/%s.csv", files[fi]);
        int n = 0, rows = 0, cols = 0;
        char **paths = read_paths(ms_data(name), &n);
        snprintf(name, sizeof name, "data/nih1000/embeddings/%s.hdf5", files[fi]);
        float *ref = read_h5(ms_data(name), &rows, &cols);
        MS_EXPECT(paths && ref && rows == n && cols == 512);
        if (!paths || !ref || rows != n || cols != 512) continue;
        float *out = ms_xmalloc(sizeof(float) * (size_t)n * 512);
        char **err = ms_xmalloc(sizeof(char *) * (size_t)n);
        ms_embed_opts o = ms_embed_opts_default();
        o.threads = 2;
        st = ms_embed_files(net, (const char *const *)paths, n, &o, out, err, NULL);
        if (st) fprintf(stderr, "%s\n", ms_last_error());
        MS_EXPECT(st == MS_OK);
        for (int i = 0; i < n; i++) {
            const float *a = out + (size_t)i * 512, *b = ref + (size_t)i * 512;
            double ab = 0, aa = 0, bb = 0, dmax = 0, bmax = 0;
            for (int j = 0; j < 512; j++) {
                ab += (double)a[j] * b[j];
                aa += (double)a[j] * a[j];
                bb += (double)b[j] * b[j];
                if (fabs((double)a[j] - b[j]) > dmax) dmax = fabs((double)a[j] - b[j]);
                if (fabs(b[j]) > bmax) bmax = fabs(b[j]);
            }
            double cosv = ab / sqrt(aa * bb), rel = dmax / bmax; /* rel: max|a-b| / max|b| per row */
            if (!(cosv >= worst_cos)) worst_cos = cosv;
            if (!(rel <= worst_rel)) worst_rel = rel;
        }
        total += n;
        for (int i = 0; i < n; i++) free(err[i]);
        free(err);
        free(out);
        free(ref);
        ms_strv_free(paths, n);
    }
    double dt = ms_now() - t0;
    ms_set_precision(MS_PREC_F32);
    printf("NIH1000 parity (%s): %d images in %.2f s; worst 1 - cosine %.3g, worst max relative error %.3g\n",
           ms_precision_name(prec), total, dt, 1.0 - worst_cos, worst_rel);
    MS_EXPECT(total == (n_files == 6 ? 1000 : 267));
    /* the F16 weights: measured over all 1,000 images, worst 1 - cosine 3.6e-7 and worst
     * relative error 1.2e-3 (the F32 original gave 5e-14 and 8e-7) */
    MS_EXPECT(worst_cos >= 1.0 - (prec == MS_PREC_BF16 ? 5e-5 : 1e-6));
    MS_EXPECT(worst_rel <= (prec == MS_PREC_BF16 ? 2e-2 : 2e-3));
    ms_resnet_free(net);
}

int main(void) {
    ms_set_threads(2);
    test_conv_kernels();
    test_stages();
    test_forward();
    test_dnnl_path();
    test_decode();
    test_resize();
    test_pipeline();
    test_safetensors();
    test_half_decode();
    test_half_weights();
    test_parity_nih1000(MS_PREC_F32);
    if (ms_bf16_supported()) test_parity_nih1000(MS_PREC_BF16);
    return ms_test_summary();
}
