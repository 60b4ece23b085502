/* ms_checkpoint.c: selector checkpoints as safetensors (see checkpoint.h). */
#include "medselect/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/safetensors.h"

ms_status ms_checkpoint_save(const char *path, const ms_lstm_params *p, const ms_checkpoint_meta *meta) {
    ms_st_out t[MS_LSTM_NTENSORS];
    for (int i = 0; i < MS_LSTM_NTENSORS; i++) {
        t[i].name = ms_lstm_tensor_name(i);
        t[i].data = p->t[i];
        t[i].ndim = ms_lstm_tensor_shape(i, p->D, p->H, t[i].shape);
    }
    char d[16], h[16], c[4], k[16], seed[32];
    snprintf(d, sizeof d, "%d", p->D);
    snprintf(h, sizeof h, "%d", p->H);
    snprintf(c, sizeof c, "%d", meta->clinical ? 1 : 0);
    snprintf(k, sizeof k, "%d", meta->k);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)meta->seed);
    const char *kv[] = {"format", "medselect-selector", "medselect_version", MS_VERSION, "D", d, "H", h,
                        "clinical", c, "k", k, "sampler", ms_sampler_name(meta->sampler), "seed", seed,
                        "data", meta->fingerprint};
    return ms_safetensors_write(path, t, MS_LSTM_NTENSORS, kv, (int)(sizeof kv / sizeof kv[0] / 2));
}

/* Finds tensor `name`, also under a "module." prefix. */
static const ms_st_tensor *find(const ms_safetensors *f, const char *name, const char **full) {
    const ms_st_tensor *t = ms_safetensors_find(f, name);
    *full = name;
    if (t) return t;
    static _Thread_local char buf[128];
    snprintf(buf, sizeof buf, "module.%s", name);
    *full = buf;
    return ms_safetensors_find(f, buf);
}

ms_status ms_checkpoint_load(const char *path, ms_lstm_params *p, ms_checkpoint_meta *meta) {
    memset(meta, 0, sizeof *meta);
    memset(p, 0, sizeof *p);
    ms_safetensors f;
    ms_status st = ms_safetensors_read(&f, path);
    if (st) return st;
    const char *full;
    const ms_st_tensor *w = find(&f, ms_lstm_tensor_name(MS_LSTM_W_IH), &full);
    if (!w) {
        st = ms_fail(MS_ERR_DATA, "%s: not a selector checkpoint: missing tensor '%s'", path, ms_lstm_tensor_name(MS_LSTM_W_IH));
        ms_safetensors_free(&f);
        return st;
    }
    if (w->ndim != 2 || w->shape[0] % 4 != 0 || w->shape[0] < 4 || w->shape[1] < 1) {
        st = ms_fail(MS_ERR_DATA, "%s: tensor '%s' has a shape that is not [4H, D]", path, full);
        ms_safetensors_free(&f);
        return st;
    }
    int H = (int)(w->shape[0] / 4), D = (int)w->shape[1];
    ms_lstm_params_init(p, D, H);
    for (int i = 0; i < MS_LSTM_NTENSORS && !st; i++) {
        const char *name = ms_lstm_tensor_name(i);
        const ms_st_tensor *t = find(&f, name, &full);
        int64_t shape[2];
        int nd = ms_lstm_tensor_shape(i, D, H, shape);
        if (!t) {
            st = ms_fail(MS_ERR_DATA, "%s: missing tensor '%s'", path, name);
            break;
        }
        int ok = t->ndim == nd;
        for (int d = 0; ok && d < nd; d++) ok = t->shape[d] == shape[d];
        if (!ok) {
            st = nd == 2 ? ms_fail(MS_ERR_DATA, "%s: tensor '%s' should have shape [%lld, %lld]", path, full, (long long)shape[0], (long long)shape[1])
                         : ms_fail(MS_ERR_DATA, "%s: tensor '%s' should have shape [%lld]", path, full, (long long)shape[0]);
            break;
        }
        st = ms_safetensors_get_f32(&f, full, p->t[i], p->size[i]);
    }
    if (!st) {
        meta->D = D;
        meta->H = H;
        const char *fmt = ms_safetensors_meta(&f, "format");
        meta->has_meta = fmt && !strcmp(fmt, "medselect-selector");
        const char *v;
        if ((v = ms_safetensors_meta(&f, "clinical"))) meta->clinical = atoi(v) != 0;
        if ((v = ms_safetensors_meta(&f, "k"))) meta->k = atoi(v);
        if ((v = ms_safetensors_meta(&f, "sampler"))) ms_sampler_parse(v, &meta->sampler);
        if ((v = ms_safetensors_meta(&f, "seed"))) meta->seed = strtoull(v, NULL, 10);
        if ((v = ms_safetensors_meta(&f, "data"))) snprintf(meta->fingerprint, sizeof meta->fingerprint, "%s", v);
        if ((v = ms_safetensors_meta(&f, "medselect_version"))) snprintf(meta->version, sizeof meta->version, "%s", v);
        if ((v = ms_safetensors_meta(&f, "D")) && atoi(v) != D)
            st = ms_fail(MS_ERR_DATA, "%s: metadata says D = %s but the tensors have D = %d", path, v, D);
    }
    if (st) ms_lstm_params_free(p);
    ms_safetensors_free(&f);
    return st;
}
