/* test_io.c: tests of the io module: the CSV reader and writer, NPY and HDF5 matrices,
 * tables (CSV + embeddings), splits and their error messages, and the real NIH1000 split.
 *
 * NPY reference files come from tests/fixtures/gen_io.py (element [i, j] = (i - 1.5 j) / 7,
 * rebuilt here from the formula and also cross-checked with the harness's independent NPY
 * reader). Bad HDF5 files are written here with the HDF5 API into the scratch directory.
 * Every bad input must give MS_ERR_DATA or MS_ERR_IO and a message naming the file.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "medselect/io.h"
#include "medselect/tasks.h"
#include "ms_test.h"

/* Checks a failure: the status, and that the message contains each given fragment. */
static void expect_fail(int line, ms_status st, ms_status want, const char *frag1,
                        const char *frag2) {
    const char *msg = ms_last_error();
    int ok = st == want && (!frag1 || strstr(msg, frag1)) && (!frag2 || strstr(msg, frag2));
    if (!ok)
        fprintf(stderr, "  line %d: status %d (want %d), message \"%s\" (want \"%s\", \"%s\")\n",
                line, (int)st, (int)want, msg, frag1 ? frag1 : "", frag2 ? frag2 : "");
    ms_test_expect(ok, __FILE__, line, "expected failure with message");
}
#define EXPECT_FAIL(st, want, f1, f2) expect_fail(__LINE__, (st), (want), (f1), (f2))

static char *xstrdup(const char *s) {
    char *d = malloc(strlen(s) + 1);
    strcpy(d, s);
    return d;
}

/* ---- CSV ----------------------------------------------------------------------------- */

static void test_csv_parse(void) {
    /* BOM, CRLF records, quoted comma, doubled quotes, embedded LF and CRLF, an empty
     * quoted field, a blank line, and a last record without a line break. */
    const char text[] = "\xEF\xBB\xBFName,Note,Value\r\n"
                        "a,\"x, y\",1\r\n"
                        "b,\"say \"\"hi\"\"\",2\r\n"
                        "\r\n"
                        "\"c\",\"two\nlines\",\"\"\r\n"
                        "d,\"crlf\r\ninside\",4";
    ms_csv c;
    ms_status st = ms_csv_parse(&c, text, sizeof text - 1, "t.csv");
    MS_EXPECT(st == MS_OK);
    if (st) return;
    MS_EXPECT(c.n_cols == 3 && c.n_rows == 4);
    MS_EXPECT(strcmp(c.header[0], "Name") == 0); /* the BOM is not part of the name */
    MS_EXPECT(strcmp(c.cell[0 * 3 + 1], "x, y") == 0);
    MS_EXPECT(strcmp(c.cell[1 * 3 + 1], "say \"hi\"") == 0);
    MS_EXPECT(strcmp(c.cell[2 * 3 + 0], "c") == 0);
    MS_EXPECT(strcmp(c.cell[2 * 3 + 1], "two\nlines") == 0);
    MS_EXPECT(strcmp(c.cell[2 * 3 + 2], "") == 0);
    MS_EXPECT(strcmp(c.cell[3 * 3 + 1], "crlf\r\ninside") == 0);
    MS_EXPECT(strcmp(c.cell[3 * 3 + 2], "4") == 0);
    MS_EXPECT(ms_csv_col(&c, "value") == 2 && ms_csv_col(&c, "NOTE") == 1);
    MS_EXPECT(ms_csv_col(&c, "missing") == -1);
    MS_EXPECT(strcmp(c.path, "t.csv") == 0);
    ms_csv_free(&c);
    MS_EXPECT(c.header == NULL && c.cell == NULL);

    /* LF only, trailing newline, empty unquoted fields. */
    const char t2[] = "a,b,c\n,,\n1,,3\n";
    st = ms_csv_parse(&c, t2, sizeof t2 - 1, "t2.csv");
    MS_EXPECT(st == MS_OK && c.n_rows == 2);
    if (!st) {
        MS_EXPECT(strcmp(c.cell[0], "") == 0 && strcmp(c.cell[2], "") == 0);
        MS_EXPECT(strcmp(c.cell[3], "1") == 0 && strcmp(c.cell[4], "") == 0);
        ms_csv_free(&c);
    }

    /* Header only: a valid CSV with no rows. */
    st = ms_csv_parse(&c, "a,b\n", 4, "h.csv");
    MS_EXPECT(st == MS_OK && c.n_rows == 0 && c.n_cols == 2);
    if (!st) ms_csv_free(&c);
}

static void test_csv_errors(void) {
    ms_csv c;
    /* Ragged row: the line number is the physical line where the record starts (the quoted
     * field of record 2 spans lines 2-3). */
    const char t1[] = "a,b\n\"1\n2\",3\n4\n";
    EXPECT_FAIL(ms_csv_parse(&c, t1, sizeof t1 - 1, "rag.csv"), MS_ERR_DATA,
                "rag.csv: line 4 has 1 fields, the header has 2", NULL);
    const char t2[] = "a,b\n1,2,3\n";
    EXPECT_FAIL(ms_csv_parse(&c, t2, sizeof t2 - 1, "rag2.csv"), MS_ERR_DATA,
                "rag2.csv: line 2 has 3 fields, the header has 2", NULL);
    const char t3[] = "a,b\n1,\"open\n";
    EXPECT_FAIL(ms_csv_parse(&c, t3, sizeof t3 - 1, "q.csv"), MS_ERR_DATA, "q.csv: line 2",
                "never closed");
    const char t4[] = "a,b\n1,\"x\"y\n";
    EXPECT_FAIL(ms_csv_parse(&c, t4, sizeof t4 - 1, "q2.csv"), MS_ERR_DATA, "q2.csv: line 2",
                "after a closing quote");
    EXPECT_FAIL(ms_csv_parse(&c, "", 0, "empty.csv"), MS_ERR_DATA, "empty.csv", "empty");
    EXPECT_FAIL(ms_csv_parse(&c, "\n\r\n", 3, "blank.csv"), MS_ERR_DATA, "blank.csv", "empty");
    const char t5[] = "a,b\n1,\0\n";
    EXPECT_FAIL(ms_csv_parse(&c, t5, sizeof t5 - 1, "bin.csv"), MS_ERR_DATA, "bin.csv", "NUL");
    EXPECT_FAIL(ms_csv_read(&c, ms_tmp("no-such-file.csv")), MS_ERR_IO, "no-such-file.csv",
                "cannot open");
}

static void test_csv_put(void) {
    const char *fields[] = {"plain", "a,b", "say \"hi\"", "two\nlines", " lead", "trail ",
                            "", "cr\r\nlf", "q\"", "x"};
    const int nf = (int)(sizeof fields / sizeof fields[0]);
    const char *path = ms_tmp("put.csv");
    FILE *f = fopen(path, "wb");
    MS_EXPECT(f != NULL);
    if (!f) return;
    for (int r = 0; r < 2; r++) { /* header and one row, the same fields */
        for (int j = 0; j < nf; j++) {
            if (j) fputc(',', f);
            ms_csv_put(f, fields[j]);
        }
        fputs("\r\n", f);
    }
    fclose(f);
    ms_csv c;
    ms_status st = ms_csv_read(&c, path);
    MS_EXPECT(st == MS_OK);
    if (st) return;
    MS_EXPECT(c.n_cols == nf && c.n_rows == 1);
    int same = c.n_cols == nf;
    for (int j = 0; j < nf && same; j++)
        same = strcmp(c.header[j], fields[j]) == 0 && strcmp(c.cell[j], fields[j]) == 0;
    MS_EXPECT(same);
    ms_csv_free(&c);

    /* The exact quoting. */
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    ms_csv_put(m, "say \"hi\"");
    fputc('|', m);
    ms_csv_put(m, "plain");
    fputc('|', m);
    ms_csv_put(m, " x");
    fclose(m);
    MS_EXPECT(strcmp(buf, "\"say \"\"hi\"\"\"|plain|\" x\"") == 0);
    free(buf);
}

/* ---- NPY ----------------------------------------------------------------------------- */

/* The generator's formula: element [i, j] = (i - 1.5 j) / 7 in double, then to float. */
static float fixture_value(int i, int j) { return (float)(((double)i - 1.5 * j) / 7.0); }

static void check_npy_fixture(const char *name, int want_r, int want_c) {
    const char *path = ms_fixture(name);
    float *x = NULL;
    int r = 0, c = 0;
    ms_status st = ms_npy_read(path, &x, &r, &c);
    if (st) fprintf(stderr, "  %s: %s\n", name, ms_last_error());
    MS_EXPECT(st == MS_OK && r == want_r && c == want_c);
    if (st) return;
    float *ref = malloc(sizeof(float) * (size_t)(r * c));
    for (int i = 0; i < r; i++)
        for (int j = 0; j < c; j++) ref[i * c + j] = fixture_value(i, j);
    ms_expect_close_f(name, x, ref, (size_t)(r * c), 0, 0);
    /* And against the harness's separate reader. */
    int nd;
    long sh[4];
    double *d = ms_load_npy_d(path, &nd, sh);
    MS_EXPECT(nd == 2 && sh[0] == r && sh[1] == c);
    for (int i = 0; i < r * c; i++) ref[i] = (float)d[i];
    ms_expect_close_f(name, x, ref, (size_t)(r * c), 0, 0);
    free(d);
    free(ref);
    free(x);
}

static void test_npy(void) {
    check_npy_fixture("io/v1_f4.npy", 3, 4);
    check_npy_fixture("io/v1_f8.npy", 3, 4);
    check_npy_fixture("io/v2_f4.npy", 5, 3);
    check_npy_fixture("io/v3_f8.npy", 2, 6);

    /* Round trip, including values that need all 32 bits. */
    const int R = 7, C = 5;
    float x[35];
    ms_rng g;
    ms_rng_init(&g, 42, 0, 0);
    for (int i = 0; i < R * C; i++) x[i] = (float)(ms_rng_normal(&g) * 1e3);
    x[3] = -0.0f;
    x[4] = 1e-40f; /* subnormal */
    const char *path = ms_tmp("round.npy");
    MS_EXPECT(ms_npy_write(path, x, R, C) == MS_OK);
    float *y = NULL;
    int r = 0, c = 0;
    MS_EXPECT(ms_npy_read(path, &y, &r, &c) == MS_OK && r == R && c == C);
    if (y) {
        MS_EXPECT(memcmp(x, y, sizeof x) == 0);
        free(y);
    }
    MS_EXPECT(ms_matrix_read(path, &y, &r, &c) == MS_OK && r == R && c == C);
    free(y);
    /* The header follows NumPy's layout: version 1.0, data aligned to 64 bytes. */
    FILE *f = fopen(path, "rb");
    unsigned char pre[10] = {0};
    MS_EXPECT(f && fread(pre, 1, 10, f) == 10);
    if (f) fclose(f);
    MS_EXPECT(pre[6] == 1 && pre[7] == 0 && (10 + (pre[8] | pre[9] << 8)) % 64 == 0);
    int nd;
    long sh[4];
    double *d = ms_load_npy_d(path, &nd, sh);
    MS_EXPECT(nd == 2 && sh[0] == R && sh[1] == C && d[7] == (double)x[7]);
    free(d);

    /* Bad files. */
    struct {
        const char *name, *frag;
    } bad[] = {
        {"io/bad_rank1.npy", "rank 1 (shape (10,))"},
        {"io/bad_fortran.npy", "Fortran"},
        {"io/bad_bigendian.npy", "big-endian"},
        {"io/bad_int.npy", "'<i8'"},
        {"io/bad_truncated.npy", "truncated"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        float *z = (float *)1;
        ms_status st = ms_npy_read(ms_fixture(bad[k].name), &z, &r, &c);
        EXPECT_FAIL(st, MS_ERR_DATA, bad[k].name, bad[k].frag);
        MS_EXPECT(z == NULL);
    }
    const char *txt = ms_tmp("not.npy");
    ms_write_text(txt, "just text, long enough to have a header\n");
    EXPECT_FAIL(ms_npy_read(txt, &y, &r, &c), MS_ERR_DATA, "not.npy", "not an NPY file");
    EXPECT_FAIL(ms_npy_read(ms_tmp("absent.npy"), &y, &r, &c), MS_ERR_IO, "absent.npy", NULL);
    EXPECT_FAIL(ms_matrix_read(ms_tmp("x.bin"), &y, &r, &c), MS_ERR_ARG, "x.bin", NULL);
}

/* ---- HDF5 ---------------------------------------------------------------------------- */

/* Writes one dataset with the HDF5 API: file type `ftype`, memory type `mtype`. */
static void h5_write_raw(const char *path, const char *name, hid_t ftype, hid_t mtype, int rank,
                         const hsize_t *dims, const void *data) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(f, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    MS_CHECK(f >= 0 && sp >= 0 && ds >= 0 && rc >= 0);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
}

static void test_hdf5(void) {
    const int R = 6, C = 4;
    float x[24];
    for (int i = 0; i < R * C; i++) x[i] = fixture_value(i / C, i % C) * 1e-3f + (float)i;
    const char *path = ms_tmp("round.hdf5");
    MS_EXPECT(ms_hdf5_write(path, NULL, x, R, C) == MS_OK);
    float *y = NULL;
    int r = 0, c = 0;
    MS_EXPECT(ms_hdf5_read(path, "dataset", &y, &r, &c) == MS_OK && r == R && c == C);
    if (y) {
        MS_EXPECT(memcmp(x, y, sizeof x) == 0);
        free(y);
    }
    MS_EXPECT(ms_matrix_read(path, &y, &r, &c) == MS_OK && r == R && c == C);
    free(y);
    /* A named dataset, and overwriting an existing file. */
    MS_EXPECT(ms_hdf5_write(path, "emb", x, C, R) == MS_OK);
    MS_EXPECT(ms_hdf5_read(path, "emb", &y, &r, &c) == MS_OK && r == C && c == R);
    free(y);

    /* float64 on disk -> float32. */
    double xd[24];
    float ref[24];
    for (int i = 0; i < 24; i++) xd[i] = ((double)i - 11.5) / 3.0, ref[i] = (float)xd[i];
    hsize_t d2[2] = {3, 8};
    const char *p64 = ms_tmp("f64.h5");
    h5_write_raw(p64, "dataset", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, d2, xd);
    MS_EXPECT(ms_hdf5_read(p64, NULL, &y, &r, &c) == MS_OK && r == 3 && c == 8);
    if (y) {
        ms_expect_close_f("float64 dataset", y, ref, 24, 0, 0);
        free(y);
    }

    /* Bad files: each one line naming the file. */
    const char *pm = ms_tmp("other_name.hdf5");
    h5_write_raw(pm, "other", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d2, ref);
    EXPECT_FAIL(ms_hdf5_read(pm, NULL, &y, &r, &c), MS_ERR_DATA, "other_name.hdf5: no dataset 'dataset'",
                NULL);
    EXPECT_FAIL(ms_hdf5_read(pm, "a/b", &y, &r, &c), MS_ERR_DATA, "other_name.hdf5: no dataset 'a/b'",
                NULL);
    hsize_t d1[1] = {10};
    const char *p1 = ms_tmp("rank1.hdf5");
    h5_write_raw(p1, "dataset", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, d1, ref);
    EXPECT_FAIL(ms_hdf5_read(p1, NULL, &y, &r, &c), MS_ERR_DATA, "rank1.hdf5", "rank 1");
    int xi[24] = {0};
    const char *pi = ms_tmp("int.hdf5");
    h5_write_raw(pi, "dataset", H5T_STD_I32LE, H5T_NATIVE_INT, 2, d2, xi);
    EXPECT_FAIL(ms_hdf5_read(pi, NULL, &y, &r, &c), MS_ERR_DATA, "int.hdf5", "integer");
    const char *pt = ms_tmp("text.hdf5");
    ms_write_text(pt, "this is not an HDF5 file\n");
    EXPECT_FAIL(ms_hdf5_read(pt, NULL, &y, &r, &c), MS_ERR_DATA, "text.hdf5", "not an HDF5");
    EXPECT_FAIL(ms_hdf5_read(ms_tmp("absent.hdf5"), NULL, &y, &r, &c), MS_ERR_IO, "absent.hdf5",
                "cannot open");
    /* missing parent folders are created; a parent that is a file is an error naming it */
    char nested[4200];
    snprintf(nested, sizeof nested, "%s/new-dir/sub/x.hdf5", ms_tmp("h5parents"));
    MS_EXPECT(ms_hdf5_write(nested, NULL, x, R, C) == MS_OK && ms_file_exists(nested));
    snprintf(nested, sizeof nested, "%s/x.hdf5", pt);
    EXPECT_FAIL(ms_hdf5_write(nested, NULL, x, R, C), MS_ERR_IO, "text.hdf5", "cannot create folder");
}

/* ---- tables and splits --------------------------------------------------------------- */

/* Positives: 4 rows; conditions Effusion and Lung Opacity; Comment (text) and Count (not in
 * {-1,0,1}) are ignored; clinical columns Age, Sex and View (no Frontal/Lateral). */
static const char POS_CSV[] =
    "Unnamed: 0,Path,Age,Sex,View,Comment,Effusion,Lung Opacity,Count\n"
    "0,a.png,60.33,Female,PA,\"hello, world\",1.0,-1.0,3\n"
    "1,b.png,,M,LL,x,0.0,,0\n"
    "2,c.png,78.25,other,AP,y,,1,1\n"
    "3,d.png,abc,F,??,z,-1,0.0,2\n";
static const char NORM_CSV[] = "Path,Age,Sex,Frontal/Lateral,Effusion,Lung Opacity\n"
                               "n0.png,50,Male,Frontal,0,0\n"
                               "n1.png,70,Female,Lateral,0,0\n";

static const float POS_EMB[12] = {3, 4, 0, 1, 2, 2, -1, 0, 0, 0.5f, -0.25f, 1};
static const float NORM_EMB[6] = {0, 0, 0, 1e-3f, 2e-3f, -2e-3f};

/* Writes pos.csv + pos.hdf5 and norm.csv + norm.npy into the scratch directory. */
static void write_small_split(void) {
    ms_write_text(ms_tmp("pos.csv"), POS_CSV);
    MS_CHECK(ms_hdf5_write(ms_tmp("pos.hdf5"), NULL, POS_EMB, 4, 3) == MS_OK);
    ms_write_text(ms_tmp("norm.csv"), NORM_CSV);
    MS_CHECK(ms_npy_write(ms_tmp("norm.npy"), NORM_EMB, 2, 3) == MS_OK);
}

static void test_table(void) {
    write_small_split();
    ms_table t;
    ms_status st = ms_table_load(&t, ms_tmp("pos.csv"), NULL);
    if (st) fprintf(stderr, "  %s\n", ms_last_error());
    MS_EXPECT(st == MS_OK);
    if (st) return;
    MS_EXPECT(t.n == 4 && t.d == 3 && t.n_cond == 2);
    MS_EXPECT(strstr(t.emb_path, "pos.hdf5") != NULL);
    MS_EXPECT(strcmp(t.cond[0], "Effusion") == 0 && strcmp(t.cond[1], "Lung Opacity") == 0);
    MS_EXPECT(strcmp(t.path[2], "c.png") == 0);
    const float lab[8] = {1, -1, 0, 0, 0, 1, -1, 0};
    ms_expect_close_f("labels", t.label, lab, 8, 0, 0);
    ms_expect_close_f("embeddings", t.emb, POS_EMB, 12, 0, 0);
    MS_EXPECT(t.clin_cols == 7 && t.clin != NULL);
    if (t.clin) {
        float age2 = (float)((78.25 - MS_AGE_MEAN) / MS_AGE_SD);
        MS_EXPECT(fabsf(t.clin[0]) < 1e-6f && isnan(t.clin[3]) && t.clin[6] == age2 &&
                  isnan(t.clin[9]));
        MS_EXPECT(t.clin[1] == 1 && t.clin[4] == 0 && isnan(t.clin[7]) && t.clin[10] == 1);
        MS_EXPECT(t.clin[2] == 1 && t.clin[5] == 0 && t.clin[8] == 1 && isnan(t.clin[11]));
    }
    ms_table_free(&t);
    MS_EXPECT(t.emb == NULL && t.n == 0);

    /* A table without clinical columns. */
    ms_write_text(ms_tmp("noclin.csv"), "Path,Effusion\nx.png,1\ny.png,0\n");
    MS_CHECK(ms_npy_write(ms_tmp("noclin.npy"), NORM_EMB, 2, 3) == MS_OK);
    MS_EXPECT(ms_table_load(&t, ms_tmp("noclin.csv"), NULL) == MS_OK);
    MS_EXPECT(t.clin == NULL && t.clin_cols == 0 && t.n_cond == 1);
    ms_table_free(&t);
}

static void test_table_errors(void) {
    ms_table t;
    float e[12];
    for (int i = 0; i < 12; i++) e[i] = (float)i;
    const char *csv3 = "Path,Effusion\na,1\nb,0\nc,1\n";

    /* Row count mismatch: 3 CSV rows, 2 embedding rows. */
    ms_write_text(ms_tmp("short.csv"), csv3);
    MS_CHECK(ms_hdf5_write(ms_tmp("short.hdf5"), NULL, e, 2, 4) == MS_OK);
    EXPECT_FAIL(ms_table_load(&t, ms_tmp("short.csv"), NULL), MS_ERR_DATA,
                "short.csv: 3 rows but ", "short.hdf5 has 2 embedding rows");
    MS_EXPECT(t.emb == NULL && t.path == NULL); /* zeroed on failure */

    /* NaN and Inf. */
    ms_write_text(ms_tmp("nan.csv"), csv3);
    float en[12];
    memcpy(en, e, sizeof en);
    en[1 * 4 + 2] = NAN;
    MS_CHECK(ms_hdf5_write(ms_tmp("nan.hdf5"), NULL, en, 3, 4) == MS_OK);
    EXPECT_FAIL(ms_table_load(&t, ms_tmp("nan.csv"), NULL), MS_ERR_DATA, "nan.hdf5",
                "row 1 column 2 is not finite");
    ms_write_text(ms_tmp("inf.csv"), csv3);
    memcpy(en, e, sizeof en);
    en[2 * 4 + 3] = -INFINITY;
    MS_CHECK(ms_npy_write(ms_tmp("inf.npy"), en, 3, 4) == MS_OK);
    EXPECT_FAIL(ms_table_load(&t, ms_tmp("inf.csv"), NULL), MS_ERR_DATA, "inf.npy",
                "row 2 column 3 is not finite");
    /* A float32 NPY of more than 4 MB (read straight into a huge-page allocation): the
     * values arrive intact and the first non-finite one is named. */
    {
        const int R = 2100, C = 512;
        float *ebig = calloc((size_t)R * C, sizeof(float));
        ebig[(size_t)2050 * C + 7] = NAN;
        ebig[(size_t)2060 * C + 1] = INFINITY;
        FILE *f = fopen(ms_tmp("large.csv"), "w");
        fputs("Path\n", f);
        for (int i = 0; i < R; i++) fprintf(f, "img%d.png\n", i);
        fclose(f);
        MS_CHECK(ms_npy_write(ms_tmp("large.npy"), ebig, R, C) == MS_OK);
        EXPECT_FAIL(ms_table_load(&t, ms_tmp("large.csv"), NULL), MS_ERR_DATA, "large.npy",
                    "row 2050 column 7 is not finite");
        ebig[(size_t)2050 * C + 7] = 1.0f;
        ebig[(size_t)2060 * C + 1] = 2.0f;
        MS_CHECK(ms_npy_write(ms_tmp("large.npy"), ebig, R, C) == MS_OK);
        MS_EXPECT(ms_table_load(&t, ms_tmp("large.csv"), NULL) == MS_OK);
        MS_EXPECT(t.n == R && t.d == C && memcmp(t.emb, ebig, sizeof(float) * (size_t)R * C) == 0);
        ms_table_free(&t);
        free(ebig);
    }
    /* A float64 value beyond float32's range is not silently clipped. */
    double big[12] = {0, 0, 0, 0, 0, 1e300, 0, 0, 0, 0, 0, 0};
    hsize_t d2[2] = {3, 4};
    ms_write_text(ms_tmp("big.csv"), csv3);
    h5_write_raw(ms_tmp("big.hdf5"), "dataset", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, d2, big);
    EXPECT_FAIL(ms_table_load(&t, ms_tmp("big.csv"), NULL), MS_ERR_DATA, "big.hdf5",
                "row 1 column 1 is not finite");

    /* CSV problems. */
    ms_write_text(ms_tmp("nopath.csv"), "File,Effusion\na,1\nb,0\nc,1\n");
    MS_CHECK(ms_hdf5_write(ms_tmp("nopath.hdf5"), NULL, e, 3, 4) == MS_OK);
    EXPECT_FAIL(ms_table_load(&t, ms_tmp("nopath.csv"), NULL), MS_ERR_DATA,
                "nopath.csv: no Path column", NULL);
    ms_write_text(ms_tmp("hdr.csv"), "Path,Effusion\n");
    EXPECT_FAIL(ms_table_load(&t, ms_tmp("hdr.csv"), ms_tmp("nopath.hdf5")), MS_ERR_DATA,
                "hdr.csv", "no data rows");
    ms_write_text(ms_tmp("empty.csv"), "");
    EXPECT_FAIL(ms_table_load(&t, ms_tmp("empty.csv"), ms_tmp("nopath.hdf5")), MS_ERR_DATA,
                "empty.csv", "empty");
    ms_write_text(ms_tmp("ragged.csv"), "Path,Effusion\na,1\nb\nc,1\n");
    EXPECT_FAIL(ms_table_load(&t, ms_tmp("ragged.csv"), ms_tmp("nopath.hdf5")), MS_ERR_DATA,
                "ragged.csv: line 3 has 1 fields, the header has 2", NULL);

    /* Embedding file problems reach the table loader unchanged. */
    ms_write_text(ms_tmp("lonely.csv"), csv3);
    EXPECT_FAIL(ms_table_load(&t, ms_tmp("lonely.csv"), NULL), MS_ERR_IO, "lonely.csv",
                "no embeddings file");
    ms_write_text(ms_tmp("wrongds.csv"), csv3);
    h5_write_raw(ms_tmp("wrongds.h5"), "emb", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d2, e);
    EXPECT_FAIL(ms_table_load(&t, ms_tmp("wrongds.csv"), NULL), MS_ERR_DATA,
                "wrongds.h5: no dataset 'dataset'", NULL);
    EXPECT_FAIL(ms_table_load(&t, ms_tmp("wrongds.csv"), ms_fixture("io/bad_fortran.npy")),
                MS_ERR_DATA, "bad_fortran.npy", "Fortran");

    /* Embedding dimensions differ between the positives and the normals. */
    ms_write_text(ms_tmp("dpos.csv"), csv3);
    MS_CHECK(ms_hdf5_write(ms_tmp("dpos.hdf5"), NULL, e, 3, 4) == MS_OK);
    ms_write_text(ms_tmp("dnorm.csv"), "Path,Effusion\nn,0\nm,0\n");
    MS_CHECK(ms_hdf5_write(ms_tmp("dnorm.hdf5"), NULL, e, 2, 6) == MS_OK);
    ms_split s;
    ms_status st = ms_split_load(&s, ms_tmp("dpos.csv"), NULL, ms_tmp("dnorm.csv"), NULL,
                                 MS_UNCERTAIN_POSITIVE);
    EXPECT_FAIL(st, MS_ERR_DATA, "dpos.hdf5 has 4-dimensional", "dnorm.hdf5 has 6");
    MS_EXPECT(s.emb == NULL && s.n == 0);
}

static void test_split(void) {
    write_small_split();
    char *pos = xstrdup(ms_tmp("pos.csv")), *norm = xstrdup(ms_tmp("norm.csv"));
    ms_split s, sn, si, s2;
    ms_status st = ms_split_load(&s, pos, NULL, norm, NULL, MS_UNCERTAIN_POSITIVE);
    if (st) fprintf(stderr, "  %s\n", ms_last_error());
    MS_EXPECT(st == MS_OK);
    if (st) goto out;
    MS_EXPECT(s.n_pos == 4 && s.n_norm == 2 && s.n == 6 && s.d == 3 && s.n_cond == 2);
    float emb[18];
    memcpy(emb, POS_EMB, sizeof POS_EMB);
    memcpy(emb + 12, NORM_EMB, sizeof NORM_EMB);
    ms_expect_close_f("split embeddings", s.emb, emb, 18, 0, 0);
    MS_EXPECT(strcmp(s.path[0], "a.png") == 0 && strcmp(s.path[5], "n1.png") == 0);
    /* Uncertain as positive: Effusion {0, 3}, Lung Opacity {0, 2}. */
    MS_EXPECT(s.cond_count[0] == 2 && s.cond_rows[0][0] == 0 && s.cond_rows[0][1] == 3);
    MS_EXPECT(s.cond_count[1] == 2 && s.cond_rows[1][0] == 0 && s.cond_rows[1][1] == 2);
    /* Unit rows: row 0 is (3, 4, 0) / 5; the zero row stays zero; the others have norm 1. */
    const float u0[3] = {0.6f, 0.8f, 0.0f}, zero[3] = {0, 0, 0};
    ms_expect_close_f("unit row 0", s.unit, u0, 3, 1e-7, 1e-6);
    ms_expect_close_f("unit zero row", s.unit + 4 * 3, zero, 3, 0, 0);
    double worst = 0;
    for (int i = 0; i < s.n; i++) {
        if (i == 4) continue;
        double ss = 0;
        for (int j = 0; j < 3; j++) ss += (double)s.unit[i * 3 + j] * s.unit[i * 3 + j];
        if (fabs(sqrt(ss) - 1) > worst) worst = fabs(sqrt(ss) - 1);
    }
    MS_EXPECT(worst < 1e-6);
    /* Clinical: all three columns exist in both files (View stands in for Frontal/Lateral
     * in the positives). Normals: age 50, male, frontal; age 70, female, lateral. */
    MS_EXPECT(s.clin_cols == 7 && s.clin != NULL);
    if (s.clin) {
        const float n_clin[6] = {(float)((50 - MS_AGE_MEAN) / MS_AGE_SD), 0, 1,
                                 (float)((70 - MS_AGE_MEAN) / MS_AGE_SD), 1, 0};
        ms_expect_close_f("normals clinical", s.clin + 4 * 3, n_clin, 6, 0, 0);
    }

    /* Condition names. */
    MS_EXPECT(ms_split_find_condition(&s, "effusion") == 0);
    MS_EXPECT(ms_split_find_condition(&s, "LUNG_OPACITY") == 1);
    MS_EXPECT(ms_split_find_condition(&s, "Lung Opacity") == 1);
    MS_EXPECT(ms_split_find_condition(&s, "Lung") == -1);
    MS_EXPECT(ms_split_find_condition(&s, "Count") == -1);   /* not a condition column */
    MS_EXPECT(ms_split_find_condition(&s, "Comment") == -1); /* text column */
    MS_EXPECT(ms_split_find_condition(&s, "Age") == -1);     /* metadata */
    char *names[2] = {"lung opacity", "Effusion"};
    int idx[2] = {-1, -1};
    MS_EXPECT(ms_split_resolve(&s, names, 2, idx) == MS_OK && idx[0] == 1 && idx[1] == 0);
    char *bad[2] = {"Effusion", "Count"};
    EXPECT_FAIL(ms_split_resolve(&s, bad, 2, idx), MS_ERR_ARG,
                "pos.csv: unknown condition 'Count' (conditions: Effusion, Lung Opacity)", NULL);

    /* Other uncertain policies: -1 never makes a positive. */
    st = ms_split_load(&sn, pos, NULL, norm, NULL, MS_UNCERTAIN_NEGATIVE);
    MS_EXPECT(st == MS_OK);
    if (!st) {
        MS_EXPECT(sn.cond_count[0] == 1 && sn.cond_rows[0][0] == 0);
        MS_EXPECT(sn.cond_count[1] == 1 && sn.cond_rows[1][0] == 2);
        MS_EXPECT(sn.fingerprint != s.fingerprint);
    }
    st = ms_split_load(&si, pos, NULL, norm, NULL, MS_UNCERTAIN_IGNORE);
    MS_EXPECT(st == MS_OK);
    if (!st) {
        MS_EXPECT(si.cond_count[0] == 1 && si.cond_rows[0][0] == 0);
        MS_EXPECT(si.cond_count[1] == 1 && si.cond_rows[1][0] == 2);
    }
    /* The fingerprint is a function of the data: a reload gives the same value. */
    MS_EXPECT(ms_split_load(&s2, pos, NULL, norm, NULL, MS_UNCERTAIN_POSITIVE) == MS_OK);
    MS_EXPECT(s2.fingerprint == s.fingerprint && s.fingerprint != 0);
    ms_split_free(&s2);

    /* From arrays: the same data and the NEGATIVE policy's labels give the same split. */
    if (!st) {
        const float lab01[8] = {1, 0, 0, 0, 0, 1, 0, 0};
        const char *cn[2] = {"Effusion", "Lung Opacity"};
        ms_split_from_arrays(&s2, POS_EMB, 4, NORM_EMB, 2, 3, lab01, 2, cn);
        MS_EXPECT(s2.n == 6 && s2.n_cond == 2 && s2.cond_count[1] == 1 && s2.cond_rows[1][0] == 2);
        MS_EXPECT(s2.fingerprint == sn.fingerprint);
        ms_expect_close_f("from_arrays unit", s2.unit, s.unit, 18, 0, 0);
        MS_EXPECT(strcmp(s2.path[0], "pos/0") == 0 && strcmp(s2.path[5], "norm/1") == 0);
        MS_EXPECT(s2.clin == NULL && s2.clin_cols == 0);
        MS_EXPECT(ms_split_find_condition(&s2, "lung_opacity") == 1);
        ms_split_free(&s2);
        ms_split_from_arrays(&s2, POS_EMB, 4, NORM_EMB, 2, 3, lab01, 2, NULL);
        MS_EXPECT(strcmp(s2.cond[1], "cond1") == 0);
        ms_split_free(&s2);
    }
    ms_split_free(&sn);
    ms_split_free(&si);
    ms_split_free(&s);
    MS_EXPECT(s.emb == NULL && s.cond_rows == NULL);

    /* Policy names. */
    ms_uncertain u = MS_UNCERTAIN_POSITIVE;
    MS_EXPECT(ms_uncertain_parse("Ignore", &u) == MS_OK && u == MS_UNCERTAIN_IGNORE);
    MS_EXPECT(strcmp(ms_uncertain_name(MS_UNCERTAIN_NEGATIVE), "negative") == 0);
    EXPECT_FAIL(ms_uncertain_parse("maybe", &u), MS_ERR_ARG, "'maybe'", NULL);
out:
    free(pos);
    free(norm);
}

/* ---- condition names: summaries are not conditions, NIH/CheXpert synonyms ------------- */

static void test_condition_names(void) {
    /* NIH-style file: 0/1 summary columns (No Finding, is_normal, is_positive) and NIH
     * metadata never become conditions; Effusion and Pleural_Thickening answer to their
     * CheXpert names. */
    ms_write_text(ms_tmp("nih_pos.csv"),
                  "Path,Image Index,Follow-up #,Patient Age,No Finding,is_normal,is_positive,Effusion,"
                  "Pleural_Thickening,Atelectasis\n"
                  "a.png,a.png,0,40,0,0,1,1,0,1\n"
                  "b.png,b.png,1,41,0,0,1,1,1,0\n"
                  "c.png,c.png,0,42,0,0,1,0,1,1\n");
    ms_write_text(ms_tmp("nih_norm.csv"), "Path,No Finding,is_normal,is_positive,Effusion\n"
                                          "n0.png,1,1,0,0\nn1.png,1,1,0,0\n");
    const float pe[6] = {1, 0, 0, 1, 1, 1}, ne[4] = {0, 1, 1, 1};
    MS_CHECK(ms_hdf5_write(ms_tmp("nih_pos.hdf5"), NULL, pe, 3, 2) == MS_OK);
    MS_CHECK(ms_hdf5_write(ms_tmp("nih_norm.hdf5"), NULL, ne, 2, 2) == MS_OK);
    char *pos = xstrdup(ms_tmp("nih_pos.csv")), *norm = xstrdup(ms_tmp("nih_norm.csv"));
    ms_split s;
    ms_status st = ms_split_load(&s, pos, NULL, norm, NULL, MS_UNCERTAIN_POSITIVE);
    if (st) fprintf(stderr, "  %s\n", ms_last_error());
    MS_EXPECT(st == MS_OK);
    if (!st) {
        MS_EXPECT(s.n_cond == 3 && !strcmp(s.cond[0], "Effusion") && !strcmp(s.cond[1], "Pleural_Thickening") &&
                  !strcmp(s.cond[2], "Atelectasis"));
        MS_EXPECT(ms_split_find_condition(&s, "No Finding") < 0 && ms_split_find_condition(&s, "is_normal") < 0 &&
                  ms_split_find_condition(&s, "is_positive") < 0);
        MS_EXPECT(ms_split_find_condition(&s, "Pleural Effusion") == 0);
        MS_EXPECT(ms_split_find_condition(&s, "pleural-effusion") == 0);
        MS_EXPECT(ms_split_find_condition(&s, "Pleural Other") == 1);
        MS_EXPECT(ms_split_find_condition(&s, "pleural thickening") == 1);
        MS_EXPECT(ms_split_find_condition(&s, "Lung Opacity") < 0); /* no single NIH counterpart */
        char *bad[1] = {"No Finding"};
        int idx[1];
        EXPECT_FAIL(ms_split_resolve(&s, bad, 1, idx), MS_ERR_ARG,
                    "nih_pos.csv: unknown condition 'No Finding' (conditions: Effusion, Pleural_Thickening, "
                    "Atelectasis)", NULL);
        char *bad2[1] = {"Enlarged Cardiomediastinum"};
        EXPECT_FAIL(ms_split_resolve(&s, bad2, 1, idx), MS_ERR_ARG, "(conditions: Effusion, Pleural_Thickening, Atelectasis)",
                    NULL);
        /* the task check's message counts positives per part of the task */
        ms_task_shape sh = {.pool = 4, .pos_frac = 0.5, .query = 2, .query_pos_frac = 0.5};
        int c0 = 0;
        EXPECT_FAIL(ms_task_check(&s, &sh, &c0, 1), MS_ERR_DATA,
                    "nih_pos.csv: condition 'Effusion' has 2 positives, a task needs 3 (2 pool positives + 1 query positives)",
                    NULL);
        ms_split_free(&s);
    }
    /* CheXpert-style file: its names answer to NIH's */
    ms_write_text(ms_tmp("cx_pos.csv"), "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Pleural Effusion,Pleural Other\n"
                                        "p1.png,Male,50,Frontal,AP,,1.0,-1.0\n"
                                        "p2.png,Female,60,Frontal,PA,,1.0,\n");
    MS_CHECK(ms_hdf5_write(ms_tmp("cx_pos.hdf5"), NULL, pe, 2, 2) == MS_OK);
    free(pos);
    pos = xstrdup(ms_tmp("cx_pos.csv"));
    st = ms_split_load(&s, pos, NULL, norm, NULL, MS_UNCERTAIN_POSITIVE);
    MS_EXPECT(st == MS_OK);
    if (!st) {
        MS_EXPECT(s.n_cond == 2);
        MS_EXPECT(ms_split_find_condition(&s, "Effusion") == 0);
        MS_EXPECT(ms_split_find_condition(&s, "Pleural_Thickening") == 1);
        char *bad[1] = {"Fibrosis"};
        int idx[1];
        EXPECT_FAIL(ms_split_resolve(&s, bad, 1, idx), MS_ERR_ARG,
                    "cx_pos.csv: unknown condition 'Fibrosis' (conditions: Pleural Effusion, Pleural Other)", NULL);
        ms_split_free(&s);
    }
    MS_EXPECT(ms_condition_synonym("EFFUSION") && !strcmp(ms_condition_synonym("EFFUSION"), "Pleural Effusion"));
    MS_EXPECT(ms_condition_synonym("Cardiomegaly") == NULL);
    free(pos);
    free(norm);
}

/* ---- the real NIH1000 test split ----------------------------------------------------- */

static void test_real_split(void) {
    MS_EXPECT(ms_shared_available()); /* data/nih1000 ships with the repository */
    char *pos = xstrdup(ms_data("data/nih1000/embeddings/test_pos.csv"));
    char *norm = xstrdup(ms_data("data/nih1000/embeddings/test_norm.csv"));
    ms_split s;
    ms_status st = ms_split_load(&s, pos, NULL, norm, NULL, MS_UNCERTAIN_POSITIVE);
    if (st) fprintf(stderr, "  %s\n", ms_last_error());
    MS_EXPECT(st == MS_OK);
    free(pos);
    free(norm);
    if (st) return;
    MS_EXPECT(s.n_pos == 147 && s.n_norm == 120 && s.n == 267 && s.d == 512);
    MS_EXPECT(s.n_cond == 14);
    struct {
        const char *name;
        int count;
    } want[] = {{"Effusion", 71}, {"Atelectasis", 27}, {"Cardiomegaly", 31},
                {"Infiltration", 40}, {"pleural thickening", 6}};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        int c = ms_split_find_condition(&s, want[k].name);
        MS_EXPECT(c >= 0);
        if (c < 0) continue;
        if (s.cond_count[c] != want[k].count)
            fprintf(stderr, "  %s: %d positives, want %d\n", want[k].name, s.cond_count[c],
                    want[k].count);
        MS_EXPECT(s.cond_count[c] == want[k].count);
        int in_range = 1;
        for (int i = 0; i < s.cond_count[c]; i++)
            in_range &= s.cond_rows[c][i] >= 0 && s.cond_rows[c][i] < s.n_pos;
        MS_EXPECT(in_range);
    }
    /* The metadata columns are not conditions. */
    MS_EXPECT(ms_split_find_condition(&s, "PatientID") < 0);
    MS_EXPECT(ms_split_find_condition(&s, "View") < 0);
    double worst = 0;
    for (int i = 0; i < s.n; i++) {
        double ss = 0;
        for (int j = 0; j < s.d; j++) ss += (double)s.unit[(size_t)i * s.d + j] * s.unit[(size_t)i * s.d + j];
        if (fabs(sqrt(ss) - 1) > worst) worst = fabs(sqrt(ss) - 1);
    }
    if (worst >= 1e-5) fprintf(stderr, "  unit norms off by %.3g\n", worst);
    MS_EXPECT(worst < 1e-5);
    /* Clinical columns: Age, Sex, Frontal/Lateral. Row 0 of test_pos.csv is an 84-year-old
     * woman, frontal. */
    MS_EXPECT(s.clin_cols == 7 && s.clin != NULL);
    if (s.clin) {
        const float r0[3] = {(float)((84 - MS_AGE_MEAN) / MS_AGE_SD), 1, 1};
        ms_expect_close_f("real clinical row 0", s.clin, r0, 3, 0, 0);
        int finite = 1;
        for (int i = 0; i < 3 * s.n; i++) finite &= isfinite(s.clin[i]) != 0;
        MS_EXPECT(finite);
    }
    MS_EXPECT(strcmp(s.path[0], "images/00000010_000.png") == 0);
    /* The embeddings match a direct read of the HDF5 file. */
    float *x = NULL;
    int r = 0, c = 0;
    MS_EXPECT(ms_hdf5_read(ms_data("data/nih1000/embeddings/test_norm.hdf5"), NULL, &x, &r, &c) ==
                  MS_OK &&
              r == 120 && c == 512);
    if (x) MS_EXPECT(memcmp(x, s.emb + (size_t)147 * 512, sizeof(float) * 120 * 512) == 0);
    free(x);
    ms_split_free(&s);
}

int main(void) {
    test_csv_parse();
    test_csv_errors();
    test_csv_put();
    test_npy();
    test_hdf5();
    test_table();
    test_table_errors();
    test_split();
    test_condition_names();
    test_real_split();
    return ms_test_summary();
}
