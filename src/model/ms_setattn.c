/* ms_setattn.c: the "setattn" selector architecture (arch.h): a permutation-equivariant
 * set encoder (self-attention over the pool) on rotation-invariant, pool-relative inputs,
 * followed by the relational architecture's sequential Plackett-Luce decoding.
 *
 * Per pool of T items x (T, D), everything in double (stored float where noted):
 *   f (T, F=5), z (T, D) float, kern (T, R) float: the relational features, centred unit
 *       rows and MaxHerding kernel against the R = min(T, 512) reference items ref_j =
 *       floor(j T / R) (ms_rel_features; see ms_relational.c). No raw coordinates enter.
 *   c (T, R) float: c_ij = z_i . z_ref_j, the centred cosine (the pool's geometry without
 *       absolute directions).
 * Set encoder (L = MS_SA_LAYERS layers, width H):
 *   h^0_i = Win f_i + bin                                              (T, H)
 *   layer l: q_i = Wq_l h_i, k_j = Wk_l h_ref_j, v_j = Wv_l h_ref_j    (T, H), (R, H), (R, H)
 *            e_ij = q_i . k_j / sqrt(H) + tau_l c_ij,  P_ij = softmax_j e_ij   (T, R)
 *            h^{l+1}_i = h^l_i + sum_j P_ij v_j
 *   m = mean_i h^L_i (H): a summary of the pool (lets the head condition on how it is spread)
 *   g_i = tanh(W1 [h^L_i ; m] + b1) (H),  s_i = w2 . g_i
 * For pools up to 512 items every item attends to every item, so s is permutation
 * equivariant; larger pools attend to the 512 reference items (memory linear in T).
 * Sequential decoding, as the relational policy: at step t with picked set S_t,
 *   r_i^t = max_{p in S_t} z_i . z_p (0 when S_t is empty)            redundancy
 *   g~_i^t = MaxHerding's coverage gain / the step's largest gain     coverage
 *   l_i^t = s_i - a r_i^t + b g~_i^t  over the remaining items;
 * the draw is Plackett-Luce (Gumbel-argmax), greedy takes the argmax (ties: lowest index),
 * log p = sum_t [l_{pi_t}^t - logsumexp_{remaining} l^t]. Greedy decoding is one ranking:
 * its first K' picks are the greedy selection for K'.
 *
 * Backward (per pool, double): ds_i = sum_t ([i = pi_t] - softmax_t(l^t)_i), da, db as in
 * ms_relational.c; head: dw2 = sum ds_i g_i, dpre_i = ds_i w2 (1 - g_i^2),
 * dW1 += dpre_i [h_i; m]^T, dh_i = W1a^T dpre_i + (1/T) sum_k W1b^T dpre_k. Each layer in
 * reverse, with dA_i = dh^{l+1}_i: the attention rows are recomputed (P is not stored, so the
 * work holds no (T, R) doubles per layer): dP_ij = dA_i . v_j, dv_j += P_ij dA_i,
 * de_ij = P_ij (dP_ij - sum_j' P_ij' dP_ij'), dq_i = sum_j de_ij k_j / sqrt(H),
 * dk_j += de_ij q_i / sqrt(H), dtau += sum de_ij c_ij, then the weights' gradients and
 * dh^l = dh^{l+1} + Wq^T dq + (at the reference rows) Wk^T dk + Wv^T dv.
 *
 * Initialisation (options redundancy=A, coverage=B, tau=T0; defaults 8, 1, 1): Win, bin
 * ~ U(+-1/sqrt(F)), Wq, Wk, Wv ~ U(+-1/sqrt(H)), W1, b1 ~ U(+-1/sqrt(2H)), w2 = 0, so the
 * untrained policy's greedy decode is the relational policy with the same a and b (the
 * shipped relational selector for the defaults) and training learns what the set encoder
 * adds to it.
 *
 * Memory per pool: 2 T R floats (kernel and centred cosines) plus O(T (D + L H) + K T)
 * doubles, sized once per work object for (Bmax, Tmax, Kmax). Pools run in parallel (one
 * per thread); gradients are summed per pool, then in pool order: results do not depend on
 * the thread count.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/arch.h"
#include "medselect/strategy.h"
#include "model/ms_relational.h"
#include "model/ms_setattn.h"

#define F MS_REL_F
#define L MS_SA_LAYERS

/* tensor indices: input layer, L x (q, k, v, tau), head, a, b */
enum { T_WIN = 0, T_BIN, T_ATT0 };
#define T_Q(l) (T_ATT0 + 4 * (l))
#define T_K(l) (T_ATT0 + 4 * (l) + 1)
#define T_V(l) (T_ATT0 + 4 * (l) + 2)
#define T_TAU(l) (T_ATT0 + 4 * (l) + 3)
#define T_W1 (T_ATT0 + 4 * L)
#define T_B1 (T_W1 + 1)
#define T_W2 (T_W1 + 2)
#define T_RED (T_W1 + 3)
#define T_COV (T_W1 + 4)
#define N_T (T_W1 + 5)

static void set_tensor(ms_net *net, int i, const char *name, int ndim, int64_t s0, int64_t s1) {
    snprintf(net->tensor[i].name, sizeof net->tensor[i].name, "%s", name);
    net->tensor[i].ndim = ndim;
    net->tensor[i].shape[0] = s0;
    net->tensor[i].shape[1] = ndim == 2 ? s1 : 0;
}

static ms_status sa_layout(ms_net *net) {
    int H = net->H;
    if (H > 1024) return ms_fail(MS_ERR_ARG, "selector setattn: hidden size %d is larger than 1024", H);
    MS_CHECK(N_T <= MS_NET_MAX_TENSORS);
    net->ntensors = N_T;
    set_tensor(net, T_WIN, "sa.in.weight", 2, H, F);
    set_tensor(net, T_BIN, "sa.in.bias", 1, H, 0);
    for (int l = 0; l < L; l++) {
        char nm[48];
        snprintf(nm, sizeof nm, "sa.att%d.q.weight", l), set_tensor(net, T_Q(l), nm, 2, H, H);
        snprintf(nm, sizeof nm, "sa.att%d.k.weight", l), set_tensor(net, T_K(l), nm, 2, H, H);
        snprintf(nm, sizeof nm, "sa.att%d.v.weight", l), set_tensor(net, T_V(l), nm, 2, H, H);
        snprintf(nm, sizeof nm, "sa.att%d.tau", l), set_tensor(net, T_TAU(l), nm, 1, 1, 0);
    }
    set_tensor(net, T_W1, "sa.head.fc1.weight", 2, H, 2 * H);
    set_tensor(net, T_B1, "sa.head.fc1.bias", 1, H, 0);
    set_tensor(net, T_W2, "sa.head.fc2.weight", 2, 1, H);
    set_tensor(net, T_RED, "sa.redundancy", 1, 1, 0);
    set_tensor(net, T_COV, "sa.coverage", 1, 1, 0);
    return MS_OK;
}

static ms_status sa_check_opts(const char *opts) {
    static const char *const known[] = {"redundancy", "coverage", "tau", NULL};
    ms_status st = ms_opt_check("setattn", opts, known);
    double v;
    int found;
    if (!st) st = ms_opt_double(opts, "redundancy", &v, &found);
    if (!st) st = ms_opt_double(opts, "coverage", &v, &found);
    if (!st) st = ms_opt_double(opts, "tau", &v, &found);
    return st;
}

static void uniform(ms_net *net, int i, uint64_t seed, double k) {
    ms_rng r;
    ms_rng_init(&r, seed, MS_STREAM_INIT, (uint64_t)i);
    float *p = ms_net_tensor_data(net, i);
    for (size_t j = 0; j < net->tensor[i].size; j++) p[j] = (float)(k * (2.0 * ms_rng_uniform(&r) - 1.0));
}

static void sa_randomize(ms_net *net, uint64_t seed, const char *opts) {
    double a0 = 8.0, b0 = 1.0, tau0 = 1.0;
    int found;
    if (opts && *opts) {
        MS_CHECK(ms_opt_double(opts, "redundancy", &a0, &found) == MS_OK);
        MS_CHECK(ms_opt_double(opts, "coverage", &b0, &found) == MS_OK);
        MS_CHECK(ms_opt_double(opts, "tau", &tau0, &found) == MS_OK);
    }
    uniform(net, T_WIN, seed, 1.0 / sqrt((double)F));
    uniform(net, T_BIN, seed, 1.0 / sqrt((double)F));
    for (int l = 0; l < L; l++) {
        uniform(net, T_Q(l), seed, 1.0 / sqrt((double)net->H));
        uniform(net, T_K(l), seed, 1.0 / sqrt((double)net->H));
        uniform(net, T_V(l), seed, 1.0 / sqrt((double)net->H));
        ms_net_tensor_data(net, T_TAU(l))[0] = (float)tau0;
    }
    uniform(net, T_W1, seed, 1.0 / sqrt(2.0 * net->H));
    uniform(net, T_B1, seed, 1.0 / sqrt(2.0 * net->H));
    memset(ms_net_tensor_data(net, T_W2), 0, sizeof(float) * (size_t)net->H);
    ms_net_tensor_data(net, T_RED)[0] = (float)a0;
    ms_net_tensor_data(net, T_COV)[0] = (float)b0;
}

/* ---- work --------------------------------------------------------------------------- */

/* One pool's state, kept for the backward pass. */
typedef struct {
    double *feat;   /* (T, F) */
    double *h;      /* (L+1, T, H) layer inputs/outputs */
    double *q;      /* (L, T, H) */
    double *k;      /* (L, R, H) */
    double *v;      /* (L, R, H) */
    double *m;      /* (H) pool summary */
    double *g;      /* (T, H) head activations */
    double *s;      /* (T) static scores */
    float *z;       /* (T, D) */
    float *kern;    /* (T, R) */
    float *cosr;    /* (T, R) centred cosines to the reference items */
    double *red, *gn, *lg; /* (Kmax, T) each */
    double *lse;    /* (Kmax) */
    double *cov;    /* (R) */
    double *gain;   /* (T) */
    double *row, *drow; /* (R) one attention row and its gradient */
    double *dh, *dh2; /* (T, H) */
    double *dk, *dv;  /* (R, H) */
    double *dvec;   /* (2 H) */
    double *scratch;
    double *grad;   /* (count) this pool's gradient */
    unsigned char *taken; /* (T) */
    int *picks;     /* (Kmax) */
    int T, n;
} sa_pool;

typedef struct {
    int Bmax, Tmax, Kmax;
    sa_pool *pool;  /* (Bmax) */
    void *memory;
    int B, last_greedy;
} sa_work;

static void *sa_work_new(const ms_net *net, int Bmax, int Tmax, int Kmax) {
    sa_work *w = ms_xcalloc(1, sizeof *w);
    w->Bmax = Bmax, w->Tmax = Tmax, w->Kmax = Kmax;
    size_t T = (size_t)Tmax, K = (size_t)Kmax, R = (size_t)ms_rel_nref(Tmax), D = (size_t)net->D,
           H = (size_t)net->H;
    size_t nd = T * F + (L + 1) * T * H + L * T * H + 2 * L * R * H + H + T * H + T + 3 * K * T + K + R + T +
                2 * R + 2 * T * H + 2 * R * H + 2 * H + ms_rel_scratch(Tmax, net->D) + net->count;
    size_t nf = T * D + 2 * T * R;
    /* one block per pool, a multiple of 64 bytes so that every block's doubles are aligned */
    size_t per = (nd * sizeof(double) + nf * sizeof(float) + K * sizeof(int) + T + 63) / 64 * 64;
    w->pool = ms_xcalloc((size_t)Bmax, sizeof(sa_pool));
    w->memory = ms_xmalloc(per * (size_t)Bmax);
    for (int b = 0; b < Bmax; b++) {
        double *dp = (double *)((char *)w->memory + per * (size_t)b);
        sa_pool *p = &w->pool[b];
        p->feat = dp, dp += T * F;
        p->h = dp, dp += (L + 1) * T * H;
        p->q = dp, dp += L * T * H;
        p->k = dp, dp += L * R * H;
        p->v = dp, dp += L * R * H;
        p->m = dp, dp += H;
        p->g = dp, dp += T * H;
        p->s = dp, dp += T;
        p->red = dp, dp += K * T;
        p->gn = dp, dp += K * T;
        p->lg = dp, dp += K * T;
        p->lse = dp, dp += K;
        p->cov = dp, dp += R;
        p->gain = dp, dp += T;
        p->row = dp, dp += R;
        p->drow = dp, dp += R;
        p->dh = dp, dp += T * H;
        p->dh2 = dp, dp += T * H;
        p->dk = dp, dp += R * H;
        p->dv = dp, dp += R * H;
        p->dvec = dp, dp += 2 * H;
        p->scratch = dp, dp += ms_rel_scratch(Tmax, net->D);
        p->grad = dp, dp += net->count;
        float *fp = (float *)dp;
        p->z = fp, fp += T * D;
        p->kern = fp, fp += T * R;
        p->cosr = fp, fp += T * R;
        int *ip = (int *)fp;
        p->picks = ip, ip += K;
        p->taken = (unsigned char *)ip;
    }
    return w;
}

static void sa_work_free(void *p) {
    sa_work *w = p;
    if (!w) return;
    free(w->memory);
    free(w->pool);
    free(w);
}

/* ---- the set encoder ---------------------------------------------------------------- */

static inline int ref_item(int j, int T, int R) { return (int)((long)j * T / R); }

/* y (n, H) = x[rows] W^T, W (H, H) row-major (out, in); rows: 0..n-1, or the n = R
 * reference items of a pool of T when ref. */
static void matmul_t(double *y, const double *x, int n, const float *W, int H, int ref, int T, int R) {
    for (int i = 0; i < n; i++) {
        const double *xi = x + (size_t)(ref ? ref_item(i, T, R) : i) * H;
        double *yi = y + (size_t)i * H;
        for (int o = 0; o < H; o++) {
            double acc = 0;
            const float *wo = W + (size_t)o * H;
            for (int c = 0; c < H; c++) acc += (double)wo[c] * xi[c];
            yi[o] = acc;
        }
    }
}

/* Attention row i of layer l into row (R): P_ij = softmax_j (q_i . k_j / sqrt(H) + tau c_ij). */
static void att_row(double *row, const double *qi, const double *k, const float *ci, double tau, int R, int H) {
    double inv = 1.0 / sqrt((double)H), mx = -INFINITY;
    for (int j = 0; j < R; j++) {
        const double *kj = k + (size_t)j * H;
        double e = 0;
        for (int c = 0; c < H; c++) e += qi[c] * kj[c];
        e = e * inv + tau * ci[j];
        row[j] = e;
        if (e > mx) mx = e;
    }
    double se = 0;
    for (int j = 0; j < R; j++) se += row[j] = exp(row[j] - mx);
    for (int j = 0; j < R; j++) row[j] /= se;
}

/* Encoder forward of one pool: feat, cosr filled; fills h, q, k, v, m, g, s. */
static void encoder_forward(const ms_net *net, sa_pool *p, int T) {
    int H = net->H, R = ms_rel_nref(T);
    const float *Win = ms_net_tensor_data(net, T_WIN), *bin = ms_net_tensor_data(net, T_BIN);
    for (int i = 0; i < T; i++) {
        const double *f = p->feat + (size_t)i * F;
        double *h = p->h + (size_t)i * H;
        for (int u = 0; u < H; u++) {
            double acc = bin[u];
            for (int c = 0; c < F; c++) acc += (double)Win[u * F + c] * f[c];
            h[u] = acc;
        }
    }
    for (int l = 0; l < L; l++) {
        const double *hin = p->h + (size_t)l * T * H;
        double *hout = p->h + (size_t)(l + 1) * T * H;
        double *q = p->q + (size_t)l * T * H, *k = p->k + (size_t)l * R * H, *v = p->v + (size_t)l * R * H;
        double tau = ms_net_tensor_data(net, T_TAU(l))[0];
        matmul_t(q, hin, T, ms_net_tensor_data(net, T_Q(l)), H, 0, T, R);
        matmul_t(k, hin, R, ms_net_tensor_data(net, T_K(l)), H, 1, T, R);
        matmul_t(v, hin, R, ms_net_tensor_data(net, T_V(l)), H, 1, T, R);
        for (int i = 0; i < T; i++) {
            att_row(p->row, q + (size_t)i * H, k, p->cosr + (size_t)i * R, tau, R, H);
            double *o = hout + (size_t)i * H;
            memcpy(o, hin + (size_t)i * H, sizeof(double) * (size_t)H);
            for (int j = 0; j < R; j++) {
                const double *vj = v + (size_t)j * H;
                double pj = p->row[j];
                for (int c = 0; c < H; c++) o[c] += pj * vj[c];
            }
        }
    }
    const double *hL = p->h + (size_t)L * T * H;
    for (int c = 0; c < H; c++) p->m[c] = 0;
    for (int i = 0; i < T; i++)
        for (int c = 0; c < H; c++) p->m[c] += hL[(size_t)i * H + c];
    for (int c = 0; c < H; c++) p->m[c] /= T;
    const float *W1 = ms_net_tensor_data(net, T_W1), *b1 = ms_net_tensor_data(net, T_B1);
    const float *w2 = ms_net_tensor_data(net, T_W2);
    /* the pool's part of the head's pre-activation, shared by every item */
    double *pm = p->dvec;
    for (int u = 0; u < H; u++) {
        double acc = b1[u];
        for (int c = 0; c < H; c++) acc += (double)W1[(size_t)u * 2 * H + H + c] * p->m[c];
        pm[u] = acc;
    }
    for (int i = 0; i < T; i++) {
        const double *hi = hL + (size_t)i * H;
        double *g = p->g + (size_t)i * H, s = 0;
        for (int u = 0; u < H; u++) {
            double acc = pm[u];
            const float *wu = W1 + (size_t)u * 2 * H;
            for (int c = 0; c < H; c++) acc += (double)wu[c] * hi[c];
            g[u] = tanh(acc);
            s += (double)w2[u] * g[u];
        }
        p->s[i] = s;
    }
}

/* grad += d/dparams of sum_i ds_i s_i (ds (T) in p->gain). */
static void encoder_backward(const ms_net *net, sa_pool *p, const double *ds, double *grad) {
    int T = p->T, H = net->H, R = ms_rel_nref(T);
    const float *W1 = ms_net_tensor_data(net, T_W1), *w2 = ms_net_tensor_data(net, T_W2);
    double *gW1 = grad + net->tensor[T_W1].offset, *gb1 = grad + net->tensor[T_B1].offset;
    double *gw2 = grad + net->tensor[T_W2].offset;
    const double *hL = p->h + (size_t)L * T * H;
    double *dh = p->dh, *dpre = p->dvec, *dmsum = p->dvec + H;
    memset(dh, 0, sizeof(double) * (size_t)T * H);
    for (int c = 0; c < H; c++) dmsum[c] = 0;
    /* head */
    for (int i = 0; i < T; i++) {
        const double *g = p->g + (size_t)i * H, *hi = hL + (size_t)i * H;
        double *dhi = dh + (size_t)i * H;
        for (int u = 0; u < H; u++) {
            gw2[u] += ds[i] * g[u];
            dpre[u] = ds[i] * w2[u] * (1.0 - g[u] * g[u]);
            gb1[u] += dpre[u];
            double *gw = gW1 + (size_t)u * 2 * H;
            const float *wu = W1 + (size_t)u * 2 * H;
            for (int c = 0; c < H; c++) {
                gw[c] += dpre[u] * hi[c];
                gw[H + c] += dpre[u] * p->m[c];
                dhi[c] += (double)wu[c] * dpre[u];
                dmsum[c] += (double)wu[H + c] * dpre[u];
            }
        }
    }
    for (int i = 0; i < T; i++)
        for (int c = 0; c < H; c++) dh[(size_t)i * H + c] += dmsum[c] / T;
    /* layers in reverse: dh holds d/dh^{l+1}; dh2 accumulates d/dh^l */
    double inv = 1.0 / sqrt((double)H);
    for (int l = L - 1; l >= 0; l--) {
        const double *hin = p->h + (size_t)l * T * H;
        const double *q = p->q + (size_t)l * T * H, *k = p->k + (size_t)l * R * H, *v = p->v + (size_t)l * R * H;
        const float *Wq = ms_net_tensor_data(net, T_Q(l)), *Wk = ms_net_tensor_data(net, T_K(l));
        const float *Wv = ms_net_tensor_data(net, T_V(l));
        double tau = ms_net_tensor_data(net, T_TAU(l))[0];
        double *gWq = grad + net->tensor[T_Q(l)].offset, *gWk = grad + net->tensor[T_K(l)].offset;
        double *gWv = grad + net->tensor[T_V(l)].offset, *gtau = grad + net->tensor[T_TAU(l)].offset;
        double *dh2 = p->dh2, *dq = p->dvec;
        memcpy(dh2, dh, sizeof(double) * (size_t)T * H);
        memset(p->dk, 0, sizeof(double) * (size_t)R * H);
        memset(p->dv, 0, sizeof(double) * (size_t)R * H);
        for (int i = 0; i < T; i++) {
            const double *dA = dh + (size_t)i * H, *qi = q + (size_t)i * H, *hi = hin + (size_t)i * H;
            const float *ci = p->cosr + (size_t)i * R;
            att_row(p->row, qi, k, ci, tau, R, H);
            double dot = 0;
            for (int j = 0; j < R; j++) {
                const double *vj = v + (size_t)j * H;
                double *dvj = p->dv + (size_t)j * H, dp = 0, pj = p->row[j];
                for (int c = 0; c < H; c++) dp += dA[c] * vj[c], dvj[c] += pj * dA[c];
                p->drow[j] = dp;
                dot += pj * dp;
            }
            for (int c = 0; c < H; c++) dq[c] = 0;
            for (int j = 0; j < R; j++) {
                double de = p->row[j] * (p->drow[j] - dot);
                gtau[0] += de * ci[j];
                const double *kj = k + (size_t)j * H;
                double *dkj = p->dk + (size_t)j * H;
                for (int c = 0; c < H; c++) dq[c] += de * inv * kj[c], dkj[c] += de * inv * qi[c];
            }
            double *d2 = dh2 + (size_t)i * H;
            for (int o = 0; o < H; o++) {
                double *gw = gWq + (size_t)o * H;
                const float *wo = Wq + (size_t)o * H;
                for (int c = 0; c < H; c++) gw[c] += dq[o] * hi[c], d2[c] += (double)wo[c] * dq[o];
            }
        }
        for (int j = 0; j < R; j++) {
            int rj = ref_item(j, T, R);
            const double *hr = hin + (size_t)rj * H, *dkj = p->dk + (size_t)j * H, *dvj = p->dv + (size_t)j * H;
            double *d2 = dh2 + (size_t)rj * H;
            for (int o = 0; o < H; o++) {
                double *gk = gWk + (size_t)o * H, *gv = gWv + (size_t)o * H;
                const float *wk = Wk + (size_t)o * H, *wv = Wv + (size_t)o * H;
                for (int c = 0; c < H; c++) {
                    gk[c] += dkj[o] * hr[c];
                    gv[c] += dvj[o] * hr[c];
                    d2[c] += (double)wk[c] * dkj[o] + (double)wv[c] * dvj[o];
                }
            }
        }
        memcpy(dh, dh2, sizeof(double) * (size_t)T * H);
    }
    /* input layer */
    double *gWin = grad + net->tensor[T_WIN].offset, *gbin = grad + net->tensor[T_BIN].offset;
    for (int i = 0; i < T; i++) {
        const double *f = p->feat + (size_t)i * F, *dhi = dh + (size_t)i * H;
        for (int u = 0; u < H; u++) {
            gbin[u] += dhi[u];
            for (int c = 0; c < F; c++) gWin[u * F + c] += dhi[u] * f[c];
        }
    }
}

/* ---- one pool: encoder, then the sequential draw ----------------------------------------- */

/* The relational policy's sequential draw over this pool's buffers (no k-center term). */
static ms_rel_seq sa_seq(sa_pool *p, int D, int R) {
    ms_rel_seq q = {.T = p->T, .D = D, .R = R, .s = p->s, .z = p->z, .kern = p->kern, .red = p->red,
                    .gn = p->gn, .lg = p->lg, .lse = p->lse, .cov = p->cov, .gain = p->gain,
                    .taken = p->taken, .picks = p->picks, .n = p->n};
    return q;
}

/* Returns log p of the draw (forced (k) not NULL: that ordered selection is scored). */
static double sa_pool_run(const ms_net *net, sa_pool *p, const float *x, int T, int k, int greedy,
                          ms_rng *rng, const int *forced, int *out, float *logits0) {
    int D = net->D, R = ms_rel_nref(T);
    double a = ms_net_tensor_data(net, T_RED)[0], bc = ms_net_tensor_data(net, T_COV)[0];
    p->T = T;
    ms_rel_features(p->feat, p->z, p->kern, x, T, D, p->scratch);
    for (int i = 0; i < T; i++) {
        const float *zi = p->z + (size_t)i * D;
        for (int j = 0; j < R; j++) {
            const float *zr = p->z + (size_t)ref_item(j, T, R) * D;
            double dot = 0;
            for (int c = 0; c < D; c++) dot += (double)zi[c] * zr[c];
            p->cosr[(size_t)i * R + j] = (float)dot;
        }
    }
    encoder_forward(net, p, T);
    ms_rel_seq seq = sa_seq(p, D, R);
    const ms_rel_weights wt = {a, bc, 0, {0, 0, 0}};
    double logp = ms_rel_seq_draw(&seq, &wt, k, greedy, rng, forced, out, logits0);
    p->n = seq.n;
    return logp;
}

/* p->grad = d logp / d params of the pool's last draw. */
static void sa_pool_backward(const ms_net *net, sa_pool *p) {
    int T = p->T;
    double *g = p->grad;
    memset(g, 0, sizeof(double) * net->count);
    double *ds = p->gain; /* reused (T) */
    double dw[6];
    ms_rel_seq seq = sa_seq(p, net->D, ms_rel_nref(T));
    ms_rel_seq_backward(&seq, ds, dw);
    g[net->tensor[T_RED].offset] = dw[0];
    g[net->tensor[T_COV].offset] = dw[1];
    encoder_backward(net, p, ds, g);
}

static void sa_run(const ms_net *net, void *work, const float *x, int B, int T, const int *k, int kstride,
                   ms_net_mode mode, ms_rng *rng, int *picks, int *n, double *logp, float *logits0) {
    sa_work *w = work;
    MS_CHECK(B <= w->Bmax && T <= w->Tmax);
    MS_CHECK(mode.greedy || mode.sampler == MS_SAMPLER_WOR);
    for (int b = 0; b < B; b++) MS_CHECK(k[b] >= 1 && k[b] <= T && k[b] <= w->Kmax);
#pragma omp parallel for schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        logp[b] = sa_pool_run(net, &w->pool[b], x + (size_t)b * T * net->D, T, k[b], mode.greedy,
                              mode.greedy ? NULL : &rng[b], NULL, picks + (size_t)b * kstride,
                              logits0 ? logits0 + (size_t)b * T : NULL);
        n[b] = k[b];
    }
    w->B = B;
    w->last_greedy = mode.greedy;
}

static void sa_backward(const ms_net *net, void *work, const float *x, const double *scale, float *grads) {
    (void)x;
    sa_work *w = work;
    MS_CHECK(w->B > 0 && !w->last_greedy);
#pragma omp parallel for schedule(dynamic, 1)
    for (int b = 0; b < w->B; b++) sa_pool_backward(net, &w->pool[b]);
    /* summed in pool order: independent of the thread count */
    for (size_t q = 0; q < net->count; q++) {
        double acc = 0;
        for (int b = 0; b < w->B; b++) acc += scale[b] * w->pool[b].grad[q];
        grads[q] += (float)acc;
    }
    w->B = 0;
}

double ms_sa_score_draw(const ms_net *net, void *work, const float *x, int T, const int *picks, int k,
                        double *scores) {
    sa_work *w = work;
    MS_CHECK(net->arch == &ms_arch_setattn);
    MS_CHECK(T <= w->Tmax && k >= 1 && k <= T && k <= w->Kmax);
    int *out = ms_xmalloc(sizeof(int) * (size_t)k);
    double lp = sa_pool_run(net, &w->pool[0], x, T, k, 0, NULL, picks, out, NULL);
    free(out);
    if (scores) memcpy(scores, w->pool[0].s, sizeof(double) * (size_t)T);
    w->B = 1;
    w->last_greedy = 0;
    return lp;
}

const ms_arch ms_arch_setattn = {
    .name = "setattn",
    .summary = "self-attention set encoder over rotation-invariant pool-relative features and the "
               "pool's centred cosines, decoded sequentially (redundancy, coverage) into one ranking",
    .sequential = 1,
    .default_hidden = 16,
    .layout = sa_layout,
    .randomize = sa_randomize,
    .check_opts = sa_check_opts,
    .work_new = sa_work_new,
    .work_free = sa_work_free,
    .run = sa_run,
    .backward = sa_backward,
};
