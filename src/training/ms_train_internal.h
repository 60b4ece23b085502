/* ms_train_internal.h: pieces of the trainer shared between its files and tests. */
#ifndef MS_TRAIN_INTERNAL_H
#define MS_TRAIN_INTERNAL_H

#include "medselect/checkpoint.h"
#include "medselect/train.h"

/* One Adam step (PyTorch's rule) on n parameters; t is the 1-based step count. g is read
 * and then set to zero (the next backward accumulates into it). Vectorised and spread over
 * the threads; ms_adam_step_ref is the plain loop (bitwise the same). */
void ms_adam_step(float *p, float *g, float *m, float *v, size_t n, long t, double lr, double b1,
                  double b2, double eps);
void ms_adam_step_ref(float *p, float *g, float *m, float *v, size_t n, long t, double lr,
                      double b1, double b2, double eps);

/* --augment rotate: the first D columns of rows x (T, stride) times one random orthogonal
 * matrix drawn from rng (D a power of two). buf: D doubles; sg: 3 D bytes of scratch. */
void ms_train_rotate_rows(float *x, int T, int stride, int D, ms_rng *rng, double *buf, signed char *sg);

/* --augment geometry (train.h, ms_augment.c): the first D columns of the pool rows (P,
 * pstride) and the query rows (Q, qstride) changed in place by one draw from rng, with the
 * pool's mean and spread. work: ms_train_geometry_work(D, g->dirs) doubles; afterwards it
 * holds the pool mean (D), scratch (D) and the kept orthonormal directions (k, D). out
 * (NULL: not wanted) receives the draw. */
typedef struct {
    double c, nu, r;                  /* concentration, noise level, the pool's RMS spread */
    int k;                            /* directions kept */
    double f[MS_GEOMETRY_MAX_DIRS];   /* their factors */
} ms_geometry_draw;
size_t ms_train_geometry_work(int D, int dirs);
void ms_train_geometry_rows(float *pool, int P, int pstride, float *query, int Q, int qstride, int D,
                            const ms_geometry_aug *g, ms_rng *rng, double *work, ms_geometry_draw *out);

typedef struct {
    long iteration;     /* iterations completed */
    double best_val;
    int best_iteration;
    double random_val;
} ms_train_state;

/* The resumable state: weights, Adam moments and progress in one safetensors file, with the
 * run signature in its metadata (a resume with other settings is refused). */
ms_status ms_train_state_save(const char *path, const char *signature, const ms_net *p,
                              const ms_net *m, const ms_net *v, const ms_train_state *st);
/* p, m, v: initialised with the run's architecture and sizes; filled from the file. */
ms_status ms_train_state_load(const char *path, const char *signature, ms_net *p, ms_net *m,
                              ms_net *v, ms_train_state *st);

/* The trainer's files written in order on a thread of their own (ms_train_saver.c): each
 * request copies what it needs and returns at once, or waits while an earlier request of
 * the same kind is still queued; it returns the first failure of an earlier write, if any
 * (the message re-raised on the calling thread). ms_saver_finish waits for every queued
 * write, stops the thread and returns the first failure. signature and meta must outlive
 * the saver. */
typedef struct ms_saver ms_saver;
ms_saver *ms_saver_start(const char *signature, const ms_selector_meta *meta);
ms_status ms_saver_state(ms_saver *s, const char *path, const ms_net *p, const ms_net *m, const ms_net *v,
                         const ms_train_state *state);
ms_status ms_saver_net(ms_saver *s, const char *path, const ms_net *net);
ms_status ms_saver_text(ms_saver *s, const char *path, const char *text, size_t n);
ms_status ms_saver_finish(ms_saver *s);

#endif
