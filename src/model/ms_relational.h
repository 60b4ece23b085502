/* ms_relational.h: pieces of the relational architecture (ms_relational.c) shared with its
 * tests and with the set-encoder architecture (ms_setattn.c), which decodes its scores with
 * the same sequential policy. */
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

/* The rank form of the features (option features=rank), in place on ms_rel_features' output
 * feat (T, MS_REL_F): columns 0, 1 and 4 (z-scored typicality, z-scored density, relative
 * distance from the mean) become their normal scores Phi^-1((#{j : v_j < v_i} + 1/2) / T);
 * columns 2 and 3 are ranks already. Every column is then a function of the item's place
 * in the pool's ordering of c, d and |x - m| alone, so the features (and the static score)
 * do not change under any increasing transform of those statistics. scratch: T doubles. */
void ms_rel_rank_features(double *feat, int T, double *scratch);

/* The step schedule of the relational weights: u_t = log(1 + t) / log(41) (0 at t = 0). */
double ms_rel_schedule(int t);

/* The sequential policy of one pool, given static scores s_i: at step t item i (not yet
 * picked) has the logit
 *     l_i^t = s_i - a_t r_i^t + b_t g_i^t + c_t d_i^t,   a_t = a + a' u_t (same for b, c),
 * r: largest centred cosine to the picked items, g: MaxHerding's coverage gain over the
 * reference columns divided by the step's largest, d: distance between unit rows to the
 * nearest picked item divided by the step's largest (u_t = ms_rel_schedule(t)). The draw is
 * greedy, Gumbel-top (an exact Plackett-Luce sample) or forced (scoring a given order).
 * The caller owns every buffer; the draw fills them for the backward pass. */
typedef struct {
    double a, b, c;   /* redundancy, coverage-gain and k-center weights */
    double slope[3];  /* a', b', c' */
} ms_rel_weights;

typedef struct {
    int T, D, R;          /* items, embedding width, reference columns */
    const double *s;      /* (T) static scores */
    const float *z;       /* (T, D) centred unit rows (redundancy) */
    const float *kern;    /* (T, R) kernel to the reference columns (coverage gain) */
    const float *u;       /* (T, D) unit rows for the k-center term; NULL: no k-center term
                             (its weights must then be 0; dist and dk are not used) */
    double *dist;         /* (T) in: distance to the pool's mean unit row; then to the
                             nearest picked item */
    double *red, *gn, *dk, *lg; /* (Kmax, T) r^t, g^t, d^t, l^t */
    double *lse;          /* (Kmax) log-sum-exp of each step's logits */
    double *cov;          /* (R) running coverage */
    double *gain;         /* (T) scratch */
    unsigned char *taken; /* (T) */
    int *picks;           /* (Kmax) the draw */
    int n;                /* out: its length */
} ms_rel_seq;

/* Draws k items (out (k), also q->picks); forced (k) not NULL: scores that order instead;
 * logits0 (T) not NULL: the first step's logits. Returns the draw's log-probability. */
double ms_rel_seq_draw(ms_rel_seq *q, const ms_rel_weights *w, int k, int greedy, ms_rng *rng,
                       const int *forced, int *out, float *logits0);
/* Gradient of the last draw's log-probability: ds (T) = d/d s_i (overwritten) and
 * dw = d/d (a, b, c, a', b', c'). */
void ms_rel_seq_backward(ms_rel_seq *q, double *ds, double dw[6]);

/* Log-probability of the given ordered draw picks[0..k) of one pool x (T, D) under a
 * relational net (work from its work_new); afterwards backward() gives its gradient
 * (with scale[0]). For tests. */
double ms_rel_score_draw(const ms_net *net, void *work, const float *x, int T, const int *picks,
                         int k);

#endif
