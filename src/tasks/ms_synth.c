/* ms_synth.c: the synthetic meta-dataset of `medselect demo` (model described in synth.h). */
#define _POSIX_C_SOURCE 200809L
#include "medselect/synth.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void ms_synth_defaults(ms_synth_config *c) {
    c->d = 64;
    c->n_cond = 8;
    c->n_seen = 6;
    c->n_modes = 6;
    c->noise = 1.0;
    c->effect = 1.0;
    c->comorbid = 0.2;
    c->outlier_frac = 0.08;
    c->n_pos[0] = 3000, c->n_pos[1] = 800, c->n_pos[2] = 1200;
    c->n_norm[0] = 2000, c->n_norm[1] = 600, c->n_norm[2] = 900;
    c->seed = 7;
}

/* Fills v (d) with a random unit vector. */
static void unit_vector(ms_rng *r, float *v, int d) {
    double n2 = 0;
    for (int j = 0; j < d; j++) {
        v[j] = (float)ms_rng_normal(r);
        n2 += (double)v[j] * v[j];
    }
    float inv = (float)(1.0 / sqrt(n2));
    for (int j = 0; j < d; j++) v[j] *= inv;
}

typedef struct {
    float *mode;  /* (n_modes, d) mode centres */
    float *dir;   /* (n_cond, d) condition directions */
    int *home;    /* (n_cond) home mode of each condition */
} synth_world;

/* One image: x (d) gets mode centre + noise + condition shifts, or an outlier. */
static void synth_image(const ms_synth_config *c, const synth_world *w, ms_rng *r, float *x,
                        const float *lab, float *clin) {
    int d = c->d;
    /* mode: the home mode of the first condition present is twice as likely */
    int first = -1;
    for (int k = 0; k < c->n_cond; k++)
        if (lab && lab[k] > 0) {
            first = k;
            break;
        }
    int m;
    if (first >= 0) {
        uint32_t u = ms_rng_below(r, (uint32_t)c->n_modes + 1);
        m = u == (uint32_t)c->n_modes ? w->home[first] : (int)u;
    } else {
        m = (int)ms_rng_below(r, (uint32_t)c->n_modes);
    }
    double noise = c->noise / sqrt((double)d) * 2.0;
    for (int j = 0; j < d; j++) x[j] = w->mode[(size_t)m * d + j] + (float)(noise * ms_rng_normal(r));
    double age_shift = 0;
    for (int k = 0; lab && k < c->n_cond; k++) {
        if (lab[k] <= 0) continue;
        double sev = 0.3 + 1.2 * ms_rng_uniform(r);
        for (int j = 0; j < d; j++) x[j] += (float)(sev * c->effect * w->dir[(size_t)k * d + j]);
        age_shift += 4.0 * sev;
    }
    if (ms_rng_uniform(r) < c->outlier_frac) {
        /* corrupted image: a large random vector replaces the embedding */
        unit_vector(r, x, d);
        for (int j = 0; j < d; j++) x[j] *= 8.0f;
    }
    double age = 55.0 + age_shift + 15.0 * ms_rng_normal(r);
    if (age < 18) age = 18;
    if (age > 95) age = 95;
    clin[0] = (float)((age - MS_AGE_MEAN) / MS_AGE_SD);
    clin[1] = ms_rng_uniform(r) < 0.5 ? 1.0f : 0.0f;
    clin[2] = ms_rng_uniform(r) < 0.85 ? 1.0f : 0.0f;
}

static void synth_split(const ms_synth_config *c, const synth_world *w, int split, ms_split *s) {
    int d = c->d, np = c->n_pos[split], nn = c->n_norm[split];
    float *pos = ms_xmalloc(sizeof(float) * (size_t)np * d);
    float *norm = ms_xmalloc(sizeof(float) * (size_t)nn * d);
    float *lab = ms_xcalloc((size_t)np * c->n_cond, sizeof(float));
    float *clin = ms_xmalloc(sizeof(float) * (size_t)(np + nn) * MS_NCLIN);
    ms_rng r;
    ms_rng_init(&r, c->seed, MS_STREAM_SYNTH, 100 + (uint64_t)split);
    for (int i = 0; i < np; i++) {
        float *l = lab + (size_t)i * c->n_cond;
        l[ms_rng_below(&r, (uint32_t)c->n_cond)] = 1.0f;
        if (ms_rng_uniform(&r) < c->comorbid) l[ms_rng_below(&r, (uint32_t)c->n_cond)] = 1.0f;
        synth_image(c, w, &r, pos + (size_t)i * d, l, clin + (size_t)i * MS_NCLIN);
    }
    for (int i = 0; i < nn; i++)
        synth_image(c, w, &r, norm + (size_t)i * d, NULL, clin + (size_t)(np + i) * MS_NCLIN);
    char **names = ms_xmalloc(sizeof(char *) * (size_t)c->n_cond);
    for (int k = 0; k < c->n_cond; k++) {
        names[k] = ms_xmalloc(16);
        snprintf(names[k], 16, "finding_%c", 'a' + k);
    }
    ms_split_from_arrays(s, pos, np, norm, nn, d, lab, c->n_cond, (const char *const *)names);
    free(s->clin);
    s->clin = clin;
    s->clin_cols = 7;
    ms_strv_free(names, c->n_cond);
    free(pos);
    free(norm);
    free(lab);
}

void ms_synth_generate(const ms_synth_config *c, ms_split *train, ms_split *val, ms_split *test) {
    MS_CHECK(c->d > 0 && c->n_cond > 0 && c->n_modes > 0 && c->n_cond <= 26);
    synth_world w;
    int d = c->d;
    w.mode = ms_xmalloc(sizeof(float) * (size_t)c->n_modes * d);
    w.dir = ms_xmalloc(sizeof(float) * (size_t)c->n_cond * d);
    w.home = ms_xmalloc(sizeof(int) * (size_t)c->n_cond);
    ms_rng r;
    ms_rng_init(&r, c->seed, MS_STREAM_SYNTH, 0);
    for (int m = 0; m < c->n_modes; m++) unit_vector(&r, w.mode + (size_t)m * d, d);
    for (int k = 0; k < c->n_cond; k++) {
        unit_vector(&r, w.dir + (size_t)k * d, d);
        w.home[k] = (int)ms_rng_below(&r, (uint32_t)c->n_modes);
    }
    synth_split(c, &w, 0, train);
    synth_split(c, &w, 1, val);
    synth_split(c, &w, 2, test);
    free(w.mode);
    free(w.dir);
    free(w.home);
}

/* Writes one CSV + HDF5 pair for rows [r0, r1) of the split. */
static ms_status write_part(const ms_split *s, const char *dir, const char *prefix,
                            const char *part, int r0, int r1) {
    char csv[4096], h5[4096];
    snprintf(csv, sizeof csv, "%s/%s_%s.csv", dir, prefix, part);
    snprintf(h5, sizeof h5, "%s/%s_%s.hdf5", dir, prefix, part);
    ms_outfile o;
    ms_status st = ms_out_open(&o, csv);
    if (st) return st;
    fputs("Path,Age,Sex,Frontal/Lateral", o.f);
    for (int k = 0; k < s->n_cond; k++) {
        fputc(',', o.f);
        ms_csv_put(o.f, s->cond[k]);
    }
    fputc('\n', o.f);
    for (int i = r0; i < r1; i++) {
        const float *cl = s->clin + (size_t)i * MS_NCLIN;
        fprintf(o.f, "%s/%s_%06d.png,%.0f,%s,%s", part, prefix, i - r0, cl[0] * MS_AGE_SD + MS_AGE_MEAN,
                cl[1] > 0.5f ? "Female" : "Male", cl[2] > 0.5f ? "Frontal" : "Lateral");
        for (int k = 0; k < s->n_cond; k++) {
            int pos = 0;
            if (i < s->n_pos)
                for (int j = 0; j < s->cond_count[k]; j++)
                    if (s->cond_rows[k][j] == i) pos = 1;
            fprintf(o.f, ",%s", pos ? "1.0" : "0.0");
        }
        fputc('\n', o.f);
    }
    /* the embeddings, then the CSV that names them (medselect/output.h) */
    ms_outfile oh;
    st = ms_out_open(&oh, h5);
    if (!st) {
        st = ms_hdf5_write_to(&oh, "dataset", s->emb + (size_t)r0 * s->d, r1 - r0, s->d);
        ms_outfile *all[2] = {&oh, &o};
        if (!st) st = ms_out_commit_all(all, 2);
        ms_out_abort(&oh);
    }
    ms_out_abort(&o);
    return st;
}

ms_status ms_synth_write(const ms_split *s, const char *dir, const char *prefix) {
    ms_status st = ms_mkdirs(dir, NULL, NULL);
    if (st) return st;
    MS_CHECK(s->clin != NULL);
    st = write_part(s, dir, prefix, "pos", 0, s->n_pos);
    if (!st) st = write_part(s, dir, prefix, "norm", s->n_pos, s->n);
    return st;
}
