/* ms_strategy.c: the strategy registry (name -> constructor) and "key=value" option
 * parsing shared by all strategy families. */
#include "medselect/strategy.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "medselect/tasks.h"
#include "strategies/ms_strategies_internal.h"

static const struct {
    const char *name;
    ms_strategy_ctor ctor;
} registry[] = {
    {"random", ms_random_create},       {"kmedoids", ms_kmedoids_create},
    {"kmeans", ms_kmeans_create},       {"kcenter", ms_kcenter_create},
    {"typiclust", ms_typiclust_create}, {"probcover", ms_probcover_create},
    {"herding", ms_herding_create},
};
#define N_REGISTRY (int)(sizeof registry / sizeof registry[0])

const char *ms_strategy_names(void) {
    return "random,kmedoids,kmeans,kcenter,typiclust,probcover,herding";
}

ms_status ms_strategy_create(ms_strategy **out, const char *spec) {
    *out = NULL;
    const char *colon = strchr(spec, ':');
    size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
    const char *opts = colon ? colon + 1 : "";
    for (int i = 0; i < N_REGISTRY; i++) {
        if (strlen(registry[i].name) == len && strncasecmp(registry[i].name, spec, len) == 0) {
            ms_strategy *s = ms_xcalloc(1, sizeof *s);
            snprintf(s->name, sizeof s->name, "%s", registry[i].name);
            if (*opts) snprintf(s->label, sizeof s->label, "%s:%s", registry[i].name, opts);
            else snprintf(s->label, sizeof s->label, "%s", registry[i].name);
            ms_status st = registry[i].ctor(s, opts);
            if (st) {
                ms_strategy_free(s);
                return st;
            }
            *out = s;
            return MS_OK;
        }
    }
    return ms_fail(MS_ERR_ARG, "unknown strategy '%.*s' (available: %s)", (int)len, spec,
                   ms_strategy_names());
}

ms_strategy *ms_strategy_new(const char *name, const char *label, ms_select_fn select, void *ctx,
                             void (*free_ctx)(void *ctx)) {
    MS_CHECK(name && select);
    ms_strategy *s = ms_xcalloc(1, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->label, sizeof s->label, "%s", label ? label : name);
    s->select = select;
    s->ctx = ctx;
    s->free_ctx = free_ctx;
    return s;
}

void ms_strategy_free(ms_strategy *s) {
    if (!s) return;
    if (s->free_ctx) s->free_ctx(s->ctx);
    free(s);
}

/* Finds "key=" as a whole key in a comma-separated list; returns a pointer to the value and
 * its length, or NULL. */
static const char *opt_find(const char *opts, const char *key, size_t *vlen) {
    size_t kl = strlen(key);
    const char *p = opts;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            *vlen = len - kl - 1;
            return p + kl + 1;
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

ms_status ms_opt_string(const char *opts, const char *key, char *buf, size_t n, int *found) {
    size_t vl;
    const char *v = opt_find(opts, key, &vl);
    if (found) *found = v != NULL;
    if (!v) return MS_OK;
    if (vl + 1 > n) return ms_fail(MS_ERR_ARG, "option %s: value too long", key);
    memcpy(buf, v, vl);
    buf[vl] = 0;
    return MS_OK;
}

ms_status ms_opt_double(const char *opts, const char *key, double *val, int *found) {
    char buf[64];
    int f = 0;
    ms_status st = ms_opt_string(opts, key, buf, sizeof buf, &f);
    if (found) *found = f;
    if (st || !f) return st;
    char *end;
    double v = strtod(buf, &end);
    if (end == buf || *end) return ms_fail(MS_ERR_ARG, "option %s: '%s' is not a number", key, buf);
    *val = v;
    return MS_OK;
}

ms_status ms_opt_int(const char *opts, const char *key, int *val, int *found) {
    char buf[64];
    int f = 0;
    ms_status st = ms_opt_string(opts, key, buf, sizeof buf, &f);
    if (found) *found = f;
    if (st || !f) return st;
    char *end;
    long v = strtol(buf, &end, 10);
    if (end == buf || *end) return ms_fail(MS_ERR_ARG, "option %s: '%s' is not an integer", key, buf);
    *val = (int)v;
    return MS_OK;
}

ms_status ms_opt_check(const char *strategy, const char *opts, const char *const *known) {
    const char *p = opts;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t kl = eq ? (size_t)(eq - p) : len;
        int ok = 0;
        for (int i = 0; known[i]; i++)
            if (strlen(known[i]) == kl && strncmp(known[i], p, kl) == 0) ok = 1;
        if (!ok || !eq) {
            char allowed[256] = "";
            for (int i = 0; known[i]; i++) {
                if (i) strncat(allowed, ", ", sizeof allowed - strlen(allowed) - 1);
                strncat(allowed, known[i], sizeof allowed - strlen(allowed) - 1);
            }
            return ms_fail(MS_ERR_ARG, "strategy %s: %s option '%.*s' (options: %s)", strategy,
                           eq ? "unknown" : "malformed", (int)len, p, allowed[0] ? allowed : "none");
        }
        p = end ? end + 1 : NULL;
    }
    return MS_OK;
}

ms_status ms_strategy_score_gathered(const ms_strategy *s, const float *x, const float *clin,
                                     int d, const int *rows, int n, int T, float *scores,
                                     ms_progress *prog) {
    MS_CHECK(s->score && x && rows && n >= 0 && T >= 1 && d >= 1);
    const int B = s->score_batch > 0 ? s->score_batch : 1;
    float *raw = ms_xmalloc(sizeof(float) * (size_t)B * T * d);
    float *cl = clin ? ms_xmalloc(sizeof(float) * (size_t)B * T * MS_NCLIN) : NULL;
    ms_pool *pools = ms_xcalloc((size_t)B, sizeof *pools);
    ms_status st = MS_OK;
    for (int c0 = 0; c0 < n && !st; c0 += B) {
        int nb = n - c0 < B ? n - c0 : B;
        for (int b = 0; b < nb; b++) {
            const int *pr = rows + (size_t)(c0 + b) * T;
            ms_gather_rows(raw + (size_t)b * T * d, x, pr, T, d);
            if (cl) ms_gather_rows(cl + (size_t)b * T * MS_NCLIN, clin, pr, T, MS_NCLIN);
            pools[b] = (ms_pool){.n = T, .d = d, .x = NULL, .raw = raw + (size_t)b * T * d,
                                 .clin = cl ? cl + (size_t)b * T * MS_NCLIN : NULL};
        }
        st = s->score(s, pools, nb, scores + (size_t)c0 * T);
        if (!st && prog) ms_progress_add(prog, nb);
        if (!st && ms_progress_cancelled(prog)) st = ms_fail(MS_ERR_CANCELLED, "cancelled");
    }
    free(pools);
    free(cl);
    free(raw);
    return st;
}
