/* fuzz_hdf5_inproc.c: HDF5 parsing in this process (ms_hdf5_read_inproc, libhdf5 itself).
 * It finds crashes inside libhdf5 1.10 that we cannot fix; ms_hdf5_read contains them in a
 * child process. Run only when named: fuzz/run.sh 60 hdf5_inproc. */
#include <stdlib.h>

#include "common.h"
#include "io/ms_io_internal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_setup(256);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fuzz_write("input.hdf5", data, size);
    float *x = NULL;
    int r = 0, c = 0;
    if (ms_hdf5_read_inproc(p, NULL, &x, &r, &c) == MS_OK) {
        MS_CHECK(x && r > 0 && c > 0);
        volatile float last = x[(size_t)r * c - 1];
        (void)last;
    }
    free(x);
    return 0;
}
