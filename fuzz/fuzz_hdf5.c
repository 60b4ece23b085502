/* fuzz_hdf5.c: HDF5 files through ms_hdf5_read, i.e. the forked child that parses the file
 * with libhdf5 and the parent that receives the matrix: whatever the library does with the
 * file, the caller gets a matrix or one error line. (The child's coverage is not seen by
 * libFuzzer: fuzz_hdf5_inproc fuzzes the parsing itself.) */
#include <stdlib.h>

#include "common.h"
#include "medselect/io.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_setup(256);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fuzz_write("input.hdf5", data, size);
    float *x = NULL;
    int r = 0, c = 0;
    if (ms_matrix_read(p, &x, &r, &c) == MS_OK) {
        MS_CHECK(x && r > 0 && c > 0);
        volatile float last = x[(size_t)r * c - 1];
        (void)last;
    } else {
        MS_CHECK(!x && ms_last_error()[0]);
    }
    free(x);
    return 0;
}
