/* test_cli.c: black-box tests of the medselect binary: help texts, a small evaluate run with
 * JSON output, and every bad-input case (one line on stderr naming the file and the problem,
 * exit code 2 or 1 for usage, and no output file left behind). The input files are written
 * here with the HDF5 C API so that nothing binary is committed. */
#define _POSIX_C_SOURCE 200809L
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ms_test.h"

#define NP 40
#define NN 40
#define D 8

static void write_h5(const char *path, const char *dset, hid_t type, int rank, int rows, int cols,
                     const void *data) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(f, dset, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
}

/* Writes DIR/NAME.csv and DIR/NAME.hdf5: rows rows; positives alternate A/B conditions. */
static void write_part(const char *name, int rows, int positives, int drop_csv_rows,
                       const char *path_col, float poison) {
    char csv[512], h5[512];
    snprintf(csv, sizeof csv, "%s", ms_tmp(name));
    strcat(csv, ".csv");
    snprintf(h5, sizeof h5, "%s", ms_tmp(name));
    strcat(h5, ".hdf5");
    FILE *f = fopen(csv, "w");
    fprintf(f, "%s,Age,Sex,A,B\n", path_col);
    for (int i = 0; i < rows - drop_csv_rows; i++)
        fprintf(f, "\"img/%s, %d.png\",%d,%s,%s,%s\n", name, i, 30 + i, i % 2 ? "Male" : "Female",
                positives && i % 2 == 0 ? "1.0" : "0.0", positives && i % 2 == 1 ? "1.0" : (positives && i % 7 == 0 ? "-1.0" : ""));
    fclose(f);
    float *x = malloc(sizeof(float) * rows * D);
    for (int i = 0; i < rows * D; i++) x[i] = (float)sin(i * 0.37 + (positives ? 1.0 : 0.0)) + (positives && (i / D) % 2 ? 0.5f : 0.0f);
    if (poison != 0) x[3 * D + 2] = poison;
    write_h5(h5, "dataset", H5T_NATIVE_FLOAT, 2, rows, D, x);
    free(x);
}

static char args_buf[4096];
static const char *eval_args(const char *pos, const char *norm, const char *extra) {
    char p[1024], n[1024];
    snprintf(p, sizeof p, "%s", ms_tmp(pos));
    snprintf(n, sizeof n, "%s", ms_tmp(norm));
    snprintf(args_buf, sizeof args_buf,
             "evaluate --pos-csv %s.csv --norm-csv %s.csv --conditions A,B --pool 10 --query 6 -k 2,4 --tasks 20 --threads 2 --json %s %s",
             p, n, ms_tmp("out.json"), extra);
    return args_buf;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

/* Runs evaluate and expects exit code `code`, one stderr line containing `needle`, no JSON. */
static void expect_error(const char *what, const char *args, int code, const char *needle) {
    unlink(ms_tmp("out.json"));
    char *out = NULL, *err = NULL;
    int rc = ms_run_cli(args, &out, &err);
    int ok = rc == code && err && strstr(err, needle) && count_lines(err) == 1 && !ms_file_exists(ms_tmp("out.json"));
    if (!ok) fprintf(stderr, "case '%s': exit %d (want %d), stderr: %s", what, rc, code, err ? err : "(none)\n");
    MS_EXPECT(ok);
    free(out);
    free(err);
}

int main(void) {
    char *out = NULL, *err = NULL;
    MS_EXPECT(ms_run_cli("--help", &out, &err) == 0 && strstr(out, "evaluate") && strstr(out, "demo"));
    free(out), free(err);
    const char *cmds[] = {"evaluate", "demo", NULL};
    for (int i = 0; cmds[i]; i++) {
        char a[64];
        snprintf(a, sizeof a, "%s --help", cmds[i]);
        int rc = ms_run_cli(a, &out, &err);
        MS_EXPECT(rc == 0 && strstr(out, "Usage: medselect") && strstr(out, "--seed"));
        free(out), free(err);
    }
    MS_EXPECT(ms_run_cli("frobnicate", NULL, NULL) == 1);

    write_part("pos", NP, 1, 0, "Path", 0);
    write_part("norm", NN, 0, 0, "Path", 0);

    /* a valid run: JSON written, Markdown on stdout, deterministic across thread counts */
    unlink(ms_tmp("out.json"));
    int rc = ms_run_cli(eval_args("pos", "norm", "--strategies random"), &out, &err);
    MS_EXPECT(rc == 0);
    if (rc) fprintf(stderr, "valid run failed: %s", err);
    MS_EXPECT(out && strstr(out, "| K | strategy |") != NULL);
    MS_EXPECT(ms_file_exists(ms_tmp("out.json")));
    char *first = out;
    free(err);
    char args1[4096];
    snprintf(args1, sizeof args1, "%s --threads 1", eval_args("pos", "norm", "--strategies random"));
    rc = ms_run_cli(args1, &out, &err);
    MS_EXPECT(rc == 0 && first && out && strcmp(first, out) == 0);
    free(first), free(out), free(err);

    /* bad inputs */
    write_part("short", NP, 1, 1, "Path", 0);
    expect_error("row-count mismatch", eval_args("short", "norm", ""), 2, "short");
    write_part("nopath", NP, 1, 0, "File", 0);
    expect_error("missing Path column", eval_args("nopath", "norm", ""), 2, "Path");
    write_part("nan", NP, 1, 0, "Path", NAN);
    expect_error("NaN embedding", eval_args("nan", "norm", ""), 2, "nan.hdf5");
    write_part("inf", NP, 1, 0, "Path", INFINITY);
    expect_error("Inf embedding", eval_args("inf", "norm", ""), 2, "inf.hdf5");

    /* HDF5 without "dataset", of rank 1, of integers */
    write_part("nodset", NP, 1, 0, "Path", 0);
    {
        float x[NP * D] = {0};
        write_h5(ms_tmp("nodset.hdf5"), "embeddings", H5T_NATIVE_FLOAT, 2, NP, D, x);
    }
    expect_error("missing dataset", eval_args("nodset", "norm", ""), 2, "nodset.hdf5");
    write_part("rank1", NP, 1, 0, "Path", 0);
    {
        float x[NP] = {0};
        write_h5(ms_tmp("rank1.hdf5"), "dataset", H5T_NATIVE_FLOAT, 1, NP, 1, x);
    }
    expect_error("rank 1 dataset", eval_args("rank1", "norm", ""), 2, "rank1.hdf5");
    write_part("ints", NP, 1, 0, "Path", 0);
    {
        int x[NP * D] = {0};
        write_h5(ms_tmp("ints.hdf5"), "dataset", H5T_NATIVE_INT, 2, NP, D, x);
    }
    expect_error("integer dataset", eval_args("ints", "norm", ""), 2, "ints.hdf5");

    /* malformed CSV: an unterminated quote */
    write_part("badcsv", NP, 1, 0, "Path", 0);
    {
        char p[512];
        snprintf(p, sizeof p, "%s.csv", ms_tmp("badcsv"));
        ms_write_text(p, "Path,A,B\n\"img/1.png,1,0\nimg/2.png,0,1\n");
    }
    expect_error("malformed CSV", eval_args("badcsv", "norm", ""), 2, "badcsv.csv");
    expect_error("missing file", eval_args("nonexistent", "norm", ""), 2, "nonexistent");

    /* unknown condition, too few positives, pool smaller than K */
    {
        char p[1024], n[1024], a[4096];
        snprintf(p, sizeof p, "%s", ms_tmp("pos"));
        snprintf(n, sizeof n, "%s", ms_tmp("norm"));
        snprintf(a, sizeof a, "evaluate --pos-csv %s.csv --norm-csv %s.csv --conditions A,Edema --pool 10 --query 6 -k 2 --tasks 5 --json %s", p, n, ms_tmp("out.json"));
        expect_error("unknown condition (an argument error: exit 1)", a, 1, "Edema");
        snprintf(a, sizeof a, "evaluate --pos-csv %s.csv --norm-csv %s.csv --conditions A --pool 40 --query 6 -k 2 --tasks 5 --json %s", p, n, ms_tmp("out.json"));
        expect_error("too few positives", a, 2, "positives");
        snprintf(a, sizeof a, "evaluate --pos-csv %s.csv --norm-csv %s.csv --conditions A --pool 10 --query 6 -k 12 --tasks 5 --json %s", p, n, ms_tmp("out.json"));
        expect_error("pool smaller than K", a, 1, "pool");
        snprintf(a, sizeof a, "evaluate --pos-csv %s.csv --norm-csv %s.csv --conditions A --pool 10 --query 6 -k 2 --strategies nosuch --json %s", p, n, ms_tmp("out.json"));
        expect_error("unknown strategy", a, 1, "nosuch");
        snprintf(a, sizeof a, "evaluate --pos-csv %s.csv --norm-csv %s.csv --conditions A --pool ten", p, n);
        expect_error("bad number", a, 1, "--pool");
    }

    /* condition names on the shipped NIH data: CheXpert names with spaces (quoted) find NIH's
     * columns, the unknown-condition message lists only condition columns, and the positives
     * count says which part of the task needs them */
    {
        char a[16384], e[1024];
        snprintf(e, sizeof e, "%s", ms_data("data/nih1000/embeddings"));
        snprintf(a, sizeof a, "evaluate --pos-csv %s/test_pos.csv --norm-csv %s/test_norm.csv "
                 "--conditions \"Pleural Effusion,pleural other\" --pool 8 --query 4 -k 2 --tasks 3 --strategies random", e, e);
        char *o = NULL, *er = NULL;
        int code = ms_run_cli(a, &o, &er);
        if (code != 0 || !o || !strstr(o, "Effusion") || !strstr(o, "Pleural_Thickening"))
            fprintf(stderr, "synonyms: exit %d, stderr %s", code, er ? er : "");
        MS_EXPECT(code == 0 && o && strstr(o, "Effusion") && strstr(o, "Pleural_Thickening"));
        free(o);
        free(er);
        snprintf(a, sizeof a, "evaluate --pos-csv %s/test_pos.csv --norm-csv %s/test_norm.csv "
                 "--conditions \"No Finding\" --pool 10 --query 6 -k 2 --tasks 3 --json %s", e, e, ms_tmp("out.json"));
        expect_error("No Finding is not a condition", a, 1,
                     "unknown condition 'No Finding' (conditions: Atelectasis, Cardiomegaly, Effusion, Infiltration, Mass, "
                     "Nodule, Pneumonia, Pneumothorax, Consolidation, Edema, Emphysema, Fibrosis, Pleural_Thickening, Hernia)\n");
        snprintf(a, sizeof a, "evaluate --pos-csv %s/test_pos.csv --norm-csv %s/test_norm.csv "
                 "--conditions \"Pleural Other\" --pool 30 --query 10 -k 2 --tasks 3 --json %s", e, e, ms_tmp("out.json"));
        expect_error("too few positives, counted per part", a, 2,
                     "condition 'Pleural_Thickening' has 6 positives, a task needs 20 (15 pool positives + 5 query positives)");
        o = NULL;
        MS_EXPECT(ms_run_cli("evaluate --help", &o, NULL) == 0 && o &&
                  strstr(o, "--seen \"Pleural Effusion,Lung Opacity\"") && strstr(o, "Effusion = Pleural Effusion"));
        free(o);
    }
    return ms_test_summary();
}
