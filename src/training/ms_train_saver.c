/* ms_train_saver.c: the trainer's files written on a thread of their own
 * (ms_train_internal.h).
 *
 * Every file is still written as before (a temporary, fsync, then its name: output.h), in
 * the order the trainer asks for them; only the waiting moves off the training loop. The
 * trainer's thread copies what a file needs (weights, Adam moments, the metrics text) into
 * a slot and queues it; the saver's thread takes the slots in that order and writes them.
 * The files on disk at any moment are therefore what the trainer would have left had it
 * written them itself and been stopped a little earlier, which --resume already handles
 * (the state names its iteration, metrics.csv has at least its rows).
 *
 * Slots: one for the state, one for a checkpoint (best or last), four for metrics.csv; a
 * request whose slot is still queued waits for it (the state is saved every validation,
 * and one write of it takes tens of milliseconds). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/checkpoint.h"
#include "medselect/output.h"
#include "training/ms_train_internal.h"

enum { JOB_STATE, JOB_NET, JOB_METRICS };
enum { N_METRICS = 4, N_JOBS = 2 + N_METRICS };

typedef struct {
    int kind;
    int busy; /* being filled, queued or being written */
    char path[4096];
    ms_net p, m, v; /* JOB_STATE: all three; JOB_NET: p */
    ms_train_state state;
    char *text; /* JOB_METRICS */
    size_t n, cap;
} job;

struct ms_saver {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job jobs[N_JOBS]; /* [0] state, [1] net, [2..] metrics */
    job *queue[N_JOBS]; /* FIFO of queued jobs */
    int head, count;
    int quit;
    ms_status err; /* the first failure, and its message */
    char msg[1024];
    const char *sig;
    const ms_selector_meta *meta;
};

static void *saver_main(void *arg) {
    ms_saver *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->count && !s->quit) pthread_cond_wait(&s->cv, &s->mu);
        if (!s->count) break; /* quit, and nothing left */
        job *j = s->queue[s->head];
        int failed = s->err != MS_OK;
        pthread_mutex_unlock(&s->mu);
        ms_status st = MS_OK;
        if (!failed) { /* after a failure nothing more is written */
            if (j->kind == JOB_STATE)
                st = ms_train_state_save(j->path, s->sig, &j->p, &j->m, &j->v, &j->state);
            else if (j->kind == JOB_NET)
                st = ms_net_save(j->path, &j->p, s->meta);
            else
                st = ms_write_file_atomic(j->path, j->text, j->n);
        }
        pthread_mutex_lock(&s->mu);
        if (st && !s->err) {
            s->err = st;
            snprintf(s->msg, sizeof s->msg, "%s", ms_last_error());
        }
        j->busy = 0;
        s->head = (s->head + 1) % N_JOBS;
        s->count--;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

ms_saver *ms_saver_start(const char *signature, const ms_selector_meta *meta) {
    ms_saver *s = ms_xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->jobs[0].kind = JOB_STATE;
    s->jobs[1].kind = JOB_NET;
    for (int i = 2; i < N_JOBS; i++) s->jobs[i].kind = JOB_METRICS;
    s->sig = signature;
    s->meta = meta;
    if (pthread_create(&s->thread, NULL, saver_main, s) != 0) ms_abort_at(__FILE__, __LINE__, "cannot start a thread");
    return s;
}

/* The first failure so far, raised again on the calling thread (its message included). */
static ms_status saver_err(ms_saver *s) {
    return s->err ? ms_fail(s->err, "%s", s->msg) : MS_OK;
}

/* A free slot of `kind` (waiting for one), marked busy: the caller's to fill until it is
 * queued by saver_push (the saver's thread only reads queued slots). */
static job *saver_slot(ms_saver *s, int kind) {
    pthread_mutex_lock(&s->mu);
    for (;;) {
        for (int i = 0; i < N_JOBS; i++)
            if (s->jobs[i].kind == kind && !s->jobs[i].busy) {
                s->jobs[i].busy = 1;
                pthread_mutex_unlock(&s->mu);
                return &s->jobs[i];
            }
        pthread_cond_wait(&s->cv, &s->mu);
    }
}

static void net_copy(ms_net *dst, const ms_net *src) {
    if (!dst->params) MS_CHECK(ms_net_init(dst, src->arch, src->D, src->H) == MS_OK);
    MS_CHECK(dst->arch == src->arch && dst->count == src->count);
    memcpy(dst->params, src->params, sizeof(float) * src->count);
}

/* Queues the filled slot j; returns the first failure so far. */
static ms_status saver_push(ms_saver *s, job *j) {
    pthread_mutex_lock(&s->mu);
    s->queue[(s->head + s->count) % N_JOBS] = j;
    s->count++;
    pthread_cond_broadcast(&s->cv);
    ms_status st = saver_err(s);
    pthread_mutex_unlock(&s->mu);
    return st;
}

ms_status ms_saver_state(ms_saver *s, const char *path, const ms_net *p, const ms_net *m, const ms_net *v,
                         const ms_train_state *state) {
    job *j = saver_slot(s, JOB_STATE);
    snprintf(j->path, sizeof j->path, "%s", path);
    net_copy(&j->p, p);
    net_copy(&j->m, m);
    net_copy(&j->v, v);
    j->state = *state;
    return saver_push(s, j);
}

ms_status ms_saver_net(ms_saver *s, const char *path, const ms_net *net) {
    job *j = saver_slot(s, JOB_NET);
    snprintf(j->path, sizeof j->path, "%s", path);
    net_copy(&j->p, net);
    return saver_push(s, j);
}

ms_status ms_saver_text(ms_saver *s, const char *path, const char *text, size_t n) {
    job *j = saver_slot(s, JOB_METRICS);
    snprintf(j->path, sizeof j->path, "%s", path);
    if (n + 1 > j->cap) {
        j->cap = (n + 1) * 2;
        j->text = ms_xrealloc(j->text, j->cap);
    }
    memcpy(j->text, text, n);
    j->n = n;
    return saver_push(s, j);
}

ms_status ms_saver_finish(ms_saver *s) {
    pthread_mutex_lock(&s->mu);
    s->quit = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    ms_status st = saver_err(s);
    for (int i = 0; i < N_JOBS; i++) {
        ms_net_free(&s->jobs[i].p);
        ms_net_free(&s->jobs[i].m);
        ms_net_free(&s->jobs[i].v);
        free(s->jobs[i].text);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    return st;
}
