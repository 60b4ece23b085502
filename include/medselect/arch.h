/* medselect/arch.h: selector architectures behind one interface.
 *
 * A selector ("net") maps one pool of T items, x (T, D) as stored (plus the 3 clinical
 * features when D says so), to an ORDERED selection of K distinct items, drawn from a policy
 * with an exact log-probability (training) or decoded greedily (deployment). Every
 * architecture is an ms_arch: a table of functions registered by name, so that train,
 * select, evaluate and analyze work with any of them through the same calls and the
 * checkpoint records which one it holds (metadata "arch").
 *
 * Built in:
 *   bilstm      the paper's selector (model.h): a bidirectional LSTM over the pool scores
 *               every item once; the selection is a Plackett-Luce draw (or a multinomial
 *               draw, the reference's choice) from those fixed logits, greedy = top-K.
 *               Checkpoints keep PyTorch's names; files without "arch" are bilstm.
 *   relational  a sequential policy over rotation-invariant, pool-relative features
 *               (src/model/ms_relational.c): at step t item i has the logit
 *                   l_i^t = s_i - a_t r_i^t + b_t g_i^t + c_t d_i^t
 *               where s_i is an MLP of the item's pool-relative features, r_i^t its
 *               largest centred cosine to the items picked so far, g_i^t MaxHerding's
 *               coverage gain and d_i^t k-center's distance to the nearest picked item
 *               (each normalised by the step's largest); each weight w_t = w0 + w1 u_t
 *               moves with the step (u_t = log(1 + t) / log(41)), so one ranking can start
 *               representative and turn to coverage. Files without the k-center and
 *               schedule tensors load with them 0: l_i^t = s_i - a r_i^t + b g_i^t.
 *               Greedy decoding gives a ranking whose every prefix is a selection.
 *               Option static=frozen holds the MLP fixed (s_i = 0): only the six term
 *               weights learn. features=rank feeds the MLP only within-pool normal
 *               scores and ranks (invariant to increasing transforms of the pool's
 *               statistics); static_max=S bounds s_i = S tanh(v_i / S). Both are kept in
 *               the optional tensor rel.config (files without it: raw, unbounded).
 *   setattn     the relational policy's sequential decoding with s_i from a permutation-
 *               equivariant set encoder (src/model/ms_setattn.c): two self-attention layers
 *               over the pool on the same pool-relative features, each attention logit
 *               biased by a learned weight times the two items' centred cosine, then an MLP
 *               of each item's encoding and the pool's mean encoding. No raw coordinates
 *               enter, so the ranking is invariant to rotations and scalings of the
 *               embedding space and (pools up to 512 items) equivariant to their order.
 *
 * Parameters of every architecture live in ONE float allocation (net->params, count
 * floats) described by a tensor table (name, shape, offset), so optimizers, checkpoints and
 * training states treat all architectures alike.
 *
 * Threads and reproducibility: run() and backward() give bitwise the same results for any
 * OpenMP thread count (per-task work in parallel, reductions in task order).
 */
#ifndef MEDSELECT_ARCH_H
#define MEDSELECT_ARCH_H

#include "medselect/common.h"
#include "medselect/model.h"
#include "medselect/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MS_NET_MAX_TENSORS 16

typedef struct {
    char name[48];
    int ndim;          /* 1 or 2 */
    int64_t shape[2];
    size_t offset;     /* floats from net->params */
    size_t size;       /* floats */
    int optional;      /* 1: a file without this tensor still loads and the tensor stays 0;
                          the architecture makes 0 mean its behaviour before the tensor
                          existed (newer terms of a design that older checkpoints lack) */
    int frozen;        /* 1: held fixed in training: the architecture's backward adds no
                          gradient to it (so Adam leaves it bitwise unchanged). Set by
                          randomize from the initialisation options (e.g. relational's
                          static=frozen), which the trainer keeps in the checkpoint's
                          "arch_init" metadata; a loaded net has every flag 0 */
} ms_net_tensor;

typedef struct ms_arch ms_arch;

typedef struct {
    const ms_arch *arch;
    int D;             /* input width per item (embedding + 3 when clinical) */
    int H;             /* hidden size */
    int ntensors;
    ms_net_tensor tensor[MS_NET_MAX_TENSORS];
    size_t count;      /* floats in params */
    float *params;     /* one 64-byte aligned allocation, owned */
} ms_net;

/* Per-call options of run(). */
typedef struct {
    ms_sampler sampler;  /* how a draw is made (an architecture may support only WOR) */
    int greedy;          /* 1: greedy decoding (rng unused, no backward possible) */
} ms_net_mode;

struct ms_arch {
    const char *name;
    const char *summary;     /* one line for --help */
    int sequential;          /* 1: the logits depend on the items already picked, so a
                                selection cannot be made from one score per item */
    int default_hidden;
    /* Optional: a tensor whose shape gives D and H (then files without metadata load, e.g.
     * saved from PyTorch), and the rule; NULL: D and H come from the checkpoint metadata. */
    const char *size_tensor;
    int (*sizes_from)(const int64_t *shape, int ndim, int *D, int *H); /* 0: shape unfit */
    /* Fills net->ntensors and net->tensor[] (names, shapes) for net->D and net->H; offsets
     * and sizes are filled by ms_net_init. Returns MS_ERR_ARG when D or H do not suit. */
    ms_status (*layout)(ms_net *net);
    /* Initial weights from (seed, MS_STREAM_INIT, tensor index) and the options opts ("" or
     * NULL: the defaults; "key=value,..." checked by check_opts) only. */
    void (*randomize)(ms_net *net, uint64_t seed, const char *opts);
    /* MS_ERR_ARG naming a bad option in opts (NULL hook: no options). */
    ms_status (*check_opts)(const char *opts);
    /* Workspace for up to Bmax pools of up to Tmax items and budgets up to Kmax. */
    void *(*work_new)(const ms_net *net, int Bmax, int Tmax, int Kmax);
    void (*work_free)(void *work);
    /* Runs B pools of T items: x (B, T, D). Per pool b: k[b] picks into picks + b*kstride
     * in order, their number n[b] (< k[b] only for a multinomial draw with duplicates),
     * logp[b] (log-probability of that draw; 0 for greedy) and, when logits0 is not NULL,
     * the first step's logits, logits0 (B, T). rng (B): pool b's generator (unused when
     * greedy). Keeps what backward needs in work. */
    void (*run)(const ms_net *net, void *work, const float *x, int B, int T, const int *k,
                int kstride, ms_net_mode mode, ms_rng *rng, int *picks, int *n, double *logp,
                float *logits0);
    /* grads (net->count) += sum_b scale[b] * d logp[b] / d params for the last non-greedy
     * run (x unchanged since). */
    void (*backward)(const ms_net *net, void *work, const float *x, const double *scale,
                     float *grads);
    /* Optional (static architectures, for evaluation, where every pool is drawn from one
     * matrix and the weights stay fixed): prepare_rows computes once, into work, what
     * depends on a row alone for the rows x (N, D), and returns 1; or returns 0 when that
     * would not fit its memory budget (then use run). run_rows then gives run()'s greedy
     * logits0 (B, T, up to the work's Bmax and Tmax) for the pools rows (B, T): pool b's item
     * t is x's row rows[b*T + t]. The weights and x must not change in between. */
    int (*prepare_rows)(const ms_net *net, void *work, const float *x, int N);
    void (*run_rows)(const ms_net *net, void *work, const int *rows, int B, int T, float *logits);
};

/* The registry. */
const ms_arch *ms_arch_find(const char *name);   /* NULL when unknown */
const ms_arch *ms_arch_default(void);            /* bilstm */
/* Comma-separated names, e.g. for --help. */
const char *ms_arch_names(void);
/* name -> arch, or MS_ERR_ARG listing the valid names. */
ms_status ms_arch_parse(const char *name, const ms_arch **out);
/* "name" or "name:key=value,..." (initialisation options, e.g. "relational:redundancy=8"):
 * the arch and *opts pointing into spec after the ':' ("" when none); MS_ERR_ARG for an
 * unknown name or option. */
ms_status ms_arch_parse_spec(const char *spec, const ms_arch **out, const char **opts);

/* Zeroed net of architecture a for input width D and hidden H (H <= 0: the arch's
 * default). MS_ERR_ARG when the arch refuses the sizes. */
ms_status ms_net_init(ms_net *net, const ms_arch *a, int D, int H);
void ms_net_free(ms_net *net);
void ms_net_randomize(ms_net *net, uint64_t seed);  /* default options */
void ms_net_randomize_opts(ms_net *net, uint64_t seed, const char *opts);
/* Index of a tensor by name, or -1. */
int ms_net_find(const ms_net *net, const char *name);
static inline float *ms_net_tensor_data(const ms_net *net, int i) {
    return net->params + net->tensor[i].offset;
}

/* A bilstm net holding (a copy of) p, and a view of a bilstm net's memory as LSTM
 * parameters (view->memory aliases memory, which has net->count floats; never free a view). */
void ms_net_from_lstm(ms_net *net, const ms_lstm_params *p);
void ms_net_lstm_view(const ms_net *net, float *memory, ms_lstm_params *view);

/* Built-in architectures (one file each in src/model). */
extern const ms_arch ms_arch_bilstm;
extern const ms_arch ms_arch_relational;
extern const ms_arch ms_arch_setattn;

#ifdef __cplusplus
}
#endif
#endif
