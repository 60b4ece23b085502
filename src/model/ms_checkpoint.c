/* ms_checkpoint.c: the selector's checkpoint file (see checkpoint.h): the ten parameter
 * tensors under their PyTorch names plus a string metadata block, in safetensors. */
#define _POSIX_C_SOURCE 200809L
#include "medselect/checkpoint.h"

#include "medselect/policy.h"
#include "medselect/safetensors.h"
#include "medselect/train.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const std_keys[] = {"format", "version", "arch", "D",    "H",         "clinical",
                                       "K",      "sampler", "seed", "data", "medselect",
                                       "clinical_order"};

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

ms_status ms_net_save(const char *path, const ms_net *net, const ms_selector_meta *m) {
    MS_CHECK(path && net && net->params && net->arch);
    ms_st_entry e[MS_NET_MAX_TENSORS];
    for (int i = 0; i < net->ntensors; i++) {
        e[i].name = net->tensor[i].name;
        e[i].dtype = MS_ST_F32;
        e[i].ndim = net->tensor[i].ndim;
        e[i].shape = net->tensor[i].shape;
        e[i].data = ms_net_tensor_data(net, i);
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
    KV("arch", net->arch->name);
    snprintf(vals[1], sizeof vals[1], "%d", net->D);
    KV("D", vals[1]);
    snprintf(vals[2], sizeof vals[2], "%d", net->H);
    KV("H", vals[2]);
    if (m && m->clinical >= 0) KV("clinical", m->clinical ? "1" : "0");
    if (m && m->clinical == 1) KV("clinical_order", MS_CLIN_ORDER);
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
    ms_status st = ms_st_write(path, e, net->ntensors, kv, n);
    free(kv);
    return st;
}

ms_status ms_checkpoint_save(const char *path, const ms_lstm_params *p, const ms_selector_meta *m) {
    MS_CHECK(path && p && p->memory);
    ms_net net;
    ms_net_from_lstm(&net, p);
    ms_status st = ms_net_save(path, &net, m);
    ms_net_free(&net);
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

/* Appends the file's metadata pairs (all, or those that are not standard keys) as extras
 * in one allocation: the reader has checked that keys are unique, so no search is needed
 * (a file with 100k keys loads in linear time). */
static void append_extras(ms_selector_meta *m, const ms_st_file *f, int skip_std) {
    int add = 0;
    for (int i = 0; i < f->n_meta; i++) add += !(skip_std && is_std_key(f->meta_key[i]));
    if (!add) return;
    m->extra_key = ms_xrealloc(m->extra_key, sizeof(char *) * (size_t)(m->n_extra + add));
    m->extra_val = ms_xrealloc(m->extra_val, sizeof(char *) * (size_t)(m->n_extra + add));
    for (int i = 0; i < f->n_meta; i++)
        if (!(skip_std && is_std_key(f->meta_key[i]))) {
            m->extra_key[m->n_extra] = ms_xstrdup(f->meta_key[i]);
            m->extra_val[m->n_extra++] = ms_xstrdup(f->meta_val[i]);
        }
}

static ms_status read_meta(const ms_st_file *f, ms_selector_meta *m) {
    const char *P = f->path;
    const char *fmt = ms_st_meta(f, "format");
    if (!fmt || strcmp(fmt, MS_SELECTOR_FORMAT) != 0) {
        /* not written by medselect: keep whatever is there as extras */
        append_extras(m, f, 0);
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
    /* without clinical_order, a medselect file with clinical inputs predates the key and
     * used [age, sex, frontal] */
    if (m->clinical == 1 && !ms_st_meta(f, "clinical_order"))
        snprintf(m->clinical_order, sizeof m->clinical_order, "age,sex,frontal");
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
    append_extras(m, f, 1);
    return MS_OK;
}

/* Parses a clinical order such as "sex,age,frontal" into idx[j] = the position of
 * MS_CLIN_ORDER's j-th feature in it. Returns 0 unless it names sex, age and frontal once
 * each. */
static int parse_order(const char *s, int idx[MS_NCLIN]) {
    static const char *const want[MS_NCLIN] = {"sex", "age", "frontal"}; /* MS_CLIN_ORDER */
    int seen = 0, pos = 0;
    for (const char *p = s; pos < MS_NCLIN; pos++) {
        size_t n = strcspn(p, ",");
        int j = 0;
        while (j < MS_NCLIN && !(strlen(want[j]) == n && strncmp(p, want[j], n) == 0)) j++;
        if (j == MS_NCLIN || (seen >> j & 1)) return 0;
        seen |= 1 << j;
        idx[j] = pos;
        p += n;
        if (pos < MS_NCLIN - 1) {
            if (*p != ',') return 0;
            p++;
        } else if (*p) {
            return 0;
        }
    }
    return 1;
}

/* Reorders the last 3 input columns of w (rows, D) so that column D-3+j takes the file's
 * column D-3+idx[j]. */
static void permute_clin_columns(float *w, int rows, int D, const int idx[MS_NCLIN]) {
    for (int r = 0; r < rows; r++) {
        float *c = w + (size_t)r * D + (D - MS_NCLIN), old[MS_NCLIN];
        memcpy(old, c, sizeof old);
        for (int j = 0; j < MS_NCLIN; j++) c[j] = old[idx[j]];
    }
}

/* Brings the clinical input columns into MS_CLIN_ORDER (see checkpoint.h). */
static ms_status fix_clinical_order(const ms_st_file *f, ms_lstm_params *p, ms_selector_meta *m) {
    const char *s = ms_st_meta(f, "clinical_order");
    if (s) {
        int idx[MS_NCLIN];
        if (!parse_order(s, idx))
            return ms_fail(MS_ERR_DATA, "%s: metadata clinical_order=\"%.40s\" is not an order of sex, age and "
                           "frontal (e.g. \"%s\")", f->path, s, MS_CLIN_ORDER);
        if (m->clinical == 0) return MS_OK; /* no clinical columns: nothing to reorder */
        m->clinical = 1;                    /* a file that states an order has them */
        snprintf(m->clinical_order, sizeof m->clinical_order, "%s", s);
    }
    if (!m->clinical_order[0]) return MS_OK;
    int idx[MS_NCLIN];
    MS_CHECK(parse_order(m->clinical_order, idx));
    if (idx[0] == 0 && idx[1] == 1 && idx[2] == 2) return MS_OK;
    if (p->D < MS_NCLIN)
        return ms_fail(MS_ERR_DATA, "%s: clinical inputs but only %d input columns", f->path, p->D);
    permute_clin_columns(p->t[MS_LSTM_W_IH], 4 * p->H, p->D, idx);
    permute_clin_columns(p->t[MS_LSTM_W_IH_R], 4 * p->H, p->D, idx);
    m->clinical_permuted = 1;
    return MS_OK;
}

ms_status ms_selector_resolve_clinical(const char *path, ms_selector_meta *m, int p_d,
                                       const char *data_name, int data_d, int force, int *clinical) {
    if (m->clinical == 0 && force)
        return ms_fail(MS_ERR_DATA, "%s: --clinical, but the checkpoint says the selector was trained "
                       "without clinical inputs (clinical=0)", path);
    int c = m->clinical == 1 || force || (m->clinical < 0 && p_d == data_d + MS_NCLIN);
    if (p_d != data_d + (c ? MS_NCLIN : 0)) {
        if (m->clinical < 0 && !force)
            return ms_fail(MS_ERR_DATA, "%s: the selector takes %d-dimensional input but %s has %d-dimensional "
                           "embeddings (neither %d nor %d + 3 clinical features)", path, p_d, data_name, data_d,
                           data_d, data_d);
        return ms_fail(MS_ERR_DATA, "%s: the selector takes %d-dimensional input but %s has %d-dimensional "
                       "embeddings%s", path, p_d, data_name, data_d, c ? " (+3 clinical)" : "");
    }
    if (c && m->clinical < 0) {
        /* a file that did not say: its columns are taken as the authors' order, which is ours */
        m->clinical = 1;
        snprintf(m->clinical_order, sizeof m->clinical_order, "%s", MS_CLIN_ORDER);
    }
    *clinical = c;
    return MS_OK;
}

ms_status ms_net_load(const char *path, ms_net *net, ms_selector_meta *m) {
    MS_CHECK(path && net);
    memset(net, 0, sizeof *net);
    ms_selector_meta local;
    if (!m) m = &local;
    ms_selector_meta_init(m);
    ms_st_file f;
    ms_status st = ms_st_read(&f, path);
    if (st) return st;
    char have[64], want[64];
    const ms_arch *a = ms_arch_default();
    const char *fmt = ms_st_meta(&f, "format"), *an = ms_st_meta(&f, "arch");
    int ours = fmt && strcmp(fmt, MS_SELECTOR_FORMAT) == 0;
    ms_net lay; /* the architecture's tensor table for D, H: nothing allocated yet */
    if (ours && an && !(a = ms_arch_find(an))) {
        st = ms_fail(MS_ERR_DATA, "%s: selector architecture \"%.40s\" is unknown to this medselect (known: %s)",
                     path, an, ms_arch_names());
        goto done;
    }
    int D = 0, H = 0;
    if (a->size_tensor) {
        /* the sizes follow from one tensor's shape (files saved from PyTorch have no metadata) */
        const ms_st_tensor *w = ms_st_find(&f, a->size_tensor);
        if (!w) {
            st = ms_fail(MS_ERR_DATA, "%s: missing tensor %s (not a medselect selector?)", path, a->size_tensor);
            goto done;
        }
        if (!a->sizes_from(w->shape, w->ndim, &D, &H)) {
            shape_str(have, sizeof have, w->ndim, w->shape);
            st = ms_fail(MS_ERR_DATA, "%s: tensor %s has shape %s, expected [4H, D]", path, w->name, have);
            goto done;
        }
    } else {
        long long v;
        const char *sd = ms_st_meta(&f, "D"), *sh = ms_st_meta(&f, "H");
        if (!parse_int(sd, 1, 1 << 30, &v) || (D = (int)v, !parse_int(sh, 1, 1 << 30, &v))) {
            st = ms_fail(MS_ERR_DATA, "%s: a %s selector needs positive integer metadata D and H", path, a->name);
            goto done;
        }
        H = (int)v;
    }
    memset(&lay, 0, sizeof lay);
    lay.arch = a, lay.D = D, lay.H = H;
    if ((st = a->layout(&lay))) {
        st = ms_fail(MS_ERR_DATA, "%s: %s", path, ms_last_error());
        goto done;
    }
    for (int i = 0; i < f.n && !st; i++)
        if (ms_net_find(&lay, f.tensors[i].name) < 0)
            st = ms_fail(MS_ERR_DATA, "%s: unexpected tensor %s (not a medselect %s selector?)", path,
                         f.tensors[i].name, a->name);
    if (st) goto done;
    /* Every tensor is found and its shape checked BEFORE the parameters are allocated: the
     * reader has checked that each tensor's bytes lie inside the file, so a file cannot make
     * us allocate more than it holds (a lone w_ih declaring H = 2^20 is refused here). */
    uint64_t nparam = 0;
    for (int i = 0; i < lay.ntensors && !st; i++) {
        const ms_net_tensor *nt = &lay.tensor[i];
        const ms_st_tensor *t = ms_st_find(&f, nt->name);
        if (!t && nt->optional) continue; /* stays 0: the behaviour before it existed */
        if (!t) {
            st = ms_fail(MS_ERR_DATA, "%s: missing tensor %s", path, nt->name);
            break;
        }
        int same = t->ndim == nt->ndim;
        for (int k = 0; same && k < nt->ndim; k++) same = t->shape[k] == nt->shape[k];
        if (!same) {
            shape_str(have, sizeof have, t->ndim, t->shape);
            shape_str(want, sizeof want, nt->ndim, nt->shape);
            st = ms_fail(MS_ERR_DATA, "%s: tensor %s has shape %s, expected %s (D=%d, H=%d)", path,
                         nt->name, have, want, D, H);
            break;
        }
        if (t->dtype != MS_ST_F32 && t->dtype != MS_ST_F64) {
            st = ms_fail(MS_ERR_DATA, "%s: tensor %s has dtype %s, expected F32", path, nt->name,
                         ms_st_dtype_name(t->dtype));
            break;
        }
        nparam += t->numel;
    }
    if (st) goto done;
    /* float32 copies of what the file holds (F64 tensors halve), plus the training and
     * scoring workspaces that scale with the same D and H: the budget covers the copy */
    if ((st = ms_check_alloc(ms_mul_sat(nparam, sizeof(float)), "the selector's parameters", path))) goto done;
    MS_CHECK(ms_net_init(net, a, D, H) == MS_OK);
    for (int i = 0; i < net->ntensors && !st; i++) {
        const ms_st_tensor *t = ms_st_find(&f, net->tensor[i].name);
        if (!t) continue; /* an optional tensor the file lacks (checked above): zeros */
        float *dst = ms_net_tensor_data(net, i);
        st = ms_st_to_f32(&f, t, dst);
        /* NaN/Inf weights would give NaN logits and meaningless rankings downstream */
        for (size_t j = 0; !st && j < t->numel; j++)
            if (!isfinite(dst[j]))
                st = ms_fail(MS_ERR_DATA, "%s: tensor %s holds a non-finite value (%g at index %zu)", path,
                             t->name, (double)dst[j], j);
    }
    if (st) goto done;
    m->D = D;
    m->H = H;
    st = read_meta(&f, m);
    if (!st && net->arch == &ms_arch_bilstm) {
        /* older clinical files (only bilstm ones exist) get their input columns reordered */
        ms_lstm_params view;
        ms_net_lstm_view(net, net->params, &view);
        st = fix_clinical_order(&f, &view, m);
    }
done:
    ms_st_free(&f);
    if (st) {
        ms_net_free(net);
        ms_selector_meta_free(m);
    } else if (m == &local)
        ms_selector_meta_free(m);
    return st;
}

ms_status ms_checkpoint_load(const char *path, ms_lstm_params *p, ms_selector_meta *m) {
    MS_CHECK(path && p);
    memset(p, 0, sizeof *p);
    ms_net net;
    ms_status st = ms_net_load(path, &net, m);
    if (st) return st;
    if (net.arch != &ms_arch_bilstm) {
        st = ms_fail(MS_ERR_DATA, "%s: holds a %s selector, not a bilstm", path, net.arch->name);
        if (m) ms_selector_meta_free(m);
    } else {
        ms_lstm_params_init(p, net.D, net.H);
        memcpy(p->memory, net.params, sizeof(float) * p->count);
    }
    ms_net_free(&net);
    return st;
}
