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
 * Storage is batch-major, (B, T, .), as the caller's x: BLAS packs its operands, so the rows
 * h_{t-1} of the B tasks need not be adjacent (they are read with a leading dimension of
 * T*2H), and batch-major lets the big GEMMs read x in place without a transposed copy.
 *
 * Threads and reproducibility. The two directions of the recurrence run on two OpenMP
 * threads (when at least two are allowed); every BLAS call made inside that region is
 * single-threaded (OpenBLAS's OpenMP build does so inside a parallel region), and with one
 * thread the same calls run one after the other, so the recurrences are bitwise identical
 * for any thread count. Elementwise loops and the bias / linear-layer reductions are done
 * per direction in a fixed order. The only place where the thread count can enter is the
 * multi-threaded BLAS of the three large GEMMs (input projection, dW_ih, dW_hh): OpenBLAS
 * splits them over the M and N dimensions, not over the summed K dimension, so in
 * practice each output element is summed in the same order; this is not a documented
 * guarantee, and the tests check 1 versus 2 threads to 1e-6 relative.
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
 * allocates nothing. Memory: 48*Bmax*Tmax*H bytes plus O(Bmax*H) (ms_lstm_cache_bytes),
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
} ms_lstm_cache;

void ms_lstm_cache_init(ms_lstm_cache *c, int D, int H, int Bmax, int Tmax);
void ms_lstm_cache_free(ms_lstm_cache *c);
size_t ms_lstm_cache_bytes(int D, int H, int Bmax, int Tmax);

/* Forward pass over B tasks (pools) of T items each.
 * logits: (B, T) out.  x: (B, T, D), row-major, task b's item t at x + (b*T + t)*D.
 * p: parameters with p->D == cache->D, p->H == cache->H.  1 <= B <= Bmax, 1 <= T <= Tmax.
 * The cache keeps what the backward needs (x is not copied: pass the same, unchanged x to
 * backward). Allocates nothing; BLAS and OpenMP threads as described at the top. */
void ms_lstm_forward(float *logits, ms_lstm_cache *cache, const float *x,
                     const ms_lstm_params *p, int B, int T);

/* Backward pass for the last forward. grads += dL/dparams (zero them first when a fresh
 * gradient is wanted). dlogits: (B, T) = dL/dlogits. x: (B, T, D) as given to forward.
 * No gradient with respect to x is computed. The cache is consumed (its gates are
 * overwritten with gradients): run forward again before another backward. */
void ms_lstm_backward(ms_lstm_params *grads, const float *dlogits, ms_lstm_cache *cache,
                      const float *x, const ms_lstm_params *p);

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
