/* ms_table.c: one labeled CSV plus its embeddings (ms_table), and a split made of a
 * positives table and a normals table (ms_split), the form the task sampler consumes.
 *
 * Column roles in a CSV. "Path" is required. The metadata columns (Path, Age, Sex,
 * Frontal/Lateral, View, AP/PA, PatientID, Patient ID, Split, Unnamed: 0, index and an
 * unnamed column, all matched case-insensitively) are never conditions. Every other column
 * whose non-blank values all read as numbers in {-1, 0, 1} ("1", "1.0", "-1.0", ...) is a
 * condition (blank reads as 0); any other column (free text, counts, ...) is ignored, so a
 * request for it later is reported as an unknown condition with the list of real ones.
 *
 * Clinical features (MedSelect's "ASL" inputs), one (n, 3) float row per image: age
 * standardized as (age - 60.33) / 17.92, sex (female 1, male 0) and laterality (frontal 1,
 * lateral 0; from Frontal/Lateral, or else from a View column: PA/AP frontal, LL/RL/LAT
 * lateral). A missing or unreadable value is NAN; downstream code decides how to impute.
 *
 * Ownership: every pointer in ms_table and ms_split is owned by the struct and released by
 * ms_table_free / ms_split_free, which also accept a zeroed or partly filled struct (the
 * loaders use them on their own failure paths).
 */
#define _POSIX_C_SOURCE 200809L
#include "medselect/io.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "io/ms_io_internal.h"

/* ---- cell parsing -------------------------------------------------------------------- */

/* The cell without surrounding white space: *b is its start, the return value its length. */
static size_t trimmed(const char *s, const char **b) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) n--;
    *b = s;
    return n;
}

static int is_blank(const char *s) {
    const char *b;
    return trimmed(s, &b) == 0;
}

/* 1 when the trimmed cell equals `word`, ignoring case. */
static int is_word(const char *s, const char *word) {
    const char *b;
    size_t n = trimmed(s, &b);
    return n == strlen(word) && strncasecmp(b, word, n) == 0;
}

/* Parses the whole trimmed cell as a number; 0 when blank or not a number. */
static int parse_number(const char *s, double *v) {
    const char *b;
    size_t n = trimmed(s, &b);
    if (n == 0 || n > 63) return 0;
    char tmp[64];
    memcpy(tmp, b, n);
    tmp[n] = '\0';
    char *e;
    *v = strtod(tmp, &e);
    return *e == '\0';
}

/* A condition cell: blank -> 0, else a number that is exactly -1, 0 or 1. */
static int parse_label(const char *s, float *v) {
    double x;
    if (is_blank(s)) {
        *v = 0;
        return 1;
    }
    if (!parse_number(s, &x) || !(x == -1 || x == 0 || x == 1)) return 0;
    *v = (float)x;
    return 1;
}

static float clin_age(const char *s) {
    double a;
    if (!parse_number(s, &a) || !isfinite(a)) return NAN;
    return (float)((a - MS_AGE_MEAN) / MS_AGE_SD);
}

static float clin_sex(const char *s) {
    double x;
    if (is_word(s, "female") || is_word(s, "f")) return 1;
    if (is_word(s, "male") || is_word(s, "m")) return 0;
    if (parse_number(s, &x) && (x == 0 || x == 1)) return (float)x;
    return NAN;
}

static float clin_frontal(const char *s) {
    double x;
    if (is_word(s, "frontal")) return 1;
    if (is_word(s, "lateral")) return 0;
    if (parse_number(s, &x) && (x == 0 || x == 1)) return (float)x;
    return NAN;
}

/* View codes: posteroanterior / anteroposterior are frontal views; left/right lateral not. */
static float clin_view(const char *s) {
    if (is_word(s, "pa") || is_word(s, "ap")) return 1;
    if (is_word(s, "ll") || is_word(s, "rl") || is_word(s, "lateral") || is_word(s, "lat"))
        return 0;
    return NAN;
}

/* Columns that are never conditions even when they hold 0/1 values: image metadata (the
 * reference layout's and NIH's Data_Entry names) and per-image summaries of the findings
 * ("No Finding", "is_normal", "is_positive"), which no task can use as a condition. */
static int is_metadata(const char *name) {
    static const char *const meta[] = {"Path",        "Age",           "Sex",          "Frontal/Lateral",
                                       "View",        "AP/PA",         "Split",        "PatientID",
                                       "Patient ID",  "Unnamed: 0",    "index",        "",
                                       "No Finding",  "is_normal",     "is_positive",  "Image Index",
                                       "Finding Labels", "Follow-up #", "Patient Age", "Patient Gender",
                                       "View Position", "Study",       "StudyID",      "Study ID"};
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++)
        if (strcasecmp(name, meta[i]) == 0) return 1;
    return 0;
}

/* ---- ms_table ------------------------------------------------------------------------ */

char *ms_find_embeddings(const char *csv_path) {
    MS_CHECK(csv_path);
    static const char *const ext[] = {".hdf5", ".h5", ".npy"};
    size_t n = strlen(csv_path);
    size_t base = ms_has_ext(csv_path, ".csv") ? n - 4 : n;
    char *cand = ms_xmalloc(base + 8);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        memcpy(cand, csv_path, base);
        strcpy(cand + base, ext[i]);
        if (access(cand, F_OK) == 0) return cand;
    }
    cand[base] = '\0';
    ms_fail(MS_ERR_IO, "%s: no embeddings file next to it (looked for %s.hdf5, %s.h5, %s.npy)",
            csv_path, cand, cand, cand);
    free(cand);
    return NULL;
}

void ms_table_free(ms_table *t) {
    if (!t) return;
    free(t->emb);
    if (t->path) ms_strv_free(t->path, t->n);
    if (t->cond) ms_strv_free(t->cond, t->n_cond);
    free(t->label);
    free(t->clin);
    free(t->csv_path);
    free(t->emb_path);
    memset(t, 0, sizeof *t);
}

ms_status ms_table_load(ms_table *t, const char *csv_path, const char *emb_path) {
    MS_CHECK(t && csv_path);
    memset(t, 0, sizeof *t);
    ms_csv c;
    ms_status st = ms_csv_read(&c, csv_path);
    if (st) return st;
    t->csv_path = ms_xstrdup(csv_path);
    int *is_cond = NULL;

    if (c.n_rows == 0) {
        st = ms_fail(MS_ERR_DATA, "%s: no data rows (only a header)", csv_path);
        goto fail;
    }
    int pcol = ms_csv_col(&c, "Path");
    if (pcol < 0) {
        st = ms_fail(MS_ERR_DATA, "%s: no Path column", csv_path);
        goto fail;
    }
    int n = c.n_rows, nc = c.n_cols;
#define CELL(i, j) c.cell[(size_t)(i) * (size_t)nc + (size_t)(j)]

    /* Condition columns: non-metadata columns whose every cell is a valid label. */
    is_cond = ms_xcalloc((size_t)nc, sizeof(int));
    int n_cond = 0;
    for (int j = 0; j < nc; j++) {
        if (is_metadata(c.header[j])) continue;
        int ok = 1;
        float v;
        for (int i = 0; i < n && ok; i++) ok = parse_label(CELL(i, j), &v);
        is_cond[j] = ok;
        n_cond += ok;
    }
    t->n = n;
    t->path = ms_xmalloc(sizeof(char *) * (size_t)n);
    for (int i = 0; i < n; i++) t->path[i] = ms_xstrdup(CELL(i, pcol));
    t->n_cond = n_cond;
    t->cond = ms_xmalloc(sizeof(char *) * (size_t)(n_cond ? n_cond : 1));
    t->label = ms_xmalloc(sizeof(float) * (size_t)n * (size_t)(n_cond ? n_cond : 1));
    for (int j = 0, k = 0; j < nc; j++) {
        if (!is_cond[j]) continue;
        t->cond[k] = ms_xstrdup(c.header[j]);
        for (int i = 0; i < n; i++) parse_label(CELL(i, j), &t->label[(size_t)i * n_cond + k]);
        k++;
    }

    /* Clinical features. */
    int age = ms_csv_col(&c, "Age"), sex = ms_csv_col(&c, "Sex");
    int front = ms_csv_col(&c, "Frontal/Lateral"), view = ms_csv_col(&c, "View");
    t->clin_cols = (age >= 0) | (sex >= 0) << 1 | (front >= 0 || view >= 0) << 2;
    if (t->clin_cols) {
        t->clin = ms_xmalloc(sizeof(float) * 3 * (size_t)n);
        for (int i = 0; i < n; i++) {
            float *r = t->clin + 3 * (size_t)i;
            r[0] = age >= 0 ? clin_age(CELL(i, age)) : NAN;
            r[1] = sex >= 0 ? clin_sex(CELL(i, sex)) : NAN;
            r[2] = front >= 0 ? clin_frontal(CELL(i, front))
                   : view >= 0 ? clin_view(CELL(i, view))
                               : NAN;
        }
    }
#undef CELL

    /* Embeddings: same row count, all finite. */
    t->emb_path = emb_path ? ms_xstrdup(emb_path) : ms_find_embeddings(csv_path);
    if (!t->emb_path) {
        st = MS_ERR_IO; /* message recorded by ms_find_embeddings */
        goto fail;
    }
    int rows, cols;
    st = ms_matrix_read(t->emb_path, &t->emb, &rows, &cols);
    if (st) goto fail;
    if (rows != n) {
        st = ms_fail(MS_ERR_DATA, "%s: %d rows but %s has %d embedding rows", csv_path, n,
                     t->emb_path, rows);
        goto fail;
    }
    t->d = cols;
    for (size_t i = 0; i < (size_t)n * (size_t)cols; i++)
        if (!isfinite(t->emb[i])) {
            st = ms_fail(MS_ERR_DATA, "%s: row %zu column %zu is not finite (%g)", t->emb_path,
                         i / (size_t)cols, i % (size_t)cols, (double)t->emb[i]);
            goto fail;
        }
    free(is_cond);
    ms_csv_free(&c);
    return MS_OK;

fail:
    free(is_cond);
    ms_csv_free(&c);
    ms_table_free(t);
    return st;
}

/* ---- ms_split ------------------------------------------------------------------------ */

/* Fills unit and fingerprint from emb, cond and cond_rows (shared by both constructors). */
void ms_rows_unit(float *dst, const float *src, size_t n, size_t d) {
    for (size_t i = 0; i < n; i++) {
        const float *x = src + i * d;
        float *u = dst + i * d;
        double ss = 0; /* the norm in double: 512 float squares lose ~3 digits otherwise */
        for (size_t j = 0; j < d; j++) ss += (double)x[j] * (double)x[j];
        double inv = ss > 0 ? 1.0 / sqrt(ss) : 0.0; /* zero rows stay zero */
        for (size_t j = 0; j < d; j++) u[j] = (float)((double)x[j] * inv);
    }
}

static void split_finish(ms_split *s) {
    size_t n = (size_t)s->n, d = (size_t)s->d;
    s->unit = ms_xmalloc(sizeof(float) * (n * d > 0 ? n * d : 1));
    ms_rows_unit(s->unit, s->emb, n, d);
    /* Fingerprint: shape, embeddings, then per condition its name and positive rows (the
     * labels as the tasks will see them, after the uncertain-label policy). */
    int32_t shape[3] = {s->n_pos, s->n_norm, s->d};
    uint64_t h = ms_fnv1a(shape, sizeof shape, 0);
    h = ms_fnv1a(s->emb, sizeof(float) * n * d, h);
    for (int c = 0; c < s->n_cond; c++) {
        h = ms_fnv1a(s->cond[c], strlen(s->cond[c]) + 1, h);
        h = ms_fnv1a(&s->cond_count[c], sizeof(int), h);
        h = ms_fnv1a(s->cond_rows[c], sizeof(int) * (size_t)s->cond_count[c], h);
    }
    s->fingerprint = h;
}

void ms_split_free(ms_split *s) {
    if (!s) return;
    free(s->emb);
    free(s->unit);
    free(s->clin);
    if (s->path) ms_strv_free(s->path, s->n);
    if (s->cond) ms_strv_free(s->cond, s->n_cond);
    if (s->cond_rows)
        for (int c = 0; c < s->n_cond; c++) free(s->cond_rows[c]);
    free(s->cond_rows);
    free(s->cond_count);
    free(s->pos_name);
    free(s->norm_name);
    free(s->group);
    free(s->group_col);
    memset(s, 0, sizeof *s);
}

/* ---- grouping rows (e.g. by patient) --------------------------------------------------- */

static const char *const *group_sort_vals;
static int cmp_group_val(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    int c = strcmp(group_sort_vals[x], group_sort_vals[y]);
    return c ? c : (x > y) - (x < y);
}

ms_status ms_split_group_by(ms_split *s, const char *column) {
    MS_CHECK(s && column);
    if (!s->pos_name || !s->norm_name || s->pos_name[0] == '(')
        return ms_fail(MS_ERR_ARG, "grouping by '%s' needs a split loaded from CSV files", column);
    char **val = ms_xcalloc((size_t)(s->n ? s->n : 1), sizeof(char *));
    ms_status st = MS_OK;
    for (int part = 0; part < 2 && !st; part++) {
        const char *path = part ? s->norm_name : s->pos_name;
        const int base = part ? s->n_pos : 0, rows = part ? s->n_norm : s->n_pos;
        ms_csv c;
        if ((st = ms_csv_read(&c, path))) break;
        int j = ms_csv_col(&c, column);
        if (j < 0) st = ms_fail(MS_ERR_DATA, "%s: no column '%s' to group by", path, column);
        else if (c.n_rows != rows) st = ms_fail(MS_ERR_DATA, "%s: changed since it was loaded", path);
        for (int i = 0; !st && i < rows; i++) {
            const char *b;
            size_t len = trimmed(c.cell[(size_t)i * (size_t)c.n_cols + (size_t)j], &b);
            char *v = ms_xmalloc(len + 32);
            if (len) memcpy(v, b, len), v[len] = '\0';
            else snprintf(v, 32, "\x01blank %d", base + i); /* unlike any CSV value: its own group */
            val[base + i] = v;
        }
        ms_csv_free(&c);
    }
    if (!st) {
        int *idx = ms_xmalloc(sizeof(int) * (size_t)(s->n ? s->n : 1));
        for (int i = 0; i < s->n; i++) idx[i] = i;
        group_sort_vals = (const char *const *)val;
        qsort(idx, (size_t)s->n, sizeof(int), cmp_group_val);
        free(s->group);
        s->group = ms_xmalloc(sizeof(int) * (size_t)(s->n ? s->n : 1));
        int ng = 0;
        for (int i = 0; i < s->n; i++) {
            if (i == 0 || strcmp(val[idx[i]], val[idx[i - 1]])) ng++;
            s->group[idx[i]] = ng - 1;
        }
        free(idx);
        s->n_groups = ng;
        free(s->group_col);
        s->group_col = ms_xstrdup(column);
        s->fingerprint = ms_fnv1a(column, strlen(column) + 1, s->fingerprint);
        s->fingerprint = ms_fnv1a(s->group, sizeof(int) * (size_t)s->n, s->fingerprint);
    }
    for (int i = 0; i < s->n; i++) free(val[i]);
    free(val);
    return st;
}

ms_status ms_split_load(ms_split *s, const char *pos_csv, const char *pos_emb,
                        const char *norm_csv, const char *norm_emb, ms_uncertain u) {
    MS_CHECK(s && pos_csv && norm_csv);
    MS_CHECK(u == MS_UNCERTAIN_POSITIVE || u == MS_UNCERTAIN_NEGATIVE || u == MS_UNCERTAIN_IGNORE);
    memset(s, 0, sizeof *s);
    ms_table P, N;
    ms_status st = ms_table_load(&P, pos_csv, pos_emb);
    if (st) return st;
    st = ms_table_load(&N, norm_csv, norm_emb);
    if (st) {
        ms_table_free(&P);
        return st;
    }
    if (P.d != N.d) {
        st = ms_fail(MS_ERR_DATA, "%s has %d-dimensional embeddings but %s has %d", P.emb_path,
                     P.d, N.emb_path, N.d);
        goto done;
    }
    if (P.n > INT_MAX - N.n) {
        st = ms_fail(MS_ERR_DATA, "%s + %s: too many rows", pos_csv, norm_csv);
        goto done;
    }
    int n = P.n + N.n, d = P.d;
    s->n_pos = P.n;
    s->n_norm = N.n;
    s->n = n;
    s->d = d;
    s->emb = ms_xmalloc(sizeof(float) * (size_t)n * (size_t)d);
    memcpy(s->emb, P.emb, sizeof(float) * (size_t)P.n * (size_t)d);
    memcpy(s->emb + (size_t)P.n * (size_t)d, N.emb, sizeof(float) * (size_t)N.n * (size_t)d);
    s->path = ms_xmalloc(sizeof(char *) * (size_t)n);
    for (int i = 0; i < n; i++) s->path[i] = ms_xstrdup(i < P.n ? P.path[i] : N.path[i - P.n]);

    /* Clinical features present in both files; a column present in only one is dropped. */
    s->clin_cols = P.clin_cols & N.clin_cols;
    if (s->clin_cols) {
        s->clin = ms_xmalloc(sizeof(float) * 3 * (size_t)n);
        for (int i = 0; i < n; i++) {
            const float *src = i < P.n ? P.clin + 3 * (size_t)i : N.clin + 3 * (size_t)(i - P.n);
            for (int k = 0; k < 3; k++)
                s->clin[3 * (size_t)i + k] = (s->clin_cols >> k & 1) ? src[k] : NAN;
        }
    }

    /* Conditions come from the positives file. The normals file's label columns are not
     * consulted: normals ("No Finding") are by definition negatives for every condition,
     * and tasks draw their negatives from them only. Hence a positives-file row enters a
     * condition's tasks only as a positive, and the NEGATIVE and IGNORE policies give the
     * same rows (uncertain rows are neither positives nor ever drawn as negatives). */
    s->n_cond = P.n_cond;
    s->cond = ms_xmalloc(sizeof(char *) * (size_t)(P.n_cond ? P.n_cond : 1));
    s->cond_rows = ms_xcalloc((size_t)(P.n_cond ? P.n_cond : 1), sizeof(int *));
    s->cond_count = ms_xcalloc((size_t)(P.n_cond ? P.n_cond : 1), sizeof(int));
    for (int c = 0; c < P.n_cond; c++) {
        s->cond[c] = ms_xstrdup(P.cond[c]);
        int *rows = ms_xmalloc(sizeof(int) * (size_t)P.n), cnt = 0;
        for (int i = 0; i < P.n; i++) {
            float l = P.label[(size_t)i * (size_t)P.n_cond + (size_t)c];
            if (l == 1 || (l == -1 && u == MS_UNCERTAIN_POSITIVE)) rows[cnt++] = i;
        }
        s->cond_rows[c] = rows;
        s->cond_count[c] = cnt;
    }
    s->pos_name = ms_xstrdup(pos_csv);
    s->norm_name = ms_xstrdup(norm_csv);
    split_finish(s);

done:
    ms_table_free(&P);
    ms_table_free(&N);
    if (st) ms_split_free(s);
    return st;
}

void ms_split_from_arrays(ms_split *s, const float *pos_emb, int n_pos, const float *norm_emb,
                          int n_norm, int d, const float *labels, int n_cond,
                          const char *const *cond_names) {
    MS_CHECK(s && n_pos >= 0 && n_norm >= 0 && d > 0 && n_cond >= 0);
    MS_CHECK((pos_emb || n_pos == 0) && (norm_emb || n_norm == 0));
    MS_CHECK(labels || n_cond == 0 || n_pos == 0);
    MS_CHECK(n_pos <= INT_MAX - n_norm);
    memset(s, 0, sizeof *s);
    int n = n_pos + n_norm;
    s->n_pos = n_pos;
    s->n_norm = n_norm;
    s->n = n;
    s->d = d;
    size_t pd = (size_t)n_pos * (size_t)d, nd = (size_t)n_norm * (size_t)d;
    s->emb = ms_xmalloc(sizeof(float) * (pd + nd > 0 ? pd + nd : 1));
    if (pd) memcpy(s->emb, pos_emb, sizeof(float) * pd);
    if (nd) memcpy(s->emb + pd, norm_emb, sizeof(float) * nd);
    /* Stand-in paths so that code printing s->path[i] works for any split. */
    s->path = ms_xmalloc(sizeof(char *) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        char b[32];
        snprintf(b, sizeof b, i < n_pos ? "pos/%d" : "norm/%d", i < n_pos ? i : i - n_pos);
        s->path[i] = ms_xstrdup(b);
    }
    s->n_cond = n_cond;
    s->cond = ms_xmalloc(sizeof(char *) * (size_t)(n_cond ? n_cond : 1));
    s->cond_rows = ms_xcalloc((size_t)(n_cond ? n_cond : 1), sizeof(int *));
    s->cond_count = ms_xcalloc((size_t)(n_cond ? n_cond : 1), sizeof(int));
    for (int c = 0; c < n_cond; c++) {
        char b[32];
        snprintf(b, sizeof b, "cond%d", c);
        s->cond[c] = ms_xstrdup(cond_names && cond_names[c] ? cond_names[c] : b);
        int *rows = ms_xmalloc(sizeof(int) * (size_t)(n_pos ? n_pos : 1)), cnt = 0;
        for (int i = 0; i < n_pos; i++)
            if (labels[(size_t)i * (size_t)n_cond + (size_t)c] > 0.5f) rows[cnt++] = i;
        s->cond_rows[c] = rows;
        s->cond_count[c] = cnt;
    }
    s->pos_name = ms_xstrdup("(positives array)");
    s->norm_name = ms_xstrdup("(normals array)");
    split_finish(s);
}

/* ---- condition names ----------------------------------------------------------------- */

/* NIH ChestX-ray14 and CheXpert (also MIMIC-CXR) name one finding differently in these cases.
 * A name of one vocabulary finds the other's column when the file has no column of its own
 * name. Names both vocabularies share (Atelectasis, Cardiomegaly, Consolidation, Edema,
 * Pneumonia, Pneumothorax) need no entry; findings with no single counterpart (NIH
 * Infiltration, Mass, Nodule, Emphysema, Fibrosis, Hernia; CheXpert Lung Opacity, Lung Lesion,
 * Enlarged Cardiomediastinum, Fracture, Support Devices) have none. The table is documented in
 * include/medselect/io.h and README. */
static const char *const synonyms[][2] = {
    {"Effusion", "Pleural Effusion"},
    {"Pleural_Thickening", "Pleural Other"}, /* CheXpert files pleural thickening under Pleural Other */
};

/* Name comparison: case-insensitive, '_', '-' and ' ' equivalent. */
static int name_char(char ch) { return ch == '_' || ch == '-' ? ' ' : tolower((unsigned char)ch); }

static int same_name(const char *a, const char *b) {
    while (*a && *b && name_char(*a) == name_char(*b)) a++, b++;
    return !*a && !*b;
}

const char *ms_condition_synonym(const char *name) {
    MS_CHECK(name);
    for (size_t i = 0; i < sizeof synonyms / sizeof synonyms[0]; i++)
        for (int k = 0; k < 2; k++)
            if (same_name(synonyms[i][k], name)) return synonyms[i][1 - k];
    return NULL;
}

static int find_exact(const ms_split *s, const char *name) {
    for (int c = 0; c < s->n_cond; c++)
        if (same_name(s->cond[c], name)) return c;
    return -1;
}

int ms_split_find_condition(const ms_split *s, const char *name) {
    MS_CHECK(s && name);
    int c = find_exact(s, name);
    if (c >= 0) return c;
    const char *alt = ms_condition_synonym(name);
    return alt ? find_exact(s, alt) : -1;
}

ms_status ms_split_resolve(const ms_split *s, char **names, int n, int *idx) {
    MS_CHECK(s && (names || n == 0) && (idx || n == 0));
    for (int i = 0; i < n; i++) {
        idx[i] = ms_split_find_condition(s, names[i]);
        if (idx[i] >= 0) continue;
        size_t cap = 16;
        for (int c = 0; c < s->n_cond; c++) cap += strlen(s->cond[c]) + 2;
        char *list = ms_xmalloc(cap);
        size_t used = 0;
        list[0] = '\0';
        for (int c = 0; c < s->n_cond; c++)
            used += (size_t)snprintf(list + used, cap - used, "%s%s", c ? ", " : "", s->cond[c]);
        if (s->n_cond == 0) snprintf(list, cap, "none");
        const char *alt = ms_condition_synonym(names[i]);
        ms_status st;
        if (alt)
            st = ms_fail(MS_ERR_ARG, "%s: unknown condition '%s' (nor its synonym '%s'; conditions: %s)",
                         s->pos_name ? s->pos_name : "split", names[i], alt, list);
        else
            st = ms_fail(MS_ERR_ARG, "%s: unknown condition '%s' (conditions: %s)",
                         s->pos_name ? s->pos_name : "split", names[i], list);
        free(list);
        return st;
    }
    return MS_OK;
}

/* ---- uncertain-label policy names ---------------------------------------------------- */

const char *ms_uncertain_name(ms_uncertain u) {
    switch (u) {
    case MS_UNCERTAIN_POSITIVE: return "positive";
    case MS_UNCERTAIN_NEGATIVE: return "negative";
    case MS_UNCERTAIN_IGNORE: return "ignore";
    }
    return "?";
}

ms_status ms_uncertain_parse(const char *s, ms_uncertain *u) {
    MS_CHECK(s && u);
    for (int k = MS_UNCERTAIN_POSITIVE; k <= MS_UNCERTAIN_IGNORE; k++)
        if (strcasecmp(s, ms_uncertain_name((ms_uncertain)k)) == 0) {
            *u = (ms_uncertain)k;
            return MS_OK;
        }
    return ms_fail(MS_ERR_ARG, "unknown uncertain-label policy '%s' (positive, negative, ignore)",
                   s);
}
