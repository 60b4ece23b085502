/* ms_hdf5.c: dense float matrices in HDF5 files (through the HDF5 C library), and the
 * extension-based dispatch ms_matrix_read.
 *
 * The reader accepts one rank-2 dataset of any floating-point type and returns float32.
 * float32 data is read directly; wider types are read as double and narrowed here, so that
 * a value beyond the float32 range becomes +-inf (and is then caught by the loaders' finite
 * check) instead of being silently clipped by the library's conversion. HDF5's own error
 * stack printing is switched off: every failure is reported as one line naming the file.
 * The writer builds the file in memory (HDF5's core driver) and writes it through an output
 * of medselect/output.h, so an interrupted write never leaves a partial file.
 */
#define _POSIX_C_SOURCE 200809L
#include "medselect/io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <hdf5.h>

#include "io/ms_io_internal.h"

/* Silences the automatic printing of HDF5's error stack (for this thread in a thread-safe
 * build, globally otherwise); our messages replace it. */
static void hdf5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static const char *class_name(H5T_class_t c) {
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_STRING: return "string";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "variable-length";
    case H5T_ARRAY: return "array";
    default: return "unknown";
    }
}

ms_status ms_hdf5_read_inproc(const char *path, const char *dataset, float **out, int *rows, int *cols) {
    MS_CHECK(path && out && rows && cols);
    *out = NULL;
    *rows = *cols = 0;
    if (!dataset) dataset = "dataset";
    hdf5_quiet();

    /* Tell "missing" from "not HDF5" before handing the file to the library. */
    FILE *probe = fopen(path, "rb");
    if (!probe) return ms_fail(MS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fclose(probe);
    if (H5Fis_hdf5(path) <= 0) return ms_fail(MS_ERR_DATA, "%s: not an HDF5 file", path);

    ms_status st = MS_OK;
    hid_t file = H5I_INVALID_HID, dset = H5I_INVALID_HID, space = H5I_INVALID_HID;
    hid_t type = H5I_INVALID_HID;
    float *x = NULL;
    double *tmp = NULL;

    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        st = ms_fail(MS_ERR_IO, "%s: cannot open as HDF5", path);
        goto done;
    }
    /* H5Lexists fails (rather than returning 0) when an intermediate group is missing. */
    if (H5Lexists(file, dataset, H5P_DEFAULT) <= 0) {
        st = ms_fail(MS_ERR_DATA, "%s: no dataset '%s'", path, dataset);
        goto done;
    }
    dset = H5Dopen2(file, dataset, H5P_DEFAULT);
    if (dset < 0) {
        st = ms_fail(MS_ERR_DATA, "%s: '%s' is not a dataset", path, dataset);
        goto done;
    }
    space = H5Dget_space(dset);
    type = H5Dget_type(dset);
    if (space < 0 || type < 0) {
        st = ms_fail(MS_ERR_IO, "%s: cannot read the shape or type of '%s'", path, dataset);
        goto done;
    }
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims[H5S_MAX_RANK];
    if (rank < 0 || H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        st = ms_fail(MS_ERR_IO, "%s: cannot read the shape of '%s'", path, dataset);
        goto done;
    }
    if (rank != 2) {
        char shape[128] = "";
        size_t used = 0;
        for (int i = 0; i < rank && used < sizeof shape - 24; i++)
            used += (size_t)snprintf(shape + used, sizeof shape - used, "%s%llu", i ? ", " : "",
                                     (unsigned long long)dims[i]);
        st = ms_fail(MS_ERR_DATA, "%s: dataset '%s' has rank %d (shape (%s)), expected 2 (rows, dim)",
                     path, dataset, rank, shape);
        goto done;
    }
    H5T_class_t cls = H5Tget_class(type);
    if (cls != H5T_FLOAT) {
        st = ms_fail(MS_ERR_DATA, "%s: dataset '%s' has %s values, expected float32 or float64",
                     path, dataset, class_name(cls));
        goto done;
    }
    if (dims[0] == 0 || dims[1] == 0) {
        st = ms_fail(MS_ERR_DATA, "%s: dataset '%s' is empty (%llu x %llu)", path, dataset,
                     (unsigned long long)dims[0], (unsigned long long)dims[1]);
        goto done;
    }
    if (dims[0] > INT_MAX || dims[1] > INT_MAX || dims[0] > SIZE_MAX / 8 / dims[1]) {
        st = ms_fail(MS_ERR_DATA, "%s: dataset '%s' is too large (%llu x %llu)", path, dataset,
                     (unsigned long long)dims[0], (unsigned long long)dims[1]);
        goto done;
    }
    size_t n = (size_t)dims[0] * (size_t)dims[1];
    /* HDF5 data may be compressed or sparse (chunks never written read as fill values), so
     * the file's size proves nothing: the declared shape is checked against the budget
     * (float32 result, plus the float64 staging buffer for wider types) */
    {
        char what[128];
        snprintf(what, sizeof what, "dataset '%.40s' (%llu x %llu)", dataset, (unsigned long long)dims[0],
                 (unsigned long long)dims[1]);
        uint64_t per = sizeof(float) + (H5Tget_size(type) <= sizeof(float) ? 0 : sizeof(double));
        if ((st = ms_check_alloc(ms_mul_sat(n, per), what, path))) goto done;
    }
    x = ms_xmalloc(sizeof(float) * n);
    herr_t rc;
    if (H5Tget_size(type) <= sizeof(float)) {
        rc = H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    } else {
        tmp = ms_xmalloc(sizeof(double) * n);
        rc = H5Dread(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp);
        for (size_t i = 0; i < n; i++) x[i] = (float)tmp[i];
    }
    if (rc < 0) {
        st = ms_fail(MS_ERR_IO, "%s: cannot read dataset '%s' (corrupt or truncated file?)", path,
                     dataset);
        goto done;
    }
    *out = x;
    x = NULL;
    *rows = (int)dims[0];
    *cols = (int)dims[1];

done:
    free(x);
    free(tmp);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    if (dset >= 0) H5Dclose(dset);
    if (file >= 0) H5Fclose(file);
    return st;
}

/* ---- the reader behind a process boundary ---------------------------------------------
 * libhdf5 1.10 can crash (SIGSEGV) on small crafted files, and we cannot fix the library.
 * So the file is parsed in a child process (ms_run_contained) that sends the matrix back;
 * a child that dies instead becomes one error line naming the file. */

typedef struct {
    const char *path, *dataset;
} hdf5_job;

static ms_status hdf5_contained(void *ctx, void **out, size_t *bytes, int32_t meta[4]) {
    const hdf5_job *j = ctx;
    float *x = NULL;
    int r = 0, c = 0;
    ms_status st = ms_hdf5_read_inproc(j->path, j->dataset, &x, &r, &c);
    if (st) return st;
    *out = x;
    *bytes = sizeof(float) * (size_t)r * (size_t)c;
    meta[0] = r;
    meta[1] = c;
    return MS_OK;
}

ms_status ms_hdf5_read(const char *path, const char *dataset, float **out, int *rows, int *cols) {
    MS_CHECK(path && out && rows && cols);
    *out = NULL;
    *rows = *cols = 0;
    FILE *probe = fopen(path, "rb");
    if (!probe) return ms_fail(MS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fclose(probe);
    /* the library is initialised here, once, so that each child inherits it ready */
    H5open();
    hdf5_quiet();
    hdf5_job j = {path, dataset};
    void *x = NULL;
    size_t bytes = 0;
    int32_t meta[4];
    ms_status st = ms_run_contained(path, "HDF5", hdf5_contained, &j, &x, &bytes, meta);
    if (st) return st;
    if (meta[0] < 1 || meta[1] < 1 || bytes != sizeof(float) * (size_t)meta[0] * (size_t)meta[1]) {
        free(x);
        return ms_fail(MS_ERR_DATA, "%s: corrupt HDF5 file (inconsistent result)", path);
    }
    *out = x;
    *rows = meta[0];
    *cols = meta[1];
    return MS_OK;
}

ms_status ms_hdf5_write_to(ms_outfile *o, const char *dataset, const float *x, int rows, int cols) {
    MS_CHECK(o && o->f && x && rows > 0 && cols > 0);
    if (!dataset) dataset = "dataset";
    const char *path = o->path ? o->path : "standard output";
    hdf5_quiet();
    /* HDF5 writes by file name; its core driver builds the file in memory instead (no
     * backing store), and the image then goes through the output like any other bytes, so
     * HDF5 files get the same no-partial-file guarantee as every other output. */
    ms_status st = MS_OK;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    hid_t file = H5I_INVALID_HID, space = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    hid_t dcpl = H5I_INVALID_HID;
    size_t bytes = (size_t)rows * (size_t)cols * sizeof(float);
    if (fapl < 0 || H5Pset_fapl_core(fapl, bytes / 8 + 65536, 0) < 0) {
        st = ms_fail(MS_ERR_IO, "%s: cannot create (HDF5)", path);
        goto done;
    }
    file = H5Fcreate("medselect-output.hdf5", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (file < 0) {
        st = ms_fail(MS_ERR_IO, "%s: cannot create (HDF5)", path);
        goto done;
    }
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    space = H5Screate_simple(2, dims, NULL);
    /* no modification times in the object header: the same data gives the same bytes */
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (space >= 0 && dcpl >= 0 && H5Pset_obj_track_times(dcpl, 0) >= 0)
        dset = H5Dcreate2(file, dataset, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dset < 0 || H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0) {
        st = ms_fail(MS_ERR_IO, "%s: cannot write dataset '%s'", path, dataset);
        goto done;
    }
    H5Dclose(dset);
    dset = H5I_INVALID_HID;
    if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) {
        st = ms_fail(MS_ERR_IO, "%s: cannot write (HDF5)", path);
        goto done;
    }
    ssize_t n = H5Fget_file_image(file, NULL, 0);
    if (n <= 0) {
        st = ms_fail(MS_ERR_IO, "%s: cannot write (HDF5 file image)", path);
        goto done;
    }
    void *img = ms_xmalloc((size_t)n);
    if (H5Fget_file_image(file, img, (size_t)n) != n)
        st = ms_fail(MS_ERR_IO, "%s: cannot write (HDF5 file image)", path);
    else if (fwrite(img, 1, (size_t)n, o->f) != (size_t)n)
        st = ms_fail(MS_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    free(img);

done:
    if (dset >= 0) H5Dclose(dset);
    if (space >= 0) H5Sclose(space);
    if (file >= 0) H5Fclose(file);
    if (fapl >= 0) H5Pclose(fapl);
    if (dcpl >= 0) H5Pclose(dcpl);
    return st;
}

ms_status ms_hdf5_write(const char *path, const char *dataset, const float *x, int rows, int cols) {
    MS_CHECK(path && x && rows > 0 && cols > 0);
    ms_outfile o;
    ms_status st = ms_out_open(&o, path);
    if (st) return st;
    st = ms_hdf5_write_to(&o, dataset, x, rows, cols);
    if (st) {
        ms_out_abort(&o);
        return st;
    }
    return ms_out_commit(&o);
}

/* ---- dispatch by extension ----------------------------------------------------------- */

int ms_has_ext(const char *path, const char *ext) {
    size_t n = strlen(path), m = strlen(ext);
    return n >= m && strcasecmp(path + n - m, ext) == 0;
}

ms_status ms_matrix_read(const char *path, float **out, int *rows, int *cols) {
    MS_CHECK(path && out && rows && cols);
    if (ms_has_ext(path, ".hdf5") || ms_has_ext(path, ".h5") || ms_has_ext(path, ".he5"))
        return ms_hdf5_read(path, NULL, out, rows, cols);
    if (ms_has_ext(path, ".npy")) return ms_npy_read(path, out, rows, cols);
    *out = NULL;
    *rows = *cols = 0;
    return ms_fail(MS_ERR_ARG, "%s: unknown matrix file type (expected .hdf5, .h5, .he5 or .npy)",
                   path);
}
