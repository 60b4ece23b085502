/* cmd_embed.c: `medselect embed`: embed the images listed in a CSV with a ResNet-18 encoder
 * and write the reference layout (OUT.csv with the input rows + OUT.hdf5 dataset "dataset",
 * or OUT.npy) that evaluate, select and train read directly. Nothing is written unless every
 * step succeeds: all outputs are written completely (medselect/output.h), then published,
 * the CSV last. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/cli.h"
#include "medselect/embed.h"
#include "medselect/io.h"
#include "medselect/output.h"

static void help(void) {
    printf("Usage: medselect embed --model MODEL_DIR --images LIST.csv --out OUT.csv [OPTIONS]\n\n"
           "Computes one embedding per image listed in LIST.csv with a ResNet-18 encoder (the\n"
           "global-average-pooled layer4 output, torchvision's resnet18 with fc removed, in eval\n"
           "mode) and writes the reference layout: OUT.csv holds the input rows in the same order,\n"
           "OUT.hdf5 (same base name) holds dataset \"dataset\", float32 (rows, 512), row i the\n"
           "embedding of CSV row i.\n\n"
           "Input:\n"
           "      --model DIR          encoder folder: model.safetensors (torchvision resnet18\n"
           "                           state_dict names, F32) + config.json (input_size,\n"
           "                           normalization mean/std, channels gray|rgb, resample).\n"
           "                           tools/convert_checkpoint.py makes one from a .pth\n"
           "      --images LIST.csv    CSV with a Path column (any other columns are copied)\n"
           "      --root DIR           relative paths are relative to DIR (default: the\n"
           "                           directory of LIST.csv); absolute paths are used as is\n"
           "Images: PNG (1-16 bit gray, gray+alpha, RGB, RGBA, palette; alpha ignored, 16-bit\n"
           "scaled to 8 bits), JPEG (gray, YCbCr), DICOM when built with DICOM support. Images\n"
           "of another size than the model's input: shorter side resized with the config's\n"
           "filter (default PIL-compatible antialiased Lanczos), centre crop; RGB -> gray as\n"
           "PIL's convert('L') for gray models; x = (u8/255 - mean) / std.\n\n"
           "Output:\n"
           "      --out OUT.csv        output CSV; embeddings go next to it with the same base\n"
           "                           name (OUT.hdf5, or OUT.npy with --format npy); missing\n"
           "                           folders are created; the embeddings are put in place\n"
           "                           before OUT.csv; one embed per OUT.csv at a time\n"
           "      --format FMT         hdf5 (default) or npy\n"
           "      --on-error MODE      fail (default): the first unreadable image stops the run,\n"
           "                           exit 2, nothing written. skip: its row is left out of\n"
           "                           OUT.csv and the embeddings (which stay row-aligned) and\n"
           "                           listed in OUT.skipped.csv (Row = 1-based data row of\n"
           "                           LIST.csv, Path, Error); a summary goes to stderr\n\n"
           "Speed:\n"
           "      --batch N            images per forward pass (default 32); at f32 each\n"
           "                           thread takes micro-batches of up to 16 images, so N\n"
           "                           >= 16 x threads keeps every thread busy\n"
           "      --threads T          threads (default: all cores)\n"
           "      --precision P        f32 (default) or bf16 convolutions (bf16 operands, fp32\n"
           "                           accumulation; needs AVX512_BF16)\n"
           "  -h, --help               this help\n\n"
           "A progress bar is drawn on stderr when it is a terminal (MS_PROGRESS=0/1 to force).\n"
           "Exit codes: 0 success, 1 usage error, 2 unreadable model, list or image, or a write\n"
           "failure (one line naming the file).\n\n"
           "Example:\n"
           "  medselect embed --model models/cxr-simclr-resnet18-64 \\\n"
           "      --images data/nih1000/labels.csv --out nih1000_emb.csv --threads 2\n");
}

enum { OPT_MODEL = 256, OPT_IMAGES, OPT_ROOT, OPT_OUT, OPT_FORMAT, OPT_ON_ERROR, OPT_BATCH, OPT_THREADS,
       OPT_PRECISION };

static char *join(const char *dir, const char *rel) {
    if (rel[0] == '/') return ms_xstrdup(rel);
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *p = ms_xmalloc(n);
    snprintf(p, n, "%s/%s", dir, rel);
    return p;
}

/* OUT.csv -> "OUT" + ext; a name without ".csv" keeps its full name as the base */
static char *with_ext(const char *out, const char *ext) {
    size_t n = strlen(out);
    const char *slash = strrchr(out, '/');
    const char *dot = strrchr(out, '.');
    if (dot && (!slash || dot > slash) && !strcasecmp(dot, ".csv")) n = (size_t)(dot - out);
    char *p = ms_xmalloc(n + strlen(ext) + 1);
    memcpy(p, out, n);
    strcpy(p + n, ext);
    return p;
}

static void write_row(FILE *f, const ms_csv *c, int r) {
    for (int j = 0; j < c->n_cols; j++) {
        if (j) fputc(',', f);
        ms_csv_put(f, r < 0 ? c->header[j] : c->cell[(size_t)r * c->n_cols + j]);
    }
    fputc('\n', f);
}

int ms_cmd_embed(int argc, char **argv) {
    const char *cmd = "embed";
    const char *model = NULL, *images = NULL, *root = NULL, *out = NULL;
    int npy = 0;
    ms_on_error on_error = MS_ON_ERROR_FAIL;
    long batch = 32, threads = 0;
    static const struct option opts[] = {{"model", required_argument, 0, OPT_MODEL},
                                         {"images", required_argument, 0, OPT_IMAGES},
                                         {"root", required_argument, 0, OPT_ROOT},
                                         {"out", required_argument, 0, OPT_OUT},
                                         {"format", required_argument, 0, OPT_FORMAT},
                                         {"on-error", required_argument, 0, OPT_ON_ERROR},
                                         {"batch", required_argument, 0, OPT_BATCH},
                                         {"threads", required_argument, 0, OPT_THREADS},
                                         {"precision", required_argument, 0, OPT_PRECISION},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_MODEL: model = optarg; break;
        case OPT_IMAGES: images = optarg; break;
        case OPT_ROOT: root = optarg; break;
        case OPT_OUT: out = optarg; break;
        case OPT_FORMAT:
            if (!strcmp(optarg, "hdf5")) npy = 0;
            else if (!strcmp(optarg, "npy")) npy = 1;
            else return ms_cli_usage_error(cmd, "--format: '%s' is not hdf5 or npy", optarg);
            break;
        case OPT_ON_ERROR:
            if (!strcmp(optarg, "fail")) on_error = MS_ON_ERROR_FAIL;
            else if (!strcmp(optarg, "skip")) on_error = MS_ON_ERROR_SKIP;
            else return ms_cli_usage_error(cmd, "--on-error: '%s' is not skip or fail", optarg);
            break;
        case OPT_BATCH:
            if (ms_cli_int(cmd, "--batch", optarg, 1, 4096, &batch)) return MS_EXIT_USAGE;
            break;
        case OPT_THREADS:
            if (ms_cli_int(cmd, "--threads", optarg, 1, 1024, &threads)) return MS_EXIT_USAGE;
            break;
        case OPT_PRECISION:
            if (ms_cli_precision(cmd, optarg)) return MS_EXIT_USAGE;
            break;
        case 'h': help(); return MS_EXIT_OK;
        default: return ms_cli_bad_option(cmd, opt, argv);
        }
    }
    if (optind < argc) return ms_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!model) return ms_cli_usage_error(cmd, "--model is required");
    if (!images) return ms_cli_usage_error(cmd, "--images is required");
    if (!out) return ms_cli_usage_error(cmd, "--out is required");
    if (!strcmp(out, "-")) return ms_cli_usage_error(cmd, "--out must be a file name");
    ms_set_threads((int)threads);

    ms_csv csv;
    memset(&csv, 0, sizeof csv);
    ms_resnet *net = NULL;
    ms_status st = ms_csv_read(&csv, images);
    if (st) return ms_cli_fail(cmd, st);
    int pcol = ms_csv_col(&csv, "Path");
    if (pcol < 0) {
        ms_csv_free(&csv);
        return ms_cli_fail(cmd, ms_fail(MS_ERR_DATA, "%s: no Path column", images));
    }
    if (csv.n_rows == 0) {
        ms_csv_free(&csv);
        return ms_cli_fail(cmd, ms_fail(MS_ERR_DATA, "%s: no image rows", images));
    }
    if ((st = ms_resnet_load(&net, model))) {
        ms_csv_free(&csv);
        return ms_cli_fail(cmd, st);
    }
    const int n = csv.n_rows, dim = ms_resnet_dim(net);
    char *base = root ? ms_xstrdup(root) : ms_path_dir(images);
    char **paths = ms_xmalloc(sizeof(char *) * (size_t)n);
    for (int i = 0; i < n; i++) paths[i] = join(base, csv.cell[(size_t)i * csv.n_cols + pcol]);
    float *emb = ms_xmalloc(sizeof(float) * (size_t)n * dim);
    char **errors = ms_xcalloc((size_t)n, sizeof(char *));
    ms_embed_opts eo = ms_embed_opts_default();
    eo.batch = (int)batch;
    eo.threads = ms_get_threads();
    eo.on_error = on_error;
    eo.progress = "embed";
    int n_failed = 0, rc = MS_EXIT_OK;
    /* one run per output: a second embed into the same OUT.csv is refused, not interleaved */
    ms_lock lock;
    st = ms_lock_acquire(&lock, out, MS_LOCK_FILE);
    double t0 = ms_now();
    if (!st) st = ms_embed_files(net, (const char *const *)paths, n, &eo, emb, errors, &n_failed);
    double secs = ms_now() - t0;
    char *emb_path = with_ext(out, npy ? ".npy" : ".hdf5");
    char *skip_path = with_ext(out, ".skipped.csv");
    ms_outfile oc, os, oe;
    memset(&oc, 0, sizeof oc);
    memset(&os, 0, sizeof os);
    memset(&oe, 0, sizeof oe);
    if (st) rc = ms_cli_fail(cmd, st);
    if (!rc && n_failed == n) rc = ms_cli_fail(cmd, ms_fail(MS_ERR_DATA, "%s: none of the %d images could be read; first: %s",
                                                           images, n, errors[0]));
    if (!rc) {
        /* compact the embedded rows (skip mode) so that CSV row i <-> embedding row i */
        int k = 0;
        for (int i = 0; i < n; i++)
            if (!errors[i]) {
                if (k != i) memmove(emb + (size_t)k * dim, emb + (size_t)i * dim, sizeof(float) * (size_t)dim);
                k++;
            }
        /* everything is written completely before anything is published; the CSV, which
         * readers open first, is published last */
        ms_outfile *all[3] = {&oe, &os, &oc};
        st = ms_out_open(&oe, emb_path);
        if (!st) {
            st = npy ? ms_npy_write_to(&oe, emb, k, dim) : ms_hdf5_write_to(&oe, NULL, emb, k, dim);
        }
        if (!st && n_failed) {
            st = ms_out_open(&os, skip_path);
            if (!st) {
                fprintf(os.f, "Row,Path,Error\n");
                for (int i = 0; i < n; i++)
                    if (errors[i]) {
                        fprintf(os.f, "%d,", i + 1);
                        ms_csv_put(os.f, csv.cell[(size_t)i * csv.n_cols + pcol]);
                        fputc(',', os.f);
                        ms_csv_put(os.f, errors[i]);
                        fputc('\n', os.f);
                    }
            }
        }
        if (!st) st = ms_out_open(&oc, out);
        if (!st) {
            write_row(oc.f, &csv, -1);
            for (int i = 0; i < n; i++)
                if (!errors[i]) write_row(oc.f, &csv, i);
        }
        if (!st) {
            if (!n_failed) all[1] = &oc; /* no skip report: embeddings, then the CSV */
            st = ms_out_commit_all(all, n_failed ? 3 : 2);
        }
        if (st) {
            rc = ms_cli_fail(cmd, st);
            ms_out_abort(&oc);
            ms_out_abort(&os);
            ms_out_abort(&oe);
        } else {
            if (!n_failed) remove(skip_path); /* a report from an earlier run would mislead */
            fprintf(stderr, "medselect embed: %d images in %.1f s (%.1f images/s) -> %s, %s\n", k, secs, n / secs, out,
                    emb_path);
            if (n_failed)
                fprintf(stderr, "medselect embed: skipped %d of %d images (listed in %s)\n", n_failed, n, skip_path);
        }
    }
    ms_lock_release(&lock);
    for (int i = 0; i < n; i++) {
        free(paths[i]);
        free(errors[i]);
    }
    free(emb_path);
    free(skip_path);
    free(paths);
    free(errors);
    free(emb);
    free(base);
    ms_resnet_free(net);
    ms_csv_free(&csv);
    return rc;
}
