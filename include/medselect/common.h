/* medselect/common.h: status codes, error messages, the seeded random generator, threads,
 * progress bars shared by every module (and, through medselect/output.h, output files).
 *
 * Errors come in two tiers. A programmer error (a contract violation such as a NULL
 * argument or K > pool size reaching a kernel) aborts through MS_CHECK with file:line.
 * A data or I/O error (a malformed CSV, a missing HDF5 dataset, NaN in the embeddings)
 * returns a non-zero ms_status and records one line, naming the file and the problem,
 * that ms_last_error() returns. Library code never calls exit(); only the CLI decides exit
 * codes (data errors exit 2).
 */
#ifndef MEDSELECT_COMMON_H
#define MEDSELECT_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MS_VERSION "0.1.0"

typedef enum {
    MS_OK = 0,
    MS_ERR_IO = 1,     /* a file could not be opened, read or written */
    MS_ERR_DATA = 2,   /* the content is malformed or inconsistent */
    MS_ERR_ARG = 3,    /* an option value is out of range or unknown */
    MS_ERR_NOMEM = 4,  /* an allocation failed */
    MS_ERR_CANCELLED = 5, /* the caller's cancel hook asked a long call to stop (ms_progress) */
} ms_status;

/* Records the thread's last error message (printf-style, one line, no newline).
 * Returns `code` so that callers can write `return ms_fail(MS_ERR_DATA, "...")`. */
ms_status ms_fail(ms_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The calling thread's last error message ("" when none). Valid until the next ms_fail. */
const char *ms_last_error(void);

/* ---------------------------------------------------------------------------------------
 * Hostile input. Messages: ms_fail (and the CLI's usage errors) print every byte a file
 * name or a file's content could smuggle into a terminal as \xNN (control bytes, DEL, C1
 * controls, invalid UTF-8; valid UTF-8 text stays readable) and shorten a message longer
 * than MS_MSG_MAX characters by eliding its middle ("head...tail"), so a 10 MB path still
 * gives one readable line that ends with the problem.
 *
 * Size budget: every allocation whose size a file declares (array dimensions, tensor shapes,
 * image sizes, network widths) is checked with ms_check_alloc BEFORE it is made. Where the
 * format says how many bytes must follow (NPY, safetensors, checkpoints, encoder weights)
 * the file's own size is checked first (declared data larger than the file is an error);
 * the budget covers what a file cannot prove (HDF5 dimensions of compressed data, image
 * dimensions, config.json input sizes, derived workspaces). The default is 4096 MB; the
 * environment variable MS_MAX_ALLOC_MB raises (or lowers) it.
 * ------------------------------------------------------------------------------------- */
#define MS_MSG_MAX 1000
#define MS_MAX_ALLOC_DEFAULT_MB 4096
/* The budget in bytes (MS_MAX_ALLOC_MB, else 4096 MB). */
uint64_t ms_alloc_limit(void);
/* MS_OK when `bytes` fits the budget, else MS_ERR_DATA "PATH: WHAT needs N MB, more than the
 * limit of L MB (set MS_MAX_ALLOC_MB to raise it)". `bytes` saturates: pass UINT64_MAX for
 * a product that overflowed. */
ms_status ms_check_alloc(uint64_t bytes, const char *what, const char *path);
/* a * b, saturating at UINT64_MAX (for size products from untrusted dimensions). */
uint64_t ms_mul_sat(uint64_t a, uint64_t b);
/* Copies `src` into dst (cap bytes, NUL-terminated) escaped and shortened as described
 * above, to at most min(cap - 1, MS_MSG_MAX + a few) characters. Returns dst. */
char *ms_escape_msg(char *dst, size_t cap, const char *src);

/* Parsing behind a process boundary, for third-party parsers that can crash, abort on an
 * internal assertion or allocate without bound on crafted files (libhdf5, GDCM). `fn` runs
 * in a forked child whose stderr is /dev/null and whose address space is capped to its
 * current size plus the size budget (not under AddressSanitizer, which needs the space);
 * fn returns a status and, on success, a malloc'd result of *bytes bytes plus four integers
 * of metadata (e.g. rows, cols). They come back through a pipe: on success *out (malloc'd,
 * the caller frees it), *bytes and meta are set, after the parent has checked *bytes against
 * the budget. An error of fn comes back as the same status and message. A child that dies
 * instead gives MS_ERR_DATA "PATH: corrupt WHAT file (the WHAT library crashed reading it:
 * signal N)" or "... failed reading it". Costs one fork per call; the result is held twice
 * while it is copied. Call it from one thread at a time per file. */
typedef ms_status (*ms_contained_fn)(void *ctx, void **out, size_t *bytes, int32_t meta[4]);
ms_status ms_run_contained(const char *path, const char *what, ms_contained_fn fn, void *ctx, void **out,
                           size_t *bytes, int32_t meta[4]);

/* Contract check: aborts with file:line and the expression when `cond` is false. */
#define MS_CHECK(cond)                                                                      \
    do {                                                                                    \
        if (!(cond)) ms_abort_at(__FILE__, __LINE__, #cond);                                \
    } while (0)
void ms_abort_at(const char *file, int line, const char *what) __attribute__((noreturn));

/* Allocation that aborts on failure (out of memory is not a recoverable data error here).
 * The caller frees the result with free(). ms_xcalloc zeroes. */
void *ms_xmalloc(size_t bytes);
void *ms_xcalloc(size_t count, size_t size);
void *ms_xrealloc(void *p, size_t bytes);
char *ms_xstrdup(const char *s);
/* For arrays of many megabytes filled once and read in full (a pool's embeddings): aligned
 * to 2 MB and, where the system has them, asking for transparent huge pages. Each first
 * touch of a 4 KB page is a fault; on virtual machines those cost more than a read of the
 * page (a 200 MB array: about 0.5 CPU-s in faults). Aborts when out of memory; free() it. */
void *ms_xmalloc_large(size_t bytes);

/* ---------------------------------------------------------------------------------------
 * Random numbers. xoshiro256** seeded through splitmix64 from (seed, stream, index):
 * the generator for task i of stream s is a pure function of (seed, s, i), so tasks can be
 * built in any order, on any thread, and reproduce exactly.
 * ------------------------------------------------------------------------------------- */
typedef struct {
    uint64_t s[4];
} ms_rng;

void ms_rng_init(ms_rng *r, uint64_t seed, uint64_t stream, uint64_t index);
uint64_t ms_rng_next(ms_rng *r);
double ms_rng_uniform(ms_rng *r);          /* [0, 1) with 53 random bits */
uint32_t ms_rng_below(ms_rng *r, uint32_t n); /* uniform in [0, n), unbiased; n > 0 */
double ms_rng_normal(ms_rng *r);           /* standard normal (Box-Muller, no cached pair) */
double ms_rng_gumbel(ms_rng *r);           /* standard Gumbel: -log(-log(U)), U in (0,1) */
void ms_rng_shuffle(ms_rng *r, int *a, int n); /* Fisher-Yates */
/* Draws k distinct values from [0, n) into out (in random order). Uses `scratch` of n ints. */
void ms_rng_choose(ms_rng *r, int n, int k, int *out, int *scratch);

/* Well-known stream numbers so that different uses of one seed never share a sequence. */
enum {
    MS_STREAM_TASK = 1,      /* task sampling */
    MS_STREAM_STRATEGY = 2,  /* a strategy's own random choices */
    MS_STREAM_BASELINE = 3,  /* the random-selection baseline during training */
    MS_STREAM_POLICY = 4,    /* the selector's sampled draws */
    MS_STREAM_BOOTSTRAP = 5, /* bootstrap confidence intervals */
    MS_STREAM_PERMUTE = 6,   /* permutation tests */
    MS_STREAM_INIT = 7,      /* model initialization */
    MS_STREAM_SYNTH = 8,     /* the synthetic demo data */
};

/* ---------------------------------------------------------------------------------------
 * Threads. ms_set_threads sets OpenMP's thread count (which the GEMM layer follows) (n <= 0: all cores).
 * Results never depend on it: work is split by task, and each task's arithmetic runs on one
 * thread in a fixed order.
 * ------------------------------------------------------------------------------------- */
void ms_set_threads(int n);
int ms_get_threads(void);

/* ---------------------------------------------------------------------------------------
 * Progress bar on stderr, drawn only when stderr is a terminal (and MS_PROGRESS is not 0),
 * or as ms_set_progress says.
 *
 * Cancellation rides on the same struct: a caller that wants to stop a long call (a binding
 * reacting to Ctrl-C) sets `cancel` (and `cancel_ctx`) after ms_progress_begin. Every
 * ms_progress_add, i.e. after every unit of work (a task, a batch), calls cancel(cancel_ctx)
 * from the thread that finished the unit; a non-zero return sets `cancelled` for good. Long
 * calls that take an ms_progress (ms_evaluate) poll ms_progress_cancelled between units and
 * then return MS_ERR_CANCELLED ("cancelled") without a partial result. The hook may be
 * called from several threads at once and must be cheap.
 * ------------------------------------------------------------------------------------- */
typedef struct {
    const char *label;
    long total;
    long done;
    double t0;
    double last_draw;
    int enabled;
    int (*cancel)(void *ctx); /* optional cancel hook, NULL by default */
    void *cancel_ctx;
    volatile int cancelled;   /* set once the hook returned non-zero */
} ms_progress;

void ms_progress_begin(ms_progress *p, const char *label, long total);
void ms_progress_add(ms_progress *p, long n); /* thread-safe */
void ms_progress_end(ms_progress *p);
/* 1 when p is not NULL and its cancel hook has asked to stop. */
int ms_progress_cancelled(const ms_progress *p);
/* Process-wide drawing mode of the bars: -1 (the default) as described above, 0 never,
 * 1 always (on stderr, terminal or not). For embedders that own the terminal. */
void ms_set_progress(int mode);

double ms_now(void); /* monotonic seconds */

/* Output files (atomic, parents created, one writer per output): medselect/output.h. */

/* ---------------------------------------------------------------------------------------
 * Workspace arena: per-thread scratch memory for hot loops. ms_arena_alloc bumps a pointer;
 * ms_arena_reset releases everything at once (and, if the arena had to grow, merges its
 * blocks into one so that the next round allocates nothing). After the first task of a
 * loop, no malloc happens. Returned memory is 64-byte aligned and not zeroed.
 * ------------------------------------------------------------------------------------- */
typedef struct ms_arena_block ms_arena_block;
typedef struct {
    ms_arena_block *head; /* current block; older blocks chained behind it */
    size_t total;         /* bytes handed out since the last reset */
    size_t peak;          /* largest total seen */
} ms_arena;

void ms_arena_init(ms_arena *a);
void *ms_arena_alloc(ms_arena *a, size_t bytes);
#define MS_ARENA_NEW(a, type, count) ((type *)ms_arena_alloc((a), sizeof(type) * (size_t)(count)))
void ms_arena_reset(ms_arena *a);
void ms_arena_free(ms_arena *a);

/* ---------------------------------------------------------------------------------------
 * Small helpers.
 * ------------------------------------------------------------------------------------- */
/* Splits "a,b,c" on commas into a newly allocated array of trimmed strings; *n gets the
 * count. The caller frees with ms_strv_free. */
char **ms_split_list(const char *s, int *n);
void ms_strv_free(char **v, int n);
/* 64-bit FNV-1a over bytes, for data fingerprints. */
uint64_t ms_fnv1a(const void *data, size_t n, uint64_t h);

#ifdef __cplusplus
}
#endif

#include "medselect/output.h"
#endif
