/* ms_hdf5.c: dense float matrices in HDF5 files (through the HDF5 C library), and the
 * extension-based dispatch ms_matrix_read.
 *
 * The reader accepts one rank-2 dataset of any floating-point type and returns float32.
 * float32 data is read directly; wider types are read as double and narrowed here, so that
 * a value beyond the float32 range becomes +-inf (and is then caught by the loaders' finite
 * check) instead of being silently clipped by the library's conversion. HDF5's own error
 * stack printing is switched off: every failure is reported as one line naming the file.
 * The writer creates "<path>.tmp.<pid>" in the same directory and renames it into place,
 * so an interrupted write never leaves a partial file under the final name.
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

ms_status ms_hdf5_read(const char *path, const char *dataset, float **out, int *rows, int *cols) {
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

ms_status ms_hdf5_write(const char *path, const char *dataset, const float *x, int rows, int cols) {
    MS_CHECK(path && x && rows > 0 && cols > 0);
    if (!dataset) dataset = "dataset";
    hdf5_quiet();

    size_t tlen = strlen(path) + 32;
    char *tmp = ms_xmalloc(tlen);
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());

    ms_status st = MS_OK;
    hid_t file = H5I_INVALID_HID, space = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) {
        st = ms_fail(MS_ERR_IO, "%s: cannot create (HDF5)", path);
        goto done;
    }
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    space = H5Screate_simple(2, dims, NULL);
    if (space >= 0)
        dset = H5Dcreate2(file, dataset, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                          H5P_DEFAULT);
    if (dset < 0 || H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0) {
        st = ms_fail(MS_ERR_IO, "%s: cannot write dataset '%s'", path, dataset);
        goto done;
    }

done:
    if (dset >= 0 && H5Dclose(dset) < 0 && !st) st = ms_fail(MS_ERR_IO, "%s: cannot write", path);
    if (space >= 0) H5Sclose(space);
    if (file >= 0 && H5Fclose(file) < 0 && !st) st = ms_fail(MS_ERR_IO, "%s: cannot write", path);
    if (!st) {
        /* Make the data durable before the rename publishes it (as ms_out_commit does). */
        int fd = open(tmp, O_RDONLY);
        int bad = fd < 0 || fsync(fd) != 0;
        if (fd >= 0) close(fd);
        if (bad || rename(tmp, path) != 0)
            st = ms_fail(MS_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    if (st) remove(tmp);
    free(tmp);
    return st;
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
