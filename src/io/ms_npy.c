/* ms_npy.c: NumPy .npy files (format versions 1.0, 2.0 and 3.0) holding a 2-D float array.
 *
 * Layout: the magic "\x93NUMPY", a major and minor version byte, the header length (2 bytes
 * little-endian in 1.0; 4 bytes in 2.0 and 3.0, whose header may also be UTF-8), then the
 * header: a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (R, C), }
 * padded with spaces and a newline, then R*C elements in C order. We read little-endian
 * float32 ('<f4') and float64 ('<f8'; narrowed to float32, so out-of-range values become
 * +-inf and are caught by the loaders' finite check); big-endian, integer or structured
 * dtypes, Fortran order and ranks other than 2 are reported as errors naming the file.
 * Elements are decoded byte by byte, so the code does not depend on the host's byte order;
 * only little-endian float32 on a little-endian host is taken as it is (read straight into
 * the array, or the read buffer's data moved to its front and trimmed), so a large pool is
 * never held twice.
 * Bytes after the last element are ignored. The writer emits version 1.0 float32 with the
 * header padded so that the data starts on a 64-byte boundary (as NumPy does), atomically.
 */
#define _POSIX_C_SOURCE 200809L
#include "medselect/io.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/ms_io_internal.h"

/* ---- header dict parsing ------------------------------------------------------------
 * A tiny scanner over the dict literal: keys are quoted strings; values we need are a
 * quoted string (descr), True/False (fortran_order) or a tuple of integers (shape). Values
 * of other keys are skipped (strings, identifiers, numbers and bracketed groups). */

typedef struct {
    const char *p, *end;
} scan;

static void skip_ws(scan *s) {
    while (s->p < s->end && isspace((unsigned char)*s->p)) s->p++;
}

static int eat(scan *s, char c) {
    skip_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return 1;
    }
    return 0;
}

/* Reads a quoted string ('...' or "...") into buf (truncated to cap-1); 0 on failure. */
static int read_str(scan *s, char *buf, size_t cap) {
    skip_ws(s);
    if (s->p >= s->end || (*s->p != '\'' && *s->p != '"')) return 0;
    char q = *s->p++;
    size_t n = 0;
    while (s->p < s->end && *s->p != q) {
        if (n + 1 < cap) buf[n++] = *s->p;
        s->p++;
    }
    if (s->p >= s->end) return 0;
    s->p++;
    buf[n] = '\0';
    return 1;
}

/* Skips one value of a key we do not use; 0 on malformed input. */
static int skip_value(scan *s) {
    skip_ws(s);
    if (s->p >= s->end) return 0;
    char c = *s->p;
    if (c == '\'' || c == '"') {
        char tmp[8];
        return read_str(s, tmp, sizeof tmp);
    }
    if (c == '(' || c == '[' || c == '{') {
        int depth = 0;
        while (s->p < s->end) {
            char d = *s->p++;
            if (d == '(' || d == '[' || d == '{') depth++;
            if (d == ')' || d == ']' || d == '}') depth--;
            if (depth == 0) return 1;
        }
        return 0;
    }
    while (s->p < s->end && *s->p != ',' && *s->p != '}') s->p++;
    return 1;
}

typedef struct {
    char descr[64];
    int has_descr;
    int descr_is_str; /* 0 when descr is a list (a structured dtype) */
    int fortran;      /* -1 when absent */
    int ndim;         /* -1 when absent */
    long long shape[8];
} npy_header;

/* Parses the dict; returns NULL on success or a short description of what is wrong. */
static const char *parse_header(const char *h, size_t n, npy_header *out) {
    scan s = {h, h + n};
    memset(out, 0, sizeof *out);
    out->fortran = -1;
    out->ndim = -1;
    if (!eat(&s, '{')) return "header is not a dict";
    for (;;) {
        if (eat(&s, '}')) break;
        char key[32];
        if (!read_str(&s, key, sizeof key) || !eat(&s, ':')) return "malformed header dict";
        skip_ws(&s);
        if (strcmp(key, "descr") == 0) {
            out->has_descr = 1;
            if (s.p < s.end && (*s.p == '\'' || *s.p == '"')) {
                if (!read_str(&s, out->descr, sizeof out->descr)) return "malformed 'descr'";
                out->descr_is_str = 1;
            } else if (!skip_value(&s)) {
                return "malformed 'descr'";
            }
        } else if (strcmp(key, "fortran_order") == 0) {
            if (s.end - s.p >= 4 && strncmp(s.p, "True", 4) == 0) out->fortran = 1, s.p += 4;
            else if (s.end - s.p >= 5 && strncmp(s.p, "False", 5) == 0) out->fortran = 0, s.p += 5;
            else return "malformed 'fortran_order'";
        } else if (strcmp(key, "shape") == 0) {
            if (!eat(&s, '(')) return "malformed 'shape'";
            out->ndim = 0;
            for (;;) {
                if (eat(&s, ')')) break;
                skip_ws(&s);
                if (s.p >= s.end || !isdigit((unsigned char)*s.p)) return "malformed 'shape'";
                long long v = 0;
                while (s.p < s.end && isdigit((unsigned char)*s.p)) {
                    if (v > (LLONG_MAX - 9) / 10) return "'shape' too large";
                    v = v * 10 + (*s.p++ - '0');
                }
                while (s.p < s.end && (*s.p == 'L' || *s.p == 'l')) s.p++; /* Python 2 longs */
                if (out->ndim == 8) return "too many dimensions";
                out->shape[out->ndim++] = v;
                if (!eat(&s, ',') && !(skip_ws(&s), s.p < s.end && *s.p == ')'))
                    return "malformed 'shape'";
            }
        } else if (!skip_value(&s)) {
            return "malformed header dict";
        }
        if (!eat(&s, ',')) {
            if (eat(&s, '}')) break;
            return "malformed header dict";
        }
    }
    if (!out->has_descr) return "header lacks 'descr'";
    if (out->ndim < 0) return "header lacks 'shape'";
    if (out->fortran < 0) return "header lacks 'fortran_order'";
    return NULL;
}

static float get_f4(const unsigned char *b) {
    uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static double get_f8(const unsigned char *b) {
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--) u = u << 8 | b[i];
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* The fast path: a regular file holding a well-formed little-endian float32 C-order 2-D
 * array, on a little-endian host, is read straight into the array (no second buffer, no
 * copy). Returns 1 when it did; 0 leaves everything to the general reader below, which
 * also produces every error message. */
static int read_f4_direct(const char *path, float **out, int *rows, int *cols) {
    const uint16_t one = 1;
    if (*(const unsigned char *)&one != 1) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int done = 0;
    char *hdr = NULL;
    float *x = NULL;
    struct stat sb;
    unsigned char pre[12];
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) goto out;
    if (fread(pre, 1, 12, f) != 12 || memcmp(pre, "\x93NUMPY", 6) != 0) goto out;
    size_t hlen, hstart;
    if (pre[6] == 1) {
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
        hstart = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
        hstart = 12;
    } else {
        goto out;
    }
    if (hlen > ((size_t)1 << 20) || fseek(f, (long)hstart, SEEK_SET) != 0) goto out;
    hdr = ms_xmalloc(hlen + 1);
    if (fread(hdr, 1, hlen, f) != hlen) goto out;
    npy_header h;
    if (parse_header(hdr, hlen, &h) || !h.descr_is_str || strcmp(h.descr, "<f4") != 0 || h.fortran ||
        h.ndim != 2)
        goto out;
    long long r = h.shape[0], c = h.shape[1];
    if (r <= 0 || c <= 0 || r > INT_MAX || c > INT_MAX || (unsigned long long)r > SIZE_MAX / 8 / (unsigned long long)c)
        goto out;
    size_t n = (size_t)r * (size_t)c;
    if ((uint64_t)sb.st_size < (uint64_t)(hstart + hlen) + (uint64_t)n * 4) goto out;
    if (ms_check_alloc((uint64_t)n * sizeof(float), "the array", path)) goto out;
    x = ms_xmalloc_large(sizeof(float) * n);
    if (fread(x, sizeof(float), n, f) != n) goto out;
    *out = x;
    x = NULL;
    *rows = (int)r;
    *cols = (int)c;
    done = 1;
out:
    free(x);
    free(hdr);
    fclose(f);
    return done;
}

ms_status ms_npy_read(const char *path, float **out, int *rows, int *cols) {
    MS_CHECK(path && out && rows && cols);
    *out = NULL;
    *rows = *cols = 0;
    if (read_f4_direct(path, out, rows, cols)) return MS_OK;
    char *data;
    size_t len;
    ms_status st = ms_read_whole_file(path, &data, &len);
    if (st) return st;
    const unsigned char *u = (const unsigned char *)data;

    if (len < 10 || memcmp(u, "\x93NUMPY", 6) != 0) {
        st = ms_fail(MS_ERR_DATA, "%s: not an NPY file (bad magic)", path);
        goto done;
    }
    int major = u[6], minor = u[7];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)u[8] | (size_t)u[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) {
            st = ms_fail(MS_ERR_DATA, "%s: truncated NPY header", path);
            goto done;
        }
        hlen = (size_t)u[8] | (size_t)u[9] << 8 | (size_t)u[10] << 16 | (size_t)u[11] << 24;
        hstart = 12;
    } else {
        st = ms_fail(MS_ERR_DATA, "%s: unsupported NPY format version %d.%d", path, major, minor);
        goto done;
    }
    if (hlen > len - hstart) {
        st = ms_fail(MS_ERR_DATA, "%s: truncated NPY header", path);
        goto done;
    }
    npy_header h;
    const char *why = parse_header(data + hstart, hlen, &h);
    if (why) {
        st = ms_fail(MS_ERR_DATA, "%s: bad NPY header: %s", path, why);
        goto done;
    }
    int es;
    if (!h.descr_is_str) {
        st = ms_fail(MS_ERR_DATA, "%s: structured NPY dtype; expected float32 or float64", path);
        goto done;
    } else if (strcmp(h.descr, "<f4") == 0) {
        es = 4;
    } else if (strcmp(h.descr, "<f8") == 0) {
        es = 8;
    } else if (strcmp(h.descr, ">f4") == 0 || strcmp(h.descr, ">f8") == 0) {
        st = ms_fail(MS_ERR_DATA,
                     "%s: big-endian dtype '%s' is not supported (save with a.astype('<f4'))",
                     path, h.descr);
        goto done;
    } else {
        st = ms_fail(MS_ERR_DATA, "%s: dtype '%s', expected little-endian float32 or float64",
                     path, h.descr);
        goto done;
    }
    if (h.fortran) {
        st = ms_fail(MS_ERR_DATA,
                     "%s: Fortran-order array is not supported (save np.ascontiguousarray(a))",
                     path);
        goto done;
    }
    if (h.ndim != 2) {
        /* Python's tuple form: (a, b) but (a,) and (); 8 dimensions of up to 19 digits
         * fit (8 * 21 + 2 bytes), and the length is tracked so nothing is written past it */
        char shape[200] = "";
        size_t used = 0;
        for (int i = 0; i < h.ndim && used < sizeof shape; i++) {
            int w = snprintf(shape + used, sizeof shape - used, "%s%lld%s", i ? " " : "", h.shape[i],
                             i + 1 < h.ndim || h.ndim == 1 ? "," : "");
            used += w > 0 ? (size_t)w : 0;
        }
        st = ms_fail(MS_ERR_DATA, "%s: array has rank %d (shape (%s)), expected 2 (rows, dim)",
                     path, h.ndim, shape);
        goto done;
    }
    long long r = h.shape[0], c = h.shape[1];
    if (r == 0 || c == 0) {
        st = ms_fail(MS_ERR_DATA, "%s: array is empty (%lld x %lld)", path, r, c);
        goto done;
    }
    if (r > INT_MAX || c > INT_MAX || (unsigned long long)r > SIZE_MAX / 8 / (unsigned long long)c) {
        st = ms_fail(MS_ERR_DATA, "%s: array is too large (%lld x %lld)", path, r, c);
        goto done;
    }
    size_t n = (size_t)r * (size_t)c, have = len - hstart - hlen;
    if (have / (size_t)es < n) {
        st = ms_fail(MS_ERR_DATA, "%s: truncated: %lld x %lld array needs %zu data bytes, found %zu",
                     path, r, c, n * (size_t)es, have);
        goto done;
    }
    if ((st = ms_check_alloc((uint64_t)n * sizeof(float), "the array", path))) goto done;
    const unsigned char *b = u + hstart + hlen;
    const uint16_t one = 1;
    if (es == 4 && *(const unsigned char *)&one == 1) {
        /* little-endian float32 on a little-endian host: the file's bytes are the array.
         * Moved to the front of the buffer and trimmed, so a large pool is held once, not
         * twice (file + copy) */
        memmove(data, b, sizeof(float) * n);
        float *x = realloc(data, sizeof(float) * n);
        *out = x ? x : (float *)data;
        data = NULL;
        *rows = (int)r;
        *cols = (int)c;
        goto done;
    }
    float *x = ms_xmalloc(sizeof(float) * n);
    if (es == 4)
        for (size_t i = 0; i < n; i++) x[i] = get_f4(b + 4 * i);
    else
        for (size_t i = 0; i < n; i++) x[i] = (float)get_f8(b + 8 * i);
    *out = x;
    *rows = (int)r;
    *cols = (int)c;

done:
    free(data);
    return st;
}

ms_status ms_npy_write_to(ms_outfile *o, const float *x, int rows, int cols) {
    MS_CHECK(o && o->f && x && rows > 0 && cols > 0);
    /* Header: the dict, padded with spaces and ended by '\n' so that magic (6) + version (2)
     * + length (2) + header is a multiple of 64 bytes. */
    char dict[128];
    int dn = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }",
                      rows, cols);
    size_t total = ((size_t)10 + (size_t)dn + 1 + 63) / 64 * 64;
    size_t hlen = total - 10;
    MS_CHECK(hlen <= 65535);
    size_t n = (size_t)rows * (size_t)cols;
    size_t bytes = total + 4 * n;
    unsigned char *buf = ms_xmalloc(bytes);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)dn);
    memset(buf + 10 + dn, ' ', hlen - (size_t)dn - 1);
    buf[total - 1] = '\n';
    unsigned char *b = buf + total;
    for (size_t i = 0; i < n; i++) {
        uint32_t v;
        memcpy(&v, &x[i], 4);
        for (int k = 0; k < 4; k++) b[4 * i + (size_t)k] = (unsigned char)(v >> (8 * k));
    }
    ms_status st = MS_OK;
    if (fwrite(buf, 1, bytes, o->f) != bytes)
        st = ms_fail(MS_ERR_IO, "%s: cannot write: %s", o->path ? o->path : "standard output", strerror(errno));
    free(buf);
    return st;
}

ms_status ms_npy_write(const char *path, const float *x, int rows, int cols) {
    MS_CHECK(path && x && rows > 0 && cols > 0);
    ms_outfile o;
    ms_status st = ms_out_open(&o, path);
    if (st) return st;
    st = ms_npy_write_to(&o, x, rows, cols);
    if (st) {
        ms_out_abort(&o);
        return st;
    }
    return ms_out_commit(&o);
}
