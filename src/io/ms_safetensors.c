/* ms_safetensors.c: the safetensors reader (whole file in memory, header parsed with cJSON
 * and validated against the file before any tensor is handed out) and the writer (header
 * JSON written directly, padded with spaces to a multiple of 8, atomic output). */
#define _POSIX_C_SOURCE 200809L
#include "medselect/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io/ms_io_internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data are little-endian; this implementation assumes a little-endian host"
#endif

/* The header may not exceed this (the reference implementation's limit as well). */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

static const char *const dtype_names[MS_ST_NDTYPES] = {
    "F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"};
static const size_t dtype_sizes[MS_ST_NDTYPES] = {8, 4, 2, 2, 8, 4, 2, 1, 8, 4, 2, 1, 1};

size_t ms_st_dtype_size(ms_st_dtype d) {
    MS_CHECK((int)d >= 0 && d < MS_ST_NDTYPES);
    return dtype_sizes[d];
}

const char *ms_st_dtype_name(ms_st_dtype d) {
    MS_CHECK((int)d >= 0 && d < MS_ST_NDTYPES);
    return dtype_names[d];
}

void ms_st_free(ms_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_key[i]);
        free(f->meta_val[i]);
    }
    free(f->tensors);
    free(f->meta_key);
    free(f->meta_val);
    free(f->buf);
    free(f->path);
    memset(f, 0, sizeof *f);
}

/* A JSON number that is an integer in [0, 2^53]. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int cmp_begin(const void *a, const void *b) {
    const ms_st_tensor *x = *(const ms_st_tensor *const *)a, *y = *(const ms_st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const ms_st_tensor *const *)a)->name, (*(const ms_st_tensor *const *)b)->name);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Fills one tensor from its header entry; returns NULL or a problem description written
 * into msg. */
static const char *parse_entry(ms_st_tensor *t, const cJSON *e, size_t data_size, char *msg,
                               size_t msz) {
    if (!cJSON_IsObject(e)) return "is not an object";
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return "has no dtype string";
    int d = -1;
    for (int i = 0; i < MS_ST_NDTYPES; i++)
        if (strcmp(dt->valuestring, dtype_names[i]) == 0) d = i;
    if (d < 0) {
        snprintf(msg, msz, "has unknown dtype \"%.32s\"", dt->valuestring);
        return msg;
    }
    t->dtype = (ms_st_dtype)d;
    if (!cJSON_IsArray(sh)) return "has no shape array";
    int nd = cJSON_GetArraySize(sh);
    if (nd > MS_ST_MAXDIM) return "has more dimensions than supported (8)";
    t->ndim = nd;
    uint64_t numel = 1;
    for (int k = 0; k < nd; k++) {
        uint64_t s;
        if (!json_uint(cJSON_GetArrayItem(sh, k), &s)) return "has a shape entry that is not a non-negative integer";
        t->shape[k] = (int64_t)s;
        if (s && numel > UINT64_MAX / s) return "has a shape too large";
        numel *= s;
    }
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2) return "has no data_offsets [begin, end]";
    uint64_t b, en;
    if (!json_uint(cJSON_GetArrayItem(of, 0), &b) || !json_uint(cJSON_GetArrayItem(of, 1), &en))
        return "has data_offsets that are not non-negative integers";
    if (b > en) return "has data_offsets with begin > end";
    if (en > data_size) {
        snprintf(msg, msz, "has data_offsets [%llu, %llu] beyond the data section (%zu bytes; "
                 "truncated file?)", (unsigned long long)b, (unsigned long long)en, data_size);
        return msg;
    }
    if (numel > UINT64_MAX / dtype_sizes[d] || numel * dtype_sizes[d] != en - b) {
        snprintf(msg, msz, "spans %llu bytes but its shape and dtype need %llu",
                 (unsigned long long)(en - b), (unsigned long long)(numel * dtype_sizes[d]));
        return msg;
    }
    t->numel = (size_t)numel;
    t->begin = (size_t)b;
    t->end = (size_t)en;
    return NULL;
}

/* Parses f->buf (f->size bytes); f->path names the file in messages. */
static ms_status parse_buffer(ms_st_file *f) {
    const char *P = f->path;
    if (f->size < 8)
        return ms_fail(MS_ERR_DATA, "%s: not a safetensors file (%zu bytes, shorter than the "
                       "8-byte header length)", P, f->size);
    uint64_t N = 0;
    for (int i = 7; i >= 0; i--) N = (N << 8) | f->buf[i];
    if (N > f->size - 8)
        return ms_fail(MS_ERR_DATA, "%s: not a safetensors file or truncated (header length "
                       "%llu exceeds the %zu bytes after it)", P, (unsigned long long)N, f->size - 8);
    if (N > ST_MAX_HEADER)
        return ms_fail(MS_ERR_DATA, "%s: header length %llu is larger than the limit of 100 MB",
                       P, (unsigned long long)N);
    const char *hdr = (const char *)f->buf + 8;
    if (N < 2 || hdr[0] != '{')
        return ms_fail(MS_ERR_DATA, "%s: not a safetensors file (the header is not a JSON object)", P);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)N, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ms_fail(MS_ERR_DATA, "%s: the header is not valid JSON (not a safetensors file?)", P);
    }
    for (const char *c = end; c < hdr + N; c++)
        if (*c != ' ' && *c != '\t' && *c != '\n' && *c != '\r' && *c != '\0') {
            cJSON_Delete(root);
            return ms_fail(MS_ERR_DATA, "%s: unexpected bytes after the JSON header", P);
        }
    size_t data_size = f->size - 8 - (size_t)N;
    const unsigned char *data = f->buf + 8 + N;
    int count = cJSON_GetArraySize(root);
    f->tensors = ms_xcalloc((size_t)count + 1, sizeof *f->tensors);
    ms_status st = MS_OK;
    char msg[256];
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!e->string) continue;
        if (strcmp(e->string, "__metadata__") == 0) {
            if (f->meta_key || !cJSON_IsObject(e)) {
                st = ms_fail(MS_ERR_DATA, "%s: __metadata__ is %s", P,
                             f->meta_key ? "given twice" : "not an object");
                break;
            }
            int m = cJSON_GetArraySize(e);
            f->meta_key = ms_xcalloc((size_t)m + 1, sizeof(char *));
            f->meta_val = ms_xcalloc((size_t)m + 1, sizeof(char *));
            for (const cJSON *kv = e->child; kv && !st; kv = kv->next) {
                if (!cJSON_IsString(kv) || !kv->string)
                    st = ms_fail(MS_ERR_DATA, "%s: __metadata__ value of \"%.64s\" is not a string",
                                 P, kv->string ? kv->string : "");
                else {
                    f->meta_key[f->n_meta] = ms_xstrdup(kv->string);
                    f->meta_val[f->n_meta++] = ms_xstrdup(kv->valuestring);
                }
            }
            if (st) break;
            continue;
        }
        ms_st_tensor *t = &f->tensors[f->n];
        const char *why = parse_entry(t, e, data_size, msg, sizeof msg);
        if (why) {
            st = ms_fail(MS_ERR_DATA, "%s: tensor \"%.64s\" %s", P, e->string, why);
            break;
        }
        t->name = ms_xstrdup(e->string);
        t->data = data + t->begin;
        f->n++;
    }
    cJSON_Delete(root);
    if (!st && f->n > 1) { /* no name twice: sorted, so O(n log n) however many tensors */
        ms_st_tensor **order = ms_xmalloc(sizeof(ms_st_tensor *) * (size_t)f->n);
        for (int i = 0; i < f->n; i++) order[i] = &f->tensors[i];
        qsort(order, (size_t)f->n, sizeof *order, cmp_name);
        for (int i = 1; i < f->n && !st; i++)
            if (strcmp(order[i - 1]->name, order[i]->name) == 0)
                st = ms_fail(MS_ERR_DATA, "%s: tensor \"%.64s\" appears twice", P, order[i]->name);
        free(order);
    }
    if (!st && f->meta_key) { /* the same for metadata keys */
        char **keys = ms_xmalloc(sizeof(char *) * (size_t)(f->n_meta ? f->n_meta : 1));
        memcpy(keys, f->meta_key, sizeof(char *) * (size_t)f->n_meta);
        qsort(keys, (size_t)f->n_meta, sizeof *keys, cmp_str);
        for (int i = 1; i < f->n_meta && !st; i++)
            if (strcmp(keys[i - 1], keys[i]) == 0)
                st = ms_fail(MS_ERR_DATA, "%s: __metadata__ key \"%.64s\" appears twice", P, keys[i]);
        free(keys);
    }
    if (!st && f->n > 1) { /* no two tensors may share bytes */
        ms_st_tensor **order = ms_xmalloc(sizeof(ms_st_tensor *) * (size_t)f->n);
        for (int i = 0; i < f->n; i++) order[i] = &f->tensors[i];
        qsort(order, (size_t)f->n, sizeof *order, cmp_begin);
        size_t reach = 0;
        const ms_st_tensor *last = NULL;
        for (int i = 0; i < f->n && !st; i++) {
            const ms_st_tensor *t = order[i];
            if (t->begin == t->end) continue;
            if (last && t->begin < reach)
                st = ms_fail(MS_ERR_DATA, "%s: tensors \"%.64s\" and \"%.64s\" overlap", P,
                             last->name, t->name);
            reach = t->end;
            last = t;
        }
        free(order);
    }
    return st;
}

static ms_status adopt(ms_st_file *f, unsigned char *buf, size_t n, const char *name) {
    memset(f, 0, sizeof *f);
    f->buf = buf;
    f->size = n;
    f->path = ms_xstrdup(name);
    ms_status st = parse_buffer(f);
    if (st) ms_st_free(f);
    return st;
}

ms_status ms_st_parse(ms_st_file *f, const void *bytes, size_t n, const char *name) {
    unsigned char *buf = ms_xmalloc(n ? n : 1);
    if (n) memcpy(buf, bytes, n);
    return adopt(f, buf, n, name ? name : "(memory)");
}

ms_status ms_st_read(ms_st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    /* the whole file, read within the size budget; every tensor must then lie inside it */
    char *buf;
    size_t n;
    ms_status st = ms_read_whole_file(path, &buf, &n);
    if (st) return st;
    return adopt(f, (unsigned char *)buf, n, path);
}

const ms_st_tensor *ms_st_find(const ms_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *ms_st_meta(const ms_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_key[i], key) == 0) return f->meta_val[i];
    return NULL;
}

float ms_st_f16_to_f32(uint16_t h) {
    /* IEEE 754 binary16: 1 sign bit, 5 exponent bits (bias 15), 10 fraction bits. Every
     * binary16 value, subnormals included, is exactly representable in binary32. */
    const uint32_t sign = (uint32_t)(h >> 15) << 31;
    const uint32_t e = (h >> 10) & 0x1f;
    uint32_t m = h & 0x3ff;
    uint32_t bits;
    if (e == 0x1f) {
        bits = sign | 0x7f800000u | (m << 13); /* inf, nan (payload kept) */
    } else if (e) {
        bits = sign | ((e + 112u) << 23) | (m << 13); /* normal: rebias 15 -> 127 */
    } else if (!m) {
        bits = sign; /* signed zero */
    } else {
        /* subnormal m * 2^-24: shift the leading 1 into the implicit bit */
        uint32_t ex = 113u;
        while (!(m & 0x400)) {
            m <<= 1;
            ex--;
        }
        bits = sign | (ex << 23) | ((m & 0x3ff) << 13);
    }
    float v;
    memcpy(&v, &bits, 4);
    return v;
}

float ms_st_bf16_to_f32(uint16_t h) {
    /* bfloat16 is the upper half of a binary32 */
    const uint32_t bits = (uint32_t)h << 16;
    float v;
    memcpy(&v, &bits, 4);
    return v;
}

/* Value j of a tensor as double, for the convertible dtypes. */
static double value_at(const ms_st_tensor *t, size_t j) {
    const unsigned char *p = t->data + j * dtype_sizes[t->dtype];
    switch (t->dtype) {
    case MS_ST_F32: { float v; memcpy(&v, p, 4); return v; }
    case MS_ST_F64: { double v; memcpy(&v, p, 8); return v; }
    case MS_ST_F16: return ms_st_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
    case MS_ST_BF16: return ms_st_bf16_to_f32((uint16_t)(p[0] | p[1] << 8));
    case MS_ST_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case MS_ST_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    default: return 0.0;
    }
}

static ms_status check_convertible(const ms_st_file *f, const ms_st_tensor *t) {
    if (t->dtype == MS_ST_F32 || t->dtype == MS_ST_F64 || t->dtype == MS_ST_F16 ||
        t->dtype == MS_ST_BF16 || t->dtype == MS_ST_I64 || t->dtype == MS_ST_I32)
        return MS_OK;
    return ms_fail(MS_ERR_DATA, "%s: tensor \"%s\" has dtype %s; expected F32, F64, F16, BF16, I64 or I32",
                   f->path, t->name, dtype_names[t->dtype]);
}

ms_status ms_st_to_f32(const ms_st_file *f, const ms_st_tensor *t, float *out) {
    ms_status st = check_convertible(f, t);
    if (st) return st;
    const unsigned char *p = t->data;
    /* one loop per 16-bit dtype (model weights come as F16/BF16: tens of millions of values) */
    if (t->dtype == MS_ST_F32) memcpy(out, t->data, 4 * t->numel);
    else if (t->dtype == MS_ST_F16)
        for (size_t j = 0; j < t->numel; j++) out[j] = ms_st_f16_to_f32((uint16_t)(p[2 * j] | p[2 * j + 1] << 8));
    else if (t->dtype == MS_ST_BF16)
        for (size_t j = 0; j < t->numel; j++) out[j] = ms_st_bf16_to_f32((uint16_t)(p[2 * j] | p[2 * j + 1] << 8));
    else
        for (size_t j = 0; j < t->numel; j++) out[j] = (float)value_at(t, j);
    return MS_OK;
}

ms_status ms_st_to_f64(const ms_st_file *f, const ms_st_tensor *t, double *out) {
    ms_status st = check_convertible(f, t);
    if (st) return st;
    for (size_t j = 0; j < t->numel; j++) out[j] = value_at(t, j);
    return MS_OK;
}

/* ---- writer ---------------------------------------------------------------------------- */

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 256;
        b->s = ms_xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A JSON string literal: quotes, backslashes and control characters escaped; other bytes
 * (UTF-8 included) as they are. */
static void sb_json(sbuf *b, const char *s) {
    sb_str(b, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char e[8];
        if (*c == '"' || *c == '\\') {
            e[0] = '\\';
            e[1] = (char)*c;
            sb_put(b, e, 2);
        } else if (*c < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", *c);
            sb_str(b, e);
        } else
            sb_put(b, (const char *)c, 1);
    }
    sb_str(b, "\"");
}

ms_status ms_st_write(const char *path, const ms_st_entry *t, int n, const char *const *meta,
                      int n_meta) {
    MS_CHECK(path && n >= 0 && (n == 0 || t) && n_meta >= 0 && (n_meta == 0 || meta));
    sbuf h = {0};
    char num[96];
    size_t off = 0;
    size_t *bytes = ms_xmalloc(sizeof(size_t) * (size_t)(n ? n : 1));
    sb_str(&h, "{");
    for (int i = 0; i < n; i++) {
        MS_CHECK(t[i].name && strcmp(t[i].name, "__metadata__") != 0);
        MS_CHECK(t[i].ndim >= 0 && t[i].ndim <= MS_ST_MAXDIM && (t[i].ndim == 0 || t[i].shape));
        MS_CHECK((int)t[i].dtype >= 0 && t[i].dtype < MS_ST_NDTYPES);
        for (int j = 0; j < i; j++) MS_CHECK(strcmp(t[i].name, t[j].name) != 0);
        size_t numel = 1;
        for (int k = 0; k < t[i].ndim; k++) {
            MS_CHECK(t[i].shape[k] >= 0);
            numel *= (size_t)t[i].shape[k];
        }
        bytes[i] = numel * dtype_sizes[t[i].dtype];
        MS_CHECK(bytes[i] == 0 || t[i].data);
        if (i) sb_str(&h, ",");
        sb_json(&h, t[i].name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, dtype_names[t[i].dtype]);
        sb_str(&h, "\",\"shape\":[");
        for (int k = 0; k < t[i].ndim; k++) {
            snprintf(num, sizeof num, "%s%lld", k ? "," : "", (long long)t[i].shape[k]);
            sb_str(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", off, off + bytes[i]);
        sb_str(&h, num);
        off += bytes[i];
    }
    if (n_meta) {
        sb_str(&h, n ? ",\"__metadata__\":{" : "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            MS_CHECK(meta[2 * i] && meta[2 * i + 1]);
            if (i) sb_str(&h, ",");
            sb_json(&h, meta[2 * i]);
            sb_str(&h, ":");
            sb_json(&h, meta[2 * i + 1]);
        }
        sb_str(&h, "}");
    }
    sb_str(&h, "}");
    while (h.n % 8) sb_str(&h, " ");
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    ms_outfile o;
    ms_status st = ms_out_open(&o, path);
    if (!st) {
        int bad = fwrite(len, 1, 8, o.f) != 8 || fwrite(h.s, 1, h.n, o.f) != h.n;
        for (int i = 0; i < n && !bad; i++)
            if (bytes[i]) bad = fwrite(t[i].data, 1, bytes[i], o.f) != bytes[i];
        if (bad) {
            st = ms_fail(MS_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
            ms_out_abort(&o);
        } else
            st = ms_out_commit(&o);
    }
    free(h.s);
    free(bytes);
    return st;
}
