/* ms_train_state.c: the trainer's resumable state (weights, Adam moments, progress) in one
 * safetensors file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/safetensors.h"
#include "training/ms_train_internal.h"

static const char *const prefix[3] = {"", "adam_m.", "adam_v."};

ms_status ms_train_state_save(const char *path, const char *signature, const ms_net *p,
                              const ms_net *m, const ms_net *v, const ms_train_state *st) {
    const ms_net *sets[3] = {p, m, v};
    int nt = p->ntensors;
    ms_st_entry t[3 * MS_NET_MAX_TENSORS];
    char names[3 * MS_NET_MAX_TENSORS][64];
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < nt; i++) {
            ms_st_entry *o = &t[s * nt + i];
            snprintf(names[s * nt + i], 64, "%s%s", prefix[s], p->tensor[i].name);
            o->name = names[s * nt + i];
            o->dtype = MS_ST_F32;
            o->data = ms_net_tensor_data(sets[s], i);
            o->ndim = p->tensor[i].ndim;
            o->shape = p->tensor[i].shape;
        }
    char it[32], bv[40], bi[32], rv[40];
    snprintf(it, sizeof it, "%ld", st->iteration);
    snprintf(bv, sizeof bv, "%.17g", st->best_val);
    snprintf(bi, sizeof bi, "%d", st->best_iteration);
    snprintf(rv, sizeof rv, "%.17g", st->random_val);
    const char *kv[] = {"format", "medselect-train-state", "medselect_version", MS_VERSION, "signature", signature,
                        "iteration", it, "best_val", bv, "best_iteration", bi, "random_val", rv};
    return ms_st_write(path, t, 3 * nt, kv, (int)(sizeof kv / sizeof kv[0] / 2));
}

ms_status ms_train_state_load(const char *path, const char *signature, ms_net *p, ms_net *m,
                              ms_net *v, ms_train_state *st) {
    ms_st_file f;
    ms_status rc = ms_st_read(&f, path);
    if (rc) return rc;
    const char *fmt = ms_st_meta(&f, "format"), *sig = ms_st_meta(&f, "signature");
    if (!fmt || strcmp(fmt, "medselect-train-state") != 0)
        rc = ms_fail(MS_ERR_DATA, "%s: not a medselect training state", path);
    else if (!sig || strcmp(sig, signature) != 0)
        rc = ms_fail(MS_ERR_DATA, "%s: was written with other settings or data; resume with the same options (state: %s)",
                     path, sig ? sig : "?");
    ms_net *sets[3] = {p, m, v};
    for (int s = 0; s < 3 && !rc; s++)
        for (int i = 0; i < p->ntensors && !rc; i++) {
            char name[64];
            snprintf(name, sizeof name, "%s%s", prefix[s], p->tensor[i].name);
            const ms_st_tensor *t = ms_st_find(&f, name);
            if (!t || t->numel != p->tensor[i].size)
                rc = ms_fail(MS_ERR_DATA, "%s: tensor '%s' is missing or has the wrong size", path, name);
            else
                rc = ms_st_to_f32(&f, t, ms_net_tensor_data(sets[s], i));
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
