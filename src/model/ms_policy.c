/* ms_policy.c: the selector's sampling policies (see policy.h): Gumbel-top-k sampling with
 * the Plackett-Luce log-probability and its gradient, multinomial sampling with the
 * multinomial log-probability and its gradient, and greedy top-K. */
#define _POSIX_C_SOURCE 200809L
#include "medselect/policy.h"

#include <math.h>
#include <string.h>
#include <strings.h>

ms_status ms_sampler_parse(const char *s, ms_sampler *out) {
    if (!strcasecmp(s, "without-replacement") || !strcasecmp(s, "wor") ||
        !strcasecmp(s, "plackett-luce")) {
        *out = MS_SAMPLER_WOR;
        return MS_OK;
    }
    if (!strcasecmp(s, "multinomial")) {
        *out = MS_SAMPLER_MULTINOMIAL;
        return MS_OK;
    }
    return ms_fail(MS_ERR_ARG, "unknown sampler '%s' (valid: without-replacement, multinomial)", s);
}

const char *ms_sampler_name(ms_sampler s) {
    return s == MS_SAMPLER_MULTINOMIAL ? "multinomial" : "without-replacement";
}

ms_status ms_decode_parse(const char *s, ms_decode *out) {
    for (int d = MS_DECODE_GREEDY; d <= MS_DECODE_MULTINOMIAL; d++)
        if (!strcasecmp(s, ms_decode_name((ms_decode)d))) {
            *out = (ms_decode)d;
            return MS_OK;
        }
    return ms_fail(MS_ERR_ARG, "unknown decoding rule '%s' (valid: greedy, sample, multinomial)", s);
}

const char *ms_decode_name(ms_decode d) {
    static const char *const names[] = {"greedy", "sample", "multinomial"};
    MS_CHECK(d >= MS_DECODE_GREEDY && d <= MS_DECODE_MULTINOMIAL);
    return names[d];
}

const char *ms_decode_rule(ms_decode d) {
    static const char *const rules[] = {
        "greedy: the K items with the highest logits",
        "sample: K distinct items drawn from the selector's policy (without replacement, Gumbel-top-k)",
        ("multinomial: K draws with replacement from softmax(logits), repeats kept and counted in the "
         "classifier (the reference code's evaluation)"),
    };
    MS_CHECK(d >= MS_DECODE_GREEDY && d <= MS_DECODE_MULTINOMIAL);
    return rules[d];
}

/* The K largest keys in decreasing order (ties: lower index first), by K selection
 * passes: O(K*T), which for pools of ~1000 and K <= ~100 beats sorting's bookkeeping. */
static void top_k_keys(int *items, const double *key, int T, int K, ms_arena *ws) {
    unsigned char *taken = MS_ARENA_NEW(ws, unsigned char, T);
    memset(taken, 0, (size_t)T);
    for (int j = 0; j < K; j++) {
        int best = -1;
        for (int i = 0; i < T; i++)
            if (!taken[i] && (best < 0 || key[i] > key[best])) best = i;
        taken[best] = 1;
        items[j] = best;
    }
}

void ms_policy_sample_wor(int *items, const float *logits, int T, int K, ms_rng *rng,
                          ms_arena *ws) {
    MS_CHECK(items && logits && rng && ws && K >= 1 && K <= T);
    double *key = MS_ARENA_NEW(ws, double, T);
    for (int i = 0; i < T; i++) key[i] = (double)logits[i] + ms_rng_gumbel(rng);
    top_k_keys(items, key, T, K, ws);
}

double ms_policy_logp_wor(float *dlogits, const float *logits, int T, const int *items, int K,
                          ms_arena *ws) {
    MS_CHECK(logits && items && ws && K >= 1 && K <= T);
    unsigned char *chosen = MS_ARENA_NEW(ws, unsigned char, T);
    double *acc = MS_ARENA_NEW(ws, double, T); /* sum over steps of softmax_j(l)_i */
    memset(chosen, 0, (size_t)T);
    memset(acc, 0, sizeof(double) * (size_t)T);
    double lp = 0.0;
    for (int j = 0; j < K; j++) {
        int s = items[j];
        MS_CHECK(s >= 0 && s < T && !chosen[s]);
        double m = -INFINITY;
        for (int i = 0; i < T; i++)
            if (!chosen[i] && logits[i] > m) m = logits[i];
        double z = 0.0;
        for (int i = 0; i < T; i++)
            if (!chosen[i]) z += exp((double)logits[i] - m);
        double lse = m + log(z);
        lp += (double)logits[s] - lse;
        if (dlogits)
            for (int i = 0; i < T; i++)
                if (!chosen[i]) acc[i] += exp((double)logits[i] - lse);
        chosen[s] = 1;
    }
    if (dlogits)
        for (int i = 0; i < T; i++) dlogits[i] = (float)((chosen[i] ? 1.0 : 0.0) - acc[i]);
    return lp;
}

/* softmax(logits) into p (T); returns logsumexp(logits). */
static double softmax_d(double *p, const float *logits, int T) {
    double m = -INFINITY;
    for (int i = 0; i < T; i++)
        if (logits[i] > m) m = logits[i];
    double z = 0.0;
    for (int i = 0; i < T; i++) z += p[i] = exp((double)logits[i] - m);
    for (int i = 0; i < T; i++) p[i] /= z;
    return m + log(z);
}

int ms_policy_sample_multinomial(int *items, int *counts, const float *logits, int T, int K,
                                 ms_rng *rng, ms_arena *ws) {
    MS_CHECK(items && counts && logits && rng && ws && K >= 1 && T >= 1);
    double *cdf = MS_ARENA_NEW(ws, double, T);
    softmax_d(cdf, logits, T);
    for (int i = 1; i < T; i++) cdf[i] += cdf[i - 1];
    memset(counts, 0, sizeof(int) * (size_t)T);
    int n = 0;
    for (int k = 0; k < K; k++) {
        /* smallest i with cdf[i] > u * total (the total is 1 up to rounding) */
        double u = ms_rng_uniform(rng) * cdf[T - 1];
        int lo = 0, hi = T - 1;
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            if (cdf[mid] > u) hi = mid;
            else lo = mid + 1;
        }
        if (counts[lo]++ == 0) items[n++] = lo;
    }
    return n;
}

double ms_policy_logp_multinomial(float *dlogits, const float *logits, int T, const int *counts,
                                  ms_arena *ws) {
    MS_CHECK(logits && counts && ws && T >= 1);
    double *p = MS_ARENA_NEW(ws, double, T);
    double lse = softmax_d(p, logits, T);
    long K = 0;
    double lp = 0.0;
    for (int i = 0; i < T; i++) {
        MS_CHECK(counts[i] >= 0);
        K += counts[i];
        if (counts[i]) lp += counts[i] * ((double)logits[i] - lse) - lgamma(counts[i] + 1.0);
    }
    lp += lgamma((double)K + 1.0);
    if (dlogits)
        for (int i = 0; i < T; i++) dlogits[i] = (float)(counts[i] - (double)K * p[i]);
    return lp;
}

void ms_policy_topk(int *items, const float *logits, int T, int K, ms_arena *ws) {
    MS_CHECK(items && logits && ws && K >= 1 && K <= T);
    double *key = MS_ARENA_NEW(ws, double, T);
    for (int i = 0; i < T; i++) key[i] = logits[i];
    top_k_keys(items, key, T, K, ws);
}

int ms_policy_sample(int *items, double *logp, float *dlogits, ms_sampler s,
                     const float *logits, int T, int K, ms_rng *rng, ms_arena *ws) {
    MS_CHECK(logp);
    if (s == MS_SAMPLER_MULTINOMIAL) {
        int *counts = MS_ARENA_NEW(ws, int, T);
        int n = ms_policy_sample_multinomial(items, counts, logits, T, K, rng, ws);
        *logp = ms_policy_logp_multinomial(dlogits, logits, T, counts, ws);
        return n;
    }
    ms_policy_sample_wor(items, logits, T, K, rng, ws);
    *logp = ms_policy_logp_wor(dlogits, logits, T, items, K, ws);
    return K;
}
