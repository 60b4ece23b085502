/* ms_weights.c: loading an encoder folder: model.safetensors (through the io module's
 * validating reader) with the shape and value checks the network needs, config.json, and the
 * assembly of a ResNet-18 from torchvision's state_dict names with batch norm folded into
 * each convolution.
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cjson/cJSON.h>

#include "embed/ms_embed_internal.h"
#include "io/ms_io_internal.h"

/* ---- tensors ---------------------------------------------------------------------------- */

static void shape_str(char *buf, size_t cap, int ndim, const int *shape) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, i ? ", %d" : "%d", shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

ms_status ms_weights_shape(const ms_st_file *f, const char *name, int *ndim, int shape[8]) {
    const ms_st_tensor *t = ms_st_find(f, name);
    if (!t) return ms_fail(MS_ERR_DATA, "%s: tensor %s: missing", f->path, name);
    if (t->ndim > 8) return ms_fail(MS_ERR_DATA, "%s: tensor %s: %d dimensions", f->path, name, t->ndim);
    for (int i = 0; i < t->ndim; i++) shape[i] = (int)t->shape[i];
    *ndim = t->ndim;
    return MS_OK;
}

ms_status ms_weights_get_f32(const ms_st_file *f, const char *name, int ndim, const int *shape, float *dst) {
    int nd, sh[8];
    ms_status st = ms_weights_shape(f, name, &nd, sh);
    if (st) return st;
    const ms_st_tensor *t = ms_st_find(f, name);
    int same = nd == ndim;
    for (int i = 0; same && i < nd; i++) same = sh[i] == shape[i];
    if (!same) {
        char got[128], want[128];
        shape_str(got, sizeof got, nd, sh);
        shape_str(want, sizeof want, ndim, shape);
        return ms_fail(MS_ERR_DATA, "%s: tensor %s: has shape %s, expected %s", f->path, name, got, want);
    }
    /* 16-bit files (half the size) are widened to float exactly; the network runs in float */
    if (t->dtype != MS_ST_F32 && t->dtype != MS_ST_F16 && t->dtype != MS_ST_BF16)
        return ms_fail(MS_ERR_DATA, "%s: tensor %s: dtype %s, expected F32, F16 or BF16", f->path, name,
                       ms_st_dtype_name(t->dtype));
    st = ms_st_to_f32(f, t, dst);
    if (st) return st;
    for (size_t i = 0; i < t->numel; i++)
        if (!isfinite(dst[i])) return ms_fail(MS_ERR_DATA, "%s: tensor %s: non-finite value at %zu", f->path, name, i);
    return MS_OK;
}

/* ---- config.json ------------------------------------------------------------------------ */

static int read_floats(const cJSON *a, float *out) {
    if (!cJSON_IsArray(a)) return 0;
    int n = cJSON_GetArraySize(a);
    if (n != 1 && n != 3) return 0;
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsNumber(v)) return 0;
        out[i] = (float)v->valuedouble;
    }
    if (n == 1) out[1] = out[2] = out[0];
    return n;
}

static int contains_ci(const char *s, const char *w) {
    size_t n = strlen(w);
    for (; *s; s++)
        if (!strncasecmp(s, w, n)) return 1;
    return 0;
}

ms_status ms_embed_config_read(ms_embed_config *cfg, const char *model_dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    char *text;
    size_t len;
    ms_status st = ms_read_whole_file(path, &text, &len);
    if (st) return st;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!j) return ms_fail(MS_ERR_DATA, "%s: not valid JSON", path);
    memset(cfg, 0, sizeof *cfg);
    st = MS_OK;
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(j, "input_size");
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(j, "normalization");
    if (!cJSON_IsArray(in) || cJSON_GetArraySize(in) != 2 || !cJSON_IsNumber(cJSON_GetArrayItem(in, 0)) ||
        !cJSON_IsNumber(cJSON_GetArrayItem(in, 1)) || cJSON_GetArrayItem(in, 0)->valuedouble < 1 ||
        cJSON_GetArrayItem(in, 1)->valuedouble < 1 || cJSON_GetArrayItem(in, 0)->valuedouble > 16384 ||
        cJSON_GetArrayItem(in, 1)->valuedouble > 16384) {
        st = ms_fail(MS_ERR_DATA, "%s: input_size must be [height, width] in 1..16384", path);
        goto done;
    }
    cfg->height = (int)cJSON_GetArrayItem(in, 0)->valuedouble;
    cfg->width = (int)cJSON_GetArrayItem(in, 1)->valuedouble;
    if (!cJSON_IsObject(norm) || !read_floats(cJSON_GetObjectItemCaseSensitive(norm, "mean"), cfg->mean) ||
        !read_floats(cJSON_GetObjectItemCaseSensitive(norm, "std"), cfg->std)) {
        st = ms_fail(MS_ERR_DATA, "%s: normalization needs mean and std (1 or 3 numbers each)", path);
        goto done;
    }
    for (int c = 0; c < 3; c++)
        if (!(cfg->std[c] > 0) || !isfinite(cfg->mean[c])) {
            st = ms_fail(MS_ERR_DATA, "%s: normalization std must be > 0 and mean finite", path);
            goto done;
        }
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "channels");
    const cJSON *chh = cJSON_GetObjectItemCaseSensitive(j, "channel_handling");
    if (cJSON_IsString(ch)) {
        if (!strcasecmp(ch->valuestring, "gray") || !strcasecmp(ch->valuestring, "grey"))
            cfg->gray = 1;
        else if (!strcasecmp(ch->valuestring, "rgb"))
            cfg->gray = 0;
        else {
            st = ms_fail(MS_ERR_DATA, "%s: channels must be \"gray\" or \"rgb\", not \"%s\"", path, ch->valuestring);
            goto done;
        }
    } else {
        cfg->gray = cJSON_IsString(chh) && (contains_ci(chh->valuestring, "gray") || contains_ci(chh->valuestring, "grey"));
    }
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "resample");
    cfg->resample = MS_RESAMPLE_LANCZOS;
    if (cJSON_IsString(rs)) {
        if (!strcasecmp(rs->valuestring, "lanczos"))
            cfg->resample = MS_RESAMPLE_LANCZOS;
        else if (!strcasecmp(rs->valuestring, "bicubic"))
            cfg->resample = MS_RESAMPLE_BICUBIC;
        else if (!strcasecmp(rs->valuestring, "bilinear"))
            cfg->resample = MS_RESAMPLE_BILINEAR;
        else {
            st = ms_fail(MS_ERR_DATA, "%s: resample must be lanczos, bicubic or bilinear, not \"%s\"", path,
                         rs->valuestring);
            goto done;
        }
    }
done:
    cJSON_Delete(j);
    return st;
}

/* ---- the network ------------------------------------------------------------------------ */

/* Reads conv `cname` (cout, cin, k, k) and batch norm `bname` and folds them into *c, whose
 * w and b point into the parameter block at *cursor. */
static ms_status load_conv_bn(ms_conv *c, const ms_st_file *f, const char *cname, const char *bname, int cin,
                              int cout, int k, int stride, int pad, float **cursor, float *tmp) {
    c->cin = cin;
    c->cout = cout;
    c->k = k;
    c->stride = stride;
    c->pad = pad;
    c->w = *cursor;
    c->b = c->w + (size_t)cout * cin * k * k;
    *cursor = c->b + cout;
    int shape[4] = {cout, cin, k, k};
    ms_status st = ms_weights_get_f32(f, cname, 4, shape, c->w);
    if (st) return st;
    static const char *part[4] = {"weight", "bias", "running_mean", "running_var"};
    float *v[4];
    for (int i = 0; i < 4; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s.%s", bname, part[i]);
        v[i] = tmp + (size_t)i * cout;
        st = ms_weights_get_f32(f, name, 1, &cout, v[i]);
        if (st) return st;
    }
    const size_t per = (size_t)cin * k * k;
    for (int o = 0; o < cout; o++) {
        if (!(v[3][o] >= 0)) return ms_fail(MS_ERR_DATA, "%s: tensor %s.running_var: negative value", f->path, bname);
        double s = (double)v[0][o] / sqrt((double)v[3][o] + 1e-5);
        for (size_t i = 0; i < per; i++) c->w[o * per + i] = (float)(c->w[o * per + i] * s);
        c->b[o] = (float)((double)v[1][o] - (double)v[2][o] * s);
    }
    return MS_OK;
}

static size_t conv_floats(int cin, int cout, int k) { return (size_t)cout * cin * k * k + (size_t)cout; }

ms_status ms_resnet_load(ms_resnet **out, const char *model_dir) {
    *out = NULL;
    ms_embed_config cfg;
    ms_status st = ms_embed_config_read(&cfg, model_dir);
    if (st) return st;
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", model_dir);
    ms_st_file f;
    if ((st = ms_st_read(&f, path))) return st;
    int nd, sh[8];
    if ((st = ms_weights_shape(&f, "conv1.weight", &nd, sh))) goto fail_file;
    if (nd != 4 || sh[0] < 1 || sh[1] != 3 || sh[2] != 7 || sh[3] != 7) {
        char got[128];
        shape_str(got, sizeof got, nd, sh);
        st = ms_fail(MS_ERR_DATA, "%s: tensor conv1.weight: has shape %s, expected [w, 3, 7, 7]", path, got);
        goto fail_file;
    }
    /* conv1's width fixes every other shape. Before allocating anything from it: the file
     * must be large enough to hold the weights that width implies (conv weights plus four
     * batch-norm vectors per conv, at conv1.weight's element size: 4 bytes for F32, 2 for
     * F16/BF16), and our copy must fit the size budget. */
    {
        const ms_st_dtype dt1 = ms_st_find(&f, "conv1.weight")->dtype;
        uint64_t need = 0, w = (uint64_t)sh[0];
        need += w * 3 * 49 + 4 * w;
        for (int l = 0; l < 4; l++) {
            uint64_t c = w << l, cin = l ? c / 2 : w;
            /* block 0: conv1 (c, cin, 3x3), conv2 (c, c, 3x3), downsample (c, cin, 1x1) from
             * layer2 on; block 1: two (c, c, 3x3); each with its batch norm */
            need += (c * cin * 9 + 4 * c) + 3 * (c * c * 9 + 4 * c);
            if (l) need += c * cin + 4 * c;
        }
        need = ms_mul_sat(need, ms_st_dtype_size(dt1));
        if (sh[0] > (1 << 20) || need > f.size) {
            st = ms_fail(MS_ERR_DATA, "%s: conv1.weight has %d output channels, which need %llu bytes of %s weights, "
                         "but the file has %zu bytes", path, sh[0], (unsigned long long)need, ms_st_dtype_name(dt1),
                         f.size);
            goto fail_file;
        }
    }
    ms_resnet *net = ms_xcalloc(1, sizeof *net);
    net->cfg = cfg;
    const int w0 = sh[0];
    net->width = w0;
    net->dim = 8 * w0;
    /* parameter count: conv1 (+ its gray copy) and the blocks */
    size_t total = conv_floats(3, w0, 7) + conv_floats(1, w0, 7);
    for (int l = 0, cin = w0; l < 4; l++) {
        int c = w0 << l;
        total += conv_floats(cin, c, 3) + conv_floats(c, c, 3) + (l ? conv_floats(cin, c, 1) : 0);
        total += 2 * conv_floats(c, c, 3);
        cin = c;
    }
    if ((st = ms_check_alloc(ms_mul_sat(total, sizeof(float)), "the encoder's weights", path))) {
        free(net);
        goto fail_file;
    }
    net->params = ms_xmalloc(sizeof(float) * total);
    float *tmp = ms_xmalloc(sizeof(float) * 4 * (size_t)net->dim);
    float *cur = net->params;
    if ((st = load_conv_bn(&net->conv1, &f, "conv1.weight", "bn1", 3, w0, 7, 2, 3, &cur, tmp))) goto fail_net;
    for (int l = 0, cin = w0; l < 4; l++) {
        int c = w0 << l, stride = l ? 2 : 1;
        for (int bi = 0; bi < 2; bi++) {
            ms_block *blk = &net->blk[2 * l + bi];
            int bin = bi ? c : cin, bs = bi ? 1 : stride;
            char cn[64], bn[64];
            snprintf(cn, sizeof cn, "layer%d.%d.conv1.weight", l + 1, bi);
            snprintf(bn, sizeof bn, "layer%d.%d.bn1", l + 1, bi);
            if ((st = load_conv_bn(&blk->c1, &f, cn, bn, bin, c, 3, bs, 1, &cur, tmp))) goto fail_net;
            snprintf(cn, sizeof cn, "layer%d.%d.conv2.weight", l + 1, bi);
            snprintf(bn, sizeof bn, "layer%d.%d.bn2", l + 1, bi);
            if ((st = load_conv_bn(&blk->c2, &f, cn, bn, c, c, 3, 1, 1, &cur, tmp))) goto fail_net;
            blk->has_down = bi == 0 && l > 0;
            if (blk->has_down) {
                snprintf(cn, sizeof cn, "layer%d.%d.downsample.0.weight", l + 1, bi);
                snprintf(bn, sizeof bn, "layer%d.%d.downsample.1", l + 1, bi);
                if ((st = load_conv_bn(&blk->down, &f, cn, bn, bin, c, 1, 2, 0, &cur, tmp))) goto fail_net;
            }
        }
        cin = c;
    }
    /* conv1 for a gray image copied to 3 channels: sum the weights over the input channels */
    ms_conv *g = &net->conv1_gray;
    *g = net->conv1;
    g->cin = 1;
    g->w = cur;
    g->b = g->w + (size_t)w0 * 49;
    cur = g->b + w0;
    for (int o = 0; o < w0; o++) {
        for (int i = 0; i < 49; i++) {
            const float *src = net->conv1.w + (size_t)o * 3 * 49;
            g->w[o * 49 + i] = src[i] + src[49 + i] + src[98 + i];
        }
        g->b[o] = net->conv1.b[o];
    }
    MS_CHECK((size_t)(cur - net->params) == total);
    if (ms_bf16_supported() && ms_get_precision() == MS_PREC_BF16) {
        /* every convolution's weights in bf16, rounded once here rather than per call (a
         * model loaded at f32 and then run at bf16 rounds them per call instead: the same
         * values, more slowly) */
        ms_conv *all[2 + 8 * 3];
        int nc = 0;
        all[nc++] = &net->conv1;
        all[nc++] = &net->conv1_gray;
        for (int i = 0; i < 8; i++) {
            all[nc++] = &net->blk[i].c1;
            all[nc++] = &net->blk[i].c2;
            if (net->blk[i].has_down) all[nc++] = &net->blk[i].down;
        }
        size_t nw = 0;
        for (int i = 0; i < nc; i++) nw += (size_t)all[i]->cout * all[i]->cin * all[i]->k * all[i]->k;
        net->params_bf16 = ms_xmalloc(sizeof(ms_bf16) * nw);
        ms_bf16 *wc = net->params_bf16;
        for (int i = 0; i < nc; i++) {
            size_t n = (size_t)all[i]->cout * all[i]->cin * all[i]->k * all[i]->k;
            ms_bf16_from_f32(wc, all[i]->w, n);
            all[i]->wb = wc;
            wc += n;
        }
    }
    net->gray_folded = cfg.gray && cfg.mean[0] == cfg.mean[1] && cfg.mean[1] == cfg.mean[2] &&
                       cfg.std[0] == cfg.std[1] && cfg.std[1] == cfg.std[2];
    free(tmp);
    ms_st_free(&f);
    {
        /* the working memory of one image at the configured input size (activations,
         * im2col and the input itself) must fit the budget: config.json's input_size is the
         * only thing that bounds it */
        size_t act1, col1;
        ms_resnet_ws_sizes(net, 1, cfg.height, cfg.width, &act1, &col1);
        uint64_t bytes = ((uint64_t)4 * act1 + col1 + (uint64_t)3 * cfg.height * cfg.width) * sizeof(float);
        char what[96], cpath[4096];
        snprintf(what, sizeof what, "input_size [%d, %d] (the network's memory per image)", cfg.height, cfg.width);
        snprintf(cpath, sizeof cpath, "%s/config.json", model_dir);
        if ((st = ms_check_alloc(bytes, what, cpath))) {
            ms_resnet_free(net);
            return st;
        }
    }
    *out = net;
    return MS_OK;
fail_net:
    free(tmp);
    ms_resnet_free(net);
fail_file:
    ms_st_free(&f);
    return st;
}

void ms_resnet_free(ms_resnet *net) {
    if (!net) return;
    free(net->params);
    free(net->params_bf16);
    free(net);
}

const ms_embed_config *ms_resnet_config(const ms_resnet *net) { return &net->cfg; }
int ms_resnet_dim(const ms_resnet *net) { return net->dim; }
int ms_resnet_input_channels(const ms_resnet *net) { return net->gray_folded ? 1 : 3; }
