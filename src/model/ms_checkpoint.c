/* ms_checkpoint.c: the selector's checkpoint file (see checkpoint.h): the ten parameter
 * tensors under their PyTorch names plus a string metadata block, in safetensors. */
#define _POSIX_C_SOURCE 200809L
#include "medselect/checkpoint.h"

#include "medselect/policy.h"
#include "medselect/safetensors.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Tensors in PyTorch's state_dict order (the file order; any order would load). */
static const int write_order[MS_LSTM_NTENSORS] = {
    MS_LSTM_W_IH,   MS_LSTM_W_HH,   MS_LSTM_B_IH,   MS_LSTM_B_HH,  MS_LSTM_W_IH_R,
    MS_LSTM_W_HH_R, MS_LSTM_B_IH_R, MS_LSTM_B_HH_R, MS_LSTM_LIN_W, MS_LSTM_LIN_B,
};

static const char *const std_keys[] = {"format", "version", "D",    "H",         "clinical",
                                       "K",      "sampler", "seed", "data", "medselect"};

static int is_std_key(const char *k) {
    for (size_t i = 0; i < sizeof std_keys / sizeof *std_keys; i++)
        if (strcmp(k, std_keys[i]) == 0) return 1;
    return 0;
}

void ms_selector_meta_init(ms_selector_meta *m) {
    memset(m, 0, sizeof *m);
    m->clinical = -1;
    m->K = -1;
}

void ms_selector_meta_free(ms_selector_meta *m) {
    if (!m) return;
    free(m->data);
    free(m->medselect);
    for (int i = 0; i < m->n_extra; i++) {
        free(m->extra_key[i]);
        free(m->extra_val[i]);
    }
    free(m->extra_key);
    free(m->extra_val);
    ms_selector_meta_init(m);
}

void ms_selector_meta_set_data(ms_selector_meta *m, const char *data) {
    free(m->data);
    m->data = data ? ms_xstrdup(data) : NULL;
}

static void add_extra(ms_selector_meta *m, const char *key, const char *value) {
    for (int i = 0; i < m->n_extra; i++)
        if (strcmp(m->extra_key[i], key) == 0) {
            free(m->extra_val[i]);
            m->extra_val[i] = ms_xstrdup(value);
            return;
        }
    m->extra_key = ms_xrealloc(m->extra_key, sizeof(char *) * (size_t)(m->n_extra + 1));
    m->extra_val = ms_xrealloc(m->extra_val, sizeof(char *) * (size_t)(m->n_extra + 1));
    m->extra_key[m->n_extra] = ms_xstrdup(key);
    m->extra_val[m->n_extra++] = ms_xstrdup(value);
}

void ms_selector_meta_set_extra(ms_selector_meta *m, const char *key, const char *value) {
    MS_CHECK(m && key && value && !is_std_key(key));
    add_extra(m, key, value);
}

const char *ms_selector_meta_extra(const ms_selector_meta *m, const char *key) {
    for (int i = 0; i < m->n_extra; i++)
        if (strcmp(m->extra_key[i], key) == 0) return m->extra_val[i];
    return NULL;
}

ms_status ms_checkpoint_save(const char *path, const ms_lstm_params *p, const ms_selector_meta *m) {
    MS_CHECK(path && p && p->memory);
    ms_st_entry e[MS_LSTM_NTENSORS];
    int64_t shapes[MS_LSTM_NTENSORS][2];
    for (int k = 0; k < MS_LSTM_NTENSORS; k++) {
        int i = write_order[k];
        e[k].name = ms_lstm_tensor_name(i);
        e[k].dtype = MS_ST_F32;
        e[k].ndim = ms_lstm_tensor_shape(i, p->D, p->H, shapes[k]);
        e[k].shape = shapes[k];
        e[k].data = p->t[i];
    }
    enum { MAXKV = 16 };
    int n_extra = m ? m->n_extra : 0;
    const char **kv = ms_xmalloc(sizeof(char *) * 2 * (size_t)(MAXKV + n_extra));
    char vals[6][32];
    int n = 0;
#define KV(k, v) (kv[2 * n] = (k), kv[2 * n + 1] = (v), n++)
    KV("format", MS_SELECTOR_FORMAT);
    snprintf(vals[0], sizeof vals[0], "%d", MS_SELECTOR_FORMAT_VERSION);
    KV("version", vals[0]);
    snprintf(vals[1], sizeof vals[1], "%d", p->D);
    KV("D", vals[1]);
    snprintf(vals[2], sizeof vals[2], "%d", p->H);
    KV("H", vals[2]);
    if (m && m->clinical >= 0) KV("clinical", m->clinical ? "1" : "0");
    if (m && m->K > 0) {
        snprintf(vals[3], sizeof vals[3], "%d", m->K);
        KV("K", vals[3]);
    }
    if (m && m->sampler[0]) KV("sampler", m->sampler);
    if (m && m->has_seed) {
        snprintf(vals[4], sizeof vals[4], "%llu", (unsigned long long)m->seed);
        KV("seed", vals[4]);
    }
    if (m && m->data) KV("data", m->data);
    KV("medselect", MS_VERSION);
    for (int i = 0; i < n_extra; i++) KV(m->extra_key[i], m->extra_val[i]);
#undef KV
    ms_status st = ms_st_write(path, e, MS_LSTM_NTENSORS, kv, n);
    free(kv);
    return st;
}

/* Parses a decimal integer in [lo, hi] filling all of s. */
static int parse_int(const char *s, long long lo, long long hi, long long *out) {
    if (!s || !*s) return 0;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static void shape_str(char *buf, size_t n, int nd, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < nd && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static ms_status read_meta(const ms_st_file *f, ms_selector_meta *m) {
    const char *P = f->path;
    const char *fmt = ms_st_meta(f, "format");
    if (!fmt || strcmp(fmt, MS_SELECTOR_FORMAT) != 0) {
        /* not written by medselect: keep whatever is there as extras */
        for (int i = 0; i < f->n_meta; i++) add_extra(m, f->meta_key[i], f->meta_val[i]);
        return MS_OK;
    }
    long long v;
    const char *s = ms_st_meta(f, "version");
    if (!parse_int(s, 1, 1000000, &v))
        return ms_fail(MS_ERR_DATA, "%s: metadata version \"%s\" is not a positive integer", P,
                       s ? s : "(missing)");
    if (v > MS_SELECTOR_FORMAT_VERSION)
        return ms_fail(MS_ERR_DATA, "%s: selector format version %lld is newer than this "
                       "medselect understands (%d)", P, v, MS_SELECTOR_FORMAT_VERSION);
    m->format_version = (int)v;
    const char *names[2] = {"D", "H"};
    int want[2] = {m->D, m->H};
    for (int i = 0; i < 2; i++)
        if ((s = ms_st_meta(f, names[i])) && (!parse_int(s, 1, 1 << 30, &v) || v != want[i]))
            return ms_fail(MS_ERR_DATA, "%s: metadata %s=\"%s\" disagrees with the tensor shapes "
                           "(%d)", P, names[i], s, want[i]);
    if ((s = ms_st_meta(f, "clinical"))) {
        if (strcmp(s, "0") && strcmp(s, "1"))
            return ms_fail(MS_ERR_DATA, "%s: metadata clinical=\"%s\" is not 0 or 1", P, s);
        m->clinical = s[0] == '1';
    }
    if ((s = ms_st_meta(f, "K"))) {
        if (!parse_int(s, 1, 1 << 30, &v))
            return ms_fail(MS_ERR_DATA, "%s: metadata K=\"%s\" is not a positive integer", P, s);
        m->K = (int)v;
    }
    if ((s = ms_st_meta(f, "sampler"))) {
        ms_sampler sm;
        if (ms_sampler_parse(s, &sm))
            return ms_fail(MS_ERR_DATA, "%s: metadata sampler=\"%.40s\" is not without-replacement "
                           "or multinomial", P, s);
        snprintf(m->sampler, sizeof m->sampler, "%s", ms_sampler_name(sm));
    }
    if ((s = ms_st_meta(f, "seed"))) {
        errno = 0;
        char *end;
        unsigned long long u = strtoull(s, &end, 10);
        if (errno || !*s || *end || s[0] == '-')
            return ms_fail(MS_ERR_DATA, "%s: metadata seed=\"%.40s\" is not an unsigned integer",
                           P, s);
        m->seed = u;
        m->has_seed = 1;
    }
    if ((s = ms_st_meta(f, "data"))) m->data = ms_xstrdup(s);
    if ((s = ms_st_meta(f, "medselect"))) m->medselect = ms_xstrdup(s);
    for (int i = 0; i < f->n_meta; i++)
        if (!is_std_key(f->meta_key[i])) add_extra(m, f->meta_key[i], f->meta_val[i]);
    return MS_OK;
}

ms_status ms_checkpoint_load(const char *path, ms_lstm_params *p, ms_selector_meta *m) {
    MS_CHECK(path && p);
    memset(p, 0, sizeof *p);
    ms_selector_meta local;
    if (!m) m = &local;
    ms_selector_meta_init(m);
    ms_st_file f;
    ms_status st = ms_st_read(&f, path);
    if (st) return st;
    char have[64], want[64];
    const ms_st_tensor *w = ms_st_find(&f, ms_lstm_tensor_name(MS_LSTM_W_IH));
    if (!w) {
        st = ms_fail(MS_ERR_DATA, "%s: missing tensor %s (not a medselect selector?)", path,
                     ms_lstm_tensor_name(MS_LSTM_W_IH));
        goto done;
    }
    if (w->ndim != 2 || w->shape[0] <= 0 || w->shape[0] % 4 || w->shape[1] <= 0 ||
        w->shape[0] > ((int64_t)1 << 30) || w->shape[1] > ((int64_t)1 << 30)) {
        shape_str(have, sizeof have, w->ndim, w->shape);
        st = ms_fail(MS_ERR_DATA, "%s: tensor %s has shape %s, expected [4H, D]", path, w->name,
                     have);
        goto done;
    }
    int D = (int)w->shape[1], H = (int)(w->shape[0] / 4);
    for (int i = 0; i < f.n && !st; i++)
        if (ms_lstm_tensor_find(f.tensors[i].name) < 0)
            st = ms_fail(MS_ERR_DATA, "%s: unexpected tensor %s (not a medselect selector?)", path,
                         f.tensors[i].name);
    if (st) goto done;
    ms_lstm_params_init(p, D, H);
    for (int i = 0; i < MS_LSTM_NTENSORS && !st; i++) {
        const char *name = ms_lstm_tensor_name(i);
        const ms_st_tensor *t = ms_st_find(&f, name);
        int64_t shape[2];
        int nd = ms_lstm_tensor_shape(i, D, H, shape);
        if (!t) {
            st = ms_fail(MS_ERR_DATA, "%s: missing tensor %s", path, name);
            break;
        }
        int same = t->ndim == nd;
        for (int k = 0; same && k < nd; k++) same = t->shape[k] == shape[k];
        if (!same) {
            shape_str(have, sizeof have, t->ndim, t->shape);
            shape_str(want, sizeof want, nd, shape);
            st = ms_fail(MS_ERR_DATA, "%s: tensor %s has shape %s, expected %s (D=%d, H=%d)", path,
                         name, have, want, D, H);
            break;
        }
        if (t->dtype != MS_ST_F32 && t->dtype != MS_ST_F64) {
            st = ms_fail(MS_ERR_DATA, "%s: tensor %s has dtype %s, expected F32", path, name,
                         ms_st_dtype_name(t->dtype));
            break;
        }
        st = ms_st_to_f32(&f, t, p->t[i]);
    }
    if (st) goto done;
    m->D = D;
    m->H = H;
    st = read_meta(&f, m);
done:
    ms_st_free(&f);
    if (st) {
        ms_lstm_params_free(p);
        ms_selector_meta_free(m);
    } else if (m == &local)
        ms_selector_meta_free(m);
    return st;
}
