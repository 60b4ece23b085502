/* ms_arch.c: the registry of selector architectures and the generic net (one parameter
 * allocation described by a tensor table); see arch.h. */
#include "medselect/arch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ms_arch *const registry[] = {&ms_arch_bilstm, &ms_arch_relational, &ms_arch_setattn};
enum { N_ARCH = (int)(sizeof registry / sizeof registry[0]) };

const ms_arch *ms_arch_find(const char *name) {
    for (int i = 0; name && i < N_ARCH; i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    return NULL;
}

const ms_arch *ms_arch_default(void) { return registry[0]; }

const char *ms_arch_names(void) {
    static char buf[256];
    if (!buf[0]) {
        size_t k = 0;
        for (int i = 0; i < N_ARCH; i++)
            k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%s", i ? "," : "", registry[i]->name);
    }
    return buf;
}

ms_status ms_arch_parse(const char *name, const ms_arch **out) {
    *out = ms_arch_find(name);
    if (!*out) return ms_fail(MS_ERR_ARG, "unknown selector architecture '%s' (valid: %s)", name ? name : "", ms_arch_names());
    return MS_OK;
}

ms_status ms_net_init(ms_net *net, const ms_arch *a, int D, int H) {
    MS_CHECK(net && a);
    memset(net, 0, sizeof *net);
    net->arch = a;
    net->D = D;
    net->H = H > 0 ? H : a->default_hidden;
    if (D <= 0) return ms_fail(MS_ERR_ARG, "selector %s: input width %d must be positive", a->name, D);
    ms_status st = a->layout(net);
    if (st) {
        memset(net, 0, sizeof *net);
        return st;
    }
    MS_CHECK(net->ntensors > 0 && net->ntensors <= MS_NET_MAX_TENSORS);
    size_t off = 0;
    for (int i = 0; i < net->ntensors; i++) {
        ms_net_tensor *t = &net->tensor[i];
        MS_CHECK(t->ndim == 1 || t->ndim == 2);
        t->size = 1;
        for (int k = 0; k < t->ndim; k++) t->size *= (size_t)t->shape[k];
        t->offset = off;
        off += t->size;
    }
    net->count = off;
    size_t bytes = (sizeof(float) * off + 63) / 64 * 64;
    net->params = aligned_alloc(64, bytes ? bytes : 64);
    if (!net->params) ms_abort_at(__FILE__, __LINE__, "out of memory");
    memset(net->params, 0, bytes ? bytes : 64);
    return MS_OK;
}

void ms_net_free(ms_net *net) {
    if (!net) return;
    free(net->params);
    memset(net, 0, sizeof *net);
}

void ms_net_randomize(ms_net *net, uint64_t seed) { net->arch->randomize(net, seed, ""); }
void ms_net_randomize_opts(ms_net *net, uint64_t seed, const char *opts) {
    net->arch->randomize(net, seed, opts ? opts : "");
}

ms_status ms_arch_parse_spec(const char *spec, const ms_arch **out, const char **opts) {
    const char *colon = strchr(spec, ':');
    char name[64];
    snprintf(name, sizeof name, "%.*s", colon ? (int)(colon - spec) : (int)strlen(spec), spec);
    ms_status st = ms_arch_parse(name, out);
    if (st) return st;
    *opts = colon ? colon + 1 : "";
    if (!**opts) return MS_OK;
    if (!(*out)->check_opts) return ms_fail(MS_ERR_ARG, "selector %s takes no options (got '%s')", name, *opts);
    return (*out)->check_opts(*opts);
}

int ms_net_find(const ms_net *net, const char *name) {
    for (int i = 0; i < net->ntensors; i++)
        if (strcmp(net->tensor[i].name, name) == 0) return i;
    return -1;
}
