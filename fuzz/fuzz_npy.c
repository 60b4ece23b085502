/* fuzz_npy.c: NPY files (ms_npy_read through ms_matrix_read's dispatch). */
#include <stdlib.h>

#include "common.h"
#include "medselect/io.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_setup(256);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fuzz_write("input.npy", data, size);
    float *x = NULL;
    int r = 0, c = 0;
    if (ms_matrix_read(p, &x, &r, &c) == MS_OK) {
        MS_CHECK(x && r > 0 && c > 0);
        volatile float last = x[(size_t)r * c - 1]; /* the whole array is ours */
        (void)last;
    } else {
        MS_CHECK(!x && ms_last_error()[0]);
    }
    free(x);
    return 0;
}
