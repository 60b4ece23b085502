/* fuzz_csv.c: CSV text (ms_csv_parse, from memory, not NUL-terminated), then the same file
 * as a labeled table (ms_table_load with an NPY of matching rows: condition, clinical and
 * metadata columns) and as both halves of a split (ms_split_load, condition lookup). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "medselect/io.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_setup(256);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ms_csv c;
    if (ms_csv_parse(&c, (const char *)data, size, "input.csv") != MS_OK) return 0;
    int rows = c.n_rows;
    for (int i = 0; i < c.n_cols; i++) MS_CHECK(c.header[i]);
    for (long i = 0; i < (long)rows * c.n_cols; i++) MS_CHECK(c.cell[i]);
    ms_csv_free(&c);
    if (rows < 1 || rows > 5000) return 0;
    char csv[1024], npy[1024];
    snprintf(csv, sizeof csv, "%s", fuzz_write("table.csv", data, size));
    enum { D = 3 };
    float *x = malloc(sizeof(float) * (size_t)rows * D);
    for (int i = 0; i < rows * D; i++) x[i] = (float)((i * 37) % 11) - 5.0f;
    snprintf(npy, sizeof npy, "%s/table.npy", fuzz_dir());
    ms_status st = ms_npy_write(npy, x, rows, D);
    free(x);
    if (st) return 0;
    ms_table t;
    if (ms_table_load(&t, csv, npy) == MS_OK) {
        MS_CHECK(t.n == rows && t.d == D);
        ms_table_free(&t);
    }
    static const ms_uncertain modes[3] = {MS_UNCERTAIN_POSITIVE, MS_UNCERTAIN_NEGATIVE, MS_UNCERTAIN_IGNORE};
    ms_split s;
    if (ms_split_load(&s, csv, npy, csv, npy, modes[size % 3]) == MS_OK) {
        MS_CHECK(s.n == 2 * rows);
        if (s.n_cond > 0) {
            char *names[2] = {s.cond[0], "no such condition"};
            int idx[2];
            ms_split_resolve(&s, names, 1, idx);
            ms_split_resolve(&s, names, 2, idx);
        }
        ms_split_free(&s);
    }
    return 0;
}
