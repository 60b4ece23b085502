/* ms_policy.c: the selection policy over the selector's logits (see policy.h): Gumbel-top-k
 * sampling with exact Plackett-Luce log-probabilities, the reference multinomial, and greedy
 * top-K. All sums run in double. */
#include "medselect/policy.h"

#include <math.h>
#include <string.h>
#include <strings.h>

ms_status ms_sampler_parse(const char *s, ms_sampler *out) {
    if (!strcasecmp(s, "without-replacement")) *out = MS_SAMPLER_WITHOUT_REPLACEMENT;
    else if (!strcasecmp(s, "multinomial")) *out = MS_SAMPLER_MULTINOMIAL;
    else return ms_fail(MS_ERR_ARG, "unknown sampling '%s' (without-replacement, multinomial)", s);
    return MS_OK;
}

const char *ms_sampler_name(ms_sampler s) {
    return s == MS_SAMPLER_MULTINOMIAL ? "multinomial" : "without-replacement";
}

/* "a ranks above b": larger value first, then lower index */
static int above(double va, int a, double vb, int b) { return va > vb || (va == vb && a < b); }

/* Min-heap (by `above` order, the root is the lowest-ranked kept item) of item indices. */
static void sift_down(int *h, int n, int i, const float *fv, const double *dv) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
#define VAL(k) (dv ? dv[h[k]] : (double)fv[h[k]])
        if (l < n && above(VAL(m), h[m], VAL(l), h[l])) m = l;
        if (r < n && above(VAL(m), h[m], VAL(r), h[r])) m = r;
#undef VAL
        if (m == i) return;
        int t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* Top-K of fv (float) or dv (double) into out, best first. */
static void topk(const float *fv, const double *dv, int T, int K, int *out) {
    MS_CHECK(K >= 1 && K <= T);
#define V(i) (dv ? dv[i] : (double)fv[i])
    for (int i = 0; i < K; i++) out[i] = i;
    for (int i = K / 2 - 1; i >= 0; i--) sift_down(out, K, i, fv, dv);
    for (int i = K; i < T; i++) {
        if (above(V(i), i, V(out[0]), out[0])) {
            out[0] = i;
            sift_down(out, K, 0, fv, dv);
        }
    }
    /* heap sort: repeatedly move the lowest-ranked to the end */
    for (int n = K - 1; n > 0; n--) {
        int t = out[0];
        out[0] = out[n];
        out[n] = t;
        sift_down(out, n, 0, fv, dv);
    }
#undef V
}

void ms_policy_topk(const float *logits, int T, int K, int *out) { topk(logits, NULL, T, K, out); }

double ms_policy_pl_logp(const float *logits, int T, const int *picks, int K, float *dlogp,
                         double *work) {
    /* e_i = exp(l_i - max). S_j = sum of e over R_j is re-summed at every step (O(K T))
     * rather than updated by subtraction, which would cancel badly when the chosen items
     * hold almost all of the mass. A chosen item is marked by storing -1 - e_i (< 0). */
    double mx = -INFINITY;
    for (int i = 0; i < T; i++) mx = fmax(mx, (double)logits[i]);
    double *e = work;
    for (int i = 0; i < T; i++) e[i] = exp((double)logits[i] - mx);
    double logp = 0, inv_prefix = 0; /* inv_prefix = sum_{steps so far} 1 / S_j */
    for (int j = 0; j < K; j++) {
        double S = 0;
        for (int i = 0; i < T; i++)
            if (e[i] >= 0) S += e[i];
        int s = picks[j];
        MS_CHECK(s >= 0 && s < T && e[s] >= 0);
        logp += ((double)logits[s] - mx) - log(S);
        inv_prefix += 1.0 / S;
        /* a chosen item was in R_1..R_j only: its gradient is complete now */
        if (dlogp) dlogp[s] = (float)(1.0 - e[s] * inv_prefix);
        e[s] = -1.0 - e[s];
    }
    if (dlogp)
        for (int i = 0; i < T; i++)
            if (e[i] >= 0) dlogp[i] = (float)(-e[i] * inv_prefix);
    return logp;
}

double ms_policy_multinomial_logp(const float *logits, int T, const int *counts, int K,
                                  float *dlogp) {
    double mx = -INFINITY, z = 0;
    for (int i = 0; i < T; i++) mx = fmax(mx, (double)logits[i]);
    for (int i = 0; i < T; i++) z += exp((double)logits[i] - mx);
    double lz = log(z) + mx, logp = lgamma((double)K + 1.0);
    for (int i = 0; i < T; i++) {
        double ls = (double)logits[i] - lz;
        if (counts[i]) logp += counts[i] * ls - lgamma((double)counts[i] + 1.0);
        if (dlogp) dlogp[i] = (float)((double)counts[i] - K * exp(ls));
    }
    return logp;
}

int ms_policy_sample(ms_sampler sampler, const float *logits, int T, int K, ms_rng *r,
                     int *picks, double *logp, float *dlogp, ms_arena *ws) {
    MS_CHECK(K >= 1 && K <= T);
    double *w = MS_ARENA_NEW(ws, double, T);
    if (sampler == MS_SAMPLER_WITHOUT_REPLACEMENT) {
        for (int i = 0; i < T; i++) w[i] = (double)logits[i] + ms_rng_gumbel(r);
        topk(NULL, w, T, K, picks);
        *logp = ms_policy_pl_logp(logits, T, picks, K, dlogp, w);
        return K;
    }
    MS_CHECK(sampler == MS_SAMPLER_MULTINOMIAL);
    /* inverse CDF over the cumulative softmax, one binary search per draw */
    int *counts = MS_ARENA_NEW(ws, int, T);
    double mx = -INFINITY, z = 0;
    for (int i = 0; i < T; i++) mx = fmax(mx, (double)logits[i]);
    for (int i = 0; i < T; i++) {
        z += exp((double)logits[i] - mx);
        w[i] = z;
        counts[i] = 0;
    }
    int n = 0;
    for (int k = 0; k < K; k++) {
        double u = ms_rng_uniform(r) * z;
        int lo = 0, hi = T - 1;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (w[mid] > u) hi = mid;
            else lo = mid + 1;
        }
        if (counts[lo]++ == 0) picks[n++] = lo;
    }
    *logp = ms_policy_multinomial_logp(logits, T, counts, K, dlogp);
    return n;
}
