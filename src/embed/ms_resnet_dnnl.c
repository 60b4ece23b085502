/* ms_resnet_dnnl.c: ResNet-18 inference on oneDNN's convolution and pooling primitives.
 *
 * Activations stay in the channel-blocked layout oneDNN's direct convolution kernels are
 * written for (nChw16c with AVX-512, nChw8c with AVX2: (N, C/16, H, W, 16)), so there is no
 * im2col copy; batch norm is folded into each convolution's weights and bias (ms_weights.c),
 * ReLU and the residual sum are post-ops of the convolution that produces them (the second
 * convolution of a block writes in place over its shortcut, sum post-op then ReLU).
 *
 * Threads split the batch into micro-batches of a fixed size `micro` (chosen from the input
 * size and a memory budget, never from the thread count). Every primitive is created for one
 * thread and runs on its calling thread inside the parallel region, so each image's
 * arithmetic, summation order included, is the same for any thread count. Primitives depend
 * on the micro-batch size: a "plan" holds them for one size, made once (the full micro-batch
 * when the workspace is made, a smaller last micro-batch when first needed). Weights are
 * reordered once into the layout the first plan asks for; later plans are created for that
 * layout.
 */
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include "embed/ms_embed_internal.h"

#define DNNL_OK(x)                                                                           \
    do {                                                                                     \
        if ((x) != dnnl_success) ms_abort_at(__FILE__, __LINE__, "oneDNN refused: " #x);     \
    } while (0)

enum { NCONV = 2 + 8 * 3 }; /* conv1 (3 channels), conv1_gray, then per block c1, c2, down */

typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_t *src, *dst, *scratch; /* one per thread: handles are set per call */
} layer;

typedef struct {
    int n;                 /* images per micro-batch */
    layer conv[NCONV];     /* prim NULL when unused (no gray conv1, no down projection) */
    layer pool;
    size_t big, act;       /* bytes of the conv1 output and of the largest block activation */
} plan;

struct ms_rdnn {
    const ms_resnet *net;
    int H, W, micro, threads, tag; /* tag: the blocked activation layout */
    dnnl_data_type_t dt;          /* of the activations and weights: f32, or bf16 */
    ms_bf16 **xb;                 /* bf16: per thread, the micro-batch's input rounded */
    dnnl_engine_t eng;
    dnnl_stream_t *stream;        /* one per thread */
    const ms_conv *conv[NCONV];   /* the network's convolutions in plan order (NULL: unused) */
    dnnl_memory_t w[NCONV], b[NCONV]; /* reordered weights (owned), bias (net's floats) */
    int ih[NCONV], iw[NCONV];     /* each convolution's input size */
    int oh, ow;                   /* layer4's output size */
    plan **plans;                 /* plans[n] for n = 1..micro, made on first use */
    void **bufs;                  /* threads x 3 activation buffers */
    size_t buf_bytes[3];
};

/* ---- primitive creation ------------------------------------------------------------------ */

/* 1 when the implementation is a reference (unoptimized) kernel. */
static int impl_is_ref(const_dnnl_primitive_desc_t pd) {
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl) return 1;
    return strstr(impl, "ref") != NULL;
}

/* Creates pd with oneDNN planning for one thread (its blocking, and so the summation order,
 * then does not depend on the caller's thread count). */
static dnnl_primitive_desc_t create_pd(const void *desc, const_dnnl_primitive_attr_t attr, dnnl_engine_t eng) {
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_primitive_desc_create(&pd, desc, attr, eng, NULL) != dnnl_success) pd = NULL;
    omp_set_num_threads(saved);
    return pd;
}

static void layer_objects(ms_rdnn *r, layer *L, const_dnnl_primitive_desc_t pd) {
    DNNL_OK(dnnl_primitive_create(&L->prim, pd));
    L->src = ms_xcalloc((size_t)r->threads, sizeof(dnnl_memory_t));
    L->dst = ms_xcalloc((size_t)r->threads, sizeof(dnnl_memory_t));
    L->scratch = ms_xcalloc((size_t)r->threads, sizeof(dnnl_memory_t));
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *dmd = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    const dnnl_memory_desc_t *pmd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    for (int t = 0; t < r->threads; t++) {
        DNNL_OK(dnnl_memory_create(&L->src[t], smd, r->eng, DNNL_MEMORY_NONE));
        DNNL_OK(dnnl_memory_create(&L->dst[t], dmd, r->eng, DNNL_MEMORY_NONE));
        if (pmd && dnnl_memory_desc_get_size(pmd) > 0)
            DNNL_OK(dnnl_memory_create(&L->scratch[t], pmd, r->eng, DNNL_MEMORY_ALLOCATE));
    }
}

static void layer_free(const ms_rdnn *r, layer *L) {
    if (!L->prim) return;
    dnnl_primitive_destroy(L->prim);
    for (int t = 0; t < r->threads; t++) {
        dnnl_memory_destroy(L->src[t]);
        dnnl_memory_destroy(L->dst[t]);
        if (L->scratch[t]) dnnl_memory_destroy(L->scratch[t]);
    }
    free(L->src);
    free(L->dst);
    free(L->scratch);
}

/* The convolution descriptor of conv i for n images of h x w: src in layout src_tag (plain
 * NCHW for conv1), dst in the blocked layout, weights `wmd` ("any" for the first plan);
 * relu and sum (the residual already in dst) as post-ops. Returns NULL when oneDNN has
 * only a reference kernel for it. */
static dnnl_primitive_desc_t conv_pd(const ms_rdnn *r, int i, int n, int h, int w, int src_tag,
                                     const dnnl_memory_desc_t *wmd, int relu, int sum) {
    const ms_conv *c = r->conv[i];
    const int ho = ms_conv_out(h, c->k, c->stride, c->pad), wo = ms_conv_out(w, c->k, c->stride, c->pad);
    dnnl_dims_t sd = {n, c->cin, h, w}, dd = {n, c->cout, ho, wo}, bd = {c->cout};
    dnnl_dims_t st = {c->stride, c->stride}, pl = {c->pad, c->pad};
    /* symmetric padding as in PyTorch: oneDNN's output size check truncates like PyTorch's
     * floor division */
    dnnl_memory_desc_t smd, dmd, bmd;
    DNNL_OK(dnnl_memory_desc_init_by_tag(&smd, 4, sd, r->dt, src_tag));
    DNNL_OK(dnnl_memory_desc_init_by_tag(&dmd, 4, dd, r->dt, r->tag));
    DNNL_OK(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a));
    dnnl_convolution_desc_t cd;
    if (dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &smd, wmd,
                                           &bmd, &dmd, st, pl, pl) != dnnl_success)
        return NULL;
    dnnl_primitive_attr_t attr;
    DNNL_OK(dnnl_primitive_attr_create(&attr));
    DNNL_OK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    dnnl_post_ops_t po;
    DNNL_OK(dnnl_post_ops_create(&po));
    if (sum) DNNL_OK(dnnl_post_ops_append_sum(po, 1.0f));
    if (relu) DNNL_OK(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
    DNNL_OK(dnnl_primitive_attr_set_post_ops(attr, po));
    dnnl_primitive_desc_t pd = create_pd(&cd, attr, r->eng);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    if (pd && impl_is_ref(pd)) {
        dnnl_primitive_desc_destroy(pd);
        pd = NULL;
    }
    return pd;
}

static void plan_free(const ms_rdnn *r, plan *p) {
    if (!p) return;
    for (int i = 0; i < NCONV; i++) layer_free(r, &p->conv[i]);
    layer_free(r, &p->pool);
    free(p);
}

/* Plan for n images. The first plan (weights not reordered yet) takes the weight layouts
 * oneDNN asks for and reorders the weights into them. NULL if a layer has no optimized
 * kernel. */
static plan *plan_new(ms_rdnn *r, int n) {
    plan *p = ms_xcalloc(1, sizeof *p);
    p->n = n;
    const int first = r->w[0] == NULL;
    int ok = 1;
    size_t act = 0;
    for (int i = 0; i < NCONV && ok; i++) {
        const ms_conv *c = r->conv[i];
        if (!c) continue;
        const int j = i < 2 ? -1 : (i - 2) % 3; /* -1 conv1, 0 c1, 1 c2, 2 down */
        dnnl_memory_desc_t wmd;
        if (first) {
            dnnl_dims_t wd = {c->cout, c->cin, c->k, c->k};
            DNNL_OK(dnnl_memory_desc_init_by_tag(&wmd, 4, wd, r->dt, dnnl_format_tag_any));
        } else {
            const dnnl_memory_desc_t *m;
            DNNL_OK(dnnl_memory_get_memory_desc(r->w[i], &m));
            wmd = *m;
        }
        dnnl_primitive_desc_t pd = conv_pd(r, i, n, r->ih[i], r->iw[i], j < 0 ? dnnl_nchw : r->tag, &wmd,
                                           j != 2, j == 1);
        if (!pd) {
            ok = 0;
            break;
        }
        layer_objects(r, &p->conv[i], pd);
        size_t db = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0));
        if (j < 0) {
            if (db > p->big) p->big = db;
        } else if (db > act) {
            act = db;
        }
        if (first) {
            /* weights (cout, cin, k, k) fp32 -> the layout the kernel asks for (bf16: rounded
             * to nearest even by the reorder) */
            const dnnl_memory_desc_t *pw = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
            DNNL_OK(dnnl_memory_create(&r->w[i], pw, r->eng, DNNL_MEMORY_ALLOCATE));
            dnnl_dims_t wd = {c->cout, c->cin, c->k, c->k}, bd = {c->cout};
            dnnl_memory_desc_t plain, bmd;
            DNNL_OK(dnnl_memory_desc_init_by_tag(&plain, 4, wd, dnnl_f32, dnnl_oihw));
            DNNL_OK(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a));
            dnnl_memory_t src;
            DNNL_OK(dnnl_memory_create(&src, &plain, r->eng, c->w));
            dnnl_primitive_desc_t rpd;
            DNNL_OK(dnnl_reorder_primitive_desc_create(&rpd, &plain, r->eng, pw, r->eng, NULL));
            dnnl_primitive_t rp;
            DNNL_OK(dnnl_primitive_create(&rp, rpd));
            dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, r->w[i]}};
            DNNL_OK(dnnl_primitive_execute(rp, r->stream[0], 2, args));
            DNNL_OK(dnnl_stream_wait(r->stream[0]));
            dnnl_primitive_destroy(rp);
            dnnl_primitive_desc_destroy(rpd);
            dnnl_memory_destroy(src);
            DNNL_OK(dnnl_memory_create(&r->b[i], &bmd, r->eng, c->b));
        }
        dnnl_primitive_desc_destroy(pd);
    }
    if (ok) {
        const int h1 = ms_conv_out(r->H, 7, 2, 3), w1 = ms_conv_out(r->W, 7, 2, 3);
        const int h2 = ms_conv_out(h1, 3, 2, 1), w2 = ms_conv_out(w1, 3, 2, 1);
        const int C = r->net->width;
        dnnl_dims_t sd = {n, C, h1, w1}, dd = {n, C, h2, w2}, st = {2, 2}, k = {3, 3}, pl = {1, 1};
        dnnl_memory_desc_t smd, dmd;
        DNNL_OK(dnnl_memory_desc_init_by_tag(&smd, 4, sd, r->dt, r->tag));
        DNNL_OK(dnnl_memory_desc_init_by_tag(&dmd, 4, dd, r->dt, r->tag));
        dnnl_pooling_desc_t pdsc;
        dnnl_primitive_attr_t attr;
        DNNL_OK(dnnl_primitive_attr_create(&attr));
        DNNL_OK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
        dnnl_primitive_desc_t pd = NULL;
        /* max pooling: padding never wins, as in PyTorch */
        if (dnnl_pooling_forward_desc_init(&pdsc, dnnl_forward_inference, dnnl_pooling_max, &smd, &dmd, st, k,
                                           pl, pl) == dnnl_success)
            pd = create_pd(&pdsc, attr, r->eng);
        dnnl_primitive_attr_destroy(attr);
        if (pd && impl_is_ref(pd)) {
            dnnl_primitive_desc_destroy(pd);
            pd = NULL;
        }
        if (pd) {
            layer_objects(r, &p->pool, pd);
            size_t db = dnnl_memory_desc_get_size(&dmd);
            if (db > act) act = db;
            dnnl_primitive_desc_destroy(pd);
        } else {
            ok = 0;
        }
    }
    p->act = act;
    if (!ok) {
        plan_free(r, p);
        return NULL;
    }
    return p;
}

/* ---- workspace --------------------------------------------------------------------------- */

void ms_rdnn_free(ms_rdnn *r) {
    if (!r) return;
    if (r->plans)
        for (int n = 1; n <= r->micro; n++) plan_free(r, r->plans[n]);
    free(r->plans);
    for (int i = 0; i < NCONV; i++) {
        if (r->w[i]) dnnl_memory_destroy(r->w[i]);
        if (r->b[i]) dnnl_memory_destroy(r->b[i]);
    }
    if (r->bufs)
        for (int t = 0; t < 3 * r->threads; t++) free(r->bufs[t]);
    free(r->bufs);
    if (r->xb)
        for (int t = 0; t < r->threads; t++) free(r->xb[t]);
    free(r->xb);
    if (r->stream)
        for (int t = 0; t < r->threads; t++)
            if (r->stream[t]) dnnl_stream_destroy(r->stream[t]);
    free(r->stream);
    if (r->eng) dnnl_engine_destroy(r->eng);
    free(r);
}

ms_rdnn *ms_rdnn_new(const ms_resnet *net, int H, int W, int micro, int threads, ms_precision prec) {
    MS_CHECK(H >= 1 && W >= 1 && micro >= 1 && threads >= 1);
    if (getenv("MS_EMBED_IM2COL")) return NULL; /* forces the im2col path (for comparisons) */
    if (prec == MS_PREC_BF16 && !ms_bf16_supported()) return NULL;
    int tag;
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if (isa == dnnl_cpu_isa_avx512_core || isa == dnnl_cpu_isa_avx512_core_vnni ||
        isa == dnnl_cpu_isa_avx512_core_bf16 || isa == dnnl_cpu_isa_avx512_core_amx)
        tag = dnnl_nChw16c;
    else if (isa == dnnl_cpu_isa_avx2 || isa == dnnl_cpu_isa_avx2_vnni)
        tag = dnnl_nChw8c;
    else
        return NULL;
    ms_rdnn *r = ms_xcalloc(1, sizeof *r);
    r->net = net, r->H = H, r->W = W, r->micro = micro, r->threads = threads, r->tag = tag;
    r->dt = prec == MS_PREC_BF16 ? dnnl_bf16 : dnnl_f32;
    DNNL_OK(dnnl_engine_create(&r->eng, dnnl_cpu, 0));
    r->stream = ms_xcalloc((size_t)threads, sizeof(dnnl_stream_t));
    for (int t = 0; t < threads; t++) DNNL_OK(dnnl_stream_create(&r->stream[t], r->eng, dnnl_stream_default_flags));
    r->conv[0] = &net->conv1;
    r->conv[1] = net->gray_folded ? &net->conv1_gray : NULL;
    for (int b = 0; b < 8; b++) {
        r->conv[2 + 3 * b] = &net->blk[b].c1;
        r->conv[3 + 3 * b] = &net->blk[b].c2;
        r->conv[4 + 3 * b] = net->blk[b].has_down ? &net->blk[b].down : NULL;
    }
    /* input sizes: conv1 sees the image; in each block c1 and down see the block input, c2
     * the output of c1 */
    int h = ms_conv_out(ms_conv_out(H, 7, 2, 3), 3, 2, 1), w = ms_conv_out(ms_conv_out(W, 7, 2, 3), 3, 2, 1);
    r->ih[0] = r->ih[1] = H, r->iw[0] = r->iw[1] = W;
    for (int b = 0; b < 8; b++) {
        const ms_conv *c1 = &net->blk[b].c1;
        r->ih[2 + 3 * b] = r->ih[4 + 3 * b] = h, r->iw[2 + 3 * b] = r->iw[4 + 3 * b] = w;
        h = ms_conv_out(h, c1->k, c1->stride, c1->pad);
        w = ms_conv_out(w, c1->k, c1->stride, c1->pad);
        r->ih[3 + 3 * b] = h, r->iw[3 + 3 * b] = w;
    }
    r->oh = h, r->ow = w;
    r->plans = ms_xcalloc((size_t)micro + 1, sizeof(plan *));
    plan *p = plan_new(r, micro);
    if (!p) {
        ms_rdnn_free(r);
        return NULL;
    }
    r->plans[micro] = p;
    /* buffer 0 holds conv1's output, later the c1 outputs; 1 and 2 the block inputs/outputs
     * (smaller plans need less) */
    r->buf_bytes[0] = p->big > p->act ? p->big : p->act;
    r->buf_bytes[1] = r->buf_bytes[2] = p->act;
    r->bufs = ms_xcalloc((size_t)threads * 3, sizeof(void *));
    for (int t = 0; t < threads; t++)
        for (int j = 0; j < 3; j++) r->bufs[3 * t + j] = ms_xmalloc(r->buf_bytes[j]);
    if (r->dt == dnnl_bf16) {
        r->xb = ms_xcalloc((size_t)threads, sizeof(ms_bf16 *));
        for (int t = 0; t < threads; t++) r->xb[t] = ms_xmalloc(sizeof(ms_bf16) * (size_t)micro * 3 * H * W);
    }
    return r;
}

int ms_rdnn_micro(const ms_rdnn *r) { return r->micro; }

/* ---- forward ----------------------------------------------------------------------------- */

static void run(const ms_rdnn *r, const layer *L, int t, const void *src, void *dst, int i) {
    DNNL_OK(dnnl_memory_set_data_handle(L->src[t], (void *)src));
    DNNL_OK(dnnl_memory_set_data_handle(L->dst[t], dst));
    dnnl_exec_arg_t a[5];
    int na = 0;
    a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, L->src[t]};
    a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, L->dst[t]};
    if (i >= 0) {
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, r->w[i]};
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, r->b[i]};
    }
    if (L->scratch[t]) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, L->scratch[t]};
    DNNL_OK(dnnl_primitive_execute(L->prim, r->stream[t], na, a));
}

/* out[img, c] = mean over (h, w) of the blocked activation x (n, C/blk, h, w, blk), whose
 * values are floats (bf16 0) or bf16 (bf16 1). */
static void avgpool_blocked(float *out, const void *x, int bf16, int n, int C, int hw, int blk) {
    const int cb = (C + blk - 1) / blk;
    for (int img = 0; img < n; img++)
        for (int b = 0; b < cb; b++) {
            const size_t o = ((size_t)img * cb + b) * hw * blk;
            float s[16] = {0};
            for (int p = 0; p < hw; p++)
                for (int l = 0; l < blk; l++)
                    s[l] += bf16 ? ms_bf16_to_f32(((const ms_bf16 *)x)[o + (size_t)p * blk + l])
                                 : ((const float *)x)[o + (size_t)p * blk + l];
            for (int l = 0; l < blk && b * blk + l < C; l++)
                out[(size_t)img * C + b * blk + l] = s[l] / (float)hw;
        }
}

static const plan *get_plan(ms_rdnn *r, int n) {
    plan *p;
#pragma omp critical(ms_rdnn_plan)
    {
        p = r->plans[n];
        if (!p) p = r->plans[n] = plan_new(r, n);
    }
    /* a smaller batch of the same layers: oneDNN offered kernels for the full one */
    if (!p) ms_abort_at(__FILE__, __LINE__, "oneDNN has no optimized kernel for a smaller micro-batch");
    return p;
}

void ms_rdnn_forward_micro(ms_rdnn *r, int t, const float *x, int cin, int n, float *out) {
    MS_CHECK(t >= 0 && t < r->threads && n >= 1 && n <= r->micro);
    MS_CHECK(cin == 3 || (cin == 1 && r->conv[1]));
    const plan *p = get_plan(r, n);
    void **B = r->bufs + 3 * t;
    const int c1 = cin == 3 ? 0 : 1;
    const void *x0 = x;
    if (r->dt == dnnl_bf16) { /* the input rounded to bf16, as the im2col path rounds it */
        ms_bf16_from_f32(r->xb[t], x, (size_t)n * cin * r->H * r->W);
        x0 = r->xb[t];
    }
    run(r, &p->conv[c1], t, x0, B[0], c1);
    run(r, &p->pool, t, B[0], B[1], -1);
    int cur = 1;
    for (int b = 0; b < 8; b++) {
        const int i = 2 + 3 * b, other = 3 - cur;
        run(r, &p->conv[i], t, B[cur], B[0], i); /* t = relu(c1(x)) */
        int res = cur;
        if (r->conv[i + 2]) { /* the shortcut's projection, which c2 then adds to */
            run(r, &p->conv[i + 2], t, B[cur], B[other], i + 2);
            res = other;
        }
        run(r, &p->conv[i + 1], t, B[0], B[res], i + 1); /* x = relu(c2(t) + shortcut) */
        cur = res;
    }
    avgpool_blocked(out, B[cur], r->dt == dnnl_bf16, n, r->net->dim, r->oh * r->ow, r->tag == dnnl_nChw16c ? 16 : 8);
}
