/* ms_output.c: output files that appear complete or not at all (O_TMPFILE + linkat, or a
 * named temporary that later outputs clean up), mkdir -p with undo, and per-output locks
 * (flock on a lock file holding the owner's pid). See medselect/output.h. */
#define _GNU_SOURCE
#include "medselect/output.h"

#include <dirent.h>
#include <signal.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Every named temporary carries this tag (".NAME.ms-tmp.PID.N"), so that a later output
 * into the same folder recognises it. */
static const char ms_tmp_tag[] = ".ms-tmp.";

char *ms_path_dir(const char *path) {
    const char *s = strrchr(path, '/');
    if (!s) return ms_xstrdup(".");
    while (s > path && s[-1] == '/') s--;
    if (s == path) return ms_xstrdup("/");
    size_t n = (size_t)(s - path);
    char *d = ms_xmalloc(n + 1);
    memcpy(d, path, n);
    d[n] = 0;
    return d;
}

static const char *base_of(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static char *join3(const char *a, const char *b, const char *c) {
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *p = ms_xmalloc(n);
    snprintf(p, n, "%s%s%s", a, b, c);
    return p;
}

/* "<dir>/.<base>.ms-tmp.<pid>.<n>": the base is shortened so that the name fits NAME_MAX. */
static char *tmp_name(const char *path) {
    static unsigned long counter;
    unsigned long n = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
    char *dir = ms_path_dir(path);
    const char *base = base_of(path);
    size_t len = strlen(dir) + strlen(base) + 64;
    char *t = ms_xmalloc(len);
    snprintf(t, len, "%s/.%.180s%s%ld.%lu", dir, base, ms_tmp_tag, (long)getpid(), n);
    free(dir);
    return t;
}

static void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    (void)fsync(fd); /* best effort: the data itself was synced before it got its name */
    close(fd);
}

/* ---- folders --------------------------------------------------------------------------- */

static void made_push(char ***made, int *n_made, const char *dir) {
    *made = ms_xrealloc(*made, sizeof(char *) * (size_t)(*n_made + 1));
    (*made)[(*n_made)++] = ms_xstrdup(dir);
}

ms_status ms_mkdirs(const char *dir, char ***made, int *n_made) {
    char **mine = NULL;
    int n_mine = 0;
    char *buf = ms_xstrdup(dir);
    size_t len = strlen(buf);
    while (len > 1 && buf[len - 1] == '/') buf[--len] = 0;
    ms_status st = MS_OK;
    for (char *p = buf + 1;; p++) {
        if (*p && *p != '/') continue;
        if (p[-1] == '/') { /* "a//b" */
            if (!*p) break;
            continue;
        }
        char c = *p;
        *p = 0;
        if (mkdir(buf, 0777) == 0) {
            made_push(&mine, &n_mine, buf);
        } else {
            int e = errno;
            struct stat sb;
            if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
                st = ms_fail(MS_ERR_IO, "%s: cannot create folder: %s", buf,
                             e == EEXIST ? "a file of that name exists" : strerror(e));
                break;
            }
        }
        *p = c;
        if (!c) break;
    }
    free(buf);
    if (st) {
        ms_dirs_undo(mine, n_mine);
        return st;
    }
    if (made)
        for (int i = 0; i < n_mine; i++) made_push(made, n_made, mine[i]);
    for (int i = 0; i < n_mine; i++) free(mine[i]);
    free(mine);
    return MS_OK;
}

void ms_dirs_undo(char **made, int n_made) {
    int keep = 0;
    for (int i = n_made - 1; i >= 0; i--) {
        /* an outer folder can only go once everything inside it has gone */
        if (!keep && rmdir(made[i]) != 0) keep = 1;
        free(made[i]);
    }
    free(made);
}

/* Whether the writer of a temporary is certainly gone: the pid in its name is dead (or, if
 * the pid was reused, the file is over a minute old). A writer holds an flock on its
 * temporary from a moment after creating it; the pid check covers that moment. */
static int tmp_writer_gone(const char *name, const struct stat *sb) {
    const char *t = strstr(name, ms_tmp_tag);
    long pid = t ? strtol(t + sizeof ms_tmp_tag - 1, NULL, 10) : 0;
    if (pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH) return 1;
    return time(NULL) - sb->st_mtime > 60;
}

/* Removes the named temporaries in `dir` whose writer is gone: a live writer holds an flock
 * on its temporary, so a lock we can take means a dead (or finished) one. The name must
 * still lead to the inode we locked (a finished writer renamed it away). */
static void clean_stale(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.' || !strstr(e->d_name, ms_tmp_tag)) continue;
        char *p = join3(dir, "/", e->d_name);
        int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd >= 0) {
            struct stat a, b;
            if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &a) == 0 && lstat(p, &b) == 0 &&
                a.st_dev == b.st_dev && a.st_ino == b.st_ino && S_ISREG(a.st_mode) &&
                tmp_writer_gone(e->d_name, &a))
                unlink(p);
            close(fd);
        }
        free(p);
    }
    closedir(d);
}

/* Whether /proc/self/fd/N can name an O_TMPFILE file for linkat (needs /proc mounted). */
static int proc_fd_usable(void) {
    static int cached = -1;
    if (cached < 0) cached = access("/proc/self/fd", X_OK) == 0;
    return cached;
}

/* ---- output files ------------------------------------------------------------------------ */

ms_status ms_out_open(ms_outfile *o, const char *path) {
    memset(o, 0, sizeof *o);
    o->fd = -1;
    if (strcmp(path, "-") == 0) {
        o->f = stdout;
        return MS_OK;
    }
    if (!*path) return ms_fail(MS_ERR_ARG, "an output file name is empty");
    char *dir = ms_path_dir(path);
    ms_status st = ms_mkdirs(dir, &o->made, &o->n_made);
    if (st) {
        free(dir);
        memset(o, 0, sizeof *o);
        o->fd = -1;
        return st;
    }
    clean_stale(dir);
    int fd = -1, e = 0;
    if (proc_fd_usable() && !getenv("MS_NO_TMPFILE")) {
        fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
        if (fd >= 0) o->anonymous = 1;
    }
    if (fd < 0) {
        /* no O_TMPFILE here (file system, kernel or /proc): a named temporary, locked */
        o->tmp = tmp_name(path);
        fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        e = errno;
    }
    free(dir);
    if (fd >= 0) {
        /* the lock tells clean_stale that this temporary's writer is alive */
        (void)flock(fd, LOCK_EX | LOCK_NB);
        o->f = fdopen(fd, "wb");
        e = errno;
        if (!o->f) close(fd);
    }
    if (!o->f) {
        st = ms_fail(MS_ERR_IO, "%s: cannot create: %s", path, strerror(e));
        if (fd >= 0 && o->tmp) unlink(o->tmp);
        free(o->tmp);
        ms_dirs_undo(o->made, o->n_made);
        memset(o, 0, sizeof *o);
        o->fd = -1;
        return st;
    }
    o->fd = fd;
    o->path = ms_xstrdup(path);
    return MS_OK;
}

/* Flush + fsync: after this the data is on disk, still without its final name. */
static ms_status out_finish(ms_outfile *o) {
    if (!o->f) return MS_OK;
    int bad = fflush(o->f) != 0;
    int e = errno;
    if (!bad && ferror(o->f)) bad = 1, e = EIO;
    if (!bad && o->fd >= 0 && fsync(o->fd) != 0) bad = 1, e = errno;
    if (bad) return ms_fail(MS_ERR_IO, "%s: cannot write: %s", o->path ? o->path : "standard output", strerror(e));
    return MS_OK;
}

/* Gives the finished file its name. An O_TMPFILE file is linked straight to the final name
 * when that is free (one atomic step); otherwise the file gets a temporary name and is
 * renamed over the old file (rename replaces atomically; linkat cannot). */
static ms_status out_publish(ms_outfile *o) {
    if (!o->f) return MS_OK;
    if (o->fd < 0) { /* stdout */
        o->f = NULL;
        return MS_OK;
    }
    int e = 0;
    if (o->anonymous) {
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", o->fd);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, o->path, AT_SYMLINK_FOLLOW) == 0) {
            e = 0;
        } else if (errno == EEXIST) {
            o->tmp = tmp_name(o->path);
            if (linkat(AT_FDCWD, proc, AT_FDCWD, o->tmp, AT_SYMLINK_FOLLOW) != 0) e = errno;
            else if (rename(o->tmp, o->path) != 0) e = errno, unlink(o->tmp);
        } else {
            e = errno;
        }
    } else if (rename(o->tmp, o->path) != 0) {
        e = errno;
    }
    if (e) return ms_fail(MS_ERR_IO, "%s: cannot write: %s", o->path, strerror(e));
    /* the name is in place: the data survives this process, and the folders stay */
    fclose(o->f); /* releases the flock after the name exists */
    o->f = NULL;
    o->fd = -1;
    char *dir = ms_path_dir(o->path);
    fsync_dir(dir);
    free(dir);
    free(o->tmp);
    free(o->path);
    for (int i = 0; i < o->n_made; i++) free(o->made[i]);
    free(o->made);
    memset(o, 0, sizeof *o);
    o->fd = -1;
    return MS_OK;
}

ms_status ms_out_commit(ms_outfile *o) {
    ms_outfile *v[1] = {o};
    return ms_out_commit_all(v, 1);
}

ms_status ms_out_commit_all(ms_outfile *const *v, int n) {
    ms_status st = MS_OK;
    for (int i = 0; i < n && !st; i++) st = out_finish(v[i]);
    for (int i = 0; i < n && !st; i++) st = out_publish(v[i]);
    if (st)
        for (int i = n - 1; i >= 0; i--) ms_out_abort(v[i]);
    return st;
}

void ms_out_abort(ms_outfile *o) {
    if (o->f && o->fd >= 0) fclose(o->f); /* an O_TMPFILE file vanishes here */
    if (o->tmp) unlink(o->tmp);
    free(o->tmp);
    free(o->path);
    ms_dirs_undo(o->made, o->n_made);
    memset(o, 0, sizeof *o);
    o->fd = -1;
}

ms_status ms_write_file_atomic(const char *path, const void *data, size_t n) {
    ms_outfile o;
    ms_status st = ms_out_open(&o, path);
    if (st) return st;
    if (n && fwrite(data, 1, n, o.f) != n) {
        st = ms_fail(MS_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        ms_out_abort(&o);
        return st;
    }
    return ms_out_commit(&o);
}

/* ---- locks ------------------------------------------------------------------------------- */

/* The pid written in a lock file (0 when it cannot be read yet). */
static long lock_owner(int fd) {
    char buf[32];
    for (int attempt = 0; attempt < 50; attempt++) {
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        if (n > 0) {
            buf[n] = 0;
            long pid = strtol(buf, NULL, 10);
            if (pid > 0) return pid;
        }
        /* the owner has the lock but has not written its pid yet */
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

ms_status ms_lock_acquire(ms_lock *l, const char *target, int kind) {
    memset(l, 0, sizeof *l);
    l->fd = -1;
    char *dir = kind == MS_LOCK_FOLDER ? ms_xstrdup(target) : ms_path_dir(target);
    ms_status st = ms_mkdirs(dir, &l->made, &l->n_made);
    if (st) {
        free(dir);
        return st;
    }
    l->lock_path = kind == MS_LOCK_FOLDER ? join3(dir, "/", ".medselect.lock")
                                          : join3(dir, "/.", base_of(target));
    if (kind != MS_LOCK_FOLDER) {
        char *p = join3(l->lock_path, ".lock", "");
        free(l->lock_path);
        l->lock_path = p;
    }
    free(dir);
    l->target = ms_xstrdup(target);
    for (int attempt = 0; attempt < 100; attempt++) {
        int fd = open(l->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
        if (fd < 0) {
            st = ms_fail(MS_ERR_IO, "%s: cannot create the lock file %s: %s", target, l->lock_path, strerror(errno));
            break;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            if (e == EWOULDBLOCK) {
                long pid = lock_owner(fd);
                if (pid) st = ms_fail(MS_ERR_IO, "%s: in use by another medselect process (pid %ld)", target, pid);
                else st = ms_fail(MS_ERR_IO, "%s: in use by another medselect process", target);
            } else {
                st = ms_fail(MS_ERR_IO, "%s: cannot lock %s: %s", target, l->lock_path, strerror(e));
            }
            close(fd);
            break;
        }
        /* the previous owner may have removed the file between our open and flock: then the
         * lock we hold is on a file nobody else will find; start again */
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(l->lock_path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            char buf[32];
            int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
            if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
                /* a full disk: the lock holds all the same, only the pid is missing */
            }
            l->fd = fd;
            return MS_OK;
        }
        close(fd);
    }
    if (!st) st = ms_fail(MS_ERR_IO, "%s: cannot lock %s", target, l->lock_path);
    ms_lock_release(l);
    return st;
}

void ms_lock_release(ms_lock *l) {
    if (l->fd >= 0) {
        unlink(l->lock_path); /* while we still hold it: see the inode check above */
        close(l->fd);
    }
    free(l->lock_path);
    free(l->target);
    ms_dirs_undo(l->made, l->n_made);
    memset(l, 0, sizeof *l);
    l->fd = -1;
}
