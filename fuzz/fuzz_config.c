/* fuzz_config.c: an encoder folder's config.json (ms_embed_config_read). */
#include <math.h>
#include <stdio.h>

#include "common.h"
#include "medselect/embed.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_setup(256);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write("config.json", data, size);
    ms_embed_config cfg;
    if (ms_embed_config_read(&cfg, fuzz_dir()) == MS_OK) {
        MS_CHECK(cfg.height >= 1 && cfg.width >= 1);
        for (int c = 0; c < 3; c++) MS_CHECK(cfg.std[c] > 0 && isfinite(cfg.mean[c]));
    }
    return 0;
}
