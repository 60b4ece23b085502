/* medselect/synth.h: the built-in synthetic meta-dataset behind `medselect demo`.
 *
 * It imitates what makes selective labeling hard on real embeddings, in D dimensions:
 *  - Anatomy/acquisition variation: every image belongs to one of `n_modes` sub-clusters
 *    (think patient size, view, scanner). Mode centres are random Gaussian directions; an
 *    image is its mode centre plus isotropic noise (sd `noise`).
 *  - Conditions as directions: condition c has a unit direction u_c. A positive image for c
 *    is shifted by severity * `effect` * u_c, with severity ~ U(0.3, 1.5): mild cases are hard
 *    to tell from normals. Positives may carry a second condition (probability `comorbid`).
 *  - Condition-specific sub-clusters: each condition is twice as frequent in one "home" mode
 *    as in the others, so that mode choice and label are correlated as on real data.
 *  - Outliers: a fraction `outlier_frac` of all images (positives and normals alike) are
 *    corrupted: their embedding is replaced by a large random vector (norm ~ 3x typical), as
 *    for a failed acquisition or an off-distribution image. Labelling one wastes a label: it
 *    pulls a prototype toward noise.
 * Conditions are named finding_a ... ; the first `n_seen` are the seen set, the rest unseen.
 * Every random choice flows from `seed` (stream MS_STREAM_SYNTH).
 */
#ifndef MEDSELECT_SYNTH_H
#define MEDSELECT_SYNTH_H

#include "medselect/io.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int d;             /* embedding dimension (default 64) */
    int n_cond;        /* conditions (default 8) */
    int n_seen;        /* first n_seen are "seen" (default 6) */
    int n_modes;       /* sub-clusters (default 6) */
    double noise;      /* per-coordinate noise sd relative to unit mode spread (default 0.55) */
    double effect;     /* condition shift scale (default 1.0) */
    double comorbid;   /* probability of a second condition (default 0.2) */
    double outlier_frac; /* default 0.05 */
    int n_pos[3];      /* positives per split train/val/test (default 3000, 800, 1200) */
    int n_norm[3];     /* normals per split (default 2000, 600, 900) */
    uint64_t seed;     /* default 7 */
} ms_synth_config;

void ms_synth_defaults(ms_synth_config *c);
/* Generates the three splits (train, val, test). Each split is filled as by
 * ms_split_from_arrays, with clinical features (age, sex, frontal) drawn as well (age is
 * weakly associated with the conditions). The caller frees with ms_split_free. */
void ms_synth_generate(const ms_synth_config *c, ms_split *train, ms_split *val, ms_split *test);
/* Writes a split in the reference layout: DIR/PREFIX_pos.csv + .hdf5, DIR/PREFIX_norm.csv +
 * .hdf5 (Path, Age, Sex, Frontal/Lateral, one column per condition). */
ms_status ms_synth_write(const ms_split *s, const char *dir, const char *prefix);

#ifdef __cplusplus
}
#endif
#endif
