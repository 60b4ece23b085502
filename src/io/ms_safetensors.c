/* ms_safetensors.c: the safetensors reader (validating) and F32 writer (see safetensors.h). */
#define _POSIX_C_SOURCE 200809L
#include "medselect/safetensors.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

static int dtype_size(const char *d) {
    if (!strcmp(d, "F32") || !strcmp(d, "I32") || !strcmp(d, "U32")) return 4;
    if (!strcmp(d, "F64") || !strcmp(d, "I64") || !strcmp(d, "U64")) return 8;
    if (!strcmp(d, "F16") || !strcmp(d, "BF16") || !strcmp(d, "I16") || !strcmp(d, "U16")) return 2;
    if (!strcmp(d, "I8") || !strcmp(d, "U8") || !strcmp(d, "BOOL")) return 1;
    return 0;
}

static int by_begin(const void *a, const void *b) {
    const ms_st_tensor *x = *(const ms_st_tensor *const *)a, *y = *(const ms_st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static ms_status parse_header(ms_safetensors *f, const char *json, size_t n) {
    const char *path = f->path;
    cJSON *root = cJSON_ParseWithLength(json, n);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ms_fail(MS_ERR_DATA, "%s: not a safetensors file (header is not a JSON object)", path);
    }
    size_t data_size = f->size - f->data_start;
    int cap = cJSON_GetArraySize(root);
    f->t = ms_xcalloc((size_t)cap + 1, sizeof(ms_st_tensor));
    ms_status st = MS_OK;
    for (cJSON *e = root->child; e && !st; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) {
                st = ms_fail(MS_ERR_DATA, "%s: __metadata__ is not an object", path);
                break;
            }
            int m = cJSON_GetArraySize(e);
            f->meta_key = ms_xcalloc((size_t)m + 1, sizeof(char *));
            f->meta_val = ms_xcalloc((size_t)m + 1, sizeof(char *));
            for (cJSON *kv = e->child; kv; kv = kv->next) {
                if (!cJSON_IsString(kv)) {
                    st = ms_fail(MS_ERR_DATA, "%s: metadata '%s' is not a string", path, kv->string);
                    break;
                }
                f->meta_key[f->n_meta] = ms_xstrdup(kv->string);
                f->meta_val[f->n_meta] = ms_xstrdup(kv->valuestring);
                f->n_meta++;
            }
            continue;
        }
        ms_st_tensor *t = &f->t[f->n];
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
        cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of) ||
            cJSON_GetArraySize(of) != 2 || strlen(dt->valuestring) >= sizeof t->dtype) {
            st = ms_fail(MS_ERR_DATA, "%s: tensor '%s' lacks a valid dtype, shape or data_offsets", path, e->string);
            break;
        }
        t->name = ms_xstrdup(e->string);
        f->n++;
        snprintf(t->dtype, sizeof t->dtype, "%s", dt->valuestring);
        t->itemsize = dtype_size(t->dtype);
        t->ndim = cJSON_GetArraySize(sh);
        if (t->ndim > MS_ST_MAX_DIMS) {
            st = ms_fail(MS_ERR_DATA, "%s: tensor '%s' has %d dimensions", path, t->name, t->ndim);
            break;
        }
        double elems = 1;
        int i = 0;
        for (cJSON *d = sh->child; d; d = d->next, i++) {
            if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble != (double)(int64_t)d->valuedouble) {
                st = ms_fail(MS_ERR_DATA, "%s: tensor '%s' has an invalid shape", path, t->name);
                break;
            }
            t->shape[i] = (int64_t)d->valuedouble;
            elems *= d->valuedouble;
        }
        if (st) break;
        cJSON *b = cJSON_GetArrayItem(of, 0), *en = cJSON_GetArrayItem(of, 1);
        if (!cJSON_IsNumber(b) || !cJSON_IsNumber(en) || b->valuedouble < 0 || en->valuedouble < b->valuedouble ||
            en->valuedouble > (double)data_size) {
            st = ms_fail(MS_ERR_DATA, "%s: tensor '%s' data_offsets lie outside the file (truncated?)", path, t->name);
            break;
        }
        t->begin = (size_t)b->valuedouble;
        t->end = (size_t)en->valuedouble;
        if (t->itemsize && elems * t->itemsize != (double)(t->end - t->begin)) {
            st = ms_fail(MS_ERR_DATA, "%s: tensor '%s' shape needs %.0f bytes but its span has %zu", path,
                         t->name, elems * t->itemsize, t->end - t->begin);
            break;
        }
    }
    cJSON_Delete(root);
    if (st) return st;
    /* spans must not overlap */
    ms_st_tensor **order = ms_xmalloc(sizeof(ms_st_tensor *) * (size_t)(f->n + 1));
    for (int i = 0; i < f->n; i++) order[i] = &f->t[i];
    qsort(order, (size_t)f->n, sizeof *order, by_begin);
    for (int i = 1; i < f->n && !st; i++)
        if (order[i]->begin < order[i - 1]->end)
            st = ms_fail(MS_ERR_DATA, "%s: tensors '%s' and '%s' overlap", path, order[i - 1]->name, order[i]->name);
    free(order);
    return st;
}

ms_status ms_safetensors_read(ms_safetensors *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->path = ms_xstrdup(path);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        ms_status st = ms_fail(MS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        ms_safetensors_free(f);
        return st;
    }
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->size = sz > 0 ? (size_t)sz : 0;
    f->bytes = ms_xmalloc(f->size + 1);
    size_t got = fread(f->bytes, 1, f->size, fp);
    fclose(fp);
    ms_status st = MS_OK;
    if (got != f->size) st = ms_fail(MS_ERR_IO, "%s: read error", path);
    else if (f->size < 8) st = ms_fail(MS_ERR_DATA, "%s: not a safetensors file (%zu bytes)", path, f->size);
    if (!st) {
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--) n = (n << 8) | f->bytes[i];
        if (n < 2 || n > f->size - 8)
            st = ms_fail(MS_ERR_DATA, "%s: not a safetensors file or truncated (header of %llu bytes in a %zu-byte file)",
                         path, (unsigned long long)n, f->size);
        else {
            f->data_start = 8 + (size_t)n;
            st = parse_header(f, (const char *)f->bytes + 8, (size_t)n);
        }
    }
    if (st) ms_safetensors_free(f);
    return st;
}

void ms_safetensors_free(ms_safetensors *f) {
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    for (int i = 0; i < f->n_meta; i++) free(f->meta_key[i]), free(f->meta_val[i]);
    free(f->t);
    free(f->meta_key);
    free(f->meta_val);
    free(f->bytes);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const ms_st_tensor *ms_safetensors_find(const ms_safetensors *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

const void *ms_safetensors_data(const ms_safetensors *f, const ms_st_tensor *t) {
    return f->bytes + f->data_start + t->begin;
}

const char *ms_safetensors_meta(const ms_safetensors *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_key[i], key)) return f->meta_val[i];
    return NULL;
}

ms_status ms_safetensors_get_f32(const ms_safetensors *f, const char *name, float *out, size_t count) {
    const ms_st_tensor *t = ms_safetensors_find(f, name);
    if (!t) return ms_fail(MS_ERR_DATA, "%s: missing tensor '%s'", f->path, name);
    if (strcmp(t->dtype, "F32") != 0)
        return ms_fail(MS_ERR_DATA, "%s: tensor '%s' is %s, expected F32", f->path, name, t->dtype);
    if ((t->end - t->begin) != count * sizeof(float))
        return ms_fail(MS_ERR_DATA, "%s: tensor '%s' has %zu elements, expected %zu", f->path, name,
                       (t->end - t->begin) / sizeof(float), count);
    /* the file is little-endian, as is every platform this builds on */
    memcpy(out, ms_safetensors_data(f, t), count * sizeof(float));
    return MS_OK;
}

ms_status ms_safetensors_write(const char *path, const ms_st_out *t, int n,
                               const char *const *meta, int n_meta) {
    cJSON *root = cJSON_CreateObject();
    if (n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < n_meta; i++) cJSON_AddStringToObject(m, meta[2 * i], meta[2 * i + 1]);
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t elems = 1;
        for (int d = 0; d < t[i].ndim; d++) elems *= (size_t)t[i].shape[d];
        cJSON *e = cJSON_AddObjectToObject(root, t[i].name);
        cJSON_AddStringToObject(e, "dtype", "F32");
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t[i].ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t[i].shape[d]));
        cJSON *of = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        off += elems * sizeof(float);
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    size_t hl = strlen(json), padded = (hl + 7) & ~(size_t)7;
    ms_outfile o;
    ms_status st = ms_out_open(&o, path);
    if (st) {
        free(json);
        return st;
    }
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    fwrite(len, 1, 8, o.f);
    fwrite(json, 1, hl, o.f);
    for (size_t i = hl; i < padded; i++) fputc(' ', o.f);
    free(json);
    for (int i = 0; i < n; i++) {
        size_t elems = 1;
        for (int d = 0; d < t[i].ndim; d++) elems *= (size_t)t[i].shape[d];
        if (elems && fwrite(t[i].data, sizeof(float), elems, o.f) != elems) {
            ms_out_abort(&o);
            return ms_fail(MS_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        }
    }
    return ms_out_commit(&o);
}
