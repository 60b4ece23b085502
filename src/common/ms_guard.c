/* ms_guard.c: defences against hostile input shared by every module: the allocation budget
 * checked before a file-declared size is allocated, and the escaping and shortening of
 * error messages (file names and file content may carry terminal escape sequences or be
 * megabytes long), and parsing in a child process for libraries that can crash. See
 * "Hostile input" in medselect/common.h.
 */
#define _POSIX_C_SOURCE 200809L
#include "medselect/common.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define MS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MS_ASAN 1
#endif
#endif

/* ---- size budget ------------------------------------------------------------------------ */

uint64_t ms_alloc_limit(void) {
    /* read each time: cheap, and tests change it between calls */
    uint64_t mb = MS_MAX_ALLOC_DEFAULT_MB;
    const char *env = getenv("MS_MAX_ALLOC_MB");
    if (env && *env) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(env, &end, 10);
        if (!errno && *end == '\0' && v > 0 && env[0] != '-') mb = v;
    }
    return mb > UINT64_MAX / (1024 * 1024) ? UINT64_MAX : mb * 1024 * 1024;
}

uint64_t ms_mul_sat(uint64_t a, uint64_t b) {
    if (a && b > UINT64_MAX / a) return UINT64_MAX;
    return a * b;
}

ms_status ms_check_alloc(uint64_t bytes, const char *what, const char *path) {
    uint64_t lim = ms_alloc_limit();
    if (bytes <= lim && bytes <= (uint64_t)SIZE_MAX / 2) return MS_OK;
    double mb = (double)bytes / (1024.0 * 1024.0);
    return ms_fail(MS_ERR_DATA, "%s: %s needs %.0f MB%s, more than the limit of %llu MB (set MS_MAX_ALLOC_MB to raise it)",
                   path ? path : "(input)", what, mb, bytes == UINT64_MAX ? " or more" : "",
                   (unsigned long long)(lim / (1024 * 1024)));
}

/* ---- message escaping ------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 when invalid (overlong
 * forms, surrogates and code points above U+10FFFF are invalid). *cp gets the code point. */
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else
        return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return len;
}

/* The printable form of the unit at s: copied into out (up to 4 bytes) or escaped as \xNN.
 * Returns the bytes consumed; *olen gets the output length. */
static size_t unit(const unsigned char *s, size_t n, char out[5], size_t *olen) {
    uint32_t cp;
    size_t len = utf8_len(s, n, &cp);
    if (len && cp >= 0x20 && cp != 0x7f && !(cp >= 0x80 && cp < 0xa0)) {
        memcpy(out, s, len);
        *olen = len;
        return len;
    }
    static const char hex[] = "0123456789abcdef";
    out[0] = '\\', out[1] = 'x', out[2] = hex[s[0] >> 4], out[3] = hex[s[0] & 15];
    *olen = 4;
    return 1;
}

char *ms_escape_msg(char *dst, size_t cap, const char *src) {
    MS_CHECK(dst && cap >= 16 && src);
    const unsigned char *s = (const unsigned char *)src;
    size_t n = strlen(src), limit = cap - 1 < MS_MSG_MAX ? cap - 1 : MS_MSG_MAX;
    char u[5];
    size_t ul;
    /* pass 1: the escaped length */
    size_t total = 0;
    for (size_t i = 0; i < n;) {
        i += unit(s + i, n - i, u, &ul);
        total += ul;
    }
    /* pass 2: everything, or the first `head` and last `tail` characters around "..." */
    size_t head = total <= limit ? total : (limit - 3) / 3;
    size_t tail = total <= limit ? 0 : limit - 3 - head;
    size_t at = 0, k = 0; /* output position in the full escaped text; bytes written */
    int elided = 0;
    for (size_t i = 0; i < n;) {
        i += unit(s + i, n - i, u, &ul);
        if (at + ul <= head || (total > limit && at >= total - tail)) {
            memcpy(dst + k, u, ul);
            k += ul;
        } else if (!elided) {
            memcpy(dst + k, "...", 3);
            k += 3;
            elided = 1;
        }
        at += ul;
    }
    dst[k] = '\0';
    return dst;
}

/* ---- parsing in a child process ------------------------------------------------------- */

typedef struct {
    int32_t status;
    int32_t meta[4];
    uint32_t msg_len;
    uint64_t bytes;
} contained_reply;

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n > ((size_t)1 << 20) ? (size_t)1 << 20 : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n) {
    char *c = p;
    while (n) {
        ssize_t r = read(fd, c, n > ((size_t)1 << 20) ? (size_t)1 << 20 : n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Caps the child's address space at what it maps now plus the size budget (plus slack for
 * the library's own bookkeeping), so that a crafted file cannot make the library take the
 * machine's memory: the allocation fails inside the child instead. */
static void cap_address_space(void) {
#ifndef MS_ASAN
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!f) return;
    int ok = fscanf(f, "%lu", &pages) == 1;
    fclose(f);
    if (!ok) return;
    uint64_t now = (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t cap = now + ms_alloc_limit() + ((uint64_t)256 << 20);
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && (rl.rlim_max == RLIM_INFINITY || cap < rl.rlim_max)) {
        rl.rlim_cur = (rlim_t)cap;
        setrlimit(RLIMIT_AS, &rl);
    }
#endif
}

static _Noreturn void contained_child(int fd, ms_contained_fn fn, void *ctx) {
    /* a crash ends the child by its signal: no inherited handler (a sanitizer's, a fuzzer's)
     * runs in it */
    static const int crash[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGTRAP};
    for (size_t i = 0; i < sizeof crash / sizeof *crash; i++) signal(crash[i], SIG_DFL);
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
        dup2(devnull, STDERR_FILENO);
        close(devnull);
    }
    cap_address_space();
    void *out = NULL;
    size_t bytes = 0;
    contained_reply h;
    memset(&h, 0, sizeof h);
    ms_status st = fn(ctx, &out, &bytes, h.meta);
    const char *msg = st ? ms_last_error() : "";
    h.status = (int32_t)st;
    h.msg_len = (uint32_t)strlen(msg);
    h.bytes = st ? 0 : (uint64_t)bytes;
    int bad = write_all(fd, &h, sizeof h) || write_all(fd, msg, h.msg_len);
    if (!st && !bad && bytes) bad = write_all(fd, out, bytes);
    _exit(bad ? 3 : 0);
}

ms_status ms_run_contained(const char *path, const char *what, ms_contained_fn fn, void *ctx, void **out,
                           size_t *bytes, int32_t meta[4]) {
    MS_CHECK(path && what && fn && out && bytes && meta);
    *out = NULL;
    *bytes = 0;
    int fd[2];
    if (pipe(fd) != 0) return ms_fail(MS_ERR_IO, "%s: cannot read: pipe: %s", path, strerror(errno));
    fflush(NULL); /* no buffered output duplicated into the child */
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return ms_fail(MS_ERR_IO, "%s: cannot read: fork: %s", path, strerror(errno));
    }
    if (pid == 0) {
        close(fd[0]);
        contained_child(fd[1], fn, ctx);
    }
    close(fd[1]);
    ms_status st = MS_OK;
    contained_reply h;
    void *x = NULL;
    int got = read_all(fd[0], &h, sizeof h) == 0;
    if (got && h.status) {
        char msg[MS_MSG_MAX + 24];
        size_t n = h.msg_len < sizeof msg - 1 ? h.msg_len : sizeof msg - 1;
        if (read_all(fd[0], msg, n) != 0) n = 0;
        msg[n] = '\0';
        int known = h.status == MS_ERR_IO || h.status == MS_ERR_DATA || h.status == MS_ERR_ARG || h.status == MS_ERR_NOMEM;
        st = ms_fail(known ? (ms_status)h.status : MS_ERR_DATA, "%s", n ? msg : "cannot read the file");
    } else if (got) {
        char skip[MS_MSG_MAX + 24];
        got = h.msg_len < sizeof skip && read_all(fd[0], skip, h.msg_len) == 0;
        if (got && !(st = ms_check_alloc(h.bytes, "the decoded data", path))) {
            x = malloc(h.bytes ? (size_t)h.bytes : 1);
            if (!x) ms_abort_at(__FILE__, __LINE__, "out of memory");
            got = read_all(fd[0], x, (size_t)h.bytes) == 0;
        }
    }
    close(fd[0]);
    int wst = 0;
    while (waitpid(pid, &wst, 0) < 0 && errno == EINTR) {
    }
    if (!st && (!got || !WIFEXITED(wst) || WEXITSTATUS(wst) != 0)) {
        if (WIFSIGNALED(wst))
            st = ms_fail(MS_ERR_DATA, "%s: corrupt %s file (the %s library crashed reading it: signal %d)", path, what, what,
                         WTERMSIG(wst));
        else
            st = ms_fail(MS_ERR_DATA, "%s: corrupt %s file (the %s library failed reading it)", path, what, what);
    }
    if (st) {
        free(x);
        return st;
    }
    *out = x;
    *bytes = (size_t)h.bytes;
    memcpy(meta, h.meta, sizeof h.meta);
    return MS_OK;
}
