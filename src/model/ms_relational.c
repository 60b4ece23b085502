/* ms_relational.c: the "relational" selector architecture (arch.h): a sequential
 * Plackett-Luce policy over rotation-invariant, pool-relative features, a residual over
 * MaxHerding's coverage gain.
 *
 * Per pool of T items x (T, D) (raw rows), everything in double:
 *   u_i = x_i / |x_i|                      unit rows (what the predictor and MaxHerding use)
 *   m   = mean_i x_i,  z_i = (x_i - m) / |x_i - m|     centred unit rows (per-pool centring)
 *   reference columns: R = min(T, MS_REL_REF) items ref_j = floor(j T / R) (all items for
 *   pools up to MS_REL_REF; larger pools are described against an evenly spaced subset)
 *   kernel    k_ij = exp(u_i . u_ref_j - 1)    (MaxHerding's exp(-|u_i - u_j|^2 / 2))
 * Features f_i (F = 5), each a function of the pool only, invariant to any rotation of the
 * embedding space and to the pool's order:
 *   f0 = zscore(c)   c_i = cosine of u_i to the mean of the u (typicality in the pool)
 *   f1 = zscore(d)   d_i = mean of the kappa = min(5, R-1) largest z_i . z_ref_j, ref_j != i
 *                    (k-NN density after centring)
 *   f2 = rank(c), f3 = rank(d)   rank_i = #{j : v_j < v_i} / (T - 1)   (0 when T = 1)
 *   f4 = |x_i - m| / mean_j |x_j - m| - 1   (how far out the item sits; 0 if all equal)
 * zscore(v) = (v - mean v) / (std v + 1e-6) over the pool (population std).
 * Option features=rank (ms_rel_rank_features): f0, f1 and f4 are replaced by their normal
 * scores Phi^-1((#{j : v_j < v_i} + 1/2) / T), so that every feature depends only on the
 * item's place in the pool's orderings of c, d and |x_i - m|: invariant to any increasing
 * transform of those statistics (a hospital whose pools are tighter or looser, or skewed
 * differently, gives the same feature distribution: the normal scores of a pool are always
 * the same T values).
 *
 * Static score (the MLP):  h_i = tanh(W1 f_i + b1)  (H),  v_i = w2 . h_i,
 *   s_i = v_i, or with option static_max=S > 0:  s_i = S tanh(v_i / S)  (|s_i| < S, so the
 *   static term can reorder only items whose sequential terms differ by less than 2 S).
 * The two options are kept in the optional tensor "rel.config" = (rank 0/1, S), a constant of
 * the design (never a gradient); files without it load with (0, 0), the earlier form.
 * Step t = 0..K-1 with picked set S_t (remaining items only):
 *   r_i^t  = max_{p in S_t} z_i . z_p    (0 when S_t is empty)         redundancy
 *   cov_j  = max_{p in S_t} k_pj         (0 when S_t is empty)
 *   gain_i = (1/R) sum_j max(0, k_ij - cov_j),  g_i^t = gain_i / max_{remaining} gain
 *            (0 when that maximum is 0)                                coverage gain
 *   dist_i = min_{p in S_t} |u_i - u_p|  (t = 0: |u_i - mean_j u_j|, the distance to the
 *            pool's mean unit row),  d_i^t = dist_i / max_{remaining} dist
 *            (0 when that maximum is 0)                                k-center distance
 *   u_t    = log(1 + t) / log(41)        (0 at the first pick, 1 at the 41st)   schedule
 *   a_t = a + a' u_t,  b_t = b + b' u_t,  c_t = c + c' u_t
 *   l_i^t  = s_i - a_t r_i^t + b_t g_i^t + c_t d_i^t
 * (a, b: "rel.redundancy", "rel.coverage"; c: "rel.kcenter"; (a', b', c'): "rel.schedule".
 * The last two are optional tensors: checkpoints made before them load with c = 0 and no
 * schedule, which is exactly the earlier policy l = s - a r + b g.) The k-center distance
 * is plain Euclidean between unit rows, so unlike r (centred cosine, which normalises the
 * residual's length away) it prefers items far out from everything picked, as farthest-first
 * does; it is invariant to rotations and scaling of the embedding space.
 * The draw picks pi_t ~ softmax(l^t) over the remaining items (Gumbel-argmax); greedy takes
 * the argmax (ties: lowest index). log p = sum_t [ l_{pi_t}^t - logsumexp_{remaining} l^t ].
 * Gradient: with dl_i^t = [i = pi_t] - softmax_t(l^t)_i,
 *   ds_i = sum_t dl_i^t,
 *   da = -sum_t R_t,  da' = -sum_t u_t R_t,   R_t = sum_i dl_i^t r_i^t
 *   db =  sum_t G_t,  db' =  sum_t u_t G_t,   G_t = sum_i dl_i^t g_i^t
 *   dc =  sum_t C_t,  dc' =  sum_t u_t C_t,   C_t = sum_i dl_i^t d_i^t
 * and through the bound (S > 0) dv_i = ds_i (1 - (s_i / S)^2) (else dv_i = ds_i), then
 * through the MLP with dv for ds: dw2 += sum_i ds_i h_i, dpre_i = ds_i w2 * (1 - h_i^2),
 * dW1 += sum_i dpre_i f_i^T, db1 += sum_i dpre_i. The features, r, g and d carry no
 * parameters.
 *
 * Initialisation: W1, b1 ~ U(-1/sqrt(F), 1/sqrt(F)); w2 = 0, a = 0, b = 5, c = 0, no
 * schedule (options override each), so the untrained policy's greedy decode is
 * MaxHerding's greedy on the reference columns and training learns a correction of it.
 * With static=frozen, backward adds no gradient to W1, b1 and w2 (their tensors are marked
 * frozen), so Adam leaves them bitwise unchanged and s_i stays 0.
 *
 * Memory: per pool O(T R) floats for the kernel plus O(T (2 D + F + H) + K T) doubles, sized
 * once per work object for (Bmax, Tmax, Kmax). Pools run in parallel (one per thread);
 * gradients are summed per pool and then in pool order, so results do not depend on the
 * thread count.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/arch.h"
#include "medselect/strategy.h"
#include "model/ms_relational.h"

enum { T_W1 = 0, T_B1, T_W2, T_RED, T_COV, T_KC, T_SCHED, T_CFG, N_T };

/* the schedule's horizon: u_t = log(1 + t) / log(1 + MS_REL_HORIZON) */
#define MS_REL_HORIZON 40

double ms_rel_schedule(int t) { return log1p((double)t) / log1p((double)MS_REL_HORIZON); }

static ms_status rel_layout(ms_net *net) {
    static const char *const names[N_T] = {"rel.fc1.weight", "rel.fc1.bias", "rel.fc2.weight",
                                           "rel.redundancy", "rel.coverage", "rel.kcenter",
                                           "rel.schedule", "rel.config"};
    if (net->H > 4096) return ms_fail(MS_ERR_ARG, "selector relational: hidden size %d is larger than 4096", net->H);
    net->ntensors = N_T;
    for (int i = 0; i < N_T; i++) snprintf(net->tensor[i].name, sizeof net->tensor[i].name, "%s", names[i]);
    net->tensor[T_W1].ndim = 2, net->tensor[T_W1].shape[0] = net->H, net->tensor[T_W1].shape[1] = MS_REL_F;
    net->tensor[T_B1].ndim = 1, net->tensor[T_B1].shape[0] = net->H;
    net->tensor[T_W2].ndim = 2, net->tensor[T_W2].shape[0] = 1, net->tensor[T_W2].shape[1] = net->H;
    net->tensor[T_RED].ndim = 1, net->tensor[T_RED].shape[0] = 1;
    net->tensor[T_COV].ndim = 1, net->tensor[T_COV].shape[0] = 1;
    net->tensor[T_KC].ndim = 1, net->tensor[T_KC].shape[0] = 1, net->tensor[T_KC].optional = 1;
    /* (a', b', c'): the slopes of the redundancy, coverage and k-center weights */
    net->tensor[T_SCHED].ndim = 1, net->tensor[T_SCHED].shape[0] = 3, net->tensor[T_SCHED].optional = 1;
    /* (rank features 0/1, static bound s_max or 0): constants of the design, not parameters
     * (no gradient ever); optional, so earlier files load with 0 0 = raw features, unbounded */
    net->tensor[T_CFG].ndim = 1, net->tensor[T_CFG].shape[0] = 2, net->tensor[T_CFG].optional = 1;
    return MS_OK;
}

/* Options (initial values): redundancy=a, coverage=b, kcenter=c (defaults 0, 5, 0) and their
 * slopes over the schedule redundancy_slope=a', coverage_slope=b', kcenter_slope=c' (0);
 * static_max=S (0: unbounded) and features=raw|rank (raw), stored in rel.config; and
 * static=free|frozen (free): frozen holds the per-item MLP (W1, b1, w2) fixed in training, so
 * that with w2 = 0 the static score stays 0 and only the six weights of the redundancy,
 * coverage and k-center terms learn (a model that cannot learn a hospital's typical items).
 * The trainer records the options in the checkpoint's metadata (arch_init). */
static const char *const rel_opts[] = {"redundancy", "coverage", "kcenter", "redundancy_slope",
                                       "coverage_slope", "kcenter_slope", "static_max", "static",
                                       "features", NULL};
enum { N_NUM_OPTS = 7 }; /* the numeric options come first (static_max last of them) */

/* A two-valued option key=OFF|ON: *on = 1 for ON, 0 for OFF (also when absent); MS_ERR_ARG
 * for another value. static=free|frozen and features=raw|rank. */
static ms_status rel_flag(const char *opts, const char *key, const char *off, const char *on_name, int *on) {
    char buf[16];
    int found = 0;
    *on = 0;
    ms_status st = ms_opt_string(opts, key, buf, sizeof buf, &found);
    if (st || !found) return st;
    if (strcmp(buf, on_name) == 0) *on = 1;
    else if (strcmp(buf, off) != 0)
        return ms_fail(MS_ERR_ARG, "selector relational: %s=%.15s is not %s or %s", key, buf, off, on_name);
    return MS_OK;
}

static ms_status rel_static_frozen(const char *opts, int *frozen) {
    return rel_flag(opts, "static", "free", "frozen", frozen);
}

static ms_status rel_rank_features(const char *opts, int *rank) {
    return rel_flag(opts, "features", "raw", "rank", rank);
}

static ms_status rel_check_opts(const char *opts) {
    ms_status st = ms_opt_check("relational", opts, rel_opts);
    double v;
    int found;
    for (int i = 0; !st && i < N_NUM_OPTS; i++) {
        st = ms_opt_double(opts, rel_opts[i], &v, &found);
        if (!st && found && i == N_NUM_OPTS - 1 && !(v >= 0 && v <= 1e6))
            st = ms_fail(MS_ERR_ARG, "selector relational: static_max=%g is not between 0 and 1e6", v);
    }
    if (!st) st = rel_static_frozen(opts, &found);
    if (!st) st = rel_rank_features(opts, &found);
    return st;
}

static void rel_randomize(ms_net *net, uint64_t seed, const char *opts) {
    double val[N_NUM_OPTS] = {0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    int found;
    for (int i = 0; opts && *opts && i < N_NUM_OPTS; i++)
        MS_CHECK(ms_opt_double(opts, rel_opts[i], &val[i], &found) == MS_OK);
    int frozen = 0, rank = 0;
    if (opts && *opts) MS_CHECK(rel_static_frozen(opts, &frozen) == MS_OK);
    if (opts && *opts) MS_CHECK(rel_rank_features(opts, &rank) == MS_OK);
    net->tensor[T_W1].frozen = net->tensor[T_B1].frozen = net->tensor[T_W2].frozen = frozen;
    net->tensor[T_CFG].frozen = 1;
    double a0 = val[0], b0 = val[1];
    double k = 1.0 / sqrt((double)MS_REL_F);
    for (int i = 0; i < 2; i++) {
        ms_rng r;
        ms_rng_init(&r, seed, MS_STREAM_INIT, (uint64_t)i);
        float *p = ms_net_tensor_data(net, i);
        for (size_t j = 0; j < net->tensor[i].size; j++) p[j] = (float)(k * (2.0 * ms_rng_uniform(&r) - 1.0));
    }
    memset(ms_net_tensor_data(net, T_W2), 0, sizeof(float) * (size_t)net->H);
    ms_net_tensor_data(net, T_RED)[0] = (float)a0;
    ms_net_tensor_data(net, T_COV)[0] = (float)b0;
    ms_net_tensor_data(net, T_KC)[0] = (float)val[2];
    for (int i = 0; i < 3; i++) ms_net_tensor_data(net, T_SCHED)[i] = (float)val[3 + i];
    ms_net_tensor_data(net, T_CFG)[0] = (float)rank;
    ms_net_tensor_data(net, T_CFG)[1] = (float)val[6];
}

/* ---- features ----------------------------------------------------------------------- */

static void zscore(double *v, int T) {
    double mean = 0, var = 0;
    for (int i = 0; i < T; i++) mean += v[i];
    mean /= T;
    for (int i = 0; i < T; i++) var += (v[i] - mean) * (v[i] - mean);
    double sd = sqrt(var / T) + 1e-6;
    for (int i = 0; i < T; i++) v[i] = (v[i] - mean) / sd;
}

static void ranks(double *out, const double *v, int T) {
    for (int i = 0; i < T; i++) {
        int c = 0;
        for (int j = 0; j < T; j++) c += v[j] < v[i];
        out[i] = T > 1 ? (double)c / (T - 1) : 0.0;
    }
}

int ms_rel_nref(int T) { return T < MS_REL_REF ? T : MS_REL_REF; }

/* One pool's precomputation. x (T, D). Out: z (T, D) centred unit rows, kern (T, R) kernel
 * values against the reference columns, feat (T, F). scratch: 4 T + R doubles. */
void ms_rel_features(double *feat, float *z, float *kern, const float *x, int T, int D,
                     double *scratch) {
    int R = ms_rel_nref(T);
    double *c = scratch, *d = c + T, *nrm = d + T, *tmp = nrm + T, *top = tmp + T;
    double *mu = top + R; /* D doubles follow: the caller sized scratch with ms_rel_scratch */
    double *uc = mu + D;
    memset(mu, 0, sizeof(double) * (size_t)D);
    memset(uc, 0, sizeof(double) * (size_t)D);
    for (int i = 0; i < T; i++) {
        const float *xi = x + (size_t)i * D;
        double s = 0;
        for (int k = 0; k < D; k++) s += (double)xi[k] * xi[k];
        s = s > 0 ? 1.0 / sqrt(s) : 0.0;
        for (int k = 0; k < D; k++) mu[k] += xi[k], uc[k] += xi[k] * s;
    }
    for (int k = 0; k < D; k++) mu[k] /= T;
    double ucn = 0;
    for (int k = 0; k < D; k++) ucn += uc[k] * uc[k];
    ucn = ucn > 0 ? 1.0 / sqrt(ucn) : 0.0;
    double mean_n = 0;
    for (int i = 0; i < T; i++) {
        const float *xi = x + (size_t)i * D;
        double s = 0, cu = 0, n2 = 0;
        for (int k = 0; k < D; k++) {
            double e = xi[k] - mu[k];
            n2 += e * e;
            s += (double)xi[k] * xi[k];
            cu += (double)xi[k] * uc[k];
        }
        c[i] = s > 0 ? cu * ucn / sqrt(s) : 0.0;
        nrm[i] = sqrt(n2);
        mean_n += nrm[i];
        float *zi = z + (size_t)i * D;
        for (int k = 0; k < D; k++) zi[k] = nrm[i] > 0 ? (float)((xi[k] - mu[k]) / nrm[i]) : 0.0f;
    }
    mean_n /= T;
    /* kernel and density against the reference columns */
    int kappa = R - 1 < 5 ? R - 1 : 5;
    for (int i = 0; i < T; i++) {
        const float *xi = x + (size_t)i * D, *zi = z + (size_t)i * D;
        double si = 0;
        for (int k = 0; k < D; k++) si += (double)xi[k] * xi[k];
        si = si > 0 ? 1.0 / sqrt(si) : 0.0;
        int nt = 0;
        for (int j = 0; j < R; j++) {
            int rj = (int)((long)j * T / R);
            const float *xr = x + (size_t)rj * D, *zr = z + (size_t)rj * D;
            double sr = 0, dot = 0, zz = 0;
            for (int k = 0; k < D; k++) {
                sr += (double)xr[k] * xr[k];
                dot += (double)xi[k] * xr[k];
                zz += (double)zi[k] * zr[k];
            }
            double cosu = sr > 0 ? dot * si / sqrt(sr) : 0.0;
            kern[(size_t)i * R + j] = (float)exp(cosu - 1.0);
            if (rj == i || kappa <= 0) continue;
            /* keep the kappa largest centred cosines (insertion into a short sorted list) */
            if (nt < kappa) {
                int p = nt++;
                while (p > 0 && top[p - 1] < zz) top[p] = top[p - 1], p--;
                top[p] = zz;
            } else if (zz > top[kappa - 1]) {
                int p = kappa - 1;
                while (p > 0 && top[p - 1] < zz) top[p] = top[p - 1], p--;
                top[p] = zz;
            }
        }
        double sum = 0;
        for (int q = 0; q < nt; q++) sum += top[q];
        d[i] = nt ? sum / nt : 0.0;
    }
    for (int i = 0; i < T; i++) {
        double *f = feat + (size_t)i * MS_REL_F;
        f[4] = mean_n > 0 ? nrm[i] / mean_n - 1.0 : 0.0;
    }
    ranks(tmp, c, T);
    for (int i = 0; i < T; i++) feat[(size_t)i * MS_REL_F + 2] = tmp[i];
    ranks(tmp, d, T);
    for (int i = 0; i < T; i++) feat[(size_t)i * MS_REL_F + 3] = tmp[i];
    zscore(c, T);
    zscore(d, T);
    for (int i = 0; i < T; i++) feat[(size_t)i * MS_REL_F + 0] = c[i], feat[(size_t)i * MS_REL_F + 1] = d[i];
}

/* Phi^-1(q) for 0 < q < 1: Abramowitz-Stegun 26.2.23 (error below 4.5e-4) refined by three
 * Newton steps on Phi(x) = erfc(-x / sqrt 2) / 2 (about 1e-15 for 1e-7 < q < 1 - 1e-7);
 * odd in q - 1/2 by construction. */
static double probit(double q) {
    double p = q < 0.5 ? q : 1.0 - q;
    double t = sqrt(-2.0 * log(p));
    double x = -(t - (2.515517 + 0.802853 * t + 0.010328 * t * t) /
                         (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t));
    for (int it = 0; it < 3; it++) {
        double e = 0.5 * erfc(-x / sqrt(2.0)) - p;
        x -= e / (exp(-0.5 * x * x) / sqrt(2.0 * 3.14159265358979323846));
    }
    return q < 0.5 ? x : -x;
}

/* Normal scores of column col of feat (T, F) in place: v_i -> Phi^-1((#{j : v_j < v_i} +
 * 1/2) / T). tmp: T doubles. */
static void normal_scores(double *feat, int col, int T, double *tmp) {
    for (int i = 0; i < T; i++) {
        int c = 0;
        for (int j = 0; j < T; j++) c += feat[(size_t)j * MS_REL_F + col] < feat[(size_t)i * MS_REL_F + col];
        tmp[i] = probit((c + 0.5) / T);
    }
    for (int i = 0; i < T; i++) feat[(size_t)i * MS_REL_F + col] = tmp[i];
}

void ms_rel_rank_features(double *feat, int T, double *scratch) {
    normal_scores(feat, 0, T, scratch);
    normal_scores(feat, 1, T, scratch);
    normal_scores(feat, 4, T, scratch);
}

size_t ms_rel_scratch(int T, int D) { return 4 * (size_t)T + (size_t)ms_rel_nref(T) + 2 * (size_t)D; }

/* ---- the sequential policy of one pool ---------------------------------------------- */

/* Per-pool state kept for the backward pass. */
typedef struct {
    double *feat;   /* (T, F) */
    double *hid;    /* (T, H) tanh activations */
    double *s;      /* (T) static scores */
    float *z;       /* (T, D) */
    float *kern;    /* (T, R) */
    float *u;       /* (T, D) unit rows */
    double *red;    /* (Kmax, T) r^t */
    double *gn;     /* (Kmax, T) g^t */
    double *dk;     /* (Kmax, T) d^t */
    double *dist;   /* (T) distance to the nearest picked item (t = 0: to the mean) */
    double *lg;     /* (Kmax, T) l^t */
    double *lse;    /* (Kmax) */
    double *cov;    /* (R) */
    double *gain;   /* (T) */
    double *scratch;
    unsigned char *taken; /* (T) */
    int *picks;     /* (Kmax) */
    int T, n;
    double *grad;   /* (count) this pool's gradient, double */
} rel_pool;

typedef struct {
    int Bmax, Tmax, Kmax, D, H;
    size_t count;
    rel_pool *pool;  /* (Bmax) */
    void *memory;
    int B, last_greedy;
} rel_work;

static void *rel_work_new(const ms_net *net, int Bmax, int Tmax, int Kmax) {
    rel_work *w = ms_xcalloc(1, sizeof *w);
    w->Bmax = Bmax, w->Tmax = Tmax, w->Kmax = Kmax, w->D = net->D, w->H = net->H;
    w->count = net->count;
    int R = ms_rel_nref(Tmax), D = net->D, H = net->H;
    size_t T = (size_t)Tmax, K = (size_t)Kmax;
    size_t nd = T * MS_REL_F + T * H + T + 4 * K * T + K + R + 2 * T + ms_rel_scratch(Tmax, D) + net->count;
    size_t nf = 2 * T * D + T * R;
    /* one block per pool, a multiple of 64 bytes so that every block's doubles are aligned */
    size_t per = (nd * sizeof(double) + nf * sizeof(float) + T + K * sizeof(int) + 63) / 64 * 64;
    w->pool = ms_xcalloc((size_t)Bmax, sizeof(rel_pool));
    w->memory = ms_xmalloc(per * (size_t)Bmax);
    for (int b = 0; b < Bmax; b++) {
        char *base = (char *)w->memory + per * (size_t)b;
        double *dp = (double *)base;
        rel_pool *p = &w->pool[b];
        p->feat = dp, dp += T * MS_REL_F;
        p->hid = dp, dp += T * H;
        p->s = dp, dp += T;
        p->red = dp, dp += K * T;
        p->gn = dp, dp += K * T;
        p->dk = dp, dp += K * T;
        p->lg = dp, dp += K * T;
        p->lse = dp, dp += K;
        p->cov = dp, dp += R;
        p->gain = dp, dp += T;
        p->dist = dp, dp += T;
        p->scratch = dp, dp += ms_rel_scratch(Tmax, D);
        p->grad = dp, dp += net->count;
        float *fp = (float *)dp;
        p->z = fp, fp += T * D;
        p->kern = fp, fp += T * R;
        p->u = fp, fp += T * D;
        int *ip = (int *)fp;
        p->picks = ip, ip += K;
        p->taken = (unsigned char *)ip;
    }
    return w;
}

static void rel_work_free(void *p) {
    rel_work *w = p;
    if (!w) return;
    free(w->memory);
    free(w->pool);
    free(w);
}

/* ---- the sequential draw (shared with ms_setattn.c) ----------------------------------- */

double ms_rel_seq_draw(ms_rel_seq *q, const ms_rel_weights *w, int k, int greedy, ms_rng *rng,
                       const int *forced, int *out, float *logits0) {
    const int T = q->T, D = q->D, R = q->R;
    MS_CHECK(q->u || (w->c == 0 && w->slope[2] == 0));
    memset(q->taken, 0, (size_t)T);
    for (int j = 0; j < R; j++) q->cov[j] = 0;
    double logp = 0;
    for (int t = 0; t < k; t++) {
        double *red = q->red + (size_t)t * T, *gn = q->gn + (size_t)t * T, *lg = q->lg + (size_t)t * T;
        double *dk = q->u ? q->dk + (size_t)t * T : NULL;
        double ut = ms_rel_schedule(t);
        double a = w->a + w->slope[0] * ut, bc = w->b + w->slope[1] * ut, cc = w->c + w->slope[2] * ut;
        double gmax = 0, dmax = 0;
        if (dk && t > 0) {
            /* nearest picked item: fold in the last pick (at t = 1 it replaces the mean) */
            const float *up = q->u + (size_t)q->picks[t - 1] * D;
            for (int i = 0; i < T; i++) {
                if (q->taken[i]) continue;
                const float *ui = q->u + (size_t)i * D;
                double d2 = 0;
                for (int c = 0; c < D; c++) {
                    double e = (double)ui[c] - up[c];
                    d2 += e * e;
                }
                double dd = sqrt(d2);
                if (t == 1 || dd < q->dist[i]) q->dist[i] = dd;
            }
        }
        if (dk)
            for (int i = 0; i < T; i++)
                if (!q->taken[i] && q->dist[i] > dmax) dmax = q->dist[i];
        for (int i = 0; i < T; i++) {
            if (q->taken[i]) continue;
            const float *ki = q->kern + (size_t)i * R;
            double g = 0;
            for (int j = 0; j < R; j++) {
                double e = ki[j] - q->cov[j];
                if (e > 0) g += e;
            }
            q->gain[i] = g / R;
            if (q->gain[i] > gmax) gmax = q->gain[i];
        }
        double lmax = -INFINITY;
        int best = -1;
        double bestv = -INFINITY;
        for (int i = 0; i < T; i++) {
            if (q->taken[i]) {
                red[i] = gn[i] = 0;
                if (dk) dk[i] = 0;
                lg[i] = -INFINITY;
                continue;
            }
            if (t == 0) red[i] = 0;
            else {
                const float *zi = q->z + (size_t)i * D, *zp = q->z + (size_t)q->picks[t - 1] * D;
                double dot = 0;
                for (int c = 0; c < D; c++) dot += (double)zi[c] * zp[c];
                double prev = t == 1 ? -INFINITY : q->red[(size_t)(t - 1) * T + i];
                red[i] = dot > prev ? dot : prev;
            }
            gn[i] = gmax > 0 ? q->gain[i] / gmax : 0.0;
            if (dk) {
                dk[i] = dmax > 0 ? q->dist[i] / dmax : 0.0;
                lg[i] = q->s[i] - a * red[i] + bc * gn[i] + cc * dk[i];
            } else {
                lg[i] = q->s[i] - a * red[i] + bc * gn[i];
            }
            if (lg[i] > lmax) lmax = lg[i];
            if (forced) continue;
            double v = greedy ? lg[i] : lg[i] + ms_rng_gumbel(rng);
            if (v > bestv) bestv = v, best = i;
        }
        if (t == 0 && logits0)
            for (int i = 0; i < T; i++) logits0[i] = (float)lg[i];
        double se = 0;
        for (int i = 0; i < T; i++)
            if (!q->taken[i]) se += exp(lg[i] - lmax);
        q->lse[t] = lmax + log(se);
        if (forced) {
            best = forced[t];
            MS_CHECK(best >= 0 && best < T && !q->taken[best]);
        }
        MS_CHECK(best >= 0);
        logp += lg[best] - q->lse[t];
        q->picks[t] = best;
        out[t] = best;
        q->taken[best] = 1;
        const float *kb = q->kern + (size_t)best * R;
        for (int j = 0; j < R; j++)
            if (kb[j] > q->cov[j]) q->cov[j] = kb[j];
    }
    q->n = k;
    return logp;
}

void ms_rel_seq_backward(ms_rel_seq *q, double *ds, double dw[6]) {
    const int T = q->T;
    for (int i = 0; i < T; i++) ds[i] = 0;
    for (int j = 0; j < 6; j++) dw[j] = 0;
    memset(q->taken, 0, (size_t)T);
    for (int t = 0; t < q->n; t++) {
        const double *red = q->red + (size_t)t * T, *gn = q->gn + (size_t)t * T, *lg = q->lg + (size_t)t * T;
        const double *dk = q->u ? q->dk + (size_t)t * T : NULL;
        double Rt = 0, Gt = 0, Ct = 0, ut = ms_rel_schedule(t);
        for (int i = 0; i < T; i++) {
            if (q->taken[i]) continue;
            double dl = (i == q->picks[t]) - exp(lg[i] - q->lse[t]);
            ds[i] += dl;
            Rt += dl * red[i];
            Gt += dl * gn[i];
            if (dk) Ct += dl * dk[i];
        }
        dw[0] -= Rt, dw[1] += Gt, dw[2] += Ct;
        dw[3] -= ut * Rt, dw[4] += ut * Gt, dw[5] += ut * Ct;
        q->taken[q->picks[t]] = 1;
    }
}

/* The sequential draw's view of a pool's buffers. */
static ms_rel_seq rel_seq(rel_pool *p, int D, int R) {
    ms_rel_seq q = {.T = p->T, .D = D, .R = R, .s = p->s, .z = p->z, .kern = p->kern, .u = p->u,
                    .dist = p->dist, .red = p->red, .gn = p->gn, .dk = p->dk, .lg = p->lg,
                    .lse = p->lse, .cov = p->cov, .gain = p->gain, .taken = p->taken,
                    .picks = p->picks, .n = p->n};
    return q;
}

/* Runs one pool: features, static scores, then k sequential steps. Returns log p. */
/* forced (k) not NULL: the draw is forced[0..k) instead (scoring a given ordered selection). */
static double rel_pool_run(const ms_net *net, rel_pool *p, const float *x, int T, int k,
                           int greedy, ms_rng *rng, const int *forced, int *out, float *logits0) {
    int D = net->D, H = net->H, R = ms_rel_nref(T);
    const float *W1 = ms_net_tensor_data(net, T_W1), *b1 = ms_net_tensor_data(net, T_B1);
    const float *w2 = ms_net_tensor_data(net, T_W2);
    double a0 = ms_net_tensor_data(net, T_RED)[0], b0 = ms_net_tensor_data(net, T_COV)[0];
    double c0 = ms_net_tensor_data(net, T_KC)[0];
    const float *sl = ms_net_tensor_data(net, T_SCHED); /* (3) slopes a', b', c' */
    const float *cfg = ms_net_tensor_data(net, T_CFG); /* (2) rank features, s_max */
    double smax = cfg[1];
    p->T = T;
    ms_rel_features(p->feat, p->z, p->kern, x, T, D, p->scratch);
    if (cfg[0] != 0) ms_rel_rank_features(p->feat, T, p->scratch);
    /* unit rows u (T, D) (float, as the pool's rows are stored for MaxHerding and k-center)
     * and dist_i = |u_i - mean u| for the first step; mean in scratch (D doubles) */
    double *mu = p->scratch;
    memset(mu, 0, sizeof(double) * (size_t)D);
    for (int i = 0; i < T; i++) {
        const float *xi = x + (size_t)i * D;
        float *ui = p->u + (size_t)i * D;
        double n2 = 0;
        for (int q = 0; q < D; q++) n2 += (double)xi[q] * xi[q];
        double nrm = sqrt(n2);
        for (int q = 0; q < D; q++) ui[q] = nrm > 0 ? (float)(xi[q] / nrm) : 0.0f, mu[q] += ui[q];
    }
    for (int q = 0; q < D; q++) mu[q] /= T;
    for (int i = 0; i < T; i++) {
        const float *ui = p->u + (size_t)i * D;
        double d2 = 0;
        for (int q = 0; q < D; q++) d2 += (ui[q] - mu[q]) * (ui[q] - mu[q]);
        p->dist[i] = sqrt(d2);
    }
    for (int i = 0; i < T; i++) {
        const double *f = p->feat + (size_t)i * MS_REL_F;
        double *h = p->hid + (size_t)i * H, s = 0;
        for (int u = 0; u < H; u++) {
            double pre = b1[u];
            for (int q = 0; q < MS_REL_F; q++) pre += (double)W1[u * MS_REL_F + q] * f[q];
            h[u] = tanh(pre);
            s += (double)w2[u] * h[u];
        }
        p->s[i] = smax > 0 ? smax * tanh(s / smax) : s;
    }
    ms_rel_seq seq = rel_seq(p, D, R);
    const ms_rel_weights wt = {a0, b0, c0, {sl[0], sl[1], sl[2]}};
    double logp = ms_rel_seq_draw(&seq, &wt, k, greedy, rng, forced, out, logits0);
    p->n = seq.n;
    return logp;
}

/* p->grad = d logp / d params of the pool's last draw (double). */
static void rel_pool_backward(const ms_net *net, rel_pool *p) {
    int T = p->T, H = net->H;
    const float *w2 = ms_net_tensor_data(net, T_W2);
    double *g = p->grad;
    memset(g, 0, sizeof(double) * net->count);
    double *ds = p->gain; /* reuse (T) */
    double dw[6];
    ms_rel_seq seq = rel_seq(p, net->D, ms_rel_nref(T));
    ms_rel_seq_backward(&seq, ds, dw);
    double *gW1 = g + net->tensor[T_W1].offset, *gb1 = g + net->tensor[T_B1].offset;
    double *gw2 = g + net->tensor[T_W2].offset;
    double smax = ms_net_tensor_data(net, T_CFG)[1];
    if (smax > 0) /* s = smax tanh(v / smax): ds/dv = 1 - (s / smax)^2 */
        for (int i = 0; i < T; i++) ds[i] *= 1.0 - (p->s[i] / smax) * (p->s[i] / smax);
    g[net->tensor[T_RED].offset] = dw[0];
    g[net->tensor[T_COV].offset] = dw[1];
    g[net->tensor[T_KC].offset] = dw[2];
    for (int j = 0; j < 3; j++) g[net->tensor[T_SCHED].offset + (size_t)j] = dw[3 + j];
    for (int i = 0; i < T; i++) {
        const double *h = p->hid + (size_t)i * H, *f = p->feat + (size_t)i * MS_REL_F;
        for (int u = 0; u < H; u++) {
            gw2[u] += ds[i] * h[u];
            double dpre = ds[i] * w2[u] * (1.0 - h[u] * h[u]);
            gb1[u] += dpre;
            for (int q = 0; q < MS_REL_F; q++) gW1[u * MS_REL_F + q] += dpre * f[q];
        }
    }
}

static void rel_run(const ms_net *net, void *work, const float *x, int B, int T, const int *k,
                    int kstride, ms_net_mode mode, ms_rng *rng, int *picks, int *n, double *logp,
                    float *logits0) {
    rel_work *w = work;
    MS_CHECK(B <= w->Bmax && T <= w->Tmax);
    MS_CHECK(mode.greedy || mode.sampler == MS_SAMPLER_WOR);
    for (int b = 0; b < B; b++) MS_CHECK(k[b] >= 1 && k[b] <= T && k[b] <= w->Kmax);
#pragma omp parallel for schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        logp[b] = rel_pool_run(net, &w->pool[b], x + (size_t)b * T * net->D, T, k[b], mode.greedy,
                               mode.greedy ? NULL : &rng[b], NULL, picks + (size_t)b * kstride,
                               logits0 ? logits0 + (size_t)b * T : NULL);
        n[b] = k[b];
    }
    w->B = B;
    w->last_greedy = mode.greedy;
}

static void rel_backward(const ms_net *net, void *work, const float *x, const double *scale,
                         float *grads) {
    (void)x;
    rel_work *w = work;
    MS_CHECK(w->B > 0 && !w->last_greedy);
#pragma omp parallel for schedule(dynamic, 1)
    for (int b = 0; b < w->B; b++) rel_pool_backward(net, &w->pool[b]);
    /* summed in pool order: independent of the thread count; frozen tensors get nothing */
    for (int i = 0; i < net->ntensors; i++) {
        if (net->tensor[i].frozen) continue;
        for (size_t q = net->tensor[i].offset; q < net->tensor[i].offset + net->tensor[i].size; q++) {
            double acc = 0;
            for (int b = 0; b < w->B; b++) acc += scale[b] * w->pool[b].grad[q];
            grads[q] += (float)acc;
        }
    }
    w->B = 0;
}

double ms_rel_score_draw(const ms_net *net, void *work, const float *x, int T, const int *picks,
                         int k) {
    rel_work *w = work;
    MS_CHECK(T <= w->Tmax && k >= 1 && k <= T && k <= w->Kmax);
    int *out = ms_xmalloc(sizeof(int) * (size_t)k);
    double lp = rel_pool_run(net, &w->pool[0], x, T, k, 0, NULL, picks, out, NULL);
    free(out);
    w->B = 1;
    w->last_greedy = 0;
    return lp;
}

const ms_arch ms_arch_relational = {
    .name = "relational",
    .summary = "sequential policy over rotation-invariant pool-relative features, a learned "
               "residual over MaxHerding's coverage gain and k-center's distance; greedy decoding gives "
               "one ranking",
    .sequential = 1,
    .default_hidden = 16,
    .layout = rel_layout,
    .randomize = rel_randomize,
    .check_opts = rel_check_opts,
    .work_new = rel_work_new,
    .work_free = rel_work_free,
    .run = rel_run,
    .backward = rel_backward,
};
