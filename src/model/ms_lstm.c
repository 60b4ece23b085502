/* ms_lstm.c: the selector's bidirectional LSTM + per-item linear layer (see model.h):
 * parameter tables and initialisation, the batched forward/backward built on sgemm with
 * fused, vectorised gate loops, and the plain double-precision reference kernels.
 *
 * Layout of the fast path (all batch-major, as the caller's x (B, T, D)):
 *   gates (B, T, 8H): per item [i f g o]_fwd [i f g o]_rev. The input projection writes the
 *         pre-activations x W_ih^T; each recurrent step computes h_{t-1} W_hh^T for the B
 *         tasks into a (B, 4H) step buffer (one product with W_hh packed once per pass,
 *         gemm.h's ms_gemm_pack: at B = 64 re-packing the weight on every step cost as
 *         much as the product) and the gate loop adds the two and replaces the
 *         pre-activations by the activations. The backward replaces those by
 *         dL/d(pre-activation).
 *   c, h  (B, T, 2H): [fwd | rev] cell and hidden states.
 * Direction d's recurrence is independent of the other direction's, so the two run on two
 * OpenMP threads; inside that region each ms_gemm runs on its calling thread, and ms_gemm's
 * shape-only blocking makes every product independent of the thread count.
 */
#define _POSIX_C_SOURCE 200809L
#include "medselect/model.h"

#include "medselect/gemm.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#if defined(__AVX512F__) || defined(__AVX512BF16__)
#include <immintrin.h>
#endif
#include <string.h>

/* ---- parameter table ----------------------------------------------------------------- */

static const char *const tensor_names[MS_LSTM_NTENSORS] = {
    "LSTM.weight_ih_l0",         "LSTM.weight_ih_l0_reverse", "LSTM.weight_hh_l0",
    "LSTM.weight_hh_l0_reverse", "LSTM.bias_ih_l0",           "LSTM.bias_hh_l0",
    "LSTM.bias_ih_l0_reverse",   "LSTM.bias_hh_l0_reverse",   "linear.weight",
    "linear.bias",
};

const char *ms_lstm_tensor_name(int i) {
    MS_CHECK(i >= 0 && i < MS_LSTM_NTENSORS);
    return tensor_names[i];
}

int ms_lstm_tensor_find(const char *name) {
    for (int i = 0; i < MS_LSTM_NTENSORS; i++)
        if (strcmp(name, tensor_names[i]) == 0) return i;
    return -1;
}

int ms_lstm_tensor_shape(int i, int D, int H, int64_t shape[2]) {
    switch (i) {
    case MS_LSTM_W_IH:
    case MS_LSTM_W_IH_R: shape[0] = 4 * (int64_t)H; shape[1] = D; return 2;
    case MS_LSTM_W_HH:
    case MS_LSTM_W_HH_R: shape[0] = 4 * (int64_t)H; shape[1] = H; return 2;
    case MS_LSTM_B_IH:
    case MS_LSTM_B_HH:
    case MS_LSTM_B_IH_R:
    case MS_LSTM_B_HH_R: shape[0] = 4 * (int64_t)H; return 1;
    case MS_LSTM_LIN_W: shape[0] = 1; shape[1] = 2 * (int64_t)H; return 2;
    case MS_LSTM_LIN_B: shape[0] = 1; return 1;
    default: MS_CHECK(!"tensor index out of range"); return 0;
    }
}

/* 64-byte aligned, zeroed allocation (aligned_alloc needs a multiple of the alignment).
 * Blocks of 4 MB and more (the training cache: gates, states and their rounded copies,
 * hundreds of MB at the paper's size) come from ms_xmalloc_large, 2 MB aligned with a
 * transparent-huge-page hint: each recurrent step reads and writes one row per task in
 * each of those arrays, rows T apart, so with 4 KB pages nearly every row costs a TLB
 * miss. */
static void *alloc64(size_t bytes) {
    size_t n = (bytes + 63) / 64 * 64;
    void *p = n >= ((size_t)4 << 20) ? ms_xmalloc_large(n) : aligned_alloc(64, n ? n : 64);
    if (!p) ms_abort_at(__FILE__, __LINE__, "out of memory");
    memset(p, 0, n ? n : 64);
    return p;
}

void ms_lstm_params_init(ms_lstm_params *p, int D, int H) {
    MS_CHECK(p && D > 0 && H > 0);
    memset(p, 0, sizeof *p);
    p->D = D;
    p->H = H;
    size_t off = 0;
    for (int i = 0; i < MS_LSTM_NTENSORS; i++) {
        int64_t shape[2];
        int nd = ms_lstm_tensor_shape(i, D, H, shape);
        size_t n = 1;
        for (int k = 0; k < nd; k++) n *= (size_t)shape[k];
        p->size[i] = n;
        p->offset[i] = off;
        off += n;
    }
    p->count = off;
    p->memory = alloc64(sizeof(float) * off);
    for (int i = 0; i < MS_LSTM_NTENSORS; i++) p->t[i] = p->memory + p->offset[i];
}

void ms_lstm_params_free(ms_lstm_params *p) {
    if (!p) return;
    free(p->memory);
    memset(p, 0, sizeof *p);
}

void ms_lstm_params_zero(ms_lstm_params *p) { memset(p->memory, 0, sizeof(float) * p->count); }

void ms_lstm_params_copy(ms_lstm_params *dst, const ms_lstm_params *src) {
    MS_CHECK(dst->D == src->D && dst->H == src->H);
    memcpy(dst->memory, src->memory, sizeof(float) * src->count);
}

void ms_lstm_params_randomize(ms_lstm_params *p, uint64_t seed) {
    for (int i = 0; i < MS_LSTM_NTENSORS; i++) {
        double k = i < MS_LSTM_LIN_W ? 1.0 / sqrt((double)p->H) : 1.0 / sqrt(2.0 * p->H);
        ms_rng r;
        ms_rng_init(&r, seed, MS_STREAM_INIT, (uint64_t)i);
        for (size_t j = 0; j < p->size[i]; j++)
            p->t[i][j] = (float)(k * (2.0 * ms_rng_uniform(&r) - 1.0));
    }
}

/* ---- cache ---------------------------------------------------------------------------- */

/* Carves the cache's buffers out of `base` (NULL: only count). Returns the bytes needed. */
static size_t cache_carve(ms_lstm_cache *c, char *base, int H, int Bmax, int Tmax) {
    size_t off = 0, BT = (size_t)Bmax * (size_t)Tmax, h = (size_t)H;
#define CARVE(field, type, n)                                                              \
    do {                                                                                   \
        if (base) c->field = (type *)(base + off);                                         \
        off += ((sizeof(type) * (n)) + 63) / 64 * 64;                                      \
    } while (0)
    CARVE(gates, float, BT * 8 * h);
    CARVE(c, float, BT * 2 * h);
    CARVE(h, float, BT * 2 * h);
    CARVE(bias, float, 8 * h);
    CARVE(dh, float, 2 * (size_t)Bmax * h);
    CARVE(dc, float, 2 * (size_t)Bmax * h);
    CARVE(dacc, double, 2 * 5 * h);
    CARVE(zeros, float, h);
    CARVE(step, float, 2 * (size_t)Bmax * 4 * h);
    size_t hcap = 1;
    while (hcap < 2 * BT) hcap *= 2;
    if (base) c->hcap = hcap;
    CARVE(uniq, int, BT);
    CARVE(first, int, BT);
    CARVE(next, int, BT);
    CARVE(htab, int, hcap);
    CARVE(hrow, uint64_t, BT);
#undef CARVE
    return off;
}

/* The packed recurrent weight of direction `dir` for pass `pass` (0 forward: W_hh^T, the
 * (H, 4H) right operand of h W_hh^T; 1 backward: W_hh, the (4H, H) right operand of
 * dG W_hh), created on first use and re-packed from the current weights otherwise. */
static struct ms_gemm_packed *whh_packed(ms_lstm_cache *c, const ms_lstm_params *p, int dir,
                                         int pass) {
    const int H = p->H;
    const float *W = p->t[dir ? MS_LSTM_W_HH_R : MS_LSTM_W_HH]; /* (4H, H) */
    struct ms_gemm_packed **pk = &c->whh_pack[dir][pass];
    if (!*pk)
        *pk = pass ? ms_gemm_pack('N', H, 4 * H, W, H, c->prec)
                   : ms_gemm_pack('T', 4 * H, H, W, H, c->prec);
    else
        ms_gemm_pack_update(*pk, W, H);
    return *pk;
}

static void whh_packs_free(ms_lstm_cache *c) {
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 2; k++) {
            ms_gemm_packed_free(c->whh_pack[d][k]);
            c->whh_pack[d][k] = NULL;
        }
}

size_t ms_lstm_cache_bytes(int D, int H, int Bmax, int Tmax) {
    (void)D;
    ms_lstm_cache tmp;
    return cache_carve(&tmp, NULL, H, Bmax, Tmax);
}

void ms_lstm_cache_init(ms_lstm_cache *c, int D, int H, int Bmax, int Tmax) {
    MS_CHECK(c && D > 0 && H > 0 && Bmax > 0 && Tmax > 0);
    /* the GEMM takes int dimensions and leading dimensions: B*T rows, T*8H gate stride */
    MS_CHECK((size_t)Bmax * (size_t)Tmax <= INT_MAX && (size_t)Tmax * 8 * (size_t)H <= INT_MAX);
    memset(c, 0, sizeof *c);
    c->D = D;
    c->H = H;
    c->Bmax = Bmax;
    c->Tmax = Tmax;
    c->bytes = cache_carve(c, NULL, H, Bmax, Tmax);
    c->memory = alloc64(c->bytes);
    cache_carve(c, c->memory, H, Bmax, Tmax);
    if (ms_get_precision() != MS_PREC_F32) ms_lstm_cache_set_precision(c, ms_get_precision());
}

void ms_lstm_cache_free(ms_lstm_cache *c) {
    if (!c) return;
    whh_packs_free(c);
    free(c->u_memory);
    free(c->memory);
    free(c->bf_memory);
    memset(c, 0, sizeof *c);
}

void ms_lstm_cache_set_precision(ms_lstm_cache *c, ms_precision prec) {
    MS_CHECK(c && c->memory && (prec == MS_PREC_F32 || prec == MS_PREC_BF16));
    MS_CHECK(prec == MS_PREC_F32 || ms_bf16_supported());
    whh_packs_free(c); /* packed in the old precision */
    free(c->bf_memory);
    c->bf_memory = NULL;
    c->bf_bytes = 0;
    c->w_ih_bf = c->z_bf = c->x_bf = c->step_bf = c->dg_bf = NULL;
    c->dw_bf = NULL;
    c->prec = prec;
    c->B = 0; /* the rounded copies a backward reads are gone: a forward must come first */
    if (prec == MS_PREC_F32) return;
    size_t D = (size_t)c->D, H = (size_t)c->H, BT = (size_t)c->Bmax * (size_t)c->Tmax;
    /* bytes: w_ih_bf, z_bf, step_bf, dg_bf (bf16), dw_bf (fp32) */
    size_t n[5] = {2 * 8 * H * D, 2 * BT * (D + 2 * H), 2 * 8 * (size_t)c->Bmax * H, 2 * BT * 8 * H,
                   4 * 2 * 4 * H * (D + H)};
    size_t off[5], total = 0;
    for (int i = 0; i < 5; i++) {
        off[i] = total;
        total += (n[i] + 63) / 64 * 64;
    }
    c->bf_memory = alloc64(total);
    c->bf_bytes = total;
    char *base = c->bf_memory;
    c->w_ih_bf = (ms_bf16 *)(base + off[0]);
    c->z_bf = (ms_bf16 *)(base + off[1]);
    c->x_bf = c->z_bf + H;
    c->step_bf = (ms_bf16 *)(base + off[2]);
    c->dg_bf = (ms_bf16 *)(base + off[3]);
    c->dw_bf = (float *)(void *)(base + off[4]);
}

/* Rows of a strided fp32 matrix (rows, cols, ld) into a strided bf16 one (row stride dld);
 * spread over the threads when called outside a parallel region with many rows. */
static void rows_to_bf16_ld(ms_bf16 *dst, size_t dld, const float *src, int rows, int cols, size_t ld) {
#pragma omp parallel for schedule(static) if (rows >= 1024 && !omp_in_parallel())
    for (int r = 0; r < rows; r++) ms_bf16_round_n(dst + (size_t)r * dld, src + (size_t)r * ld, (size_t)cols);
}

/* ---- vectorisable exp, sigmoid, tanh ---------------------------------------------------
 * glibc's expf/tanhf are scalar calls that the compiler cannot vectorise without
 * -ffast-math; the gate loops evaluate ~5 of them per hidden unit, which would cost more
 * than the recurrent GEMM. These are pure float arithmetic and bit operations, so a
 * `#pragma omp simd` loop vectorises them. Accuracy: a few float ulps (Cephes-style
 * range reduction and degree-6 polynomial for exp; tanh switches to its odd Taylor series
 * below |x| = 0.3 where (1 - e^{-2|x|}) / (1 + e^{-2|x|}) would lose relative precision). */

typedef union {
    float f;
    uint32_t u;
} fbits;

static inline float fast_expf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* x = n ln2 + r, n = round(x / ln2) by the 1.5 * 2^23 trick (exact for |n| < 2^22) */
    fbits m;
    m.f = x * 1.44269504088896341f + 12582912.0f;
    float n = m.f - 12582912.0f;
    uint32_t ni = m.u - 0x4B400000u; /* the integer n, two's complement */
    float r = x - n * 0.693359375f;  /* ln2 split in two: the product by the short */
    r = r - n * -2.12194440e-4f;     /* high part is exact */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    fbits s;
    s.u = (ni + 127u) << 23; /* 2^n, n in [-126, 127] after the clamp */
    return p * s.f;
}

static inline float fast_sigmoid(float x) { return 1.0f / (1.0f + fast_expf(-x)); }

static inline float fast_tanh(float x) {
    float ax = x < 0 ? -x : x;
    float e = fast_expf(-2.0f * ax);
    float big = (1.0f - e) / (1.0f + e);
    float z = ax * ax;
    float small = ax * (1.0f + z * (-1.0f / 3.0f + z * (2.0f / 15.0f +
                                    z * (-17.0f / 315.0f + z * (62.0f / 2835.0f)))));
    float r = ax < 0.3f ? small : big;
    return x < 0 ? -r : r;
}

/* ---- repeated rows -------------------------------------------------------------------
 * dedupe_rows: the distinct rows of x (n, D) in order of first appearance (bitwise
 * equality, so the result is exact), found through a hash table; returns their number, or 0
 * as soon as more than `cap` are distinct. Hashes are computed in parallel, the table is
 * filled in row order, so the numbering does not depend on the thread count.
 *
 * row_hash: the table's hash of one row, a multiply-xor mix of its 32-bit words in four
 * independent lanes (a byte-wise FNV of a 2 KB row cost more than the projection it saved).
 * The hash only picks the probe slot: equal hashes are confirmed with memcmp, so the
 * numbering is the same for any hash function. */
uint64_t ms_lstm_row_hash_mask = ~(uint64_t)0;

static uint64_t row_hash(const float *x, int D) {
    uint64_t h[4] = {0x9e3779b97f4a7c15ULL, 0xc2b2ae3d27d4eb4fULL, 0x165667b19e3779f9ULL,
                     0x27d4eb2f165667c5ULL};
    int j = 0;
    for (; j + 4 <= D; j += 4)
        for (int l = 0; l < 4; l++) {
            uint32_t w;
            memcpy(&w, x + j + l, sizeof w);
            h[l] = (h[l] ^ w) * 0x100000001b3ULL;
        }
    for (; j < D; j++) {
        uint32_t w;
        memcpy(&w, x + j, sizeof w);
        h[0] = (h[0] ^ w) * 0x100000001b3ULL;
    }
    uint64_t r = (uint64_t)D;
    for (int l = 0; l < 4; l++) {
        r = (r ^ h[l]) * 0x9e3779b97f4a7c15ULL;
        r ^= r >> 29;
    }
    return r & ms_lstm_row_hash_mask;
}
typedef struct {
    int *uniq, *first, *htab; /* (n), (n), (hcap) */
    uint64_t *hrow;           /* (n) */
    size_t hcap;              /* a power of two >= 2n */
    int *next;                /* (n) or NULL: the next row of row r's distinct row, -1 after its last */
} dedupe_buf;

/* The table pass of dedupe_rows, in row order: rows with equal hashes are taken as equal
 * (exact = 0) or compared (exact = 1). Returns the number of distinct rows, 0 above cap. */
static int dedupe_fill(dedupe_buf *c, const float *x, size_t n, int D, int cap, int exact) {
    const size_t mask = c->hcap - 1;
    memset(c->htab, 0xff, sizeof(int) * c->hcap);
    int U = 0;
    for (size_t r = 0; r < n; r++) {
        size_t slot = (size_t)c->hrow[r] & mask;
        int u;
        for (;;) {
            u = c->htab[slot];
            if (u < 0) break;
            if (c->hrow[c->first[u]] == c->hrow[r] &&
                (!exact || memcmp(x + (size_t)c->first[u] * D, x + r * D, sizeof(float) * (size_t)D) == 0))
                break;
            slot = (slot + 1) & mask;
        }
        if (u < 0) {
            if (U == cap) return 0;
            u = U++;
            c->first[u] = (int)r;
            c->htab[slot] = u;
        }
        c->uniq[r] = u;
    }
    return U;
}

/* The serial table pass only compares hashes; the rows it took as equal are then compared
 * on both threads, and only if two differ (a hash collision) is the pass redone comparing
 * rows. Without a collision the two passes make the same decisions, so the numbering is the
 * exact one either way. (A pass that finds more than cap by hashes finds at least as many
 * by rows.) */
static int dedupe_rows(dedupe_buf *c, const float *x, size_t n, int D, int cap) {
#pragma omp parallel for schedule(static)
    for (long r = 0; r < (long)n; r++)
        c->hrow[r] = row_hash(x + (size_t)r * D, D);
    int U = dedupe_fill(c, x, n, D, cap, 0);
    if (!U) return 0;
    int differ = 0;
#pragma omp parallel for schedule(static) reduction(| : differ)
    for (long r = 0; r < (long)n; r++) {
        long f = c->first[c->uniq[r]];
        if (f != r) differ |= memcmp(x + (size_t)f * D, x + (size_t)r * D, sizeof(float) * (size_t)D) != 0;
    }
    if (differ) U = dedupe_fill(c, x, n, D, cap, 1);
    if (!U) return 0;
    if (c->next) { /* linked from the last row back, with htab[u] as row u's latest row */
        for (int u = 0; u < U; u++) c->htab[u] = -1;
        for (size_t r = n; r-- > 0;) {
            c->next[r] = c->htab[c->uniq[r]];
            c->htab[c->uniq[r]] = (int)r;
        }
    }
    return U;
}

/* ---- fast forward ---------------------------------------------------------------------- */

/* pu[:, dir 4H .. dir 4H + 4H) (U, 4H) = xu (U, D) W_ih_dir^T, on the calling thread.
 * oneDNN's single-threaded sgemm sums each element over D in an order that does not depend
 * on how many columns one call covers, so these per-direction products give the bits of
 * the single (U, 8H) product of both directions (test_model compares with the plain
 * kernels; the NIH training's metrics were checked to stay bitwise the same). */
static void project_direction(ms_lstm_cache *cache, const ms_lstm_params *p, int dir) {
    const int D = p->D, H = p->H, U = cache->U, H4 = 4 * H;
    float *pu = cache->pu + (size_t)dir * H4; /* row stride 8H */
    if (cache->prec == MS_PREC_BF16)
        ms_gemm_bf16('N', 'T', U, H4, D, 1.0f, cache->x_bf, D + 2 * H, cache->w_ih_bf + (size_t)dir * H4 * D, D,
                     0.0f, pu, 8 * H);
    else
        ms_gemm('N', 'T', U, H4, D, 1.0f, cache->xu, D, p->t[dir ? MS_LSTM_W_IH_R : MS_LSTM_W_IH], D,
                0.0f, pu, 8 * H, MS_PREC_F32);
}

/* One direction's recurrence over all B tasks. Called by one thread; its ms_gemm calls run
 * on that thread when two directions run concurrently. */
static void forward_direction(ms_lstm_cache *cache, const ms_lstm_params *p, int dir, int B,
                              int T) {
    const int H = p->H;
    const size_t H4 = 4 * (size_t)H, ldg = (size_t)T * 8 * H, ldh = (size_t)T * 2 * H;
    const float *bias = cache->bias + dir * H4;                     /* (4H) */
    struct ms_gemm_packed *whh = whh_packed(cache, p, dir, 0);      /* W_hh^T (H, 4H) */
    float *S = cache->step + (size_t)dir * cache->Bmax * H4;        /* (B, 4H) */
    /* bf16: h_t rounded once, by the gate loop, into a dense (B, H) left operand of the next
     * step, and into z_bf for the backward's weight gradient: the forward direction's h_t
     * into columns [0, H) of row t+1, the reverse direction's into columns [H+D, D+2H) of
     * row t-1 (each row then holds its h_{t-1}, x_t, h_{t+1}); the rows without a
     * predecessor in their task (t = 0 forward, t = T-1 reverse) get zeros */
    ms_bf16 *hb = cache->prec == MS_PREC_BF16 ? cache->step_bf + (size_t)dir * cache->Bmax * H4 : NULL;
    const size_t lz = (size_t)p->D + 2 * H, zcol = dir ? (size_t)p->D + H : 0;
    for (int s = 0; s < T; s++) {
        int t = dir ? T - 1 - s : s, tp = dir ? t + 1 : t - 1;
        float *G = cache->gates + (size_t)t * 8 * H + dir * H4; /* row b at G + b*ldg */
        if (s > 0 && hb) { /* the same product on rounded operands */
            ms_gemm_packed_run_bf16(whh, B, hb, H, S, (int)H4);
        } else if (s > 0) { /* S (B, 4H) = h_{t-1} (B, H) W_hh^T (H, 4H) */
            /* h_{t-1} gathered into a dense (B, H) copy (the backward's dh scratch, unused
             * now): the same operand layout as ms_lstm_infer's, so the same kernel runs and
             * the two paths give the same bits */
            float *hp = cache->dh + (size_t)dir * cache->Bmax * H;
            for (int b = 0; b < B; b++)
                memcpy(hp + (size_t)b * H, cache->h + (size_t)b * ldh + (size_t)tp * 2 * H + dir * H,
                       sizeof(float) * (size_t)H);
            ms_gemm_packed_run(whh, B, hp, H, S, (int)H4);
        } else { /* h_{-1} = 0 */
            memset(S, 0, sizeof(float) * (size_t)B * H4);
        }
        for (int b = 0; b < B; b++) {
            float *g = G + (size_t)b * ldg;
            /* the input projection: row (b, t)'s own, or its distinct row's in pu */
            const float *pre = cache->U > 0
                                   ? cache->pu + (size_t)cache->uniq[(size_t)b * T + t] * 8 * H + dir * H4
                                   : g;
            const float *sb = S + (size_t)b * H4;
            size_t row = ((size_t)b * T + t) * 2 * H + dir * H;
            const float *cp = s > 0 ? cache->c + ((size_t)b * T + tp) * 2 * H + dir * H
                                    : cache->zeros;
            float *cc = cache->c + row, *hh = cache->h + row;
#pragma omp simd
            for (int j = 0; j < H; j++) {
                float gi = fast_sigmoid(pre[j] + sb[j] + bias[j]);
                float gf = fast_sigmoid(pre[H + j] + sb[H + j] + bias[H + j]);
                float gg = fast_tanh(pre[2 * H + j] + sb[2 * H + j] + bias[2 * H + j]);
                float go = fast_sigmoid(pre[3 * H + j] + sb[3 * H + j] + bias[3 * H + j]);
                float cv = gf * cp[j] + gi * gg;
                g[j] = gi;
                g[H + j] = gf;
                g[2 * H + j] = gg;
                g[3 * H + j] = go;
                cc[j] = cv;
                hh[j] = go * fast_tanh(cv);
            }
            if (hb) {
                ms_bf16 *hr = hb + (size_t)b * H, *z = cache->z_bf + zcol;
                ms_bf16_round_n(hr, hh, (size_t)H);
                if (s == 0) memset(z + ((size_t)b * T + t) * lz, 0, sizeof(ms_bf16) * (size_t)H);
                if (s < T - 1) memcpy(z + ((size_t)b * T + (dir ? t - 1 : t + 1)) * lz, hr, sizeof(ms_bf16) * (size_t)H);
            }
        }
    }
}

/* Threads for the two independent directions: 2 when allowed, else 1. */
static int direction_threads(void) { return omp_get_max_threads() >= 2 ? 2 : 1; }

void ms_lstm_forward(float *logits, ms_lstm_cache *cache, const float *x,
                     const ms_lstm_params *p, int B, int T) {
    MS_CHECK(logits && cache && x && p);
    MS_CHECK(p->D == cache->D && p->H == cache->H);
    MS_CHECK(B >= 1 && B <= cache->Bmax && T >= 1 && T <= cache->Tmax);
    const int D = p->D, H = p->H;
    const size_t BT = (size_t)B * T;
    cache->B = B;
    cache->T = T;
    for (int d = 0; d < 2; d++)
        for (int r = 0; r < 4 * H; r++)
            cache->bias[d * 4 * H + r] = p->t[d ? MS_LSTM_B_IH_R : MS_LSTM_B_IH][r] +
                                         p->t[d ? MS_LSTM_B_HH_R : MS_LSTM_B_HH][r];
    /* gates (B*T, 8H) = x (B*T, D) [W_ih; W_ih_reverse]^T (D, 8H): both directions, all
     * tasks, one multi-threaded GEMM. When the distinct rows are few, each direction's
     * thread projects only those instead, pu (U, 8H) = xu (U, D) [W_ih; W_ih_reverse]^T
     * (its 4H columns), and its gate loop reads row r's pre-activations from pu[uniq[r]]. */
    const int cap = (int)(BT / 2);
    dedupe_buf db = {cache->uniq, cache->first, cache->htab, cache->hrow, cache->hcap, cache->next};
    cache->U = BT >= 64 ? dedupe_rows(&db, x, BT, D, cap) : 0;
    if (cache->U > 0 && !cache->u_memory) {
        size_t ucap = (size_t)cache->Bmax * cache->Tmax / 2;
        size_t xb = (sizeof(float) * ucap * D + 63) / 64 * 64;
        cache->u_memory = alloc64(xb + sizeof(float) * ucap * 8 * H);
        cache->xu = cache->u_memory;
        cache->pu = (float *)((char *)cache->u_memory + xb);
        cache->Ucap = (int)ucap;
    }
    if (cache->U > 0) {
        const int U = cache->U;
        MS_CHECK(U <= cache->Ucap);
        for (int u = 0; u < U; u++)
            memcpy(cache->xu + (size_t)u * D, x + (size_t)cache->first[u] * D, sizeof(float) * (size_t)D);
        if (cache->prec == MS_PREC_BF16) {
            ms_bf16_from_f32(cache->w_ih_bf, p->t[MS_LSTM_W_IH], 8 * (size_t)H * D);
            rows_to_bf16_ld(cache->x_bf, (size_t)D + 2 * H, cache->xu, U, D, (size_t)D);
        }
    } else if (cache->prec == MS_PREC_BF16) {
        /* W_ih and W_ih_reverse are adjacent, W_hh and W_hh_reverse too */
        ms_bf16_from_f32(cache->w_ih_bf, p->t[MS_LSTM_W_IH], 8 * (size_t)H * D);
        rows_to_bf16_ld(cache->x_bf, (size_t)D + 2 * H, x, (int)BT, D, (size_t)D);
        ms_gemm_bf16('N', 'T', (int)BT, 8 * H, D, 1.0f, cache->x_bf, D + 2 * H, cache->w_ih_bf, D, 0.0f,
                     cache->gates, 8 * H);
    } else {
        ms_gemm('N', 'T', (int)BT, 8 * H, D, 1.0f, x, D, p->t[MS_LSTM_W_IH], D, 0.0f,
                cache->gates, 8 * H, MS_PREC_F32);
    }
    int nt = direction_threads();
#pragma omp parallel num_threads(nt)
    {
        for (int dir = omp_get_thread_num(); dir < 2; dir += omp_get_num_threads()) {
            if (cache->U > 0) project_direction(cache, p, dir);
            forward_direction(cache, p, dir, B, T);
        }
    }
    /* logits (B*T) = h (B*T, 2H) linear.weight^T + linear.bias; rows are independent */
    const float *w = p->t[MS_LSTM_LIN_W];
    const double bias = p->t[MS_LSTM_LIN_B][0];
#pragma omp parallel for schedule(static)
    for (long r = 0; r < (long)BT; r++) {
        const float *hr = cache->h + (size_t)r * 2 * H;
        double acc = 0.0;
#pragma omp simd reduction(+ : acc)
        for (int j = 0; j < 2 * H; j++) acc += (double)hr[j] * (double)w[j];
        logits[r] = (float)(acc + bias);
    }
}

/* ---- fast backward --------------------------------------------------------------------- */

/* Backward through time for one direction over all B tasks: turns the activations in
 * gates into dL/d(pre-activation), and accumulates the direction's bias gradient and its
 * half of the linear-weight gradient into cache->dacc (doubles, fixed order). */
static void backward_direction(ms_lstm_cache *cache, const float *dlogits,
                               const ms_lstm_params *p, int dir) {
    const int H = p->H, B = cache->B, T = cache->T;
    const size_t H4 = 4 * (size_t)H, ldg = (size_t)T * 8 * H;
    struct ms_gemm_packed *whh = whh_packed(cache, p, dir, 1);      /* W_hh (4H, H) */
    const float *w = p->t[MS_LSTM_LIN_W] + dir * H;                 /* (H) */
    float *dh = cache->dh + (size_t)dir * cache->Bmax * H;          /* (B, H) */
    float *dc = cache->dc + (size_t)dir * cache->Bmax * H;          /* (B, H) */
    double *db = cache->dacc + (size_t)dir * 5 * H;                 /* (4H) */
    double *dw = db + H4;                                           /* (H) */
    /* bf16: each row of dL/d(pre-activation) is rounded once, here, into dg_bf (B*T, 8H),
     * the operand of dW_ih and dW_hh and (rows T apart) the left operand of the step's dh
     * product. Without repeated rows nothing reads the fp32 gradients again, so the gate
     * loop writes them to a one-row scratch (`rowbuf`, in L1) instead of over the
     * activations: no fp32 store to the cache and no second pass over it. */
    const int bf = cache->prec == MS_PREC_BF16;
    float *rowbuf = bf && cache->U == 0 ? cache->step + (size_t)dir * cache->Bmax * H4 : NULL;
    memset(dh, 0, sizeof(float) * (size_t)B * H);
    memset(dc, 0, sizeof(float) * (size_t)B * H);
    memset(db, 0, sizeof(double) * 5 * (size_t)H);
    for (int s = T - 1; s >= 0; s--) {
        int t = dir ? T - 1 - s : s, tp = dir ? t + 1 : t - 1;
        float *G = cache->gates + (size_t)t * 8 * H + dir * H4; /* row b at G + b*ldg */
        for (int b = 0; b < B; b++) {
            float *g = G + (size_t)b * ldg;
            size_t row = ((size_t)b * T + t) * 2 * H + dir * H;
            const float *cc = cache->c + row, *hh = cache->h + row;
            const float *cp = s > 0 ? cache->c + ((size_t)b * T + tp) * 2 * H + dir * H
                                    : cache->zeros;
            const float dl = dlogits[(size_t)b * T + t];
            float *dhb = dh + (size_t)b * H, *dcb = dc + (size_t)b * H;
            float *out = rowbuf ? rowbuf : g; /* dL/d(pre-activation) of row (b, t) */
#pragma omp simd
            for (int j = 0; j < H; j++) {
                float gi = g[j], gf = g[H + j], gg = g[2 * H + j], go = g[3 * H + j];
                float tc = fast_tanh(cc[j]);
                float dhv = dhb[j] + dl * w[j]; /* from step t+1 (recurrent) and the logit */
                float dcv = dcb[j] + dhv * go * (1.0f - tc * tc);
                dcb[j] = dcv * gf; /* dL/dc_{t-1} */
                out[j] = dcv * gg * gi * (1.0f - gi);
                out[H + j] = dcv * cp[j] * gf * (1.0f - gf);
                out[2 * H + j] = dcv * gi * (1.0f - gg * gg);
                out[3 * H + j] = dhv * tc * go * (1.0f - go);
            }
            if (bf) ms_bf16_round_n(cache->dg_bf + ((size_t)b * T + t) * 8 * H + dir * H4, out, H4);
#pragma omp simd
            for (size_t r = 0; r < H4; r++) db[r] += (double)out[r];
#pragma omp simd
            for (int j = 0; j < H; j++) dw[j] += (double)dl * (double)hh[j];
        }
        if (s > 0 && bf) { /* the same product on the rounded rows, T rows apart in dg_bf */
            ms_gemm_packed_run_bf16(whh, B, cache->dg_bf + (size_t)t * 8 * H + dir * H4, (int)ldg, dh, H);
        } else if (s > 0) { /* dh_{t-1} (B, H) = dG_t (B, 4H) W_hh (4H, H) */
            ms_gemm_packed_run(whh, B, G, (int)ldg, dh, H);
        }
    }
}

/* The weight gradients of direction `dir` when the forward deduplicated its rows (U > 0),
 * on the calling thread, after that direction's backward_direction:
 *   pu[:, dir] (U, 4H) = the sum of dG over the rows of each distinct row, in row order;
 *   dW_ih_dir (4H, D) += pu[:, dir]^T (4H, U) xu (U, D);
 *   dW_hh_dir (4H, H) += sum over (b, t) of dG_t^T h_{t-1} (see dw_hh_direction).
 * Every array it writes is the direction's own (its 4H columns of pu and dG, its tensors),
 * so the two directions run at once; each element is summed in the same order as by the
 * single product over both directions (see project_direction). */
static void dw_hh_direction(ms_lstm_params *grads, ms_lstm_cache *cache, int dir);

/* pu[:, dir] (U, 4H) = the sum of dG[:, dir] over the rows of each distinct row, in row order:
 * 0 + the first row, then + each later row (the order of the plain row loop over a zeroed
 * pu), walking the distinct row's list of rows so that each pu row is written once while
 * it sits in L1 (no zeroing pass, no scattered read-modify-writes). */
static void sum_distinct_rows(ms_lstm_cache *cache, int dir) {
    const int U = cache->U;
    const size_t H4 = 4 * (size_t)cache->H, ncol = 2 * H4;
    const float *dG = cache->gates + dir * H4;
    float *pu = cache->pu + dir * H4;
    for (int u = 0; u < U; u++) {
        float *dst = pu + (size_t)u * ncol;
        int r = cache->first[u];
        const float *src = dG + (size_t)r * ncol;
#pragma omp simd
        for (size_t j = 0; j < H4; j++) dst[j] = 0.0f + src[j]; /* -0 becomes +0, as before */
        for (r = cache->next[r]; r >= 0; r = cache->next[r]) {
            src = dG + (size_t)r * ncol;
#pragma omp simd
            for (size_t j = 0; j < H4; j++) dst[j] += src[j];
        }
    }
}

static void weight_grads_direction(ms_lstm_params *grads, ms_lstm_cache *cache, int dir) {
    const int D = cache->D, H = cache->H, U = cache->U;
    const size_t H4 = 4 * (size_t)H, ncol = 8 * (size_t)H;
    sum_distinct_rows(cache, dir);
    float *gw = grads->t[dir ? MS_LSTM_W_IH_R : MS_LSTM_W_IH];
    ms_gemm('T', 'N', (int)H4, D, U, 1.0f, cache->pu + dir * H4, (int)ncol, cache->xu, D, 1.0f, gw, D,
            MS_PREC_F32);
    dw_hh_direction(grads, cache, dir);
}

/* The bf16 weight gradients of direction `dir`, on the calling thread after its
 * backward_direction. The operands are the rounded copies: dG_dir in dg_bf (B*T rows, row
 * stride 8H, written by backward_direction) and Z_dir, the direction's (B*T, D + H) window
 * of z_bf: [h_{t-1} | x_t] forward, [x_t | h_{t+1}] reverse, with zero states where a task
 * begins (forward) or ends (reverse), so the sum runs over all B*T rows as they are.
 *   U == 0: one product  dw_bf[dir] (4H, D + H) = dG_dir^T (4H, B*T) Z_dir (B*T, D + H),
 *           whose x columns are added to dW_ih_dir and whose h columns to dW_hh_dir (dG is
 *           read once for both);
 *   U > 0:  dW_hh_dir += dG_dir^T h_dir over all rows, then pu[:, dir] rounded over dg_bf
 *           (no longer needed) and dW_ih_dir += pu[:, dir]^T xu over the distinct rows.
 * Each product is one single-threaded call (ms_gemm_bf16_1t: K = B*T is long, and slabs
 * would re-read Z), so results do not depend on the thread count. */
static void weight_grads_bf16(ms_lstm_params *grads, ms_lstm_cache *cache, int dir) {
    const int D = cache->D, H = cache->H, U = cache->U;
    const int BT = cache->B * cache->T, H4 = 4 * H, ncol = 8 * H, lz = D + 2 * H;
    const ms_bf16 *dgb = cache->dg_bf + (size_t)dir * H4;
    const ms_bf16 *zb = cache->z_bf + (dir ? H : 0); /* Z_dir */
    float *gi = grads->t[dir ? MS_LSTM_W_IH_R : MS_LSTM_W_IH];  /* (4H, D) */
    float *gh = grads->t[dir ? MS_LSTM_W_HH_R : MS_LSTM_W_HH];  /* (4H, H) */
    if (U == 0) {
        const int nz = D + H, xoff = dir ? 0 : H, hoff = dir ? D : 0;
        float *dw = cache->dw_bf + (size_t)dir * H4 * nz;
        ms_gemm_bf16_1t('T', 'N', H4, nz, BT, 1.0f, dgb, ncol, zb, lz, 0.0f, dw, nz);
        for (int r = 0; r < H4; r++) {
            const float *row = dw + (size_t)r * nz;
            float *a = gi + (size_t)r * D, *b = gh + (size_t)r * H;
#pragma omp simd
            for (int j = 0; j < D; j++) a[j] += row[xoff + j];
#pragma omp simd
            for (int j = 0; j < H; j++) b[j] += row[hoff + j];
        }
        return;
    }
    ms_gemm_bf16_1t('T', 'N', H4, H, BT, 1.0f, dgb, ncol, zb + (dir ? D : 0), lz, 1.0f, gh, H);
    sum_distinct_rows(cache, dir);
    ms_bf16 *pb = cache->dg_bf + (size_t)dir * H4; /* rounded pu[:, dir], row stride 8H */
    rows_to_bf16_ld(pb, (size_t)ncol, cache->pu + (size_t)dir * H4, U, H4, (size_t)ncol);
    ms_gemm_bf16_1t('T', 'N', H4, D, U, 1.0f, pb, ncol, cache->x_bf, lz, 1.0f, gi, D);
}

/* dW_hh_dir (4H, H) += sum over (b, t) of dG_t^T h_{t-1}. In the flattened (b, t) row order
 * the forward direction's h_{t-1} is the previous row and the reverse direction's is the
 * next row, except across task boundaries, where the true previous state is zero: zero the
 * direction's gradient rows that would pair with another task's state (they are not needed
 * any more), then one GEMM over B*T-1 rows. Touches only the direction's columns. */
static void dw_hh_direction(ms_lstm_params *grads, ms_lstm_cache *cache, int dir) {
    const int H = cache->H, B = cache->B, T = cache->T;
    const size_t BT = (size_t)B * T, H4 = 4 * (size_t)H, ncol = 8 * (size_t)H;
    float *dG = cache->gates;
    for (int b = 0; b < B; b++) {
        if (dir == 0 && b > 0) memset(dG + (size_t)b * T * ncol, 0, sizeof(float) * H4);
        if (dir == 1 && b < B - 1) memset(dG + ((size_t)b * T + T - 1) * ncol + H4, 0, sizeof(float) * H4);
    }
    if (BT <= 1) return;
    float *gw = grads->t[dir ? MS_LSTM_W_HH_R : MS_LSTM_W_HH];
    /* forward: dG rows 1.. with h rows 0..; reverse: dG rows 0.. with h rows 1.. */
    const size_t goff = dir ? H4 : ncol, hoff = dir ? 3 * (size_t)H : 0;
    ms_gemm('T', 'N', (int)H4, H, (int)(BT - 1), 1.0f, dG + goff, (int)ncol, cache->h + hoff,
            2 * H, 1.0f, gw, H, MS_PREC_F32);
}

void ms_lstm_backward(ms_lstm_params *grads, const float *dlogits, ms_lstm_cache *cache,
                      const float *x, const ms_lstm_params *p) {
    MS_CHECK(grads && dlogits && cache && x && p);
    MS_CHECK(cache->B > 0); /* a forward must precede each backward */
    MS_CHECK(p->D == cache->D && p->H == cache->H && grads->D == p->D && grads->H == p->H);
    const int D = p->D, H = p->H, B = cache->B, T = cache->T;
    const size_t BT = (size_t)B * T, H4 = 4 * (size_t)H;
    /* deduplicated rows, and always in bf16: each direction's thread goes on to its own
     * weight gradients */
    const int bf = cache->prec == MS_PREC_BF16;
    const int per_dir = cache->U > 0 || bf;
    int nt = direction_threads();
#pragma omp parallel num_threads(nt)
    {
        for (int dir = omp_get_thread_num(); dir < 2; dir += omp_get_num_threads()) {
            backward_direction(cache, dlogits, p, dir);
            if (bf) weight_grads_bf16(grads, cache, dir);
            else if (per_dir) weight_grads_direction(grads, cache, dir);
        }
    }
    /* biases: both b_ih and b_hh receive the sum of the pre-activation gradients */
    for (int d = 0; d < 2; d++) {
        const double *db = cache->dacc + (size_t)d * 5 * H, *dw = db + H4;
        float *gbi = grads->t[d ? MS_LSTM_B_IH_R : MS_LSTM_B_IH];
        float *gbh = grads->t[d ? MS_LSTM_B_HH_R : MS_LSTM_B_HH];
        for (size_t r = 0; r < H4; r++) {
            gbi[r] += (float)db[r];
            gbh[r] += (float)db[r];
        }
        for (int j = 0; j < H; j++) grads->t[MS_LSTM_LIN_W][d * H + j] += (float)dw[j];
    }
    double sb = 0.0;
    for (size_t r = 0; r < BT; r++) sb += dlogits[r];
    grads->t[MS_LSTM_LIN_B][0] += (float)sb;
    if (!per_dir) {
        /* [dW_ih; dW_ih_reverse] (8H, D) += dG^T (8H, B*T) x (B*T, D): one multi-threaded
         * product over all rows, before dw_hh_direction zeroes some of them */
        float *dG = cache->gates; /* (B*T, 8H) pre-activation gradients */
        ms_gemm('T', 'N', 8 * H, D, (int)BT, 1.0f, dG, 8 * H, x, D, 1.0f, grads->t[MS_LSTM_W_IH], D,
                MS_PREC_F32);
        /* then the two directions' dW_hh at once, each product on its own thread */
#pragma omp parallel num_threads(nt)
        {
            for (int dir = omp_get_thread_num(); dir < 2; dir += omp_get_num_threads())
                dw_hh_direction(grads, cache, dir);
        }
    }
    cache->B = 0; /* consumed */
}

/* ---- forward-only scoring ---------------------------------------------------------------
 * The logits of ms_lstm_forward without the backward's cache: each direction walks the
 * pools in chunks of tc steps; a chunk's input projection is one product per task into a
 * (B, tc, 4H) gate buffer, the recurrence keeps only the current (B, H) state, and each
 * step's half of the logit, w_d . h_t, goes to a (B, T) double array per direction. */

/* Steps per chunk: about 4096 gate rows per chunk, at least 64 steps, at most 512; whole
 * pools when they are that short (then a chunk's input projection is one product over all
 * B*T rows, like ms_lstm_forward's). */
static int infer_chunk(int B, int T) {
    int tc = 4096 / B;
    tc = tc < 64 ? 64 : tc > 512 ? 512 : tc;
    return tc < T ? tc : T;
}

typedef struct {
    float *gates;  /* (B, tc, 4H) */
    float *step;   /* (B, 4H) one step's h_{t-1} W_hh^T */
    float *h, *c;  /* (B, H) the current state */
    float *bias;   /* (4H) b_ih + b_hh */
    double *part;  /* (B, T) w_d . h_t */
    ms_bf16 *w_ih, *w_hh, *xb, *hb; /* bf16 only: (4H, D), (4H, H), (tc or B*T, D), (B, H) */
    float *w_hh_t; /* B <= MS_INFER_SMALL_B, f32: W_hh^T in panels (ms_lstm_pack_panels) */
    ms_bf16 *w_hh_p; /* B <= MS_INFER_SMALL_B, bf16: W_hh^T in pairs (ms_lstm_pack_pairs) */
} infer_dir;

/* Below this batch the recurrent product h (B, H) W_hh^T is a matrix-vector product per
 * task, dominated by the GEMM library's per-call cost (a 100,000-item pool is 100,000
 * sequential calls per direction): ms_lstm_recur_small does it with W_hh^T kept hot (on
 * pools of at least 64 items, where the transposed copy costs less than it saves). */
enum { MS_INFER_SMALL_B = 4, MS_INFER_SMALL_T = 64 };
static int infer_small(int B, int T) { return B <= MS_INFER_SMALL_B && T >= MS_INFER_SMALL_T; }

/* Where W_hh[r, j] lies in ms_lstm_pack_panels' layout. */
static inline size_t panel_at(int r, int j, int H) {
    const int H4 = 4 * H, full = H4 / 128 * 128;
    return r < full ? ((size_t)(r / 128) * H + j) * 128 + (size_t)(r % 128)
                    : (size_t)full * H + (size_t)j * (H4 - full) + (size_t)(r - full);
}

void ms_lstm_pack_panels(float *wp, const float *W_hh, int H) {
    for (int r = 0; r < 4 * H; r++)
        for (int j = 0; j < H; j++) wp[panel_at(r, j, H)] = W_hh[(size_t)r * H + j];
}

void ms_lstm_recur_small(float *G, int ldg, const float *h, const float *wp, int B, int H) {
    const int H4 = 4 * H;
    for (int b = 0; b < B; b++) {
        const float *hb = h + (size_t)b * H;
        float *g = G + (size_t)b * ldg;
        int r0 = 0;
#ifdef __AVX512F__
        /* 128 outputs at a time in eight vector accumulators: one pass over the panel's
         * contiguous (H, 128) floats, each output's sum in the order j = 0..H-1 (fused
         * multiply-adds) */
        for (; r0 + 128 <= H4; r0 += 128) {
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
            const float *row = wp + (size_t)r0 * H;
            for (int j = 0; j < H; j++, row += 128) {
                const __m512 v = _mm512_set1_ps(hb[j]);
                a0 = _mm512_fmadd_ps(v, _mm512_loadu_ps(row), a0);
                a1 = _mm512_fmadd_ps(v, _mm512_loadu_ps(row + 16), a1);
                a2 = _mm512_fmadd_ps(v, _mm512_loadu_ps(row + 32), a2);
                a3 = _mm512_fmadd_ps(v, _mm512_loadu_ps(row + 48), a3);
                a4 = _mm512_fmadd_ps(v, _mm512_loadu_ps(row + 64), a4);
                a5 = _mm512_fmadd_ps(v, _mm512_loadu_ps(row + 80), a5);
                a6 = _mm512_fmadd_ps(v, _mm512_loadu_ps(row + 96), a6);
                a7 = _mm512_fmadd_ps(v, _mm512_loadu_ps(row + 112), a7);
            }
            float *o = g + r0;
            _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), a0));
            _mm512_storeu_ps(o + 16, _mm512_add_ps(_mm512_loadu_ps(o + 16), a1));
            _mm512_storeu_ps(o + 32, _mm512_add_ps(_mm512_loadu_ps(o + 32), a2));
            _mm512_storeu_ps(o + 48, _mm512_add_ps(_mm512_loadu_ps(o + 48), a3));
            _mm512_storeu_ps(o + 64, _mm512_add_ps(_mm512_loadu_ps(o + 64), a4));
            _mm512_storeu_ps(o + 80, _mm512_add_ps(_mm512_loadu_ps(o + 80), a5));
            _mm512_storeu_ps(o + 96, _mm512_add_ps(_mm512_loadu_ps(o + 96), a6));
            _mm512_storeu_ps(o + 112, _mm512_add_ps(_mm512_loadu_ps(o + 112), a7));
        }
#endif
        for (int r = r0; r < H4; r++) { /* the plain loop: no AVX-512, or the tail */
            float a = 0.0f;
            for (int j = 0; j < H; j++) a = fmaf(hb[j], wp[panel_at(r, j, H)], a);
            g[r] += a;
        }
    }
}

void ms_lstm_pack_pairs(ms_bf16 *wp, const float *W_hh, int H) {
    const int H4 = 4 * H, P = (H + 1) / 2;
    for (int q = 0; q < P; q++)
        for (int r = 0; r < H4; r++)
            for (int e = 0; e < 2; e++) {
                int j = 2 * q + e;
                wp[((size_t)q * H4 + r) * 2 + e] = j < H ? ms_bf16_round(W_hh[(size_t)r * H + j]) : 0;
            }
}

void ms_lstm_recur_small_bf16(float *G, int ldg, const float *h, const ms_bf16 *wp, int B, int H) {
    const int H4 = 4 * H, P = (H + 1) / 2;
    for (int b = 0; b < B; b++) {
        const float *hb = h + (size_t)b * H;
        float *g = G + (size_t)b * ldg;
        int r0 = 0;
#ifdef __AVX512BF16__
        /* vdpbf16ps: each lane adds the two products of a (j, j+1) pair, exact, in fp32 */
        for (; r0 + 128 <= H4; r0 += 128) {
            __m512 a[8];
            for (int u = 0; u < 8; u++) a[u] = _mm512_setzero_ps();
            for (int q = 0; q < P; q++) {
                uint32_t pair = (uint32_t)ms_bf16_round(hb[2 * q]) |
                                (2 * q + 1 < H ? (uint32_t)ms_bf16_round(hb[2 * q + 1]) << 16 : 0u);
                const __m512bh v = (__m512bh)_mm512_set1_epi32((int)pair);
                const ms_bf16 *row = wp + ((size_t)q * H4 + r0) * 2;
                for (int u = 0; u < 8; u++)
                    a[u] = _mm512_dpbf16_ps(a[u], (__m512bh)_mm512_loadu_si512((const void *)(row + 32 * u)), v);
            }
            for (int u = 0; u < 8; u++)
                _mm512_storeu_ps(g + r0 + 16 * u, _mm512_add_ps(_mm512_loadu_ps(g + r0 + 16 * u), a[u]));
        }
#endif
        for (int r = r0; r < H4; r++) { /* the plain loop: no AVX512_BF16, or the tail */
            float a = 0.0f;
            for (int q = 0; q < P; q++) {
                float h0 = ms_bf16_to_f32(ms_bf16_round(hb[2 * q]));
                float h1 = 2 * q + 1 < H ? ms_bf16_to_f32(ms_bf16_round(hb[2 * q + 1])) : 0.0f;
                a += h0 * ms_bf16_to_f32(wp[((size_t)q * H4 + r) * 2]) +
                     h1 * ms_bf16_to_f32(wp[((size_t)q * H4 + r) * 2 + 1]);
            }
            g[r] += a;
        }
    }
}

/* given: the input projections come from the caller (ms_lstm_infer_rows), so no gate
 * buffer and no rounded input or W_ih. */
static size_t infer_carve(infer_dir *w, char *base, int D, int H, int B, int T,
                          ms_precision prec, int given) {
    size_t off = 0, tc = (size_t)infer_chunk(B, T), h = (size_t)H, b = (size_t)B;
#define CARVE(field, type, n)                                                              \
    do {                                                                                   \
        if (base) w->field = (type *)(base + off);                                         \
        off += ((sizeof(type) * (n)) + 63) / 64 * 64;                                      \
    } while (0)
    if (!given) CARVE(gates, float, b * tc * 4 * h);
    CARVE(step, float, b * 4 * h);
    CARVE(h, float, b * h);
    CARVE(c, float, b * h);
    CARVE(bias, float, 4 * h);
    CARVE(part, double, b * (size_t)T);
    if (infer_small(B, T) && prec == MS_PREC_F32) CARVE(w_hh_t, float, 4 * h * h);
    if (infer_small(B, T) && prec == MS_PREC_BF16) CARVE(w_hh_p, ms_bf16, 4 * h * (h + 1));
    if (prec == MS_PREC_BF16) {
        if (!given) CARVE(w_ih, ms_bf16, 4 * h * (size_t)D);
        CARVE(w_hh, ms_bf16, 4 * h * h);
        if (!given) CARVE(xb, ms_bf16, (tc == (size_t)T ? b : 1) * tc * (size_t)D);
        CARVE(hb, ms_bf16, b * h);
    }
#undef CARVE
    return off;
}

/* Repeated rows in ms_lstm_infer (validation tasks, evaluation pools: many pools drawn from
 * one split): when at most min(B*T/4, INFER_UCAP) rows are distinct, each direction projects
 * the distinct rows once, (U, 4H), and the step loop reads row r's projection from there. */
enum { INFER_UCAP = 4096 };

typedef struct {
    dedupe_buf db;
    const int *idx; /* (B*T) row r's projection is row idx[r] of pu[dir] (U > 0) */
    int given;      /* 1: pu comes from the caller (ms_lstm_infer_rows): no product here */
    int ucap;      /* 0: no deduplication at this size */
    float *xu;     /* (ucap, D) */
    ms_bf16 *xub;  /* (ucap, D), bf16 only */
    float *pu[2];  /* per direction (ucap, 4H) */
} infer_shared;

static size_t infer_shared_carve(infer_shared *w, char *base, int D, int H, int B, int T,
                                 ms_precision prec) {
    size_t off = 0, n = (size_t)B * T, ucap = n / 4 < INFER_UCAP ? n / 4 : INFER_UCAP;
    if (n < 64 || B == 1) ucap = 0; /* one pool (select): its rows are distinct images */
    if (base) w->ucap = (int)ucap;
    if (!ucap) return 0;
    size_t hcap = 1;
    while (hcap < 2 * n) hcap *= 2;
    if (base) w->db.hcap = hcap;
#define CARVE(field, type, cnt)                                                            \
    do {                                                                                   \
        if (base) w->field = (type *)(base + off);                                         \
        off += ((sizeof(type) * (cnt)) + 63) / 64 * 64;                                    \
    } while (0)
    CARVE(db.uniq, int, n);
    CARVE(db.first, int, n);
    CARVE(db.htab, int, hcap);
    CARVE(db.hrow, uint64_t, n);
    CARVE(xu, float, ucap * D);
    if (prec == MS_PREC_BF16) CARVE(xub, ms_bf16, ucap * D);
    CARVE(pu[0], float, ucap * 4 * (size_t)H);
    CARVE(pu[1], float, ucap * 4 * (size_t)H);
#undef CARVE
    return off;
}

size_t ms_lstm_infer_bytes(int D, int H, int B, int T, ms_precision prec) {
    infer_dir w;
    infer_shared sh;
    return 2 * infer_carve(&w, NULL, D, H, B, T, prec, 0) +
           infer_shared_carve(&sh, NULL, D, H, B, T, prec);
}

/* U > 0: x's rows are the distinct rows sh->xu, row r being sh->db.uniq[r]. */
static void infer_direction(infer_dir *w, const infer_shared *sh, int U, const float *x,
                            const ms_lstm_params *p, int dir, int B, int T, ms_precision prec) {
    const int D = p->D, H = p->H, H4 = 4 * H, tc = infer_chunk(B, T);
    const float *W_ih = p->t[dir ? MS_LSTM_W_IH_R : MS_LSTM_W_IH]; /* (4H, D) */
    const float *W_hh = p->t[dir ? MS_LSTM_W_HH_R : MS_LSTM_W_HH]; /* (4H, H) */
    const float *wl = p->t[MS_LSTM_LIN_W] + dir * H;                /* (H) */
    for (int r = 0; r < H4; r++)
        w->bias[r] = p->t[dir ? MS_LSTM_B_IH_R : MS_LSTM_B_IH][r] +
                     p->t[dir ? MS_LSTM_B_HH_R : MS_LSTM_B_HH][r];
    if (prec == MS_PREC_BF16 && !sh->given) ms_bf16_from_f32(w->w_ih, W_ih, (size_t)H4 * D);
    const int small = infer_small(B, T);
    if (small && prec == MS_PREC_BF16) ms_lstm_pack_pairs(w->w_hh_p, W_hh, H);
    if (small && prec == MS_PREC_F32) ms_lstm_pack_panels(w->w_hh_t, W_hh, H);
    /* larger batches: W_hh^T (H, 4H) packed once for the T steps (one pack per call: the
     * call's steps outweigh it) */
    struct ms_gemm_packed *whh = small ? NULL : ms_gemm_pack('T', H4, H, W_hh, H, prec);
    memset(w->h, 0, sizeof(float) * (size_t)B * H);
    memset(w->c, 0, sizeof(float) * (size_t)B * H);
    float *pu = U > 0 ? sh->pu[dir] : NULL; /* (U, 4H) = xu W_ih^T */
    if (sh->given) {
        /* computed once by the caller (ms_lstm_project) */
    } else if (pu && prec == MS_PREC_BF16)
        ms_gemm_bf16('N', 'T', U, H4, D, 1.0f, sh->xub, D, w->w_ih, D, 0.0f, pu, H4);
    else if (pu)
        ms_gemm('N', 'T', U, H4, D, 1.0f, sh->xu, D, W_ih, D, 0.0f, pu, H4, MS_PREC_F32);
    for (int c0 = 0; c0 < T; c0 += tc) {
        const int n = T - c0 < tc ? T - c0 : tc;
        const int tlo = dir ? T - c0 - n : c0; /* the chunk covers items [tlo, tlo + n) */
        if (pu) {
            /* projections come from pu */
        } else if (n == T && prec == MS_PREC_F32) { /* whole pools: gates (B*T, 4H) = x W_ih^T */
            ms_gemm('N', 'T', B * T, H4, D, 1.0f, x, D, W_ih, D, 0.0f, w->gates, H4, MS_PREC_F32);
        } else if (n == T) {
            ms_bf16_from_f32(w->xb, x, (size_t)B * T * D);
            ms_gemm_bf16('N', 'T', B * T, H4, D, 1.0f, w->xb, D, w->w_ih, D, 0.0f, w->gates, H4);
        } else {
            for (int b = 0; b < B; b++) { /* gates (b, 0..n) = x (b, tlo..tlo+n) W_ih^T */
                const float *xr = x + ((size_t)b * T + tlo) * D;
                float *g = w->gates + (size_t)b * n * H4;
                if (prec == MS_PREC_BF16) {
                    for (size_t i = 0; i < (size_t)n * D; i++) w->xb[i] = ms_bf16_round(xr[i]);
                    ms_gemm_bf16('N', 'T', n, H4, D, 1.0f, w->xb, D, w->w_ih, D, 0.0f, g, H4);
                } else {
                    ms_gemm('N', 'T', n, H4, D, 1.0f, xr, D, W_ih, D, 0.0f, g, H4, MS_PREC_F32);
                }
            }
        }
        for (int s = c0; s < c0 + n; s++) {
            const int t = dir ? T - 1 - s : s;
            float *G = w->gates + (size_t)(t - tlo) * H4; /* row b at G + b*n*4H */
            const int ldg = n * H4;
            float *S = w->step; /* (B, 4H) = h_{t-1} W_hh^T */
            if (s > 0 && small) memset(S, 0, sizeof(float) * (size_t)B * H4);
            if (s > 0 && small && prec == MS_PREC_BF16) { /* bf16 operands, fp32 sums */
                ms_lstm_recur_small_bf16(S, H4, w->h, w->w_hh_p, B, H);
            } else if (s > 0 && small) {
                ms_lstm_recur_small(S, H4, w->h, w->w_hh_t, B, H);
            } else if (s > 0 && prec == MS_PREC_BF16) {
                for (size_t i = 0; i < (size_t)B * H; i++) w->hb[i] = ms_bf16_round(w->h[i]);
                ms_gemm_packed_run_bf16(whh, B, w->hb, H, S, H4);
            } else if (s > 0) { /* S (B, 4H) = h_{t-1} (B, H) W_hh^T */
                ms_gemm_packed_run(whh, B, w->h, H, S, H4);
            } else {
                memset(S, 0, sizeof(float) * (size_t)B * H4);
            }
            for (int b = 0; b < B; b++) {
                const float *g = pu ? pu + (size_t)sh->idx[(size_t)b * T + t] * H4 : G + (size_t)b * ldg;
                const float *bias = w->bias, *sb = S + (size_t)b * H4;
                float *cc = w->c + (size_t)b * H, *hh = w->h + (size_t)b * H;
                double acc = 0.0;
#pragma omp simd reduction(+ : acc)
                for (int j = 0; j < H; j++) {
                    float gi = fast_sigmoid(g[j] + sb[j] + bias[j]);
                    float gf = fast_sigmoid(g[H + j] + sb[H + j] + bias[H + j]);
                    float gg = fast_tanh(g[2 * H + j] + sb[2 * H + j] + bias[2 * H + j]);
                    float go = fast_sigmoid(g[3 * H + j] + sb[3 * H + j] + bias[3 * H + j]);
                    float cv = gf * cc[j] + gi * gg;
                    float hv = go * fast_tanh(cv);
                    cc[j] = cv;
                    hh[j] = hv;
                    acc += (double)hv * (double)wl[j];
                }
                w->part[(size_t)b * T + t] = acc;
            }
        }
    }
    if (whh) ms_gemm_packed_free(whh);
}

/* Both directions, each on its own thread when there are two, then logits = the two
 * directions' parts + the linear layer's bias (summed in double, in a fixed order). */
static void infer_both(float *logits, infer_dir w[2], const infer_shared *sh, int U,
                       const float *x, const ms_lstm_params *p, int B, int T, ms_precision prec) {
    int nt = direction_threads();
#pragma omp parallel num_threads(nt)
    {
        for (int dir = omp_get_thread_num(); dir < 2; dir += omp_get_num_threads())
            infer_direction(&w[dir], sh, U, x, p, dir, B, T, prec);
    }
    const double bias = p->t[MS_LSTM_LIN_B][0];
    for (size_t r = 0; r < (size_t)B * T; r++)
        logits[r] = (float)(w[0].part[r] + w[1].part[r] + bias);
}

void ms_lstm_infer(float *logits, void *work, const float *x, const ms_lstm_params *p, int B,
                   int T, ms_precision prec) {
    MS_CHECK(logits && work && x && p && B >= 1 && T >= 1);
    MS_CHECK(prec == MS_PREC_F32 || ms_bf16_supported());
    infer_dir w[2];
    infer_shared sh;
    memset(&sh, 0, sizeof sh);
    size_t half = infer_carve(&w[0], work, p->D, p->H, B, T, prec, 0);
    infer_carve(&w[1], (char *)work + half, p->D, p->H, B, T, prec, 0);
    infer_shared_carve(&sh, (char *)work + 2 * half, p->D, p->H, B, T, prec);
    int U = sh.ucap ? dedupe_rows(&sh.db, x, (size_t)B * T, p->D, sh.ucap) : 0;
    sh.idx = sh.db.uniq;
    for (int u = 0; u < U; u++)
        memcpy(sh.xu + (size_t)u * p->D, x + (size_t)sh.db.first[u] * p->D, sizeof(float) * (size_t)p->D);
    if (U > 0 && prec == MS_PREC_BF16) ms_bf16_from_f32(sh.xub, sh.xu, (size_t)U * p->D);
    infer_both(logits, w, &sh, U, x, p, B, T, prec);
}

/* ---- forward-only scoring of pools given as rows of one matrix --------------------------
 * Evaluation draws every pool from one split with fixed weights, so x W_ih^T depends on the
 * split's row alone: ms_lstm_project computes it once for all N rows (two products of N
 * rows, instead of one per pool item) and ms_lstm_infer_rows runs the recurrence reading
 * each item's projection from that table. The same per-row product and the same step loop
 * as ms_lstm_infer's distinct-row path. */

void ms_lstm_project(float *proj, const float *x, int N, const ms_lstm_params *p,
                     ms_precision prec) {
    MS_CHECK(proj && x && p && N >= 1);
    MS_CHECK(prec == MS_PREC_F32 || ms_bf16_supported());
    const int D = p->D, H4 = 4 * p->H;
    ms_bf16 *xb = NULL, *wb = NULL;
    if (prec == MS_PREC_BF16) { /* once per call, not per step */
        xb = alloc64(sizeof(ms_bf16) * (size_t)N * D);
        wb = alloc64(sizeof(ms_bf16) * (size_t)H4 * D);
        ms_bf16_from_f32(xb, x, (size_t)N * D);
    }
    for (int d = 0; d < 2; d++) {
        const float *W_ih = p->t[d ? MS_LSTM_W_IH_R : MS_LSTM_W_IH]; /* (4H, D) */
        float *out = proj + (size_t)d * N * H4;                         /* (N, 4H) */
        if (prec == MS_PREC_BF16) {
            ms_bf16_from_f32(wb, W_ih, (size_t)H4 * D);
            ms_gemm_bf16('N', 'T', N, H4, D, 1.0f, xb, D, wb, D, 0.0f, out, H4);
        } else {
            ms_gemm('N', 'T', N, H4, D, 1.0f, x, D, W_ih, D, 0.0f, out, H4, MS_PREC_F32);
        }
    }
    free(xb);
    free(wb);
}

size_t ms_lstm_infer_rows_bytes(int H, int B, int T, ms_precision prec) {
    infer_dir w;
    return 2 * infer_carve(&w, NULL, 1, H, B, T, prec, 1);
}

void ms_lstm_infer_rows(float *logits, void *work, const float *proj, int N, const int *rows,
                        const ms_lstm_params *p, int B, int T, ms_precision prec) {
    MS_CHECK(logits && work && proj && rows && p && N >= 1 && B >= 1 && T >= 1);
    MS_CHECK(prec == MS_PREC_F32 || ms_bf16_supported());
    for (size_t r = 0; r < (size_t)B * T; r++) MS_CHECK(rows[r] >= 0 && rows[r] < N);
    infer_dir w[2];
    infer_shared sh;
    memset(&sh, 0, sizeof sh);
    size_t half = infer_carve(&w[0], work, p->D, p->H, B, T, prec, 1);
    infer_carve(&w[1], (char *)work + half, p->D, p->H, B, T, prec, 1);
    sh.given = 1;
    sh.idx = rows;
    sh.pu[0] = (float *)proj; /* read only */
    sh.pu[1] = (float *)proj + (size_t)N * 4 * p->H;
    infer_both(logits, w, &sh, N, NULL, p, B, T, prec);
}

/* ---- reference kernels ------------------------------------------------------------------
 * cache layout: for direction d and item t, 6H doubles at ((d*T + t) * 6H):
 * activated gates i f g o (4H), then c_t (H), then h_t (H). */

size_t ms_lstm_ref_cache_size(int T, int H) { return (size_t)12 * T * H; }

static double sigmoid_d(double a) { return 1.0 / (1.0 + exp(-a)); }

void ms_lstm_forward_ref(double *logits, double *cache, const float *x, const ms_lstm_params *p,
                         int T) {
    const int D = p->D, H = p->H;
    for (int d = 0; d < 2; d++) {
        const float *W_ih = p->t[d ? MS_LSTM_W_IH_R : MS_LSTM_W_IH];
        const float *W_hh = p->t[d ? MS_LSTM_W_HH_R : MS_LSTM_W_HH];
        const float *b_ih = p->t[d ? MS_LSTM_B_IH_R : MS_LSTM_B_IH];
        const float *b_hh = p->t[d ? MS_LSTM_B_HH_R : MS_LSTM_B_HH];
        for (int s = 0; s < T; s++) {
            int t = d ? T - 1 - s : s, tp = d ? t + 1 : t - 1;
            double *cur = cache + ((size_t)d * T + t) * 6 * H;
            const double *prev = s > 0 ? cache + ((size_t)d * T + tp) * 6 * H : NULL;
            for (int r = 0; r < 4 * H; r++) {
                double a = (double)b_ih[r] + (double)b_hh[r];
                for (int k = 0; k < D; k++) a += (double)W_ih[r * D + k] * x[(size_t)t * D + k];
                if (prev)
                    for (int k = 0; k < H; k++) a += (double)W_hh[r * H + k] * prev[5 * H + k];
                cur[r] = a;
            }
            for (int j = 0; j < H; j++) {
                double i = sigmoid_d(cur[j]), f = sigmoid_d(cur[H + j]);
                double g = tanh(cur[2 * H + j]), o = sigmoid_d(cur[3 * H + j]);
                double c = f * (prev ? prev[4 * H + j] : 0.0) + i * g;
                cur[j] = i;
                cur[H + j] = f;
                cur[2 * H + j] = g;
                cur[3 * H + j] = o;
                cur[4 * H + j] = c;
                cur[5 * H + j] = o * tanh(c);
            }
        }
    }
    const float *w = p->t[MS_LSTM_LIN_W];
    for (int t = 0; t < T; t++) {
        double a = p->t[MS_LSTM_LIN_B][0];
        for (int d = 0; d < 2; d++)
            for (int j = 0; j < H; j++)
                a += (double)w[d * H + j] * cache[((size_t)d * T + t) * 6 * H + 5 * H + j];
        logits[t] = a;
    }
}

void ms_lstm_backward_ref(double *dparams, const double *dlogits, const double *cache,
                          const float *x, const ms_lstm_params *p, int T) {
    const int D = p->D, H = p->H;
    double *dh = ms_xcalloc((size_t)H, sizeof(double)), *dc = ms_xcalloc((size_t)H, sizeof(double));
    double *da = ms_xcalloc((size_t)4 * H, sizeof(double));
    const float *w = p->t[MS_LSTM_LIN_W];
    double *dw = dparams + p->offset[MS_LSTM_LIN_W];
    for (int t = 0; t < T; t++) {
        dparams[p->offset[MS_LSTM_LIN_B]] += dlogits[t];
        for (int d = 0; d < 2; d++)
            for (int j = 0; j < H; j++)
                dw[d * H + j] += dlogits[t] * cache[((size_t)d * T + t) * 6 * H + 5 * H + j];
    }
    for (int d = 0; d < 2; d++) {
        const float *W_hh = p->t[d ? MS_LSTM_W_HH_R : MS_LSTM_W_HH];
        double *dW_ih = dparams + p->offset[d ? MS_LSTM_W_IH_R : MS_LSTM_W_IH];
        double *dW_hh = dparams + p->offset[d ? MS_LSTM_W_HH_R : MS_LSTM_W_HH];
        double *db_ih = dparams + p->offset[d ? MS_LSTM_B_IH_R : MS_LSTM_B_IH];
        double *db_hh = dparams + p->offset[d ? MS_LSTM_B_HH_R : MS_LSTM_B_HH];
        memset(dh, 0, sizeof(double) * (size_t)H);
        memset(dc, 0, sizeof(double) * (size_t)H);
        for (int s = T - 1; s >= 0; s--) {
            int t = d ? T - 1 - s : s, tp = d ? t + 1 : t - 1;
            const double *cur = cache + ((size_t)d * T + t) * 6 * H;
            const double *prev = s > 0 ? cache + ((size_t)d * T + tp) * 6 * H : NULL;
            for (int j = 0; j < H; j++) {
                double i = cur[j], f = cur[H + j], g = cur[2 * H + j], o = cur[3 * H + j];
                double tc = tanh(cur[4 * H + j]);
                double dhv = dh[j] + dlogits[t] * w[d * H + j];
                double dcv = dc[j] + dhv * o * (1.0 - tc * tc);
                double cprev = prev ? prev[4 * H + j] : 0.0;
                dc[j] = dcv * f;
                da[j] = dcv * g * i * (1.0 - i);
                da[H + j] = dcv * cprev * f * (1.0 - f);
                da[2 * H + j] = dcv * i * (1.0 - g * g);
                da[3 * H + j] = dhv * tc * o * (1.0 - o);
            }
            for (int r = 0; r < 4 * H; r++) {
                db_ih[r] += da[r];
                db_hh[r] += da[r];
                for (int k = 0; k < D; k++) dW_ih[r * D + k] += da[r] * x[(size_t)t * D + k];
                if (prev)
                    for (int k = 0; k < H; k++) dW_hh[r * H + k] += da[r] * prev[5 * H + k];
            }
            for (int k = 0; k < H; k++) {
                double a = 0.0;
                for (int r = 0; r < 4 * H; r++) a += da[r] * (double)W_hh[r * H + k];
                dh[k] = a;
            }
        }
    }
    free(dh);
    free(dc);
    free(da);
}
