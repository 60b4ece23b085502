/* ms_augment.c: --augment geometry (train.h): a random change of one meta-train task's
 * embedding geometry, applied to its pool and query rows alike.
 *
 * Per task, with m the pool's mean row, e = y - m and r^2 the pool's mean |e|^2 (all in
 * double):
 *   y' = m + c (e + sum_l (f_l - 1) (v_l . e) v_l) + nu r / sqrt(D) n
 * The directions v_l are Gram-Schmidt of E^T g_l (E the pool's centred rows (P, D), g_l ~
 * N(0, I_P)): random directions of the pool's span, drawn with the pool's own covariance.
 * A direction left with less than 1e-6 of its length after the earlier ones are taken out
 * (a pool spanning fewer directions than asked) is dropped; its factor is drawn all the same,
 * so the draws that follow do not depend on it.
 *
 * Everything comes from the one generator passed in, in a fixed order, so a task's change is
 * a pure function of that generator's seed (the trainer seeds it with (seed, iteration,
 * slot)), whatever the thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/train.h"
#include "training/ms_train_internal.h"

void ms_geometry_defaults(ms_geometry_aug *g) {
    g->on = 1;
    g->noise = 0.5;
    g->spread = 2.0;
    g->axes = 2.0;
    g->dirs = 4;
}

void ms_geometry_format(char *buf, size_t n, const ms_geometry_aug *g) {
    snprintf(buf, n, "noise=%.6g,spread=%.6g,axes=%.6g,dirs=%d", g->noise, g->spread, g->axes, g->dirs);
}

ms_status ms_geometry_parse(const char *opts, ms_geometry_aug *g) {
    ms_geometry_aug out;
    ms_geometry_defaults(&out);
    const char *p = opts ? opts : "";
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[64];
        if (len == 0 || len >= sizeof item)
            return ms_fail(MS_ERR_ARG, "geometry option '%.*s': expected key=value", (int)len, p);
        memcpy(item, p, len);
        item[len] = 0;
        char *eq = strchr(item, '=');
        if (!eq) return ms_fail(MS_ERR_ARG, "geometry option '%s': expected key=value", item);
        *eq = 0;
        const char *key = item, *val = eq + 1;
        char *rest;
        double v = strtod(val, &rest);
        if (!*val || *rest || !isfinite(v))
            return ms_fail(MS_ERR_ARG, "geometry option %s=%s: not a number", key, val);
        if (!strcmp(key, "noise")) {
            if (v < 0 || v > 10) return ms_fail(MS_ERR_ARG, "geometry option noise=%s: expected 0 to 10", val);
            out.noise = v;
        } else if (!strcmp(key, "spread")) {
            if (v < 1 || v > 100) return ms_fail(MS_ERR_ARG, "geometry option spread=%s: expected 1 to 100", val);
            out.spread = v;
        } else if (!strcmp(key, "axes")) {
            if (v < 1 || v > 100) return ms_fail(MS_ERR_ARG, "geometry option axes=%s: expected 1 to 100", val);
            out.axes = v;
        } else if (!strcmp(key, "dirs")) {
            if (v < 0 || v > MS_GEOMETRY_MAX_DIRS || v != floor(v))
                return ms_fail(MS_ERR_ARG, "geometry option dirs=%s: expected a whole number 0 to %d", val,
                               MS_GEOMETRY_MAX_DIRS);
            out.dirs = (int)v;
        } else {
            return ms_fail(MS_ERR_ARG, "geometry option '%s': expected noise, spread, axes or dirs", key);
        }
        p = end ? end + 1 : p + len;
        if (end && !*p) return ms_fail(MS_ERR_ARG, "geometry options '%s': trailing comma", opts);
    }
    *g = out;
    return MS_OK;
}

size_t ms_train_geometry_work(int D, int dirs) { return (size_t)(dirs + 2) * (size_t)D; }

/* y (first D columns of one row) <- m + c (e + sum_l (f_l - 1)(v_l . e) v_l) + nu r/sqrt(D) n */
static void change_row(float *y, int D, const double *m, const double *V, const double *f, int k, double c,
                       double noise_sd, ms_rng *rng, double *e) {
    for (int j = 0; j < D; j++) e[j] = (double)y[j] - m[j];
    double proj[MS_GEOMETRY_MAX_DIRS];
    for (int l = 0; l < k; l++) {
        const double *v = V + (size_t)l * D;
        double s = 0;
        for (int j = 0; j < D; j++) s += v[j] * e[j];
        proj[l] = (f[l] - 1.0) * s; /* the directions are orthonormal: all projections first */
    }
    for (int l = 0; l < k; l++) {
        const double *v = V + (size_t)l * D;
        for (int j = 0; j < D; j++) e[j] += proj[l] * v[j];
    }
    for (int j = 0; j < D; j++) {
        double n = noise_sd > 0 ? noise_sd * ms_rng_normal(rng) : 0.0;
        y[j] = (float)(m[j] + c * e[j] + n);
    }
}

void ms_train_geometry_rows(float *pool, int P, int pstride, float *query, int Q, int qstride, int D,
                            const ms_geometry_aug *g, ms_rng *rng, double *work, ms_geometry_draw *out) {
    MS_CHECK(P > 0 && D > 0 && g->dirs >= 0 && g->dirs <= MS_GEOMETRY_MAX_DIRS);
    double *m = work, *e = m + D, *V = e + D; /* D, D, dirs D */
    memset(m, 0, sizeof(double) * (size_t)D);
    for (int i = 0; i < P; i++)
        for (int j = 0; j < D; j++) m[j] += pool[(size_t)i * pstride + j];
    for (int j = 0; j < D; j++) m[j] /= P;
    double r2 = 0;
    for (int i = 0; i < P; i++)
        for (int j = 0; j < D; j++) {
            double d = pool[(size_t)i * pstride + j] - m[j];
            r2 += d * d;
        }
    r2 /= P;
    double c = pow(g->spread, 2.0 * ms_rng_uniform(rng) - 1.0);
    double fall[MS_GEOMETRY_MAX_DIRS], f[MS_GEOMETRY_MAX_DIRS];
    for (int l = 0; l < g->dirs; l++) fall[l] = pow(g->axes, 2.0 * ms_rng_uniform(rng) - 1.0);
    double nu = g->noise * ms_rng_uniform(rng);
    int k = 0;
    for (int l = 0; l < g->dirs; l++) {
        double *v = V + (size_t)k * D;
        memset(v, 0, sizeof(double) * (size_t)D);
        for (int i = 0; i < P; i++) {
            double w = ms_rng_normal(rng);
            for (int j = 0; j < D; j++) v[j] += w * (pool[(size_t)i * pstride + j] - m[j]);
        }
        double n0 = 0;
        for (int j = 0; j < D; j++) n0 += v[j] * v[j];
        /* Gram-Schmidt against the kept directions, twice (the second pass removes what
         * rounding left of the first) */
        for (int pass = 0; pass < 2; pass++)
            for (int q = 0; q < k; q++) {
                const double *u = V + (size_t)q * D;
                double s = 0;
                for (int j = 0; j < D; j++) s += u[j] * v[j];
                for (int j = 0; j < D; j++) v[j] -= s * u[j];
            }
        double n1 = 0;
        for (int j = 0; j < D; j++) n1 += v[j] * v[j];
        if (!(n0 > 0) || n1 <= 1e-12 * n0) continue;
        double inv = 1.0 / sqrt(n1);
        for (int j = 0; j < D; j++) v[j] *= inv;
        f[k++] = fall[l];
    }
    double noise_sd = nu * sqrt(r2 / D);
    for (int i = 0; i < P; i++) change_row(pool + (size_t)i * pstride, D, m, V, f, k, c, noise_sd, rng, e);
    for (int i = 0; i < Q; i++) change_row(query + (size_t)i * qstride, D, m, V, f, k, c, noise_sd, rng, e);
    if (out) {
        out->c = c;
        out->nu = nu;
        out->r = sqrt(r2);
        out->k = k;
        for (int l = 0; l < k; l++) out->f[l] = f[l];
    }
}
