/* ms_relational.h: pieces of the relational architecture (ms_relational.c) shared with its
 * tests. */
#ifndef MS_RELATIONAL_H
#define MS_RELATIONAL_H

#include <stddef.h>

#include "medselect/arch.h"

/* features per item */
#define MS_REL_F 5
/* at most this many reference columns describe a pool (pools up to this size: all items) */
#define MS_REL_REF 512

/* Reference columns of a pool of T items: min(T, MS_REL_REF). */
int ms_rel_nref(int T);
/* Doubles of scratch ms_rel_features needs for T items of width D. */
size_t ms_rel_scratch(int T, int D);
/* feat (T, MS_REL_F), z (T, D) centred unit rows, kern (T, R) out; x (T, D) in. */
void ms_rel_features(double *feat, float *z, float *kern, const float *x, int T, int D,
                     double *scratch);

/* The step schedule of the relational weights: u_t = log(1 + t) / log(41) (0 at t = 0). */
double ms_rel_schedule(int t);

/* Log-probability of the given ordered draw picks[0..k) of one pool x (T, D) under a
 * relational net (work from its work_new); afterwards backward() gives its gradient
 * (with scale[0]). For tests. */
double ms_rel_score_draw(const ms_net *net, void *work, const float *x, int T, const int *picks,
                         int k);

#endif
