/* ms_io_internal.h: helpers shared by the io source files. Not part of the public API. */
#ifndef MS_IO_INTERNAL_H
#define MS_IO_INTERNAL_H

#include "medselect/io.h"

/* Reads a whole file into a newly allocated, NUL-terminated buffer (*len excludes the NUL).
 * The caller frees *data. MS_ERR_IO naming the path when it cannot be opened or read. */
ms_status ms_read_whole_file(const char *path, char **data, size_t *len);

/* 1 when `path` ends with `ext` (".npy"), compared case-insensitively. */
int ms_has_ext(const char *path, const char *ext);

/* ms_hdf5_read without the child process: parses the file with libhdf5 in this process.
 * For the in-process fuzz harness (which looks for libhdf5 crashes) and the child itself. */
ms_status ms_hdf5_read_inproc(const char *path, const char *dataset, float **out, int *rows, int *cols);

#endif
