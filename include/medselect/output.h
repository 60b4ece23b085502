/* medselect/output.h: how every file medselect writes reaches the disk. One mechanism for
 * all commands (worklists, scores, JSON, reports, figures, embeddings, checkpoints, training
 * state, metrics), with three promises:
 *
 *  1. Nothing partial: a file is written under no name at all (Linux O_TMPFILE: the kernel
 *     removes it when the process ends, however it ends), fsynced, and only then linked
 *     into place, atomically, in one step when the final name is new and through a rename
 *     when it replaces an older file. A reader sees the old complete file or the new
 *     complete file, never a mix, and a killed process leaves no temporary behind. Where
 *     O_TMPFILE is unsupported (some file systems, no /proc), a named temporary
 *     ".NAME.ms-tmp.PID.N" in the same folder is used instead; its writer holds an flock on
 *     it, and every later output into that folder removes the temporaries whose writer is
 *     gone. (Replacing an existing file needs that name for the instant between link and
 *     rename too: a kill in exactly that window leaves a complete, hidden temporary that the
 *     next output into the folder removes.)
 *  2. Missing parent folders are created (mkdir -p). Folders created for an output that is
 *     then abandoned are removed again when they are still empty, so a failed command
 *     leaves no empty folder behind.
 *  3. One writer per output: ms_lock takes an flock on a lock file beside the output
 *     (".NAME.lock" for a file, "FOLDER/.medselect.lock" for a folder) holding the owner's
 *     pid, so a second run aimed at the same output is refused with a message naming the
 *     output and that pid. flock ends with its process, so a lock left by a killed run
 *     stops nobody; the lock file is removed when the lock is released.
 *
 * Several outputs that belong together (a worklist and its scores, embeddings and their
 * CSV, a report and its figures) are written completely first and then published one
 * after the other by ms_out_commit_all, in the order given: the caller puts the file that
 * readers look for first (the worklist, the CSV, the report) last.
 */
#ifndef MEDSELECT_OUTPUT_H
#define MEDSELECT_OUTPUT_H

#include <stddef.h>
#include <stdio.h>

#include "medselect/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An output file being written. Write through `f` (stdio); nothing is visible under `path`
 * before ms_out_commit. Fields other than f are private. */
typedef struct {
    FILE *f;          /* the stream to write; NULL when closed */
    char *path;       /* final name (NULL for stdout) */
    char *tmp;        /* named temporary (fallback), or NULL while the file has no name */
    int fd;           /* descriptor of f, -1 for stdout */
    int anonymous;    /* 1: O_TMPFILE, linked into place on commit */
    char **made;      /* folders created for this output, outermost first */
    int n_made;
} ms_outfile;

/* Opens a new output for `path` ("-" means stdout: no temporary, commit is a flush). Creates
 * missing parent folders. Records an error naming the path on failure. */
ms_status ms_out_open(ms_outfile *o, const char *path);
/* Flushes, fsyncs and puts the file in place under its name (replacing an older file
 * atomically). On failure the output is abandoned (as ms_out_abort) and an error naming the
 * path is recorded. */
ms_status ms_out_commit(ms_outfile *o);
/* Commits several outputs: all are flushed and synced first (any failure abandons all of
 * them and nothing is published), then published in the order given. */
ms_status ms_out_commit_all(ms_outfile *const *v, int n);
/* Abandons the output: the data vanishes, folders created for it are removed when empty.
 * Safe after a commit and on a zeroed struct. */
void ms_out_abort(ms_outfile *o);

/* Writes `n` bytes to `path` through an output (atomic, parents created). */
ms_status ms_write_file_atomic(const char *path, const void *data, size_t n);

/* The folder part of `path` ("." when it has none, "/" for a file in the root), newly
 * allocated: the caller frees it. */
char *ms_path_dir(const char *path);

/* mkdir -p: creates `dir` and its missing parents. The folders created (outermost first) are
 * appended to *made / *n_made when `made` is not NULL (the caller frees them with
 * ms_dirs_undo). Records an error naming the folder on failure (created folders are then
 * removed again). */
ms_status ms_mkdirs(const char *dir, char ***made, int *n_made);
/* Removes the folders of `made` that are empty, innermost first, and frees the list. */
void ms_dirs_undo(char **made, int n_made);

/* ---- one writer per output -------------------------------------------------------------- */
typedef struct {
    int fd;           /* -1 when not held */
    char *lock_path;  /* the lock file */
    char *target;     /* the output it protects, for messages */
    char **made;      /* folders created to hold the lock (removed on release when empty) */
    int n_made;
} ms_lock;

enum { MS_LOCK_FILE = 0, MS_LOCK_FOLDER = 1 };

/* Takes the lock of output `target` (a file, or with MS_LOCK_FOLDER a folder, which is
 * created with its parents when missing). When another live process holds it, returns
 * MS_ERR_IO with the message "TARGET: in use by another medselect process (pid N)". */
ms_status ms_lock_acquire(ms_lock *l, const char *target, int kind);
/* Releases the lock: the lock file is removed, then the folders created by ms_lock_acquire
 * if they are empty (a run that wrote nothing leaves nothing). Safe on a zeroed struct. */
void ms_lock_release(ms_lock *l);

#ifdef __cplusplus
}
#endif
#endif
