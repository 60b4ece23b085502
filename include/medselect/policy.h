/* medselect/policy.h: turning the selector's logits into a selection, with the exact
 * log-probability of that selection and its gradient with respect to the logits (the
 * REINFORCE score function).
 *
 * without-replacement (default): K distinct items drawn one after the other from the softmax
 *   over the items not drawn yet. Sampled in one pass with the Gumbel-top-k trick (the K
 *   largest of logit_i + Gumbel noise, in decreasing order, are distributed exactly as the
 *   sequential draw). The log-probability of the ordered draw s_1..s_K is Plackett-Luce:
 *       log p = sum_j [ l_{s_j} - logsumexp_{i in R_j} l_i ],   R_j = items not in s_1..s_{j-1}
 *   and d log p / d l_i = sum_j [ 1(i = s_j) - 1(i in R_j) softmax_{R_j}(l)_i ].
 * multinomial (the reference code): K draws with replacement from softmax(l); the counts c
 *   have log p = lgamma(K+1) - sum_i lgamma(c_i+1) + sum_i c_i log_softmax(l)_i (as
 *   torch.distributions.Multinomial.log_prob) and d log p / d l_i = c_i - K softmax(l)_i.
 *   Duplicates waste labels: only the distinct items are returned.
 */
#ifndef MEDSELECT_POLICY_H
#define MEDSELECT_POLICY_H

#include "medselect/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    MS_SAMPLER_WITHOUT_REPLACEMENT = 0,
    MS_SAMPLER_MULTINOMIAL = 1,
} ms_sampler;

/* "without-replacement" or "multinomial"; MS_ERR_ARG otherwise. */
ms_status ms_sampler_parse(const char *s, ms_sampler *out);
const char *ms_sampler_name(ms_sampler s);

/* Draws a selection from logits (T) with K <= T.
 * picks: (K) out, the distinct selected items in draw order; returns their number (K for
 *        without-replacement, <= K for multinomial).
 * logp:  out, the log-probability of the draw (ordered draw / count vector, as above).
 * dlogp: (T) out, d logp / d logits.
 * ws:    scratch (T doubles + T ints). */
int ms_policy_sample(ms_sampler sampler, const float *logits, int T, int K, ms_rng *r,
                     int *picks, double *logp, float *dlogp, ms_arena *ws);

/* The log-probability and gradient of a given ordered draw of K distinct items under
 * Plackett-Luce (used by ms_policy_sample; exposed for tests and analysis). */
double ms_policy_pl_logp(const float *logits, int T, const int *picks, int K, float *dlogp,
                         double *work /* T */);
/* The log-probability and gradient of a count vector (T, summing to K) under the
 * multinomial. */
double ms_policy_multinomial_logp(const float *logits, int T, const int *counts, int K,
                                  float *dlogp);

/* The K items with the largest logits, largest first (ties: lower index first). Greedy
 * deterministic selection for evaluation and worklists. O(T log K), no allocation. */
void ms_policy_topk(const float *logits, int T, int K, int *out);

#ifdef __cplusplus
}
#endif
#endif
