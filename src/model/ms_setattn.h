/* ms_setattn.h: pieces of the setattn architecture (ms_setattn.c) shared with its tests. */
#ifndef MS_SETATTN_H
#define MS_SETATTN_H

#include "medselect/arch.h"

/* self-attention layers over the pool */
#define MS_SA_LAYERS 2

/* Log-probability of the given ordered draw picks[0..k) of one pool x (T, D) under a
 * setattn net (work from its work_new); afterwards backward() gives its gradient (with
 * scale[0]). scores (T) not NULL: receives the static scores s_i. For tests. */
double ms_sa_score_draw(const ms_net *net, void *work, const float *x, int T, const int *picks,
                        int k, double *scores);

#endif
