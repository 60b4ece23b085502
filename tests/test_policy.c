/* test_policy.c: the selection policy: Plackett-Luce and multinomial log-probabilities
 * against closed forms and torch.distributions values (tests/fixtures/gen_policy.py), their
 * gradients against central finite differences, Gumbel-top-k draws distributed as the
 * sequential draw without replacement, and greedy top-K. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/policy.h"
#include "ms_test.h"

int main(void) {
    /* fixtures: logits (T), an ordered draw, a count vector, and torch's values */
    int nd;
    long sh[4];
    double *lg = ms_load_npy_d(ms_fixture("policy/logits.npy"), &nd, sh);
    int T = (int)sh[0];
    double *dr = ms_load_npy_d(ms_fixture("policy/draw.npy"), &nd, sh);
    int K = (int)sh[0];
    double *cn = ms_load_npy_d(ms_fixture("policy/counts.npy"), &nd, NULL);
    double *ref = ms_load_npy_d(ms_fixture("policy/logp.npy"), &nd, NULL);  /* [PL, multinomial] */
    double *gpl = ms_load_npy_d(ms_fixture("policy/grad_pl.npy"), &nd, NULL);
    double *gmn = ms_load_npy_d(ms_fixture("policy/grad_multinomial.npy"), &nd, NULL);
    float *l = malloc(sizeof(float) * T), *g = malloc(sizeof(float) * T);
    int *draw = malloc(sizeof(int) * K), *counts = malloc(sizeof(int) * T);
    double *work = malloc(sizeof(double) * T);
    int Kc = 0;
    for (int i = 0; i < T; i++) l[i] = (float)lg[i], counts[i] = (int)cn[i], Kc += counts[i];
    for (int j = 0; j < K; j++) draw[j] = (int)dr[j];

    double lp = ms_policy_pl_logp(l, T, draw, K, g, work);
    ms_expect_close_d("Plackett-Luce log p vs torch", &lp, &ref[0], 1, 1e-9, 1e-9);
    float *gref = malloc(sizeof(float) * T);
    for (int i = 0; i < T; i++) gref[i] = (float)gpl[i];
    ms_expect_close_f("Plackett-Luce gradient vs torch autograd", g, gref, (size_t)T, 1e-6, 1e-5);
    double lm = ms_policy_multinomial_logp(l, T, counts, Kc, g);
    ms_expect_close_d("multinomial log p vs torch.distributions.Multinomial", &lm, &ref[1], 1, 1e-9, 1e-9);
    for (int i = 0; i < T; i++) gref[i] = (float)gmn[i];
    ms_expect_close_f("multinomial gradient vs torch autograd", g, gref, (size_t)T, 1e-6, 1e-5);

    /* finite differences of the PL log-probability (double precision in the function) */
    {
        float lf[6] = {0.3f, -1.2f, 2.0f, 0.0f, 0.7f, -0.4f};
        int d2[3] = {2, 4, 0};
        float gg[6], fd[6];
        double w[6];
        ms_policy_pl_logp(lf, 6, d2, 3, gg, w);
        for (int i = 0; i < 6; i++) {
            float h = 1e-2f, save = lf[i];
            lf[i] = save + h;
            double up = ms_policy_pl_logp(lf, 6, d2, 3, NULL, w);
            lf[i] = save - h;
            double dn = ms_policy_pl_logp(lf, 6, d2, 3, NULL, w);
            lf[i] = save;
            fd[i] = (float)((up - dn) / (2.0 * h));
        }
        ms_expect_close_f("Plackett-Luce gradient vs finite differences", gg, fd, 6, 1e-4, 1e-3);
        /* closed form for K = 1: log softmax */
        double z = 0;
        for (int i = 0; i < 6; i++) z += exp(lf[i]);
        double one = ms_policy_pl_logp(lf, 6, d2, 1, NULL, w), cf = lf[2] - log(z);
        ms_expect_close_d("Plackett-Luce K=1 is log softmax", &one, &cf, 1, 1e-12, 1e-12);
    }

    /* Gumbel-top-k: ordered pairs of T=4, K=2 follow Plackett-Luce probabilities */
    {
        float l4[4] = {1.0f, 0.0f, -0.5f, 0.8f};
        int pairs[16] = {0}, pick[2];
        float d4[4];
        double lp4;
        ms_arena ws;
        ms_arena_init(&ws);
        ms_rng r;
        ms_rng_init(&r, 11, MS_STREAM_POLICY, 0);
        const int N = 200000;
        for (int n = 0; n < N; n++) {
            ms_arena_reset(&ws);
            int got = ms_policy_sample(MS_SAMPLER_WITHOUT_REPLACEMENT, l4, 4, 2, &r, pick, &lp4, d4, &ws);
            MS_CHECK(got == 2 && pick[0] != pick[1]);
            pairs[pick[0] * 4 + pick[1]]++;
        }
        double worst = 0;
        double w4[4];
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++) {
                if (a == b) continue;
                int dd[2] = {a, b};
                double p = exp(ms_policy_pl_logp(l4, 4, dd, 2, NULL, w4));
                double se = sqrt(p * (1 - p) / N);
                double z = fabs(pairs[a * 4 + b] / (double)N - p) / se;
                if (z > worst) worst = z;
            }
        if (worst >= 4.5) fprintf(stderr, "Gumbel-top-k frequencies: worst z = %.2f\n", worst);
        MS_EXPECT(worst < 4.5);
        /* multinomial: distinct picks <= K, counts sum to K through the log p's closed form */
        int p3[3];
        int got = ms_policy_sample(MS_SAMPLER_MULTINOMIAL, l4, 4, 3, &r, p3, &lp4, d4, &ws);
        MS_EXPECT(got >= 1 && got <= 3);
        double gs = 0;
        for (int i = 0; i < 4; i++) gs += d4[i];
        MS_EXPECT(fabs(gs) < 1e-5); /* sum_i (c_i - K p_i) = 0 */
        ms_arena_free(&ws);
    }

    /* greedy top-K: largest first, ties to the lower index */
    {
        float v[7] = {0.5f, 2.0f, -1.0f, 2.0f, 0.1f, 3.0f, 0.5f};
        int out[4];
        ms_policy_topk(v, 7, 4, out);
        MS_EXPECT(out[0] == 5 && out[1] == 1 && out[2] == 3 && out[3] == 0);
        int all[7];
        ms_policy_topk(v, 7, 7, all);
        MS_EXPECT(all[0] == 5 && all[4] == 6 && all[6] == 2);
    }
    ms_sampler s;
    MS_EXPECT(ms_sampler_parse("multinomial", &s) == MS_OK && s == MS_SAMPLER_MULTINOMIAL);
    MS_EXPECT(ms_sampler_parse("with-replacement", &s) == MS_ERR_ARG);
    free(lg), free(dr), free(cn), free(ref), free(gpl), free(gmn), free(l), free(g), free(draw), free(counts), free(work), free(gref);
    return ms_test_summary();
}
