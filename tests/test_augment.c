/* test_augment.c: --augment geometry (train.h, ms_augment.c). The change does what train.h
 * says, term by term (concentration about the pool mean, scaling of directions of the pool's
 * span, noise of the stated energy), on pool and query rows alike and nowhere else; it is a
 * pure function of the generator's seed; it moves the relational features that train.h says
 * it moves and leaves the others; bad options are refused; and a relational training with it
 * gives bitwise the same weights on 1 and 2 threads, records the options in the checkpoint,
 * and differs from a training without it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/arch.h"
#include "medselect/checkpoint.h"
#include "medselect/train.h"
#include "model/ms_relational.h"
#include "training/ms_train_internal.h"
#include "ms_test.h"

enum { P = 30, Q = 10, D = 32, PS = 35 /* pool stride: 3 extra columns must stay */ };

/* A pool (P, PS) whose rows live in the first `span` coordinates around an offset mean (so
 * that unit rows differ from centred ones), extra columns set to 7, and a query (Q, D). */
static void make_rows(float *pool, float *query, int span, uint64_t seed) {
    ms_rng r;
    ms_rng_init(&r, seed, 1, 2);
    for (int i = 0; i < P; i++)
        for (int j = 0; j < PS; j++)
            pool[i * PS + j] = j >= D ? 7.0f : (float)(1.5 + (j < span ? ms_rng_normal(&r) : 0.0));
    for (int i = 0; i < Q * D; i++) query[i] = (float)(1.5 + ms_rng_normal(&r));
}

static void pool_mean(double *m, const float *pool) {
    for (int j = 0; j < D; j++) {
        m[j] = 0;
        for (int i = 0; i < P; i++) m[j] += pool[i * PS + j];
        m[j] /= P;
    }
}

static void apply(float *pool, float *query, const char *opts, uint64_t seed, double *work, ms_geometry_draw *dr) {
    ms_geometry_aug g;
    MS_CHECK(ms_geometry_parse(opts, &g) == MS_OK);
    ms_rng r;
    ms_rng_init(&r, seed, 3, 4);
    ms_train_geometry_rows(pool, P, PS, query, Q, D, D, &g, &r, work, dr);
}

/* The relational features of a pool (P, PS) (copied to (P, D) first). */
static void features(double *f, const float *pool) {
    float x[P * D], z[P * D], kern[P * P];
    double scr[4 * P + P + 2 * D];
    MS_CHECK(ms_rel_scratch(P, D) <= sizeof scr / sizeof scr[0]);
    for (int i = 0; i < P; i++) memcpy(x + i * D, pool + i * PS, sizeof(float) * D);
    ms_rel_features(f, z, kern, x, P, D, scr);
}

static void test_concentration(void) {
    float pool[P * PS], query[Q * D], p0[P * PS], q0[Q * D];
    double work[(MS_GEOMETRY_MAX_DIRS + 2) * D], m[D], m1[D];
    make_rows(p0, q0, D, 1);
    memcpy(pool, p0, sizeof pool), memcpy(query, q0, sizeof query);
    ms_geometry_draw dr;
    apply(pool, query, "noise=0,dirs=0,spread=3", 5, work, &dr);
    MS_EXPECT(dr.c >= 1.0 / 3 && dr.c <= 3 && fabs(dr.c - 1) > 0.05 && dr.k == 0 && dr.nu == 0);
    pool_mean(m, p0);
    /* y' = m + c (y - m), pool and query; the extra columns untouched; the mean stays */
    double worst = 0;
    for (int i = 0; i < P; i++)
        for (int j = 0; j < D; j++) worst = fmax(worst, fabs(pool[i * PS + j] - (m[j] + dr.c * (p0[i * PS + j] - m[j]))));
    for (int i = 0; i < Q; i++)
        for (int j = 0; j < D; j++) worst = fmax(worst, fabs(query[i * D + j] - (m[j] + dr.c * (q0[i * D + j] - m[j]))));
    MS_EXPECT(worst < 1e-5);
    int extra_same = 1;
    for (int i = 0; i < P; i++) extra_same &= memcmp(pool + i * PS + D, p0 + i * PS + D, sizeof(float) * (PS - D)) == 0;
    MS_EXPECT(extra_same);
    pool_mean(m1, pool);
    ms_expect_close_d("pool mean after concentration", m1, m, D, 1e-5, 1e-5);
    /* the centred features (k-NN density, its rank, distance from the mean) stay; the
     * typicality (a cosine of unit rows) moves */
    double f0[P * MS_REL_F], f1[P * MS_REL_F], a[P * 3], b[P * 3];
    features(f0, p0), features(f1, pool);
    double moved = 0;
    for (int i = 0; i < P; i++) {
        a[i * 3] = f0[i * MS_REL_F + 1], a[i * 3 + 1] = f0[i * MS_REL_F + 3], a[i * 3 + 2] = f0[i * MS_REL_F + 4];
        b[i * 3] = f1[i * MS_REL_F + 1], b[i * 3 + 1] = f1[i * MS_REL_F + 3], b[i * 3 + 2] = f1[i * MS_REL_F + 4];
        moved = fmax(moved, fabs(f0[i * MS_REL_F] - f1[i * MS_REL_F]));
    }
    ms_expect_close_d("centred features after concentration", b, a, P * 3, 1e-4, 1e-4);
    MS_EXPECT(moved > 1e-3);
}

static void test_directions(void) {
    float pool[P * PS], query[Q * D], p0[P * PS], q0[Q * D];
    double work[(MS_GEOMETRY_MAX_DIRS + 2) * D], m[D];
    const int span = 10;
    make_rows(p0, q0, span, 2);
    memcpy(pool, p0, sizeof pool), memcpy(query, q0, sizeof query);
    ms_geometry_draw dr;
    apply(pool, query, "noise=0,spread=1,axes=3,dirs=4", 6, work, &dr);
    MS_EXPECT(dr.k == 4 && dr.c == 1.0 && dr.nu == 0);
    int in_range = 1;
    for (int l = 0; l < dr.k; l++) in_range &= dr.f[l] >= 1.0 / 3 && dr.f[l] <= 3;
    MS_EXPECT(in_range);
    const double *V = work + 2 * D;
    /* orthonormal, and in the pool's span (no component on the coordinates it leaves at 0) */
    double ortho = 0, outside = 0;
    for (int a = 0; a < dr.k; a++) {
        for (int b = 0; b < dr.k; b++) {
            double s = 0;
            for (int j = 0; j < D; j++) s += V[a * D + j] * V[b * D + j];
            ortho = fmax(ortho, fabs(s - (a == b)));
        }
        for (int j = span; j < D; j++) outside = fmax(outside, fabs(V[a * D + j]));
    }
    MS_EXPECT(ortho < 1e-12 && outside < 1e-12);
    /* y' - m = e + sum_l (f_l - 1)(v_l . e) v_l for pool and query rows */
    pool_mean(m, p0);
    double worst = 0;
    for (int i = 0; i < P + Q; i++) {
        const float *y0 = i < P ? p0 + i * PS : q0 + (i - P) * D, *y1 = i < P ? pool + i * PS : query + (i - P) * D;
        double e[D];
        for (int j = 0; j < D; j++) e[j] = y0[j] - m[j];
        double want[D];
        memcpy(want, e, sizeof e);
        for (int l = 0; l < dr.k; l++) {
            double s = 0;
            for (int j = 0; j < D; j++) s += V[l * D + j] * e[j];
            for (int j = 0; j < D; j++) want[j] += (dr.f[l] - 1) * s * V[l * D + j];
        }
        for (int j = 0; j < D; j++) worst = fmax(worst, fabs(y1[j] - (m[j] + want[j])));
    }
    MS_EXPECT(worst < 1e-5);
    /* every relational feature moves */
    double f0[P * MS_REL_F], f1[P * MS_REL_F], moved[MS_REL_F] = {0};
    features(f0, p0), features(f1, pool);
    for (int i = 0; i < P * MS_REL_F; i++) moved[i % MS_REL_F] = fmax(moved[i % MS_REL_F], fabs(f0[i] - f1[i]));
    for (int k = 0; k < MS_REL_F; k++) MS_EXPECT(moved[k] > 1e-3);
    /* a pool spanning fewer directions than asked keeps only those: 3 rows span 2 */
    float small[3 * PS];
    memcpy(small, p0, sizeof small);
    ms_geometry_aug g;
    MS_CHECK(ms_geometry_parse("dirs=6", &g) == MS_OK);
    ms_rng r;
    ms_rng_init(&r, 1, 2, 3);
    ms_train_geometry_rows(small, 3, PS, NULL, 0, D, D, &g, &r, work, &dr);
    MS_EXPECT(dr.k == 2);
}

static void test_noise_and_determinism(void) {
    float pool[P * PS], query[Q * D], p0[P * PS], q0[Q * D], p2[P * PS], q2[Q * D];
    double work[(MS_GEOMETRY_MAX_DIRS + 2) * D], m[D];
    make_rows(p0, q0, D, 3);
    memcpy(pool, p0, sizeof pool), memcpy(query, q0, sizeof query);
    ms_geometry_draw dr;
    apply(pool, query, "noise=2,spread=1,dirs=0", 7, work, &dr);
    pool_mean(m, p0);
    double r2 = 0, moved2 = 0;
    for (int i = 0; i < P; i++)
        for (int j = 0; j < D; j++) r2 += (p0[i * PS + j] - m[j]) * (p0[i * PS + j] - m[j]) / P;
    for (int i = 0; i < P + Q; i++)
        for (int j = 0; j < D; j++) {
            double d = i < P ? pool[i * PS + j] - p0[i * PS + j] : query[(i - P) * D + j] - q0[(i - P) * D + j];
            moved2 += d * d / (P + Q);
        }
    /* mean noise energy per row nu^2 r^2 (1280 squared normals: within 15%) */
    MS_EXPECT(fabs(dr.r - sqrt(r2)) < 1e-9 * sqrt(r2) && dr.nu > 0.2 && dr.nu <= 2);
    MS_EXPECT(fabs(moved2 / (dr.nu * dr.nu * r2) - 1) < 0.15);
    if (!(fabs(moved2 / (dr.nu * dr.nu * r2) - 1) < 0.15))
        fprintf(stderr, "noise energy %g, want %g\n", moved2, dr.nu * dr.nu * r2);
    /* all three at once: a pure function of the generator's seed */
    memcpy(pool, p0, sizeof pool), memcpy(query, q0, sizeof query);
    memcpy(p2, p0, sizeof p2), memcpy(q2, q0, sizeof q2);
    apply(pool, query, NULL, 9, work, NULL);
    apply(p2, q2, NULL, 9, work, NULL);
    MS_EXPECT(memcmp(pool, p2, sizeof pool) == 0 && memcmp(query, q2, sizeof query) == 0);
    memcpy(p2, p0, sizeof p2), memcpy(q2, q0, sizeof q2);
    apply(p2, q2, NULL, 10, work, NULL);
    MS_EXPECT(memcmp(pool, p2, sizeof pool) != 0 && memcmp(query, q2, sizeof query) != 0);
}

static void test_parse(void) {
    ms_geometry_aug g;
    char buf[128];
    MS_EXPECT(ms_geometry_parse(NULL, &g) == MS_OK && g.on && g.noise == 0.5 && g.spread == 2 && g.axes == 2 &&
              g.dirs == 4);
    ms_geometry_format(buf, sizeof buf, &g);
    MS_EXPECT(strcmp(buf, "noise=0.5,spread=2,axes=2,dirs=4") == 0);
    MS_EXPECT(ms_geometry_parse("dirs=8,noise=0.25", &g) == MS_OK && g.dirs == 8 && g.noise == 0.25 && g.spread == 2);
    const char *bad[] = {"noise=-1", "noise=11", "spread=0.5", "axes=101", "axes=abc", "dirs=65", "dirs=1.5",
                         "dirs=-1", "tilt=1", "noise", "noise=", "noise=1,", ",noise=1", "noise=nan"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        g.noise = 123;
        int refused = ms_geometry_parse(bad[i], &g) == MS_ERR_ARG && g.noise == 123;
        if (!refused) fprintf(stderr, "geometry option '%s' was not refused\n", bad[i]);
        MS_EXPECT(refused);
    }
}

static void test_training(void) {
    ms_split tr, va;
    ms_test_small_splits(&tr, &va);
    int cond[2] = {0, 1};
    ms_train_config c;
    ms_train_defaults(&c);
    c.arch = &ms_arch_relational;
    c.arch_opts = "coverage=5,coverage_slope=-5,kcenter_slope=10";
    c.shape = (ms_task_shape){.pool = 30, .pos_frac = 0.2, .query = 20, .query_pos_frac = 0.5};
    c.pos_frac_hi = 0.5;
    c.k_min = 3, c.k = 12, c.batch = 8, c.tasks = 64, c.epochs = 2, c.val_tasks = 16, c.val_every = 4;
    c.lr = 1e-2, c.seed = 4, c.samples = 4;
    c.train_cond = cond, c.n_train_cond = 2, c.val_cond = cond, c.n_val_cond = 2;
    ms_net w[3];
    for (int rep = 0; rep < 3; rep++) {
        ms_train_config cr = c;
        char dir[64];
        snprintf(dir, sizeof dir, "geo_run%d", rep);
        cr.out_dir = ms_tmp(dir);
        if (rep < 2) MS_CHECK(ms_geometry_parse(NULL, &cr.geometry) == MS_OK);
        ms_set_threads(rep == 1 ? 2 : 1);
        ms_train_summary s;
        ms_status st = ms_train(&tr, &va, &cr, &s);
        if (st) fprintf(stderr, "geometry training: %s\n", ms_last_error());
        MS_EXPECT(st == MS_OK && s.iterations == 16);
        char path[4096];
        snprintf(path, sizeof path, "%s/last.safetensors", cr.out_dir);
        ms_selector_meta m;
        MS_CHECK(ms_net_load(path, &w[rep], &m) == MS_OK);
        const char *ag = ms_selector_meta_extra(&m, "augment_geometry");
        MS_EXPECT(rep < 2 ? ag && strcmp(ag, "noise=0.5,spread=2,axes=2,dirs=4") == 0 : ag == NULL);
        ms_selector_meta_free(&m);
    }
    MS_EXPECT(memcmp(w[0].params, w[1].params, sizeof(float) * w[0].count) == 0);
    MS_EXPECT(memcmp(w[0].params, w[2].params, sizeof(float) * w[0].count) != 0);
    for (int i = 0; i < 3; i++) ms_net_free(&w[i]);
    /* a bad value set through the library is refused before anything is written */
    MS_CHECK(ms_geometry_parse(NULL, &c.geometry) == MS_OK);
    c.geometry.spread = 0.5;
    c.out_dir = ms_tmp("geo_bad");
    ms_train_summary s;
    MS_EXPECT(ms_train(&tr, &va, &c, &s) == MS_ERR_ARG && strstr(ms_last_error(), "geometry"));
    ms_split_free(&tr);
    ms_split_free(&va);
}

int main(void) {
    test_parse();
    test_concentration();
    test_directions();
    test_noise_and_determinism();
    test_training();
    return ms_test_summary();
}
