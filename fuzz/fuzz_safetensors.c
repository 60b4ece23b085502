/* fuzz_safetensors.c: safetensors bytes (ms_st_parse from memory, every tensor converted),
 * then the same file as a selector checkpoint (ms_checkpoint_load: shapes, dtypes, finite
 * values, metadata). */
#include <stdlib.h>

#include "common.h"
#include "medselect/checkpoint.h"
#include "medselect/safetensors.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_setup(256);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ms_st_file f;
    if (ms_st_parse(&f, data, size, "input.safetensors") == MS_OK) {
        for (int i = 0; i < f.n; i++) {
            const ms_st_tensor *t = &f.tensors[i];
            MS_CHECK(t->end <= f.size && t->numel * ms_st_dtype_size(t->dtype) == t->end - t->begin);
            double *v = malloc(sizeof(double) * (t->numel ? t->numel : 1));
            ms_st_to_f64(&f, t, v);
            free(v);
        }
        for (int i = 0; i < f.n_meta; i++) MS_CHECK(ms_st_meta(&f, f.meta_key[i]) != NULL);
        ms_st_free(&f);
    }
    const char *p = fuzz_write("input.safetensors", data, size);
    ms_lstm_params prm;
    ms_selector_meta meta;
    if (ms_checkpoint_load(p, &prm, &meta) == MS_OK) {
        MS_CHECK(prm.D > 0 && prm.H > 0);
        ms_lstm_params_free(&prm);
        ms_selector_meta_free(&meta);
    }
    return 0;
}
