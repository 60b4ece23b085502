/* medselect/safetensors.h: reading and writing the safetensors format
 * (https://huggingface.co/docs/safetensors), the checkpoint format of medselect.
 *
 * Layout: an 8-byte little-endian unsigned header length N; N bytes of UTF-8 JSON
 *     {"<tensor name>": {"dtype": "F32", "shape": [4, 3], "data_offsets": [begin, end]}, ...,
 *      "__metadata__": {"<key>": "<string value>", ...}}
 * (padded with trailing spaces); then the data section. Offsets are relative to the start
 * of the data section; tensors are row-major, little-endian.
 *
 * The reader loads the whole file and validates it: N at least 2 and within the file,
 * JSON that parses to an object, every tensor entry with a known dtype, a shape of
 * non-negative integers, 0 <= begin <= end <= data size, end - begin = prod(shape) *
 * itemsize, no two tensors overlapping, no duplicate names, and __metadata__ (if present)
 * mapping strings to strings. Any violation, a truncated file or a file of another kind
 * gives MS_ERR_DATA with one line "PATH: problem"; I/O failures give MS_ERR_IO.
 * The writer puts the tensors back to back in the given order, pads the header with
 * spaces to a multiple of 8 bytes and writes atomically (temporary file + rename).
 */
#ifndef MEDSELECT_SAFETENSORS_H
#define MEDSELECT_SAFETENSORS_H

#include "medselect/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    MS_ST_F64 = 0, MS_ST_F32, MS_ST_F16, MS_ST_BF16, MS_ST_I64, MS_ST_I32, MS_ST_I16,
    MS_ST_I8, MS_ST_U64, MS_ST_U32, MS_ST_U16, MS_ST_U8, MS_ST_BOOL,
    MS_ST_NDTYPES
} ms_st_dtype;

#define MS_ST_MAXDIM 8

typedef struct {
    char *name;
    ms_st_dtype dtype;
    int ndim;
    int64_t shape[MS_ST_MAXDIM];
    size_t numel;              /* prod(shape); 1 for a scalar (ndim 0) */
    size_t begin, end;         /* byte range in the data section */
    const unsigned char *data; /* begin of the bytes inside the file buffer (unaligned) */
} ms_st_tensor;

typedef struct {
    char *path;
    unsigned char *buf;     /* the whole file, owned */
    size_t size;
    int n;                  /* tensors, in header order */
    ms_st_tensor *tensors;
    int n_meta;             /* __metadata__ entries */
    char **meta_key, **meta_val;
} ms_st_file;

/* Reads and validates a file. On failure f is left empty (safe to ms_st_free). */
ms_status ms_st_read(ms_st_file *f, const char *path);
/* The same from bytes in memory (copied); `name` is used in error messages. */
ms_status ms_st_parse(ms_st_file *f, const void *bytes, size_t n, const char *name);
void ms_st_free(ms_st_file *f);

/* The tensor called `name`, or NULL. */
const ms_st_tensor *ms_st_find(const ms_st_file *f, const char *name);
/* The metadata value for `key`, or NULL. */
const char *ms_st_meta(const ms_st_file *f, const char *key);

/* Converts a tensor's numel values to float / double. Supported: F32, F64, F16 (IEEE
 * binary16), BF16, I64, I32 (others give MS_ERR_DATA naming the file and the tensor).
 * F16 and BF16 convert exactly (every 16-bit value is a float). */
ms_status ms_st_to_f32(const ms_st_file *f, const ms_st_tensor *t, float *out);
ms_status ms_st_to_f64(const ms_st_file *f, const ms_st_tensor *t, double *out);

size_t ms_st_dtype_size(ms_st_dtype d);
/* One 16-bit value (as its bits) to float, exactly: IEEE binary16 (subnormals, inf and NaN
 * included) and bfloat16. */
float ms_st_f16_to_f32(uint16_t h);
float ms_st_bf16_to_f32(uint16_t h);
const char *ms_st_dtype_name(ms_st_dtype d); /* "F32", ... */

/* One tensor to write: numel(shape) * itemsize bytes at data, little-endian. */
typedef struct {
    const char *name;
    ms_st_dtype dtype;
    int ndim;              /* 0..MS_ST_MAXDIM */
    const int64_t *shape;  /* (ndim) */
    const void *data;
} ms_st_entry;

/* Writes n tensors and n_meta metadata pairs (meta[2*i] the key, meta[2*i+1] the value;
 * meta may be NULL when n_meta is 0). Names must be distinct and not "__metadata__". */
ms_status ms_st_write(const char *path, const ms_st_entry *t, int n, const char *const *meta,
                      int n_meta);

#ifdef __cplusplus
}
#endif
#endif
