/* fuzz_weights.c: an encoder's model.safetensors (ms_resnet_load: the ResNet-18 tensor set,
 * shapes implied by conv1's width, F32, finite, batch-norm folding), with a fixed small
 * config.json; a loaded network embeds one image. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "medselect/embed.h"

static const char config[] =
    "{\"input_size\": [16, 12], \"channels\": \"gray\", \"normalization\": {\"mean\": [0.5], \"std\": [0.25]}}";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_setup(256);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write("config.json", config, strlen(config));
    fuzz_write("model.safetensors", data, size);
    ms_resnet *net = NULL;
    if (ms_resnet_load(&net, fuzz_dir()) != MS_OK) return 0;
    int cin = ms_resnet_input_channels(net), dim = ms_resnet_dim(net);
    if (dim <= 64) {
        ms_resnet_ws *ws = ms_resnet_ws_new(net, 1, 16, 12, 1);
        float *x = calloc((size_t)cin * 16 * 12, sizeof(float)), *out = malloc(sizeof(float) * (size_t)dim);
        ms_resnet_forward(net, ws, x, cin, 1, out);
        free(x);
        free(out);
        ms_resnet_ws_free(ws);
    }
    ms_resnet_free(net);
    return 0;
}
