/* ms_common.c: error messages, checked allocation, the seeded generator (xoshiro256**),
 * threads, the stderr progress bar and the workspace arena (output files: ms_output.c). */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* madvise */
#include "medselect/common.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <omp.h>

static _Thread_local char ms_errbuf[MS_MSG_MAX + 24];

ms_status ms_fail(ms_status code, const char *fmt, ...) {
    /* The whole message is formatted first (a path may be megabytes long), then escaped and
     * shortened into the thread's buffer: one printable line whatever the input held. */
    char small[2048], *full = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof small) {
        char *big = malloc((size_t)n + 1);
        if (big) {
            va_start(ap, fmt);
            vsnprintf(big, (size_t)n + 1, fmt, ap);
            va_end(ap);
            full = big;
        }
    } else if (n < 0) {
        snprintf(small, sizeof small, "(unprintable error message)");
    }
    ms_escape_msg(ms_errbuf, sizeof ms_errbuf, full);
    if (full != small) free(full);
    return code;
}

const char *ms_last_error(void) { return ms_errbuf; }

void ms_abort_at(const char *file, int line, const char *what) {
    fprintf(stderr, "medselect: internal error at %s:%d: check failed: %s\n", file, line, what);
    abort();
}

void *ms_xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) ms_abort_at(__FILE__, __LINE__, "out of memory");
    return p;
}

void *ms_xmalloc_large(size_t bytes) {
    const size_t huge = (size_t)2 << 20;
    if (bytes < 2 * huge) return ms_xmalloc(bytes);
    size_t n = (bytes + huge - 1) / huge * huge; /* aligned_alloc: a multiple of the alignment */
    void *p = aligned_alloc(huge, n);
    if (!p) ms_abort_at(__FILE__, __LINE__, "out of memory");
#ifdef MADV_HUGEPAGE
    (void)madvise(p, n, MADV_HUGEPAGE); /* a hint: without it the pages are 4 KB */
#endif
    return p;
}

void *ms_xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) ms_abort_at(__FILE__, __LINE__, "out of memory");
    return p;
}

void *ms_xrealloc(void *p, size_t bytes) {
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) ms_abort_at(__FILE__, __LINE__, "out of memory");
    return q;
}

char *ms_xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = ms_xmalloc(n);
    memcpy(d, s, n);
    return d;
}

/* ---- random numbers ------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void ms_rng_init(ms_rng *r, uint64_t seed, uint64_t stream, uint64_t index) {
    /* Mix the three words through splitmix64 one after the other so that nearby
     * (seed, stream, index) triples give unrelated states. */
    uint64_t x = seed;
    uint64_t h = splitmix64(&x);
    x = h ^ (stream * 0xd1b54a32d192ed03ULL);
    h = splitmix64(&x);
    x = h ^ (index * 0x8cb92ba72f3d8dd7ULL);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ms_rng_next(ms_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double ms_rng_uniform(ms_rng *r) { return (double)(ms_rng_next(r) >> 11) * 0x1.0p-53; }

uint32_t ms_rng_below(ms_rng *r, uint32_t n) {
    MS_CHECK(n > 0);
    /* Lemire's multiply-and-reject: unbiased */
    uint64_t m = (uint64_t)(uint32_t)(ms_rng_next(r) >> 32) * n;
    uint32_t l = (uint32_t)m;
    if (l < n) {
        uint32_t t = (uint32_t)(-n) % n;
        while (l < t) {
            m = (uint64_t)(uint32_t)(ms_rng_next(r) >> 32) * n;
            l = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

double ms_rng_normal(ms_rng *r) {
    double u1 = 1.0 - ms_rng_uniform(r); /* (0, 1] */
    double u2 = ms_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

double ms_rng_gumbel(ms_rng *r) {
    double u;
    do u = ms_rng_uniform(r);
    while (u <= 0.0);
    return -log(-log(u));
}

void ms_rng_shuffle(ms_rng *r, int *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)ms_rng_below(r, (uint32_t)i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

void ms_rng_choose(ms_rng *r, int n, int k, int *out, int *scratch) {
    MS_CHECK(k >= 0 && k <= n);
    /* partial Fisher-Yates over the identity permutation */
    for (int i = 0; i < n; i++) scratch[i] = i;
    for (int i = 0; i < k; i++) {
        int j = i + (int)ms_rng_below(r, (uint32_t)(n - i));
        int t = scratch[i];
        scratch[i] = scratch[j];
        scratch[j] = t;
        out[i] = scratch[i];
    }
}

/* ---- threads ------------------------------------------------------------------------- */

static int ms_threads = 0;

void ms_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    ms_threads = n;
    omp_set_num_threads(n);
}

int ms_get_threads(void) { return ms_threads > 0 ? ms_threads : omp_get_max_threads(); }

/* ---- progress ------------------------------------------------------------------------ */

double ms_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void progress_draw(ms_progress *p, int final) {
    double t = ms_now() - p->t0;
    double frac = p->total > 0 ? (double)p->done / (double)p->total : 1.0;
    int width = 30, fill = (int)(frac * width + 0.5);
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    double eta = frac > 0 ? t * (1.0 - frac) / frac : 0.0;
    fprintf(stderr, "\r%s [%s] %ld/%ld %5.1fs elapsed, ETA %5.1fs%s", p->label, bar, p->done,
            p->total, t, eta, final ? "\n" : "");
    fflush(stderr);
}

static int progress_mode = -1;

void ms_set_progress(int mode) { progress_mode = mode < 0 ? -1 : mode > 0; }

void ms_progress_begin(ms_progress *p, const char *label, long total) {
    const char *env = getenv("MS_PROGRESS");
    memset(p, 0, sizeof *p);
    p->label = label;
    p->total = total;
    p->t0 = ms_now();
    p->enabled = isatty(STDERR_FILENO) && !(env && strcmp(env, "0") == 0);
    if (env && strcmp(env, "1") == 0) p->enabled = 1;
    if (progress_mode >= 0) p->enabled = progress_mode;
}

int ms_progress_cancelled(const ms_progress *p) { return p && p->cancelled; }

void ms_progress_add(ms_progress *p, long n) {
    long done;
#pragma omp atomic capture
    done = p->done += n;
    if (p->cancel && !p->cancelled && p->cancel(p->cancel_ctx)) p->cancelled = 1;
    if (!p->enabled) return;
    if (omp_get_thread_num() != 0 && done != p->total) return;
    double t = ms_now();
    if (t - p->last_draw < 0.1 && done != p->total) return;
    p->last_draw = t;
    progress_draw(p, 0);
}

void ms_progress_end(ms_progress *p) {
    if (p->enabled) progress_draw(p, 1);
}

/* ---- arena --------------------------------------------------------------------------- */

struct ms_arena_block {
    ms_arena_block *next;
    size_t cap, used;
    char *mem;
};

static ms_arena_block *arena_block_new(size_t cap) {
    ms_arena_block *b = ms_xmalloc(sizeof *b);
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    if (posix_memalign((void **)&b->mem, 64, cap ? cap : 64) != 0)
        ms_abort_at(__FILE__, __LINE__, "out of memory");
    return b;
}

void ms_arena_init(ms_arena *a) { memset(a, 0, sizeof *a); }

void *ms_arena_alloc(ms_arena *a, size_t bytes) {
    size_t need = (bytes + 63) & ~(size_t)63;
    if (!a->head || a->head->used + need > a->head->cap) {
        size_t cap = need > (size_t)1 << 20 ? need : (size_t)1 << 20;
        if (a->head && a->head->cap * 2 > cap) cap = a->head->cap * 2;
        ms_arena_block *b = arena_block_new(cap);
        b->next = a->head;
        a->head = b;
    }
    void *p = a->head->mem + a->head->used;
    a->head->used += need;
    a->total += need;
    if (a->total > a->peak) a->peak = a->total;
    return p;
}

void ms_arena_reset(ms_arena *a) {
    if (a->head && a->head->next) {
        /* the arena grew: replace all blocks by one that holds the peak */
        ms_arena_block *b = a->head;
        while (b) {
            ms_arena_block *n = b->next;
            free(b->mem);
            free(b);
            b = n;
        }
        a->head = arena_block_new(a->peak);
    }
    if (a->head) a->head->used = 0;
    a->total = 0;
}

void ms_arena_free(ms_arena *a) {
    ms_arena_block *b = a->head;
    while (b) {
        ms_arena_block *n = b->next;
        free(b->mem);
        free(b);
        b = n;
    }
    memset(a, 0, sizeof *a);
}

/* ---- helpers ------------------------------------------------------------------------- */

char **ms_split_list(const char *s, int *n) {
    int cap = 4, cnt = 0;
    char **v = ms_xmalloc(sizeof(char *) * (size_t)cap);
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *b = p;
        while (len && (*b == ' ' || *b == '\t')) b++, len--;
        while (len && (b[len - 1] == ' ' || b[len - 1] == '\t')) len--;
        if (len) {
            if (cnt == cap) v = ms_xrealloc(v, sizeof(char *) * (size_t)(cap *= 2));
            v[cnt] = ms_xmalloc(len + 1);
            memcpy(v[cnt], b, len);
            v[cnt][len] = 0;
            cnt++;
        }
        if (!e) break;
        p = e + 1;
    }
    *n = cnt;
    return v;
}

void ms_strv_free(char **v, int n) {
    if (!v) return;
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

uint64_t ms_fnv1a(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    if (!h) h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
