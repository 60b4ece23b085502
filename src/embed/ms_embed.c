/* ms_embed.c: a list of image files to embeddings. Batches of files are decoded and
 * preprocessed in parallel (one reusable image and scratch arena per thread), then run
 * through the network; the workspace, input batch and per-thread buffers are allocated
 * once before the first batch.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#include "embed/ms_embed_internal.h"

ms_embed_opts ms_embed_opts_default(void) {
    ms_embed_opts o;
    o.batch = 32;
    o.threads = 0;
    o.on_error = MS_ON_ERROR_FAIL;
    o.progress = NULL;
    return o;
}

ms_status ms_embed_files(const ms_resnet *net, const char *const *paths, int n, const ms_embed_opts *opts,
                         float *out, char **errors, int *n_failed) {
    MS_CHECK(n >= 0 && opts->batch >= 1);
    const ms_embed_config *cfg = &net->cfg;
    const int cin = ms_resnet_input_channels(net), dim = net->dim;
    const int B = opts->batch < n ? opts->batch : (n > 0 ? n : 1);
    const int T = opts->threads > 0 ? opts->threads : ms_get_threads();
    const size_t in_img = (size_t)cin * cfg->height * cfg->width;
    for (int i = 0; i < n; i++) errors[i] = NULL;
    if (n_failed) *n_failed = 0;
    if (n == 0) return MS_OK;

    {
        /* the whole working set (per-thread workspaces at one image each, the input batch)
         * within the size budget; ms_resnet_load checked one image against it already */
        size_t act1, col1;
        ms_resnet_ws_sizes(net, 1, cfg->height, cfg->width, &act1, &col1);
        uint64_t bytes = ((uint64_t)T * (4 * act1 + col1) + (uint64_t)in_img * B) * sizeof(float);
        ms_status s0 = ms_check_alloc(bytes, "the embedding workspace (input_size x batch x threads; lower --batch or --threads)",
                                      "encoder");
        if (s0) return s0;
    }
    ms_resnet_ws *ws = ms_resnet_ws_new(net, B, cfg->height, cfg->width, T);
    float *x = ms_xmalloc(sizeof(float) * in_img * (size_t)B);
    ms_status *st = ms_xmalloc(sizeof(ms_status) * (size_t)B);
    ms_image *img = ms_xmalloc(sizeof(ms_image) * (size_t)T);
    ms_arena *arena = ms_xmalloc(sizeof(ms_arena) * (size_t)T);
    for (int t = 0; t < T; t++) {
        ms_image_init(&img[t]);
        ms_arena_init(&arena[t]);
    }
    ms_progress prog;
    if (opts->progress) ms_progress_begin(&prog, opts->progress, n);

    ms_status result = MS_OK;
    int failed = 0;
    for (int start = 0; start < n && result == MS_OK; start += B) {
        const int nb = n - start < B ? n - start : B;
#pragma omp parallel for num_threads(T) schedule(dynamic, 1)
        for (int i = 0; i < nb; i++) {
            int t = omp_get_thread_num();
            float *xi = x + (size_t)i * in_img;
            st[i] = ms_image_load(&img[t], paths[start + i]);
            if (st[i]) {
                errors[start + i] = ms_xstrdup(ms_last_error()); /* this thread's message */
                memset(xi, 0, sizeof(float) * in_img);
            } else {
                ms_preprocess(xi, &img[t], cfg, cin, &arena[t]);
                ms_arena_reset(&arena[t]);
            }
        }
        for (int i = 0; i < nb; i++) {
            if (!st[i]) continue;
            failed++;
            if (opts->on_error == MS_ON_ERROR_FAIL && result == MS_OK)
                result = ms_fail(st[i], "%s", errors[start + i]);
        }
        if (result) break;
        ms_resnet_forward(net, ws, x, cin, nb, out + (size_t)start * dim);
        for (int i = 0; i < nb; i++)
            if (st[i])
                for (int j = 0; j < dim; j++) out[(size_t)(start + i) * dim + j] = NAN;
        if (opts->progress) ms_progress_add(&prog, nb);
    }
    if (opts->progress) ms_progress_end(&prog);
    if (n_failed) *n_failed = failed;
    for (int t = 0; t < T; t++) {
        ms_image_free(&img[t]);
        ms_arena_free(&arena[t]);
    }
    free(img);
    free(arena);
    free(st);
    free(x);
    ms_resnet_ws_free(ws);
    return result;
}
