/* medselect/safetensors.h: reading and writing the safetensors format
 * (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N, an
 * N-byte JSON header mapping tensor names to {"dtype", "shape", "data_offsets": [begin, end]}
 * (offsets relative to the byte after the header) plus an optional "__metadata__" object of
 * string values, then the raw little-endian tensor bytes.
 *
 * The reader checks everything before handing out a tensor: the header length against the
 * file size, valid JSON, every entry's dtype/shape/offsets, shape x item size equal to the
 * byte span, spans inside the file and not overlapping. Any violation is one MS_ERR_DATA
 * line naming the file and the problem (a truncated or foreign file is caught here).
 */
#ifndef MEDSELECT_SAFETENSORS_H
#define MEDSELECT_SAFETENSORS_H

#include "medselect/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MS_ST_MAX_DIMS 8

typedef struct {
    char *name;
    char dtype[8];     /* "F32", "F64", "I64", "F16", ... as in the file */
    int itemsize;      /* bytes per element for the dtypes we know, else 0 */
    int ndim;
    int64_t shape[MS_ST_MAX_DIMS];
    size_t begin, end; /* byte span relative to the data section */
} ms_st_tensor;

typedef struct {
    char *path;
    unsigned char *bytes; /* the whole file */
    size_t size;
    size_t data_start;    /* 8 + N */
    int n;
    ms_st_tensor *t;      /* (n) in file order */
    int n_meta;
    char **meta_key, **meta_val;
} ms_safetensors;

ms_status ms_safetensors_read(ms_safetensors *f, const char *path);
void ms_safetensors_free(ms_safetensors *f);
const ms_st_tensor *ms_safetensors_find(const ms_safetensors *f, const char *name);
/* Pointer to a tensor's bytes inside the file image (not necessarily aligned: copy it out
 * with memcpy). */
const void *ms_safetensors_data(const ms_safetensors *f, const ms_st_tensor *t);
/* A metadata value, or NULL. */
const char *ms_safetensors_meta(const ms_safetensors *f, const char *key);
/* Copies an F32 tensor of exactly `count` elements into out; MS_ERR_DATA naming the tensor
 * when the dtype or element count differ. */
ms_status ms_safetensors_get_f32(const ms_safetensors *f, const char *name, float *out, size_t count);

typedef struct {
    const char *name;
    const float *data;
    int ndim;
    int64_t shape[MS_ST_MAX_DIMS];
} ms_st_out;

/* Writes F32 tensors (in the given order, contiguous) and string metadata (meta holds
 * n_meta key/value pairs: meta[2i] = key, meta[2i+1] = value) atomically. The header is
 * padded with spaces to a multiple of 8 bytes. */
ms_status ms_safetensors_write(const char *path, const ms_st_out *t, int n,
                               const char *const *meta, int n_meta);

#ifdef __cplusplus
}
#endif
#endif
