/* ms_csv.c: an RFC 4180 CSV reader and a field writer.
 *
 * The reader takes the whole text in one pass: fields separated by commas, records by LF,
 * CRLF or a lone CR; a field that starts with a double quote runs to the matching closing
 * quote and may hold commas, line breaks and doubled quotes (""), which stand for one quote.
 * A UTF-8 byte-order mark at the start is skipped, blank lines are skipped (a blank line
 * between records is an editor artefact, not a record of one empty field), and every record
 * must have as many fields as the header. Errors name the file and the physical line on which
 * the offending record starts.
 *
 * Ownership: all field strings of one ms_csv live in a single allocation (the unquoted text,
 * NUL-terminated in place) that starts at header[0]; header and cell are arrays of pointers
 * into it. ms_csv_free releases the three allocations and the path.
 */
#define _POSIX_C_SOURCE 200809L
#include "medselect/io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>

#include "io/ms_io_internal.h"

/* Growable array of field start pointers (into the string buffer) for the whole file. */
typedef struct {
    char **v;
    size_t n, cap;
} fieldvec;

static void fieldvec_push(fieldvec *f, char *s) {
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 256;
        f->v = ms_xrealloc(f->v, sizeof(char *) * f->cap);
    }
    f->v[f->n++] = s;
}

ms_status ms_csv_parse(ms_csv *c, const char *text, size_t len, const char *name) {
    MS_CHECK(c && (text || len == 0));
    memset(c, 0, sizeof *c);
    if (!name) name = "(csv text)";

    const char *p = text, *end = text + len;
    if (len >= 3 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
        (unsigned char)p[2] == 0xBF)
        p += 3;

    /* Output buffer: every field's unquoted text is no longer than its input span, and its
     * terminating NUL takes the place of the delimiter after it; only the last field of a
     * file without a final newline lacks a delimiter, hence the +1. */
    char *buf = ms_xmalloc(len + 1);
    char *out = buf;
    fieldvec fv = {0};
    int n_cols = -1;  /* fields per record, set by the header */
    long n_rec = 0;   /* records stored (header included) */
    long line = 1;    /* physical line the parser is on */
    ms_status st = MS_OK;

    while (p < end) {
        /* Skip blank lines between records. */
        if (*p == '\n' || *p == '\r') {
            if (*p == '\r' && p + 1 < end && p[1] == '\n') p++;
            p++;
            line++;
            continue;
        }
        long rec_line = line;
        size_t rec_first = fv.n;
        /* One record: fields until an unquoted line break or the end of the text. */
        for (;;) {
            char *field = out;
            if (p < end && *p == '"') {
                long quote_line = line;
                p++;
                for (;;) {
                    if (p == end) {
                        st = ms_fail(MS_ERR_DATA, "%s: line %ld: quoted field never closed", name,
                                     quote_line);
                        goto fail;
                    }
                    if (*p == '"') {
                        if (p + 1 < end && p[1] == '"') { /* "" stands for one quote */
                            *out++ = '"';
                            p += 2;
                            continue;
                        }
                        p++;
                        break;
                    }
                    if (*p == '\n' || (*p == '\r' && !(p + 1 < end && p[1] == '\n'))) line++;
                    if (*p == '\0') goto nul_byte;
                    *out++ = *p++;
                }
                if (p < end && *p != ',' && *p != '\n' && *p != '\r') {
                    st = ms_fail(MS_ERR_DATA, "%s: line %ld: unexpected text after a closing quote",
                                 name, line);
                    goto fail;
                }
            } else {
                /* Unquoted: a stray quote inside is kept literally (lenient, as most readers). */
                while (p < end && *p != ',' && *p != '\n' && *p != '\r') {
                    if (*p == '\0') goto nul_byte;
                    *out++ = *p++;
                }
            }
            *out++ = '\0';
            fieldvec_push(&fv, field);
            if (p < end && *p == ',') {
                p++;
                continue;
            }
            /* End of record: consume the line break (CRLF, LF or CR). */
            if (p < end) {
                if (*p == '\r' && p + 1 < end && p[1] == '\n') p++;
                p++;
                line++;
            }
            break;
        }
        int nf = (int)(fv.n - rec_first);
        if (n_cols < 0) {
            n_cols = nf;
        } else if (nf != n_cols) {
            st = ms_fail(MS_ERR_DATA, "%s: line %ld has %d fields, the header has %d", name,
                         rec_line, nf, n_cols);
            goto fail;
        }
        n_rec++;
        if (n_rec > (long)INT32_MAX / 2) {
            st = ms_fail(MS_ERR_DATA, "%s: too many records", name);
            goto fail;
        }
    }
    if (n_rec == 0) {
        st = ms_fail(MS_ERR_DATA, "%s: empty file (no header line)", name);
        goto fail;
    }

    c->n_cols = n_cols;
    c->n_rows = (int)(n_rec - 1);
    /* fv.v holds n_rec * n_cols pointers in file order: the header, then the rows. */
    c->header = ms_xmalloc(sizeof(char *) * (size_t)n_cols);
    memcpy(c->header, fv.v, sizeof(char *) * (size_t)n_cols);
    size_t n_cells = (size_t)c->n_rows * (size_t)n_cols;
    c->cell = ms_xmalloc(sizeof(char *) * (n_cells ? n_cells : 1));
    if (n_cells) memcpy(c->cell, fv.v + n_cols, sizeof(char *) * n_cells);
    c->path = ms_xstrdup(name);
    free(fv.v);
    MS_CHECK(c->header[0] == buf); /* ms_csv_free relies on it */
    return MS_OK;

nul_byte:
    st = ms_fail(MS_ERR_DATA, "%s: line %ld: NUL byte (a binary file, not a CSV?)", name, line);
fail:
    free(fv.v);
    free(buf);
    memset(c, 0, sizeof *c);
    return st;
}

ms_status ms_csv_read(ms_csv *c, const char *path) {
    MS_CHECK(c && path);
    memset(c, 0, sizeof *c);
    size_t len;
    char *text;
    ms_status st = ms_read_whole_file(path, &text, &len);
    if (st) return st;
    st = ms_csv_parse(c, text, len, path);
    free(text);
    return st;
}

int ms_csv_col(const ms_csv *c, const char *name) {
    for (int j = 0; j < c->n_cols; j++)
        if (strcasecmp(c->header[j], name) == 0) return j;
    return -1;
}

void ms_csv_free(ms_csv *c) {
    if (!c) return;
    if (c->header) free(c->header[0]); /* the string buffer, see the file comment */
    free(c->header);
    free(c->cell);
    free(c->path);
    memset(c, 0, sizeof *c);
}

void ms_csv_put(FILE *f, const char *field) {
    size_t n = strlen(field);
    int quote = n > 0 && (field[0] == ' ' || field[0] == '\t' || field[n - 1] == ' ' ||
                          field[n - 1] == '\t');
    quote |= strpbrk(field, ",\"\r\n") != NULL;
    if (!quote) {
        fputs(field, f);
        return;
    }
    fputc('"', f);
    for (const char *s = field; *s; s++) {
        if (*s == '"') fputc('"', f); /* a quote is written twice */
        fputc(*s, f);
    }
    fputc('"', f);
}

/* ---- shared by the io files ---------------------------------------------------------- */

ms_status ms_read_whole_file(const char *path, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ms_fail(MS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    /* A regular file's size is known: checked against the budget and read into one buffer
     * of that size. Pipes and devices grow the buffer, checked at each doubling. */
    struct stat sb;
    size_t cap = 1 << 16, n = 0;
    int known = fstat(fileno(f), &sb) == 0;
    if (known && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return ms_fail(MS_ERR_IO, "%s: cannot read: %s", path, strerror(EISDIR));
    }
    if (known && S_ISREG(sb.st_mode)) {
        ms_status st = ms_check_alloc((uint64_t)sb.st_size + 1, "reading the file", path);
        if (st) {
            fclose(f);
            return st;
        }
        cap = (size_t)sb.st_size + 1; /* +1: the read that finds the end */
    }
    char *buf = ms_xmalloc(cap + 1);
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        ms_status st = ms_check_alloc((uint64_t)cap * 2 + 1, "reading the file", path);
        if (st) {
            free(buf);
            fclose(f);
            return st;
        }
        cap *= 2;
        buf = ms_xrealloc(buf, cap + 1);
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (err) {
        free(buf);
        return ms_fail(MS_ERR_IO, "%s: cannot read: %s", path, strerror(err));
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return MS_OK;
}
