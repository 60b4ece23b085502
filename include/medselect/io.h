/* medselect/io.h: reading labeled (or unlabeled) image embeddings.
 *
 * The reference layout, per split: a positives CSV (images with at least one finding) and a
 * normals CSV ("No Finding"), each with a Path column, one column per condition (1 positive,
 * 0 negative, -1 uncertain, blank = 0) and optional Age, Sex, Frontal/Lateral or View columns.
 * Next to each CSV an HDF5 file with the same base name (".hdf5" or ".h5") holds the dataset
 * "dataset": one float32/float64 row per CSV row. Embeddings may instead come from an NPY
 * file (float32/float64, C order, format 1.0-3.0) with the same row order.
 *
 * Every loader returns MS_ERR_IO / MS_ERR_DATA with one line naming the file and the problem
 * (ms_last_error()).
 */
#ifndef MEDSELECT_IO_H
#define MEDSELECT_IO_H

#include "medselect/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CSV ------------------------------------------------------------------------------
 * RFC 4180 CSV: quoted fields with embedded commas, quotes ("") and newlines; CRLF or LF;
 * a UTF-8 byte-order mark is skipped; blank lines are skipped. The first record is the
 * header. Every record must have the header's number of fields, else MS_ERR_DATA
 * "FILE: line N has X fields, the header has Y" (N: the line where the record starts).
 * An empty file is an error; a header-only file parses with n_rows 0. */
typedef struct {
    int n_cols;
    int n_rows;    /* data records (header excluded) */
    char **header; /* n_cols names */
    char **cell;   /* (n_rows, n_cols) strings, row-major; never NULL ("" when empty) */
    char *path;
} ms_csv;

ms_status ms_csv_read(ms_csv *c, const char *path);
/* Parses `len` bytes of text (not necessarily NUL-terminated); `name` is used in messages
 * and stored as c->path. On failure *c is left zeroed. Free with ms_csv_free. */
ms_status ms_csv_parse(ms_csv *c, const char *text, size_t len, const char *name);
int ms_csv_col(const ms_csv *c, const char *name); /* case-insensitive; -1 when absent */
void ms_csv_free(ms_csv *c);
/* Writes one field with quoting when needed (comma, quote, CR/LF, leading/trailing space). */
void ms_csv_put(FILE *f, const char *field);

/* ---- dense matrices -------------------------------------------------------------------
 * The readers allocate *out (rows, cols) row-major float32 (the caller frees it); float64
 * data is narrowed, so values beyond the float32 range become +-inf. On failure *out is
 * NULL. Values are returned as stored (ms_table_load checks that they are finite). Errors:
 * MS_ERR_IO when the file cannot be opened or read; MS_ERR_DATA for a file that is not
 * HDF5/NPY, a missing dataset, a rank other than 2, an empty or non-float array, and for
 * NPY a big-endian dtype, Fortran order or truncated data. */
/* Reads a rank-2 float32/float64 dataset into a newly allocated float32 (rows, cols) array.
 * `dataset` NULL means "dataset". */
ms_status ms_hdf5_read(const char *path, const char *dataset, float **out, int *rows, int *cols);
/* Writes a (rows, cols) float32 array as `dataset` (NULL: "dataset"), atomically, through
 * an output of medselect/output.h (the file is built in memory by HDF5's core driver). */
ms_status ms_hdf5_write(const char *path, const char *dataset, const float *x, int rows, int cols);
/* The same file written into an open output `o` (not committed: the caller commits it,
 * e.g. together with other files through ms_out_commit_all). */
ms_status ms_hdf5_write_to(ms_outfile *o, const char *dataset, const float *x, int rows, int cols);
/* NPY format 1.0, 2.0 or 3.0 with dtype '<f4' or '<f8', C order, rank 2. */
ms_status ms_npy_read(const char *path, float **out, int *rows, int *cols);
/* Writes format 1.0 '<f4' (x is (rows, cols)), atomically. */
ms_status ms_npy_write(const char *path, const float *x, int rows, int cols);
/* The same file written into an open output `o` (not committed). */
ms_status ms_npy_write_to(ms_outfile *o, const float *x, int rows, int cols);
/* By extension (case-insensitive): .hdf5/.h5/.he5 -> HDF5 dataset "dataset"; .npy -> NPY;
 * any other extension is MS_ERR_ARG. */
ms_status ms_matrix_read(const char *path, float **out, int *rows, int *cols);

/* ---- one CSV + its embeddings --------------------------------------------------------- */
#define MS_NCLIN 3 /* clinical features: standardized age, sex (female 1), frontal (1) */
#define MS_AGE_MEAN 60.33
#define MS_AGE_SD 17.92

typedef struct {
    int n, d;
    float *emb;     /* (n, d) embeddings as stored, owned */
    char **path;    /* (n) the Path column */
    int n_cond;     /* condition columns: every column other than Path and the known
                       metadata columns (Age, Sex, Frontal/Lateral, View, AP/PA, PatientID,
                       Patient ID, Split, Unnamed: 0, index, an unnamed column, NIH's Image
                       Index, Finding Labels, Follow-up #, Patient Age, Patient Gender, View
                       Position, Study/StudyID/Study ID) and the per-image summaries No
                       Finding, is_normal and is_positive (all matched case-insensitively)
                       whose values are all blank or numbers in {-1, 0, 1} ("1", "1.0",
                       "-1.0"). Other columns (text, counts) are ignored. */
    char **cond;    /* (n_cond) names as in the header */
    float *label;   /* (n, n_cond): 1, 0, -1, blank read as 0 */
    float *clin;    /* (n, 3) standardized age (age - MS_AGE_MEAN) / MS_AGE_SD; sex
                       (Female/F/1 -> 1, Male/M/0 -> 0); frontal (Frontal/1 -> 1,
                       Lateral/0 -> 0; without a Frontal/Lateral column, from View: PA/AP
                       -> 1, LL/RL/LAT/LATERAL -> 0). NAN where a value is missing or
                       unreadable; NULL when none of the three columns exists */
    int clin_cols;  /* bit 0 age, bit 1 sex, bit 2 frontal: which columns exist */
    char *csv_path, *emb_path;
} ms_table;

/* Loads a CSV and its embeddings. emb_path NULL: found by ms_find_embeddings.
 * Checks: at least one data row, Path column present, row counts equal, rank 2, float
 * dtype, all values finite. On failure *t is left zeroed. Free with ms_table_free. */
ms_status ms_table_load(ms_table *t, const char *csv_path, const char *emb_path);
void ms_table_free(ms_table *t);
/* Finds the embedding file next to a CSV: base.hdf5, base.h5, then base.npy, where base is
 * the path without ".csv". NULL (with an MS_ERR_IO message) if none exists. The caller
 * frees the result. */
char *ms_find_embeddings(const char *csv_path);

/* ---- a labeled split: positives then normals ------------------------------------------ */
typedef enum {
    MS_UNCERTAIN_POSITIVE = 0, /* the paper's choice */
    MS_UNCERTAIN_NEGATIVE,
    MS_UNCERTAIN_IGNORE,       /* uncertain rows never enter tasks for that condition */
} ms_uncertain;
/* Tasks draw negatives from the normals file only, so a positives-file row enters a
 * condition's tasks only as a positive: NEGATIVE and IGNORE select the same rows. */

/* "positive", "negative", "ignore" (case-insensitive) -> *u; else MS_ERR_ARG. */
ms_status ms_uncertain_parse(const char *s, ms_uncertain *u);
const char *ms_uncertain_name(ms_uncertain u); /* the inverse; a static string */

typedef struct {
    int n_pos, n_norm, n; /* rows [0, n_pos) come from the positives file, then normals */
    int d;
    float *emb;      /* (n, d) as stored */
    float *unit;     /* (n, d) rows scaled to unit L2 norm (zero rows stay zero) */
    float *clin;     /* (n, 3) or NULL, as in ms_table */
    int clin_cols;   /* columns present in both files (bit mask as in ms_table) */
    char **path;     /* (n) */
    int n_cond;
    char **cond;     /* conditions of the positives file */
    int **cond_rows; /* per condition: rows (in [0, n_pos)) positive for it, ascending */
    int *cond_count; /* per condition: number of such rows */
    char *pos_name, *norm_name; /* the positives/normals CSV paths, for messages */
    uint64_t fingerprint;       /* FNV-1a of the shape, embeddings, condition names and
                                   cond_rows (labels after the uncertain policy); after
                                   ms_split_group_by also of the column name and group ids */
    int *group;                 /* (n) group id per row (e.g. the patient), or NULL: set by
                                   ms_split_group_by; tasks then draw pools with at most one
                                   image per group (see tasks.h) */
    int n_groups;
    char *group_col;            /* the grouping column's name, or NULL */
} ms_split;

/* dst (n, d) = the rows of src (n, d) scaled to unit L2 norm (norms summed in double; zero
 * rows stay zero). The cosine predictor and the strategies read these rows. */
void ms_rows_unit(float *dst, const float *src, size_t n, size_t d);

/* pos_emb/norm_emb NULL: found next to the CSVs. Both files must have the same embedding
 * dimension. Clinical columns are kept when present in both files. On failure *s is left
 * zeroed. Free with ms_split_free. */
ms_status ms_split_load(ms_split *s, const char *pos_csv, const char *pos_emb,
                        const char *norm_csv, const char *norm_emb, ms_uncertain u);
/* Builds a split from arrays (copies them). pos_emb (n_pos, d), norm_emb (n_norm, d),
 * labels (n_pos, n_cond) with 1 = positive (> 0.5), cond_names (n_cond) or NULL ("cond0",
 * ...). The split has no clinical features (clin NULL), stand-in paths "pos/<i>" and
 * "norm/<i>" and the names "(positives array)" / "(normals array)" in messages. */
void ms_split_from_arrays(ms_split *s, const float *pos_emb, int n_pos, const float *norm_emb,
                          int n_norm, int d, const float *labels, int n_cond,
                          const char *const *cond_names);
/* Condition names. Comparison ignores case, and '_', '-' and ' ' are the same character
 * ("pleural effusion" = "Pleural_Effusion"). NIH ChestX-ray14 and CheXpert name two findings
 * differently; either name finds the column when the file has no column of the name asked for:
 *
 *     NIH ChestX-ray14      CheXpert / MIMIC-CXR
 *     Effusion              Pleural Effusion
 *     Pleural_Thickening    Pleural Other (CheXpert's label for pleural thickening and
 *                                          other pleural findings)
 *
 * Atelectasis, Cardiomegaly, Consolidation, Edema, Pneumonia and Pneumothorax are spelled the
 * same in both. No synonym exists for NIH Infiltration, Mass, Nodule, Emphysema, Fibrosis,
 * Hernia or for CheXpert Lung Opacity, Lung Lesion, Enlarged Cardiomediastinum, Fracture,
 * Support Devices (none has a single counterpart). */
/* The other vocabulary's name for `name` (a static string), or NULL. */
const char *ms_condition_synonym(const char *name);
/* Condition index by name (the column of that name, else the column of its synonym); -1 when
 * absent. */
int ms_split_find_condition(const ms_split *s, const char *name);
/* Resolves a list of names into indices; an unknown name is an MS_ERR_ARG naming the file and
 * the name (and its synonym, if it has one) and listing the file's condition columns. */
ms_status ms_split_resolve(const ms_split *s, char **names, int n, int *idx);
void ms_split_free(ms_split *s);
/* Groups the split's rows by a column of both CSVs (e.g. PatientID; the name matched
 * case-insensitively): equal values are one group across the positives and normals files; a
 * blank value is a group of its own. Sets s->group, n_groups, group_col and folds them into
 * s->fingerprint. MS_ERR_DATA naming the file when a CSV lacks the column; MS_ERR_ARG for a
 * split built from arrays (it has no CSV). */
ms_status ms_split_group_by(ms_split *s, const char *column);

#ifdef __cplusplus
}
#endif
#endif
