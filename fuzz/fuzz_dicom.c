/* fuzz_dicom.c: DICOM decoding through GDCM (ms_image_load on a file with the DICM magic).
 * The input is everything after the 128-byte preamble and "DICM", which the harness adds,
 * so every mutation reaches the DICOM reader. Built only with DICOM support. */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "medselect/embed.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_setup(16);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *b = calloc(1, 132 + size);
    memcpy(b + 128, "DICM", 4);
    if (size) memcpy(b + 132, data, size);
    const char *p = fuzz_write("input.dcm", b, 132 + size);
    free(b);
    static ms_image im;
    if (ms_image_load(&im, p) == MS_OK) {
        MS_CHECK(im.w >= 1 && im.h >= 1 && (im.c == 1 || im.c == 3) && im.px);
        volatile uint8_t last = im.px[(size_t)im.w * im.h * im.c - 1];
        (void)last;
    }
    return 0;
}
