/* medselect/model.h: the selector network of MedSelect, a single-layer bidirectional LSTM
 * over the pool followed by a per-item linear layer, one logit per pool item.
 *
 * Semantics are exactly those of PyTorch
 *     LSTM   = nn.LSTM(D, H, bidirectional=True, batch_first=True)
 *     linear = nn.Linear(2H, 1)
 *     logits = linear(LSTM(x)[0]).squeeze(-1)          x is (B, T, D), logits (B, T)
 * For each direction, with zero initial state and gates in the order i, f, g, o:
 *     a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh                   (4H)
 *     i = sigmoid(a[0:H])  f = sigmoid(a[H:2H])  g = tanh(a[2H:3H])  o = sigmoid(a[3H:4H])
 *     c_t = f * c_{t-1} + i * g          h_t = o * tanh(c_t)
 * The reverse direction reads the pool backwards (its "previous" step is t+1). The output
 * of item t is [h_fwd_t, h_rev_t] (2H) and its logit is linear.weight . out_t + linear.bias.
 *
 * Parameters live in ONE float allocation carved from a table of sizes (ms_lstm_params);
 * gradients use the same struct, so an optimizer can walk `memory[0..count)` flat. The
 * tensor names are PyTorch's state_dict names of a module with attributes `LSTM` and
 * `linear` (see checkpoint.h), so checkpoints load into PyTorch unchanged.
 *
 * The fast kernels (ms_lstm_forward / ms_lstm_backward) run B tasks at once:
 *  - the input projections of all tasks and both directions are one sgemm
 *    (B*T, D) x (D, 8H);
 *  - each recurrent step is one sgemm over the batch, (B, H) x (H, 4H) per direction;
 *  - backward through time computes the pre-activation gradients per step, the recurrent
 *    dh_{t-1} = dgates_t W_hh as one sgemm over the batch, and then dW_ih with one sgemm
 *    (8H, B*T) x (B*T, D) and dW_hh with one sgemm per direction (4H, B*T) x (B*T, H).
 * Storage is batch-major, (B, T, .), as the caller's x: the GEMM packs its operands, so the rows
 * h_{t-1} of the B tasks need not be adjacent (they are read with a leading dimension of
 * T*2H), and batch-major lets the big GEMMs read x in place without a transposed copy.
 *
 * Threads and reproducibility. Every product goes through ms_gemm (gemm.h), whose blocking
 * depends on the shapes only, so each output element is summed in the same order for any
 * thread count. The two directions of the recurrence run on two OpenMP threads (when at
 * least two are allowed; ms_gemm then runs on its calling thread), and with one thread the
 * same calls run one after the other. Elementwise loops and the bias / linear-layer
 * reductions are done per direction in a fixed order. So logits and gradients are bitwise
 * identical for any thread count (tests: 1, 2 and 3 threads, f32 and bf16).
 *
 * Precision. A cache runs its products in f32 or, after ms_lstm_cache_set_precision(c,
 * MS_PREC_BF16) (or when created while ms_get_precision() is bf16), with bf16 operands and
 * fp32 accumulation; gate math, states, logits and the gradient accumulators stay fp32 (or
 * double), and so do the parameters the optimizer updates. Measured against f32 at D 512,
 * H 256, T 60: logits 8e-4, gradients up to 6e-3 relative (max |diff| / max |f32|); the
 * test allows 2e-2.
 *
 * Typical use (a training step over B tasks of T items each):
 *     ms_lstm_params p, g;            ms_lstm_cache cache;
 *     ms_lstm_params_init(&p, D, H);  ms_lstm_params_randomize(&p, seed);
 *     ms_lstm_params_init(&g, D, H);  ms_lstm_cache_init(&cache, D, H, Bmax, Tmax);
 *     ms_lstm_forward(logits, &cache, x, &p, B, T);         // logits (B, T)
 *     ... per task b: sample from logits + b*T, set dlogits + b*T (see policy.h) ...
 *     ms_lstm_params_zero(&g);
 *     ms_lstm_backward(&g, dlogits, &cache, x, &p);          // g += dL/dparams
 *     ... optimizer step on p.memory / g.memory (count floats) ...
 */
#ifndef MEDSELECT_MODEL_H
#define MEDSELECT_MODEL_H

#include "medselect/common.h"
#include "medselect/gemm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The parameter tensors, in memory order. W_IH and W_IH_R are adjacent so that together
 * they form the (8H, D) matrix of the joint input projection. */
enum {
    MS_LSTM_W_IH = 0,   /* "LSTM.weight_ih_l0"          (4H, D) rows: i, f, g, o */
    MS_LSTM_W_IH_R,     /* "LSTM.weight_ih_l0_reverse"  (4H, D) */
    MS_LSTM_W_HH,       /* "LSTM.weight_hh_l0"          (4H, H) */
    MS_LSTM_W_HH_R,     /* "LSTM.weight_hh_l0_reverse"  (4H, H) */
    MS_LSTM_B_IH,       /* "LSTM.bias_ih_l0"            (4H) */
    MS_LSTM_B_HH,       /* "LSTM.bias_hh_l0"            (4H) */
    MS_LSTM_B_IH_R,     /* "LSTM.bias_ih_l0_reverse"    (4H) */
    MS_LSTM_B_HH_R,     /* "LSTM.bias_hh_l0_reverse"    (4H) */
    MS_LSTM_LIN_W,      /* "linear.weight"              (1, 2H): [fwd | rev] */
    MS_LSTM_LIN_B,      /* "linear.bias"                (1) */
    MS_LSTM_NTENSORS
};

typedef struct {
    int D, H;
    size_t count;                       /* total floats in memory */
    size_t size[MS_LSTM_NTENSORS];      /* floats per tensor */
    size_t offset[MS_LSTM_NTENSORS];    /* start of each tensor in memory (floats) */
    float *memory;                      /* one allocation of `count` floats, owned */
    float *t[MS_LSTM_NTENSORS];         /* t[i] = memory + offset[i] */
} ms_lstm_params;

/* Allocates a zeroed parameter (or gradient) set for input size D and hidden size H. */
void ms_lstm_params_init(ms_lstm_params *p, int D, int H);
void ms_lstm_params_free(ms_lstm_params *p);
void ms_lstm_params_zero(ms_lstm_params *p);
/* dst must have been initialised with the same D and H. */
void ms_lstm_params_copy(ms_lstm_params *dst, const ms_lstm_params *src);
/* PyTorch's default initialisation: every LSTM tensor U(-1/sqrt(H), 1/sqrt(H)); linear
 * weight and bias U(-1/sqrt(2H), 1/sqrt(2H)) (kaiming_uniform(a=sqrt(5)) on a fan-in of 2H
 * gives that bound). Tensor i draws from ms_rng (seed, MS_STREAM_INIT, i) in row-major
 * order, so the result does not depend on anything but the seed and the shapes. */
void ms_lstm_params_randomize(ms_lstm_params *p, uint64_t seed);

/* The PyTorch name of tensor i ("LSTM.weight_ih_l0", ...). */
const char *ms_lstm_tensor_name(int i);
/* Index of a tensor by name, or -1. */
int ms_lstm_tensor_find(const char *name);
/* Shape of tensor i for (D, H): returns ndim (1 or 2) and fills shape[0..ndim). */
int ms_lstm_tensor_shape(int i, int D, int H, int64_t shape[2]);

/* ---------------------------------------------------------------------------------------
 * The cache: activations kept by the forward pass for the backward pass, plus the
 * backward's scratch. Sized once for (Bmax, Tmax); every call with B <= Bmax, T <= Tmax
 * allocates nothing (except once, for repeated input rows: see U below). Memory:
 * 48*Bmax*Tmax*H bytes plus O(Bmax*H) (ms_lstm_cache_bytes),
 * e.g. about 790 MB for Bmax = 64, Tmax = 1000, H = 256.
 * ------------------------------------------------------------------------------------- */
typedef struct {
    int D, H, Bmax, Tmax;
    int B, T;        /* shapes of the last forward; B = 0 once a backward consumed it */
    float *gates;    /* (B, T, 8H): activated [i f g o] forward then [i f g o] reverse;
                        the backward overwrites them with the pre-activation gradients */
    float *c;        /* (B, T, 2H): cell states [fwd | rev] */
    float *h;        /* (B, T, 2H): hidden states, the BiLSTM output [fwd | rev] */
    float *bias;     /* (8H): b_ih + b_hh, forward then reverse */
    float *dh;       /* (2, Bmax, H): per direction, dL/dh_t carried between steps */
    float *dc;       /* (2, Bmax, H): per direction, dL/dc_t carried between steps */
    double *dacc;    /* (2, 4H + H): per direction, bias and linear-weight accumulators */
    float *zeros;    /* (H): the zero initial cell state */
    void *memory;    /* one allocation, owned */
    size_t bytes;
    /* Precision of the matrix products (MS_PREC_F32 after init). With MS_PREC_BF16 the
     * operands below are rounded copies (a second allocation, bf_memory); the gate math,
     * states, logits and all accumulators stay fp32/double. */
    ms_precision prec;
    ms_bf16 *w_ih_bf;  /* (8H, D): [W_ih; W_ih_reverse] */
    ms_bf16 *z_bf;     /* (Bmax, Tmax, D + 2H): row (b, t) = [h_fwd_{t-1} | x_t | h_rev_{t+1}],
                          zero states past the task's ends: the operand of the weight
                          gradients (with repeated rows, the x part holds the distinct rows) */
    ms_bf16 *x_bf;     /* = z_bf + H: the forward's input, row stride D + 2H */
    ms_bf16 *step_bf;  /* (2, Bmax, 4H): per direction, one step's h_{t-1} or dgates */
    ms_bf16 *dg_bf;    /* (Bmax, Tmax, 8H): pre-activation gradients (backward) */
    float *dw_bf;      /* (2, 4H, D + H): per direction, one backward's weight gradient */
    void *bf_memory;
    size_t bf_bytes;
    /* The recurrent weights packed for the per-step products (gemm.h, ms_gemm_pack), made by
     * the first forward in the cache's precision and re-packed by each forward (as W_hh^T
     * for the forward steps) and backward (as W_hh for dh): [direction][0 forward, 1 backward]. */
    struct ms_gemm_packed *whh_pack[2][2];
    float *step;       /* (2, Bmax, 4H): per direction, one step's h_{t-1} W_hh^T */
    /* Repeated input rows. The B pools of a batch are drawn from one split, so the same
     * embedding row often appears many times in x (pool 30 from a split of 564 images: 1,920
     * rows, at most 564 distinct). When at most half the rows are distinct, the forward
     * projects each distinct row once and copies the projection to its rows, and the
     * backward sums each distinct row's gate gradients (in row order) before the dW_ih
     * product: the same sums, a third of the work at that size. */
    int U;             /* distinct rows of the last forward; 0 when it did not deduplicate */
    int *uniq;         /* (Bmax*Tmax): row r of x is distinct row uniq[r] */
    int *first;        /* (Bmax*Tmax): distinct row u is row first[u] of x */
    int *next;         /* (Bmax*Tmax): the next row after row r with the same distinct row, -1 */
    int *htab;         /* (hcap) open-addressing table of distinct rows, -1 = empty */
    uint64_t *hrow;    /* (Bmax*Tmax) hash of each row */
    size_t hcap;
    float *xu;         /* (Ucap, D) the distinct rows */
    float *pu;         /* (Ucap, 8H) their projections; in the backward their gate gradients */
    void *u_memory;    /* xu and pu: allocated by the first forward that deduplicates */
    int Ucap;          /* Bmax*Tmax/2 */
} ms_lstm_cache;

/* For tests: the repeated-row search's hashes are ANDed with this mask (all ones; fewer bits
 * force hash collisions, which must not change any result). */
extern uint64_t ms_lstm_row_hash_mask;

void ms_lstm_cache_init(ms_lstm_cache *c, int D, int H, int Bmax, int Tmax);
void ms_lstm_cache_free(ms_lstm_cache *c);
/* Selects the precision of the cache's matrix products. MS_PREC_BF16 (the CPU must support
 * it: ms_precision_check) allocates the rounded operand copies, about
 * 2 * Bmax * Tmax * (D + 10H) bytes more; MS_PREC_F32 frees them. */
void ms_lstm_cache_set_precision(ms_lstm_cache *c, ms_precision prec);
size_t ms_lstm_cache_bytes(int D, int H, int Bmax, int Tmax);

/* Forward pass over B tasks (pools) of T items each.
 * logits: (B, T) out.  x: (B, T, D), row-major, task b's item t at x + (b*T + t)*D.
 * p: parameters with p->D == cache->D, p->H == cache->H.  1 <= B <= Bmax, 1 <= T <= Tmax.
 * The cache keeps what the backward needs (x is not copied: pass the same, unchanged x to
 * backward). Allocates nothing; threads as described at the top. */
void ms_lstm_forward(float *logits, ms_lstm_cache *cache, const float *x,
                     const ms_lstm_params *p, int B, int T);

/* Backward pass for the last forward. grads += dL/dparams (zero them first when a fresh
 * gradient is wanted). dlogits: (B, T) = dL/dlogits. x: (B, T, D) as given to forward.
 * No gradient with respect to x is computed. The cache is consumed (its gates are
 * overwritten with gradients): run forward again before another backward. */
void ms_lstm_backward(ms_lstm_params *grads, const float *dlogits, ms_lstm_cache *cache,
                      const float *x, const ms_lstm_params *p);

/* ---------------------------------------------------------------------------------------
 * Forward-only scoring (selection and evaluation need only the logits). The same logits as
 * ms_lstm_forward (up to the order of fp32 rounding in the products) without its cache:
 * memory is O(B*H*min(T, 512) + B*T), e.g. about 2.5 MB plus 16 bytes per item for one pool,
 * instead of 48*B*T*H bytes. Each direction runs on its own thread when two are allowed;
 * results do not depend on the thread count.
 * logits: (B, T) out. work: ms_lstm_infer_bytes(D, H, B, T, prec) bytes, 64-byte aligned,
 * owned by the caller (reuse it across calls). x: (B, T, D). prec: the products' precision.
 * ------------------------------------------------------------------------------------- */
size_t ms_lstm_infer_bytes(int D, int H, int B, int T, ms_precision prec);
void ms_lstm_infer(float *logits, void *work, const float *x, const ms_lstm_params *p, int B,
                   int T, ms_precision prec);
/* Pools whose items are rows of one matrix (evaluation: every pool drawn from one split,
 * the weights fixed): the input projection depends on the row alone, so it is computed once.
 * proj: (2, N, 4H) out, direction d's x W_ih_d^T (no biases) for x (N, D); prec as above.
 * ms_lstm_infer_rows then gives ms_lstm_infer's logits (B, T) for the pools rows (B, T)
 * (indices in [0, N)): pool b's item t is x's row rows[b*T + t]. work:
 * ms_lstm_infer_rows_bytes(H, B, T, prec) bytes, 64-byte aligned, owned by the caller. */
void ms_lstm_project(float *proj, const float *x, int N, const ms_lstm_params *p,
                     ms_precision prec);
size_t ms_lstm_infer_rows_bytes(int H, int B, int T, ms_precision prec);
void ms_lstm_infer_rows(float *logits, void *work, const float *proj, int N, const int *rows,
                        const ms_lstm_params *p, int B, int T, ms_precision prec);
/* The recurrent product of a small batch (ms_lstm_infer uses it for B <= 4 on pools of 64
 * items or more): G (B, 4H) rows ldg apart += h (B, H) W_hh^T, with W_hh packed by
 * ms_lstm_pack_panels: W_hh^T cut into panels of 128 outputs, each panel's (H, 128) floats
 * contiguous, wp[((r / 128) * H + j) * 128 + r % 128] = W_hh[r, j], then the last 4H mod 128
 * outputs as an (H, 4H mod 128) block; 4H * H floats. One step reads the weights in storage
 * order (the column-strided W_hh^T put all of a panel's rows, 4 KB apart at H = 256, into the
 * same cache sets). Single-threaded; fp32 sums in a fixed order (per output, j = 0..H-1
 * ascending). */
void ms_lstm_pack_panels(float *wp, const float *W_hh, int H);
void ms_lstm_recur_small(float *G, int ldg, const float *h, const float *wp, int B, int H);
/* The same in bf16 (ms_lstm_infer at MS_PREC_BF16): h is rounded to bf16 inside, and the
 * weights come packed by ms_lstm_pack_pairs: W_hh^T rounded to bf16 with inputs j = 2q,
 * 2q+1 side by side, wp[(q * 4H + r) * 2 + e] = W_hh[r, 2q + e] (0 past H); (H+1)/2 * 4H
 * pairs. Exact bf16 products, fp32 sums (pairs in ascending q). */
void ms_lstm_pack_pairs(ms_bf16 *wp, const float *W_hh, int H);
void ms_lstm_recur_small_bf16(float *G, int ldg, const float *h, const ms_bf16 *wp, int B, int H);

/* ---------------------------------------------------------------------------------------
 * The plain kernels: one task, straightforward loops, everything in double. The reference
 * for tests (and a readable statement of the math).
 * ------------------------------------------------------------------------------------- */
/* Doubles needed by the reference cache for T items and hidden size H: 12*T*H. */
size_t ms_lstm_ref_cache_size(int T, int H);
/* logits: (T) out. cache: ms_lstm_ref_cache_size(T, H) doubles out. x: (T, D). */
void ms_lstm_forward_ref(double *logits, double *cache, const float *x, const ms_lstm_params *p,
                         int T);
/* dparams: (p->count) doubles laid out like p->memory (tensor i at p->offset[i]), +=.
 * dlogits: (T). cache and x as given to / filled by ms_lstm_forward_ref. */
void ms_lstm_backward_ref(double *dparams, const double *dlogits, const double *cache,
                          const float *x, const ms_lstm_params *p, int T);

#ifdef __cplusplus
}
#endif
#endif
