/* medselect/policy.h: turning one task's logits (one per pool item, from model.h) into a
 * selection of K items, with the log-probability of that selection and its gradient with
 * respect to the logits (what REINFORCE needs: loss = -advantage * logp, so
 * dL/dlogits = -advantage * dlogp/dlogits).
 *
 * Two samplers:
 *  - without replacement (MS_SAMPLER_WOR, the default): K distinct items drawn one after
 *    another, each from the softmax of the logits over the items not yet chosen
 *    (Plackett-Luce). Sampled in one pass with the Gumbel-top-k trick: the K largest of
 *    l_i + Gumbel_i, in decreasing order, are such a draw. The log-probability of the
 *    ordered draw s_1..s_K is
 *        logp = sum_j [ l_{s_j} - logsumexp(l_i : i not in {s_1..s_{j-1}}) ]
 *    and d logp / d l_i = [i in S] - sum_j [i not in {s_1..s_{j-1}}] softmax_j(l)_i, with
 *    softmax_j taken over the items remaining at step j.
 *  - multinomial (MS_SAMPLER_MULTINOMIAL, the reference behaviour): K draws WITH
 *    replacement from softmax(l); the count vector c has log-probability (exactly
 *    torch.distributions.Multinomial(total_count=K, logits=l).log_prob(c))
 *        logp = lgamma(K+1) - sum_i lgamma(c_i+1) + sum_i c_i log_softmax(l)_i
 *    and d logp / d l = c - K softmax(l). Duplicates are possible, so the distinct
 *    selected set can hold fewer than K items.
 * For evaluation, ms_policy_topk takes the K largest logits (deterministic).
 *
 * All arithmetic is in double; logits must be finite. Scratch memory comes from `ws` (an
 * arena the caller resets between tasks); nothing else is allocated. Randomness only from
 * `rng` (the trainer seeds it per task with (seed, MS_STREAM_POLICY, task index)).
 * The functions are thread-safe for distinct rng and ws.
 */
#ifndef MEDSELECT_POLICY_H
#define MEDSELECT_POLICY_H

#include "medselect/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    MS_SAMPLER_WOR = 0,         /* "without-replacement" (also "wor", "plackett-luce") */
    MS_SAMPLER_MULTINOMIAL = 1, /* "multinomial" */
} ms_sampler;

/* Parses a sampler name; unknown: MS_ERR_ARG with a message listing the valid names. */
ms_status ms_sampler_parse(const char *s, ms_sampler *out);
/* "without-replacement" or "multinomial". */
const char *ms_sampler_name(ms_sampler s);

/* How a trained selector turns a pool's logits into the K items to label when it is
 * deployed or evaluated (select, evaluate, analyze):
 *   greedy       the K largest logits (deterministic; medselect's default)
 *   sample       K distinct items drawn from the policy (Gumbel-top-k, as training draws)
 *   multinomial  the reference code's evaluation: K draws WITH replacement from
 *                softmax(logits); repeats are kept, so an item drawn twice counts twice in
 *                the prototype classifier (as in the authors' evaluate) and the selection
 *                holds K entries but fewer distinct images */
typedef enum { MS_DECODE_GREEDY = 0, MS_DECODE_SAMPLE = 1, MS_DECODE_MULTINOMIAL = 2 } ms_decode;

/* Parses "greedy", "sample" or "multinomial"; unknown: MS_ERR_ARG listing the valid names. */
ms_status ms_decode_parse(const char *s, ms_decode *out);
const char *ms_decode_name(ms_decode d);
/* One sentence stating the rule, for reports. */
const char *ms_decode_rule(ms_decode d);

/* ---- without replacement (Plackett-Luce, Gumbel-top-k) -------------------------------- */

/* items: (K) out, distinct indices in [0, T) in draw order. logits: (T). 1 <= K <= T. */
void ms_policy_sample_wor(int *items, const float *logits, int T, int K, ms_rng *rng,
                          ms_arena *ws);
/* Log-probability of the ordered draw items[0..K) (distinct). dlogits: (T) out, SET to
 * d logp / d logits; NULL to skip. Cost O(K*T). */
double ms_policy_logp_wor(float *dlogits, const float *logits, int T, const int *items, int K,
                          ms_arena *ws);

/* ---- with replacement (multinomial) --------------------------------------------------- */

/* K draws with replacement from softmax(logits). counts: (T) out, summing to K. items: (K)
 * out, the distinct drawn indices in order of first draw. Returns their number n <= K. */
int ms_policy_sample_multinomial(int *items, int *counts, const float *logits, int T, int K,
                                 ms_rng *rng, ms_arena *ws);
/* Log-probability of the count vector counts (T), K = sum(counts). dlogits: (T) out, SET to
 * counts - K softmax(logits); NULL to skip. */
double ms_policy_logp_multinomial(float *dlogits, const float *logits, int T, const int *counts,
                                  ms_arena *ws);

/* ---- greedy ------------------------------------------------------------------------- */

/* items: (K) out, the indices of the K largest logits in decreasing order (ties: lower
 * index first). */
void ms_policy_topk(int *items, const float *logits, int T, int K, ms_arena *ws);

/* ---- one call per task for the trainer ------------------------------------------------ */

/* Samples with sampler s, returns the number n of distinct selected items written to
 * items (K) (n = K without replacement), the log-probability in *logp, and, when dlogits
 * (T) is not NULL, sets it to d logp / d logits. */
int ms_policy_sample(int *items, double *logp, float *dlogits, ms_sampler s,
                     const float *logits, int T, int K, ms_rng *rng, ms_arena *ws);

#ifdef __cplusplus
}
#endif
#endif
