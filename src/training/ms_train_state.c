/* ms_train_state.c: the trainer's resumable state (weights, Adam moments, progress) in one
 * safetensors file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/safetensors.h"
#include "training/ms_train_internal.h"

static const char *const prefix[3] = {"", "adam_m.", "adam_v."};

ms_status ms_train_state_save(const char *path, const char *signature, const ms_lstm_params *p,
                              const ms_lstm_params *m, const ms_lstm_params *v,
                              const ms_train_state *st) {
    const ms_lstm_params *sets[3] = {p, m, v};
    ms_st_entry t[3 * MS_LSTM_NTENSORS];
    char names[3 * MS_LSTM_NTENSORS][64];
    int64_t shapes[MS_LSTM_NTENSORS][2];
    for (int i = 0; i < MS_LSTM_NTENSORS; i++) ms_lstm_tensor_shape(i, p->D, p->H, shapes[i]);
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < MS_LSTM_NTENSORS; i++) {
            ms_st_entry *o = &t[s * MS_LSTM_NTENSORS + i];
            snprintf(names[s * MS_LSTM_NTENSORS + i], 64, "%s%s", prefix[s], ms_lstm_tensor_name(i));
            o->name = names[s * MS_LSTM_NTENSORS + i];
            o->dtype = MS_ST_F32;
            o->data = sets[s]->t[i];
            o->ndim = ms_lstm_tensor_shape(i, p->D, p->H, shapes[i]);
            o->shape = shapes[i];
        }
    char it[32], bv[40], bi[32], rv[40];
    snprintf(it, sizeof it, "%ld", st->iteration);
    snprintf(bv, sizeof bv, "%.17g", st->best_val);
    snprintf(bi, sizeof bi, "%d", st->best_iteration);
    snprintf(rv, sizeof rv, "%.17g", st->random_val);
    const char *kv[] = {"format", "medselect-train-state", "medselect_version", MS_VERSION, "signature", signature,
                        "iteration", it, "best_val", bv, "best_iteration", bi, "random_val", rv};
    return ms_st_write(path, t, 3 * MS_LSTM_NTENSORS, kv, (int)(sizeof kv / sizeof kv[0] / 2));
}

ms_status ms_train_state_load(const char *path, const char *signature, ms_lstm_params *p,
                              ms_lstm_params *m, ms_lstm_params *v, ms_train_state *st) {
    ms_st_file f;
    ms_status rc = ms_st_read(&f, path);
    if (rc) return rc;
    const char *fmt = ms_st_meta(&f, "format"), *sig = ms_st_meta(&f, "signature");
    if (!fmt || strcmp(fmt, "medselect-train-state") != 0)
        rc = ms_fail(MS_ERR_DATA, "%s: not a medselect training state", path);
    else if (!sig || strcmp(sig, signature) != 0)
        rc = ms_fail(MS_ERR_DATA, "%s: was written with other settings or data; resume with the same options (state: %s)",
                     path, sig ? sig : "?");
    ms_lstm_params *sets[3] = {p, m, v};
    for (int s = 0; s < 3 && !rc; s++)
        for (int i = 0; i < MS_LSTM_NTENSORS && !rc; i++) {
            char name[64];
            snprintf(name, sizeof name, "%s%s", prefix[s], ms_lstm_tensor_name(i));
            const ms_st_tensor *t = ms_st_find(&f, name);
            if (!t || t->numel != sets[s]->size[i])
                rc = ms_fail(MS_ERR_DATA, "%s: tensor '%s' is missing or has the wrong size", path, name);
            else
                rc = ms_st_to_f32(&f, t, sets[s]->t[i]);
        }
    if (!rc) {
        const char *x;
        st->iteration = (x = ms_st_meta(&f, "iteration")) ? strtol(x, NULL, 10) : 0;
        st->best_val = (x = ms_st_meta(&f, "best_val")) ? strtod(x, NULL) : -1;
        st->best_iteration = (x = ms_st_meta(&f, "best_iteration")) ? atoi(x) : -1;
        st->random_val = (x = ms_st_meta(&f, "random_val")) ? strtod(x, NULL) : NAN;
    }
    ms_st_free(&f);
    return rc;
}
