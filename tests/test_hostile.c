/* test_hostile.c: hostile input. Every case builds its file here, at run time, from the
 * reproducer that once broke the program (nothing large is committed), and expects a clean
 * refusal: the right status or exit code, one line naming the file and the problem, nothing
 * allocated beyond what the file holds or the size budget allows, nothing printed raw.
 *
 * Cases: an NPY of rank 8 with 19-digit dimensions (a stack overflow building the message);
 * tiny files declaring huge sizes (HDF5 1e9 x 512, a lone checkpoint tensor implying
 * H = 2^16, encoder weights whose conv1 implies a 4096-wide network, config.json input_size
 * [16384, 16384], a 65500 x 65500 progressive JPEG); the size budget and MS_MAX_ALLOC_MB;
 * 200,000 safetensors entries (quadratic duplicate check); NaN/Inf selector weights; the
 * CLI's messages (D mismatch, unknown option, unknown condition, escaped and shortened file
 * names). At the end, the peak RSS of every CLI run on these files is checked.
 */
#define _POSIX_C_SOURCE 200809L
#include <hdf5.h>
#include <jpeglib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "medselect/checkpoint.h"
#include "medselect/embed.h"
#include "medselect/io.h"
#include "medselect/model.h"
#include "medselect/safetensors.h"
#include "ms_test.h"

static int n_cases = 0;

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        abort();
    }
}

static int one_line(const char *s) {
    if (!s) return 0;
    size_t n = strlen(s);
    return n > 0 && strchr(s, '\n') == s + n - 1;
}

/* A library refusal: status `code`, a message holding every needle, no raw control byte. */
static void expect_lib(const char *what, ms_status got, ms_status code, const char *n1, const char *n2) {
    const char *m = ms_last_error();
    int clean = 1;
    for (const unsigned char *c = (const unsigned char *)m; *c; c++) clean &= *c >= 0x20 && *c != 0x7f;
    int ok = got == code && (!n1 || strstr(m, n1)) && (!n2 || strstr(m, n2)) && clean && strlen(m) <= MS_MSG_MAX;
    if (!ok) fprintf(stderr, "case '%s': status %d (want %d), message: %s\n", what, got, code, m);
    MS_EXPECT(ok);
    n_cases++;
}

/* A CLI refusal: exit `code`, exactly one stderr line holding the needles, no ESC byte. */
static void expect_cli(const char *what, const char *args, int code, const char *n1, const char *n2) {
    char *out = NULL, *err = NULL;
    int rc = ms_run_cli(args, &out, &err);
    int ok = rc == code && one_line(err) && (!n1 || strstr(err, n1)) && (!n2 || strstr(err, n2)) &&
             !strchr(err, 0x1b) && strlen(err) <= MS_MSG_MAX + 200;
    if (!ok) fprintf(stderr, "case '%s': exit %d (want %d), stderr: %.2000s\n", what, rc, code, err ? err : "(none)");
    MS_EXPECT(ok);
    free(out);
    free(err);
    n_cases++;
}

/* A safetensors file from a header text and `data` bytes of zeros. */
static void write_st(const char *path, const char *header, size_t data) {
    size_t h = strlen(header), n = 8 + h + data;
    unsigned char *b = calloc(1, n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    write_bytes(path, b, n);
    free(b);
}

/* ---- NPY ------------------------------------------------------------------------------- */

static void test_npy(void) {
    /* rank 8, 19-digit dimensions: the rank message once overran a 160-byte buffer */
    const char *p = ms_tmp("rank8.npy");
    char hdr[512];
    snprintf(hdr, sizeof hdr,
             "{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775000, 9223372036854775001, "
             "9223372036854775002, 9223372036854775003, 9223372036854775004, 9223372036854775005, "
             "9223372036854775006, 9223372036854775007), }");
    size_t hl = strlen(hdr);
    unsigned char buf[600];
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hl & 0xff);
    buf[9] = (unsigned char)(hl >> 8);
    memcpy(buf + 10, hdr, hl);
    write_bytes(p, buf, 10 + hl);
    float *x = NULL;
    int r, c;
    expect_lib("npy rank 8, 19-digit dims", ms_npy_read(p, &x, &r, &c), MS_ERR_DATA, "rank8.npy", "rank 8");
    MS_EXPECT(strstr(ms_last_error(), "9223372036854775007)") != NULL);
    free(x);

    /* a small file declaring a huge array: refused from the file's own size */
    snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 512), }");
    hl = strlen(hdr);
    buf[8] = (unsigned char)hl;
    buf[9] = 0;
    memcpy(buf + 10, hdr, hl);
    p = ms_tmp("huge.npy");
    write_bytes(p, buf, 10 + hl + 64);
    expect_lib("npy declares 1e9 x 512 in 150 bytes", ms_npy_read(p, &x, &r, &c), MS_ERR_DATA, "huge.npy", "truncated");

    /* the budget and MS_MAX_ALLOC_MB: 600 x 512 float32 = 1.2 MB, refused under a 1 MB
     * budget, read at the default */
    enum { R = 600, C = 512 };
    float *m = calloc((size_t)R * C, sizeof(float));
    p = ms_tmp("budget.npy");
    MS_EXPECT(ms_npy_write(p, m, R, C) == MS_OK);
    free(m);
    setenv("MS_MAX_ALLOC_MB", "1", 1);
    x = NULL;
    expect_lib("npy over a 1 MB budget", ms_npy_read(p, &x, &r, &c), MS_ERR_DATA, "budget.npy", "limit of 1 MB");
    MS_EXPECT(strstr(ms_last_error(), "MS_MAX_ALLOC_MB") != NULL);
    MS_EXPECT(ms_alloc_limit() == 1024 * 1024);
    unsetenv("MS_MAX_ALLOC_MB");
    MS_EXPECT(ms_alloc_limit() == (uint64_t)MS_MAX_ALLOC_DEFAULT_MB * 1024 * 1024);
    MS_EXPECT(ms_npy_read(p, &x, &r, &c) == MS_OK && r == R && c == C);
    free(x);
    MS_EXPECT(ms_check_alloc(UINT64_MAX, "x", "f") == MS_ERR_DATA && strstr(ms_last_error(), "or more"));
    MS_EXPECT(ms_mul_sat(UINT64_MAX / 2, 3) == UINT64_MAX && ms_mul_sat(3, 4) == 12);
}

/* ---- HDF5 ------------------------------------------------------------------------------ */

/* A chunked dataset declaring rows x cols with nothing written: a file of a few KB. */
static void write_h5_declared(const char *path, hsize_t rows, hsize_t cols) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {rows, cols}, chunk[2] = {64, cols < 512 ? cols : 512};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(pl, 2, chunk);
    hid_t ds = H5Dcreate2(f, "dataset", H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    H5Dclose(ds);
    H5Pclose(pl);
    H5Sclose(sp);
    H5Fclose(f);
}

static void test_hdf5(void) {
    const char *p = ms_tmp("bomb.hdf5");
    write_h5_declared(p, 1000000000ULL, 512);
    float *x = NULL;
    int r, c;
    double t0 = ms_now();
    expect_lib("hdf5 declares 1e9 x 512 in a few KB", ms_hdf5_read(p, NULL, &x, &r, &c), MS_ERR_DATA, "bomb.hdf5",
               "1000000000 x 512");
    MS_EXPECT(strstr(ms_last_error(), "limit of 4096 MB") != NULL);
    MS_EXPECT(ms_now() - t0 < 10.0 && x == NULL);
    /* the same shape under the budget reads (as fill values) through the child process */
    p = ms_tmp("sparse.hdf5");
    write_h5_declared(p, 300, 40);
    MS_EXPECT(ms_hdf5_read(p, NULL, &x, &r, &c) == MS_OK && r == 300 && c == 40 && x && x[0] == 0.0f);
    free(x);
    /* the child's own messages come through unchanged */
    expect_lib("hdf5 missing dataset via the child", ms_hdf5_read(p, "nope", &x, &r, &c), MS_ERR_DATA, "sparse.hdf5",
               "no dataset 'nope'");
    write_bytes(ms_tmp("garbage.hdf5"), "\x89HDF\r\n\x1a\n garbage", 17);
    expect_lib("hdf5 signature then garbage", ms_hdf5_read(ms_tmp("garbage.hdf5"), NULL, &x, &r, &c), MS_ERR_IO,
               "garbage.hdf5", NULL);
}

/* ---- safetensors, checkpoints ---------------------------------------------------------- */

static void test_safetensors(void) {
    /* 200,000 zero-size tensors and a duplicate at the end: the pairwise duplicate check
     * took over a minute; sorting takes well under a second */
    /* under the sanitizers (MS_SANITIZED) every allocation is slow: fewer tensors and no
     * time limit there; the Release run holds the limit */
    const int sanitized = getenv("MS_SANITIZED") != NULL;
    const int N = sanitized ? 50000 : 200000;
    const double limit = sanitized ? 1e9 : 10.0;
    size_t cap = (size_t)N * 64 + 64, k = 0;
    char *h = malloc(cap);
    k += (size_t)snprintf(h + k, cap - k, "{");
    for (int i = 0; i < N; i++)
        k += (size_t)snprintf(h + k, cap - k, "%s\"t%07d\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}",
                              i ? "," : "", i);
    size_t ok_len = k;
    snprintf(h + k, cap - k, "}");
    ms_st_file f;
    size_t hl = strlen(h);
    unsigned char *b = malloc(8 + hl + 64);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, h, hl);
    double t0 = ms_now();
    ms_status st = ms_st_parse(&f, b, 8 + hl, "many.safetensors");
    double secs = ms_now() - t0;
    MS_EXPECT(st == MS_OK && f.n == N);
    fprintf(stderr, "%d tensors parsed in %.2f s\n", N, secs);
    MS_EXPECT(secs < limit);
    ms_st_free(&f);
    n_cases++;
    snprintf(h + ok_len, cap - ok_len, ",\"t0000007\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}");
    hl = strlen(h);
    b = realloc(b, 8 + hl);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, h, hl);
    t0 = ms_now();
    expect_lib("duplicate among 200000 tensors", ms_st_parse(&f, b, 8 + hl, "dup.safetensors"), MS_ERR_DATA,
               "dup.safetensors", "\"t0000007\" appears twice");
    MS_EXPECT(ms_now() - t0 < limit);
    free(b);
    free(h);

    /* declared data beyond the file */
    write_st(ms_tmp("short.safetensors"),
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[1000000,512],\"data_offsets\":[0,2048000000]}}", 64);
    expect_lib("safetensors data beyond the file", ms_st_read(&f, ms_tmp("short.safetensors")), MS_ERR_DATA,
               "short.safetensors", "beyond the data section");
}

static void test_checkpoint(void) {
    /* a lone w_ih [4H, D] = [262144, 1] implies H = 2^16 (w_hh alone 64 GB): refused before
     * anything of that size is allocated */
    const char *p = ms_tmp("lone.safetensors");
    char hdr[256];
    snprintf(hdr, sizeof hdr, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[262144,1],\"data_offsets\":[0,1048576]}}",
             ms_lstm_tensor_name(MS_LSTM_W_IH));
    write_st(p, hdr, 1048576);
    ms_lstm_params prm;
    ms_selector_meta meta;
    expect_lib("checkpoint: lone tensor implying H = 2^16", ms_checkpoint_load(p, &prm, &meta), MS_ERR_DATA,
               "lone.safetensors", "missing tensor");
    MS_EXPECT(strstr(ms_last_error(), "not a medselect selector") == NULL); /* w_ih found; the others missing */

    /* NaN / Inf weights: refused, naming the tensor */
    ms_lstm_params good;
    ms_lstm_params_init(&good, 5, 4);
    for (size_t i = 0; i < good.count; i++) good.memory[i] = (float)sin((double)i) * 0.1f;
    p = ms_tmp("good.safetensors");
    MS_EXPECT(ms_checkpoint_save(p, &good, NULL) == MS_OK);
    MS_EXPECT(ms_checkpoint_load(p, &prm, &meta) == MS_OK && prm.D == 5 && prm.H == 4);
    ms_lstm_params_free(&prm);
    ms_selector_meta_free(&meta);
    const float bad[2] = {NAN, INFINITY};
    const int where[2] = {MS_LSTM_LIN_W, MS_LSTM_W_HH_R};
    for (int k = 0; k < 2; k++) {
        float keep = good.t[where[k]][1];
        good.t[where[k]][1] = bad[k];
        p = ms_tmp(k ? "inf.safetensors" : "nan.safetensors");
        MS_EXPECT(ms_checkpoint_save(p, &good, NULL) == MS_OK);
        expect_lib(k ? "checkpoint with Inf" : "checkpoint with NaN", ms_checkpoint_load(p, &prm, &meta), MS_ERR_DATA,
                   ms_lstm_tensor_name(where[k]), "non-finite");
        good.t[where[k]][1] = keep;
    }
    ms_lstm_params_free(&good);
}

/* ---- encoder folder: weights and config.json ------------------------------------------- */

static void copy_file(const char *from, const char *to) {
    size_t n;
    char *b = ms_read_file(from, &n);
    MS_EXPECT(b != NULL);
    if (b) write_bytes(to, b, n);
    free(b);
}

static void test_encoder(void) {
    char dir[1024], path[1200], cfg[1200];
    snprintf(dir, sizeof dir, "%s", ms_tmp("wide_model"));
    snprintf(path, sizeof path, "mkdir -p '%s'", dir);
    MS_EXPECT(system(path) == 0);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    copy_file(ms_fixture("embed/tiny/config.json"), cfg);
    /* conv1.weight [4096, 3, 7, 7] alone (2.4 MB): the network it implies needs ~45 GB */
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    size_t bytes = (size_t)4096 * 3 * 49 * 4;
    char h[256];
    snprintf(h, sizeof h, "{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[4096,3,7,7],\"data_offsets\":[0,%zu]}}", bytes);
    write_st(path, h, bytes);
    ms_resnet *net = NULL;
    expect_lib("weights: conv1 4096 wide in 2.4 MB", ms_resnet_load(&net, dir), MS_ERR_DATA, "model.safetensors",
               "4096 output channels");
    MS_EXPECT(net == NULL);

    /* the real tiny model with input_size [16384, 16384] */
    copy_file(ms_fixture("embed/tiny/model.safetensors"), path);
    MS_EXPECT(ms_resnet_load(&net, dir) == MS_OK);
    ms_resnet_free(net);
    net = NULL;
    char *text = ms_read_file(ms_fixture("embed/tiny/config.json"), NULL);
    char *at = strstr(text, "\"input_size\"");
    MS_EXPECT(at != NULL);
    char *close = strchr(at, ']');
    size_t pre = (size_t)(at - text);
    char *edited = malloc(strlen(text) + 64);
    snprintf(edited, strlen(text) + 64, "%.*s\"input_size\": [16384, 16384%s", (int)pre, text, close);
    ms_write_text(cfg, edited);
    free(edited);
    free(text);
    expect_lib("config.json input_size [16384, 16384]", ms_resnet_load(&net, dir), MS_ERR_DATA, "config.json",
               "input_size [16384, 16384]");
    MS_EXPECT(strstr(ms_last_error(), "limit of") != NULL && net == NULL);
}

/* ---- images ----------------------------------------------------------------------------- */

/* A 16 x 16 progressive JPEG whose frame header is then patched to declare w x h. */
static void write_jpeg_declaring(const char *path, unsigned w, unsigned h, int gray) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    unsigned char *mem = NULL;
    unsigned long n = 0;
    jpeg_mem_dest(&c, &mem, &n);
    c.image_width = 16;
    c.image_height = 16;
    c.input_components = gray ? 1 : 3;
    c.in_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    unsigned char row[48];
    memset(row, 128, sizeof row);
    JSAMPROW rp = row;
    while (c.next_scanline < 16) jpeg_write_scanlines(&c, &rp, 1);
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    for (unsigned long i = 0; i + 9 < n; i++)
        if (mem[i] == 0xff && (mem[i + 1] == 0xc2 || mem[i + 1] == 0xc0)) {
            mem[i + 5] = (unsigned char)(h >> 8), mem[i + 6] = (unsigned char)h;
            mem[i + 7] = (unsigned char)(w >> 8), mem[i + 8] = (unsigned char)w;
            break;
        }
    write_bytes(path, mem, n);
    free(mem);
}

static void test_images(void) {
    const char *p = ms_tmp("bomb.jpg");
    write_jpeg_declaring(p, 65500, 65500, 0);
    ms_image im;
    ms_image_init(&im);
    double t0 = ms_now();
    expect_lib("jpeg declaring 65500 x 65500", ms_image_load(&im, p), MS_ERR_DATA, "bomb.jpg", "too large");
    MS_EXPECT(ms_now() - t0 < 2.0);
    /* 3000 x 3000 gray is within the fixed limit but over a 4 MB budget (9 MB decoded) */
    p = ms_tmp("big.jpg");
    write_jpeg_declaring(p, 3000, 3000, 1);
    setenv("MS_MAX_ALLOC_MB", "4", 1);
    expect_lib("jpeg 3000 x 3000 over a 4 MB budget", ms_image_load(&im, p), MS_ERR_DATA, "big.jpg", "limit of 4 MB");
    unsetenv("MS_MAX_ALLOC_MB");
#ifdef MS_HAVE_DICOM
    /* the preamble and "DICM" and nothing else: GDCM's internal assertion once aborted the
     * process; now the decoder runs in a child and this is one error line */
    unsigned char dcm[132] = {0};
    memcpy(dcm + 128, "DICM", 4);
    p = ms_tmp("empty.dcm");
    write_bytes(p, dcm, sizeof dcm);
    expect_lib("DICOM magic only (GDCM assertion)", ms_image_load(&im, p), MS_ERR_DATA, "empty.dcm", "DICOM");
    /* garbage after the magic */
    unsigned char junk[600];
    memcpy(junk, dcm, 132);
    for (int i = 132; i < (int)sizeof junk; i++) junk[i] = (unsigned char)(i * 7919 >> 3);
    p = ms_tmp("junk.dcm");
    write_bytes(p, junk, sizeof junk);
    expect_lib("DICOM magic then junk", ms_image_load(&im, p), MS_ERR_DATA, "junk.dcm", NULL);
    /* found by fuzz_dicom: 159 bytes after the magic, a VR "SI" where "UI" belongs, made GDCM
     * allocate 770 MB and spend 6 s before its assertion; now refused by the length walk */
    static const unsigned char si[] = {
        0x02, 0x00, 0x00, 0x00, 0x55, 0x4c, 0x04, 0x00, 0x1c, 0x00, 0x00, 0x00, 0x02, 0x00, 0x10, 0x00,
        0x53, 0x49, 0x14, 0x00, 0x31, 0x2e, 0x32, 0x2e, 0x38, 0x34, 0x30, 0x2e, 0x31, 0x30, 0x30, 0x30,
        0x38, 0x2e, 0x31, 0x2e, 0x32, 0x2e, 0x31, 0x00, 0x28, 0x00, 0x02, 0x00, 0x55, 0x53, 0x02, 0x00,
        0x03, 0x00, 0x28, 0x00, 0x04, 0x00, 0x43, 0x53, 0x04, 0x00, 0x52, 0x47, 0x42, 0x20, 0x28, 0x00,
        0x06, 0x00, 0x55, 0x53, 0x02, 0x00, 0x00, 0x00, 0x28, 0x00, 0x10, 0x00, 0x55, 0x53, 0x02, 0x00,
        0x02, 0x00, 0x28, 0x00, 0x11, 0x00, 0x55, 0x53, 0x02, 0x00, 0x02, 0x00, 0x28, 0x00, 0x00, 0x01,
        0x55, 0x53, 0x02, 0x00, 0x08, 0x00, 0x28, 0x00, 0x01, 0x01, 0x55, 0x53, 0x02, 0x00, 0x08, 0x00,
        0x28, 0x00, 0x02, 0x01, 0x55, 0x53, 0x02, 0x00, 0x07, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00, 0x03,
        0x01, 0x55, 0x53, 0x02, 0x00, 0x00, 0x00, 0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x42, 0x00, 0x00, 0x0c,
        0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
    };
    unsigned char f[132 + sizeof si];
    memcpy(f, dcm, 132);
    memcpy(f + 132, si, sizeof si);
    p = ms_tmp("vr_si.dcm");
    write_bytes(p, f, sizeof f);
    t0 = ms_now();
    expect_lib("DICOM with VR SI (770 MB in GDCM)", ms_image_load(&im, p), MS_ERR_DATA, "vr_si.dcm", "unknown value representation");
    MS_EXPECT(ms_now() - t0 < 3.0);
    /* a pixel-data element declaring 2 GB in a file of 180 bytes */
    static const unsigned char meta[] = {0x02, 0x00, 0x10, 0x00, 'U', 'I', 0x14, 0x00, '1', '.', '2', '.', '8', '4',
                                         '0', '.', '1', '0', '0', '0', '8', '.', '1', '.', '2', '.', '1', 0x00,
                                         0xe0, 0x7f, 0x10, 0x00, 'O', 'B', 0x00, 0x00, 0xff, 0xff, 0xff, 0x7f,
                                         1, 2, 3, 4};
    memcpy(f + 132, meta, sizeof meta);
    p = ms_tmp("long_pixels.dcm");
    write_bytes(p, f, 132 + sizeof meta);
    expect_lib("DICOM pixel data declaring 2 GB", ms_image_load(&im, p), MS_ERR_DATA, "long_pixels.dcm", "declares 2147483647 bytes");
#endif
    ms_image_free(&im);
}

/* ---- messages ---------------------------------------------------------------------------- */

static void test_messages(void) {
    ms_csv c;
    /* control bytes in a file name are escaped */
    expect_lib("escape in a file name", ms_csv_read(&c, ms_tmp("\x1b[31mred\x07.csv")), MS_ERR_IO,
               "\\x1b[31mred\\x07.csv", "cannot open");
    /* invalid UTF-8 and C1 controls escaped; valid UTF-8 kept */
    ms_fail(MS_ERR_DATA, "caf\xc3\xa9 \xff \xc2\x9b end");
    MS_EXPECT(strcmp(ms_last_error(), "caf\xc3\xa9 \\xff \\xc2\\x9b end") == 0);
    /* a 10 MB path: shortened in the middle, the problem still at the end */
    size_t n = (size_t)10 << 20;
    char *big = malloc(n + 8);
    memset(big, 'a', n);
    memcpy(big + n, ".csv", 5);
    big[0] = '/';
    expect_lib("10 MB path", ms_csv_read(&c, big), MS_ERR_IO, "...", "cannot open");
    const char *m = ms_last_error();
    MS_EXPECT(strlen(m) <= MS_MSG_MAX && strncmp(m, "/aaa", 4) == 0 && strstr(m, "aaa.csv: cannot open") != NULL);
    free(big);
    char tiny[32];
    MS_EXPECT(strcmp(ms_escape_msg(tiny, sizeof tiny, "abc\n"), "abc\\x0a") == 0);
}

/* ---- the CLI ------------------------------------------------------------------------------ */

static void write_split(const char *name, int rows, int d, int positives) {
    char p[1024];
    snprintf(p, sizeof p, "%s.csv", ms_tmp(name));
    FILE *f = fopen(p, "w");
    fprintf(f, "Path,A,B\n");
    for (int i = 0; i < rows; i++) fprintf(f, "img%d.png,%d,%d\n", i, positives && i % 2 == 0, positives && i % 2);
    fclose(f);
    float *x = malloc(sizeof(float) * (size_t)rows * d);
    for (int i = 0; i < rows * d; i++) x[i] = (float)sin(i * 0.37 + positives);
    snprintf(p, sizeof p, "%s.npy", ms_tmp(name));
    MS_EXPECT(ms_npy_write(p, x, rows, d) == MS_OK);
    free(x);
}

static void test_cli(void) {
    char a[8192], pos[1024], norm[1024];
    write_split("pos", 30, 8, 1);
    write_split("norm", 30, 8, 0);
    snprintf(pos, sizeof pos, "%s", ms_tmp("pos"));
    snprintf(norm, sizeof norm, "%s", ms_tmp("norm"));
    const char *task = "--pool 10 --query 6 -k 2 --tasks 3 --threads 1";

    /* a selector for 5-dimensional input against 8-dimensional embeddings: the message
     * once read D after freeing the parameters and said "0-dimensional" */
    snprintf(a, sizeof a, "evaluate --pos-csv %s.csv --norm-csv %s.csv --conditions A %s --model %s", pos, norm, task,
             ms_tmp("good.safetensors"));
    expect_cli("D mismatch", a, 2, "takes 5-dimensional input", "8-dimensional");
    snprintf(a, sizeof a, "evaluate --pos-csv %s.csv --norm-csv %s.csv --conditions A %s --model %s", pos, norm, task,
             ms_tmp("nan.safetensors"));
    expect_cli("NaN selector via the CLI", a, 2, "non-finite", "linear.weight");
    /* unknown options: one line (getopt's own line is off) */
    expect_cli("unknown long option", "evaluate --bogus", 1, "unrecognized option '--bogus'", NULL);
    expect_cli("unknown short option", "select -z", 1, "'-z'", NULL);
    expect_cli("option without its value", "train --out", 1, "'--out' needs a value", NULL);
    expect_cli("unknown command", "frobnicate", 1, "unknown command 'frobnicate'", NULL);
    /* an unknown condition is an argument error (exit 1), as io.h says */
    snprintf(a, sizeof a, "evaluate --pos-csv %s.csv --norm-csv %s.csv --conditions A,Nope %s", pos, norm, task);
    expect_cli("unknown condition", a, 1, "unknown condition 'Nope'", NULL);
    /* escaped and shortened file names */
    snprintf(a, sizeof a, "evaluate --pos-csv '%s' --norm-csv %s.csv --conditions A %s", ms_tmp("\x1b]0;owned\x07.csv"),
             norm, task);
    expect_cli("terminal escape in a file name", a, 2, "\\x1b]0;owned\\x07.csv", "cannot open");
    size_t L = 100000;
    char *big = malloc(L + 4096);
    int k = snprintf(big, 4096, "evaluate --norm-csv %s.csv --conditions A %s --pos-csv /", norm, task);
    memset(big + k, 'b', L);
    snprintf(big + k + L, 64, ".csv");
    expect_cli("100 KB file name", big, 2, "bbb...bbb", "cannot open");
    free(big);
    /* huge declared sizes through the commands */
    write_h5_declared(ms_tmp("pos_bomb.hdf5"), 1000000000ULL, 512);
    snprintf(a, sizeof a, "evaluate --pos-csv %s.csv --pos-emb %s --norm-csv %s.csv --conditions A %s", pos,
             ms_tmp("pos_bomb.hdf5"), norm, task);
    expect_cli("evaluate with an HDF5 declaring 1e9 x 512", a, 2, "pos_bomb.hdf5", "MS_MAX_ALLOC_MB");
    snprintf(a, sizeof a, "select --model %s --pool %s.csv -k 2 --out %s", ms_tmp("lone.safetensors"), pos,
             ms_tmp("w.csv"));
    expect_cli("select with a lone tensor implying H = 2^16", a, 2, "lone.safetensors", "missing tensor");
    MS_EXPECT(!ms_file_exists(ms_tmp("w.csv")));
    ms_write_text(ms_tmp("list.csv"), "Path\nbomb.jpg\n");
    snprintf(a, sizeof a, "embed --model %s --images %s --out %s", ms_fixture("embed/tiny"), ms_tmp("list.csv"),
             ms_tmp("e.csv"));
    expect_cli("embed a 65500 x 65500 JPEG", a, 2, "bomb.jpg", "too large");
#ifdef MS_HAVE_DICOM
    ms_write_text(ms_tmp("list_dcm.csv"), "Path\nempty.dcm\n");
    snprintf(a, sizeof a, "embed --model %s --images %s --out %s", ms_fixture("embed/tiny"), ms_tmp("list_dcm.csv"),
             ms_tmp("e.csv"));
    expect_cli("embed a DICOM that trips GDCM's assertion", a, 2, "empty.dcm", "DICOM");
#endif
    snprintf(a, sizeof a, "embed --model %s --images %s --out %s", ms_tmp("wide_model"), ms_tmp("list.csv"),
             ms_tmp("e.csv"));
    expect_cli("embed with input_size [16384, 16384]", a, 2, "config.json", "limit of");

    /* the memory ceiling: the largest RSS of any CLI run above (all on hostile headers) */
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    fprintf(stderr, "peak RSS of the CLI runs: %.1f MB\n", ru.ru_maxrss / 1024.0);
    MS_EXPECT(ru.ru_maxrss < 512 * 1024);
}

int main(void) {
    /* the CLI cases run while this process is still small: a forked child counts the
     * parent's resident pages until it execs, and the RSS check reads the children's peak */
    test_checkpoint();
    test_encoder();
    test_images();
    test_cli();
    test_npy();
    test_hdf5();
    test_safetensors();
    test_messages();
    fprintf(stderr, "%d hostile-input cases\n", n_cases);
    return ms_test_summary();
}
