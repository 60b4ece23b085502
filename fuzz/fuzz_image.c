/* fuzz_image.c: PNG and JPEG decoding (ms_image_load) and the preprocessing that follows
 * (ms_preprocess: resize with each filter, centre crop, gray/RGB conversion, normalisation).
 * The first input byte chooses the model's input size, channels and filter; the rest is the
 * image file. The budget is lowered to 16 MB: larger images are refused, not decoded, so an
 * input cannot stall the fuzzer for seconds. */
#include <stdlib.h>

#include "common.h"
#include "medselect/embed.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_setup(16);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t opt = data[0];
    const char *p = fuzz_write("input.img", data + 1, size - 1);
    static ms_image im;
    static ms_arena arena;
    if (ms_image_load(&im, p) != MS_OK) return 0;
    MS_CHECK(im.w >= 1 && im.h >= 1 && (im.c == 1 || im.c == 3) && im.px);
    ms_embed_config cfg = {0};
    cfg.height = 4 + (opt & 7) * 5;
    cfg.width = 4 + ((opt >> 3) & 3) * 7;
    cfg.gray = (opt >> 5) & 1;
    cfg.resample = (ms_resample)((opt >> 6) % 3);
    for (int c = 0; c < 3; c++) cfg.mean[c] = 0.5f, cfg.std[c] = 0.25f;
    int cin = cfg.gray ? 1 : 3;
    float *x = malloc(sizeof(float) * (size_t)cin * cfg.height * cfg.width);
    ms_preprocess(x, &im, &cfg, cin, &arena);
    ms_arena_reset(&arena);
    free(x);
    return 0;
}
