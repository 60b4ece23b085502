/* _medselect.c: the CPython extension behind the `medselect` package (python/medselect).
 *
 * A thin layer over libmedselect's public API (the headers in include/medselect). The Python module
 * medselect/__init__.py holds the documented functions and normalises their arguments; this
 * file converts arrays, releases the GIL around every computation and turns ms_status into
 * Python exceptions:
 *   MS_ERR_IO -> OSError, MS_ERR_DATA / MS_ERR_ARG -> ValueError, MS_ERR_NOMEM -> MemoryError,
 *   MS_ERR_CANCELLED -> the pending KeyboardInterrupt (or whatever the signal handler raised),
 * each carrying the library's one-line message (ms_last_error()).
 *
 * Arrays: a C-contiguous, aligned float32 input is used in place (no copy); any other dtype
 * or layout is converted once by NumPy. Results are new NumPy arrays owned by Python.
 *
 * Ctrl-C: Python runs signal handlers only on the main thread and only with the GIL held.
 * Long calls therefore install a hook the library calls between units of work (ms_progress's
 * cancel hook in evaluate/analyze, ms_train_config.on_iteration in train, chunks of files in
 * embed): on the main thread it takes the GIL for a moment and runs PyErr_CheckSignals. A
 * pending KeyboardInterrupt stops the call at the next unit boundary; the exception is
 * re-raised once the library has returned and freed its memory. A single strategy call or a
 * single selector forward pass is one unit.
 *
 * Strategies written in Python (any object with select(x, k, seed)) become ms_strategy values
 * through ms_strategy_new; the library calls them from its worker threads, each call takes
 * the GIL, hands the pool's rows as stored (a fresh float32 array, so the object may keep it)
 * and checks the answer (k distinct indices in range) before the library sees it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "medselect/analyze.h"
#include "medselect/arch.h"
#include "medselect/checkpoint.h"
#include "medselect/embed.h"
#include "medselect/evaluate.h"
#include "medselect/train.h"

/* ---- errors ------------------------------------------------------------------------------ */

/* Sets the Python exception for status st from the library's last message; returns NULL. */
static PyObject *raise_status(ms_status st) {
    const char *msg = ms_last_error();
    if (!msg || !*msg) msg = "medselect: unknown error";
    switch (st) {
    case MS_ERR_IO: PyErr_SetString(PyExc_OSError, msg); break;
    case MS_ERR_NOMEM: PyErr_SetString(PyExc_MemoryError, msg); break;
    case MS_ERR_CANCELLED:
        if (!PyErr_Occurred()) PyErr_SetNone(PyExc_KeyboardInterrupt);
        break;
    default: PyErr_SetString(PyExc_ValueError, msg); break;
    }
    return NULL;
}

/* ---- cancellation (Ctrl-C) ---------------------------------------------------------------- */

typedef struct {
    pthread_t main;        /* the thread that holds the Python call (signals run there) */
    double last;           /* time of the last check, to keep the GIL round trips rare */
    volatile int stop;     /* a signal handler raised: stop at the next unit */
    PyObject *et, *ev, *tb; /* the exception it raised, restored after the call */
} cancel_state;

static void cancel_init(cancel_state *c) {
    memset(c, 0, sizeof *c);
    c->main = pthread_self();
}

/* Called without the GIL. Returns 1 when the call should stop. */
static int cancel_poll(cancel_state *c) {
    if (c->stop) return 1;
    if (!pthread_equal(pthread_self(), c->main)) return 0;
    double t = ms_now();
    if (t - c->last < 0.05) return 0;
    c->last = t;
    PyGILState_STATE g = PyGILState_Ensure();
    if (PyErr_CheckSignals() < 0) {
        PyErr_Fetch(&c->et, &c->ev, &c->tb);
        c->stop = 1;
    }
    PyGILState_Release(g);
    return c->stop;
}

static int cancel_hook(void *ctx) { return cancel_poll(ctx); }

/* With the GIL: re-raises a stored exception (returns 1) or does nothing (0). */
static int cancel_restore(cancel_state *c) {
    if (!c->et) return 0;
    PyErr_Restore(c->et, c->ev, c->tb);
    c->et = c->ev = c->tb = NULL;
    return 1;
}

/* ---- arrays ------------------------------------------------------------------------------- */

/* Index of the first non-finite value of x (n), or n. Blocks of 4096 are tested with an
 * exponent-bits OR that the compiler vectorises (a float is not finite when its exponent
 * bits are all ones); only a block that fails is searched value by value. At memory speed,
 * so the check costs a few percent of one pass over the data. */
static size_t first_nonfinite(const float *x, size_t n) {
    for (size_t b = 0; b < n; b += 4096) {
        size_t e = n - b < 4096 ? n - b : 4096;
        uint32_t any = 0;
        for (size_t i = 0; i < e; i++) {
            uint32_t u;
            memcpy(&u, x + b + i, sizeof u);
            any |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
        }
        if (any)
            for (size_t i = 0; i < e; i++)
                if (!isfinite(x[b + i])) return b + i;
    }
    return n;
}

/* x as a C-contiguous float32 (n, d) array (a new reference; the input itself when it already
 * is one). Checks the rank, a non-empty shape and, when finite is set, that every value is
 * finite. `what` names the argument in messages. NULL with ValueError on failure. */
static PyArrayObject *as_matrix(PyObject *obj, const char *what, int cols, int finite) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_OTF(obj, NPY_FLOAT32, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    if (!a) return NULL;
    if (PyArray_NDIM(a) != 2) {
        PyErr_Format(PyExc_ValueError, "%s must be a 2-d array (n, d), got %d dimension(s)", what, PyArray_NDIM(a));
        goto fail;
    }
    npy_intp n = PyArray_DIM(a, 0), d = PyArray_DIM(a, 1);
    if (n < 1 || d < 1) {
        PyErr_Format(PyExc_ValueError, "%s is empty (shape (%zd, %zd))", what, (Py_ssize_t)n, (Py_ssize_t)d);
        goto fail;
    }
    if (n > INT32_MAX || d > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s is too large (shape (%zd, %zd))", what, (Py_ssize_t)n, (Py_ssize_t)d);
        goto fail;
    }
    if (cols > 0 && d != cols) {
        PyErr_Format(PyExc_ValueError, "%s must have %d columns, got %zd", what, cols, (Py_ssize_t)d);
        goto fail;
    }
    if (finite) {
        const float *x = PyArray_DATA(a);
        size_t total = (size_t)n * (size_t)d, bad = total;
        Py_BEGIN_ALLOW_THREADS
        bad = first_nonfinite(x, total);
        Py_END_ALLOW_THREADS
        if (bad < total) {
            PyErr_Format(PyExc_ValueError, "%s: row %zu, column %zu is not finite (%s)", what, bad / (size_t)d,
                         bad % (size_t)d, isnan(x[bad]) ? "nan" : "inf");
            goto fail;
        }
    }
    return a;
fail:
    Py_DECREF(a);
    return NULL;
}

static int check_k(long long k, int n) {
    if (k < 1) {
        PyErr_Format(PyExc_ValueError, "k must be at least 1, got %lld", k);
        return -1;
    }
    if (k > n) {
        PyErr_Format(PyExc_ValueError, "the pool has %d items, fewer than k = %lld", n, k);
        return -1;
    }
    return 0;
}

/* int indices (k) -> a new int64 array */
static PyObject *index_array(const int *idx, int k) {
    npy_intp dim = k;
    PyArrayObject *r = (PyArrayObject *)PyArray_SimpleNew(1, &dim, NPY_INT64);
    if (!r) return NULL;
    int64_t *o = PyArray_DATA(r);
    for (int i = 0; i < k; i++) o[i] = idx[i];
    return (PyObject *)r;
}

/* ---- select with a built-in strategy -------------------------------------------------------- */

static PyObject *py_select(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo;
    long long k;
    const char *spec;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "OLsK", &xo, &k, &spec, &seed)) return NULL;
    ms_strategy *strat;
    if (ms_strategy_create(&strat, spec)) return raise_status(MS_ERR_ARG);
    PyArrayObject *x = as_matrix(xo, "x", 0, 1);
    if (!x) {
        ms_strategy_free(strat);
        return NULL;
    }
    int n = (int)PyArray_DIM(x, 0), d = (int)PyArray_DIM(x, 1);
    if (check_k(k, n)) {
        Py_DECREF(x);
        ms_strategy_free(strat);
        return NULL;
    }
    int *pick = malloc(sizeof(int) * (size_t)k);
    float *unit = malloc(sizeof(float) * (size_t)n * (size_t)d);
    ms_status st = MS_OK;
    if (!pick || !unit) {
        free(pick);
        free(unit);
        Py_DECREF(x);
        ms_strategy_free(strat);
        return PyErr_NoMemory();
    }
    const float *raw = PyArray_DATA(x);
    Py_BEGIN_ALLOW_THREADS
    /* what `medselect select --strategy` does: unit rows for the strategy, raw rows beside */
    ms_rows_unit(unit, raw, (size_t)n, (size_t)d);
    ms_pool pool = {.n = n, .d = d, .x = unit, .raw = raw, .clin = NULL};
    ms_arena ws;
    ms_arena_init(&ws);
    st = strat->select(strat, &pool, (int)k, seed, pick, &ws);
    ms_arena_free(&ws);
    Py_END_ALLOW_THREADS
    PyObject *r = st ? raise_status(st) : index_array(pick, (int)k);
    free(pick);
    free(unit);
    Py_DECREF(x);
    ms_strategy_free(strat);
    return r;
}

static PyObject *py_strategy_names(PyObject *self, PyObject *args) {
    (void)self, (void)args;
    return PyUnicode_FromString(ms_strategy_names());
}

static PyObject *py_set_threads(PyObject *self, PyObject *args) {
    (void)self;
    int n;
    if (!PyArg_ParseTuple(args, "i", &n)) return NULL;
    ms_set_threads(n);
    Py_RETURN_NONE;
}

static PyObject *py_set_progress(PyObject *self, PyObject *args) {
    (void)self;
    int mode;
    if (!PyArg_ParseTuple(args, "i", &mode)) return NULL;
    ms_set_progress(mode);
    Py_RETURN_NONE;
}

static PyObject *py_get_threads(PyObject *self, PyObject *args) {
    (void)self, (void)args;
    return PyLong_FromLong(ms_get_threads());
}

/* ---- the trained selector ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    ms_net net;             /* the network as loaded, any architecture (strategies get copies) */
    ms_strategy *greedy;    /* selector strategy, greedy top-K */
    ms_strategy *sampled;   /* the same weights, drawing from the policy; made on first use */
    int clinical, K, has_seed;
    unsigned long long seed;
    char sampler[32];
    PyObject *path;
} SelectorObject;

static PyTypeObject SelectorType;

static void selector_dealloc(SelectorObject *self) {
    ms_strategy_free(self->greedy);
    ms_strategy_free(self->sampled);
    if (self->net.params) ms_net_free(&self->net);
    Py_XDECREF(self->path);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A strategy over a copy of the selector's weights (the strategy owns its copy), decoding
 * its logits with `decode` (policy.h). */
static ms_strategy *selector_strategy(const SelectorObject *so, ms_decode decode) {
    ms_selector sel;
    memset(&sel, 0, sizeof sel);
    ms_status st = ms_net_init(&sel.net, so->net.arch, so->net.D, so->net.H);
    MS_CHECK(st == MS_OK && sel.net.count == so->net.count); /* the sizes were accepted on load */
    memcpy(sel.net.params, so->net.params, sizeof(float) * so->net.count);
    sel.clinical = so->clinical;
    sel.decode = decode;
    return ms_selector_strategy(&sel);
}

static PyObject *selector_load(PyObject *cls, PyObject *args) {
    PyObject *path_obj;
    if (!PyArg_ParseTuple(args, "O&", PyUnicode_FSConverter, &path_obj)) return NULL;
    const char *path = PyBytes_AS_STRING(path_obj);
    SelectorObject *self = (SelectorObject *)((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, 0);
    if (!self) {
        Py_DECREF(path_obj);
        return NULL;
    }
    ms_selector_meta meta;
    ms_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ms_net_load(path, &self->net, &meta);
    Py_END_ALLOW_THREADS
    if (st) {
        Py_DECREF(path_obj);
        Py_DECREF(self);
        return raise_status(st);
    }
    self->clinical = meta.clinical == 1;
    self->K = meta.K;
    self->has_seed = meta.has_seed;
    self->seed = meta.seed;
    snprintf(self->sampler, sizeof self->sampler, "%s", meta.sampler);
    ms_selector_meta_free(&meta);
    self->greedy = selector_strategy(self, MS_DECODE_GREEDY);
    self->path = PyUnicode_DecodeFSDefault(path);
    Py_DECREF(path_obj);
    if (!self->path) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* Checks x (n, d) against the selector's input and builds the pool's clinical block
 * (n, 3) from clin_obj (None unless the selector is clinical; missing values (NaN) filled
 * with the column means when impute is set). *clin is malloc'd or NULL. 0 or -1. */
static int selector_inputs(SelectorObject *self, PyArrayObject *x, PyObject *clin_obj, int impute,
                           float **clin) {
    int n = (int)PyArray_DIM(x, 0), d = (int)PyArray_DIM(x, 1);
    *clin = NULL;
    if (d + (self->clinical ? MS_NCLIN : 0) != self->net.D) {
        PyErr_Format(PyExc_ValueError, "the selector takes %d-dimensional input but x has %d columns%s",
                     self->net.D, d, self->clinical ? " (+3 clinical)" : "");
        return -1;
    }
    if (!self->clinical) {
        if (clin_obj != Py_None) {
            PyErr_SetString(PyExc_ValueError, "this selector does not use clinical features (clinical must be None)");
            return -1;
        }
        return 0;
    }
    if (clin_obj == Py_None) {
        PyErr_SetString(PyExc_ValueError, "this selector uses clinical features: pass clinical=(n, 3) array of standardized age, sex (female 1), frontal (1)");
        return -1;
    }
    PyArrayObject *c = as_matrix(clin_obj, "clinical", MS_NCLIN, 0);
    if (!c) return -1;
    if (PyArray_DIM(c, 0) != n) {
        PyErr_Format(PyExc_ValueError, "clinical has %zd rows but x has %d", (Py_ssize_t)PyArray_DIM(c, 0), n);
        Py_DECREF(c);
        return -1;
    }
    const float *src = PyArray_DATA(c);
    float fill[MS_NCLIN];
    ms_clin_means(src, n, fill);
    float *out = malloc(sizeof(float) * (size_t)n * MS_NCLIN);
    if (!out) {
        Py_DECREF(c);
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < (size_t)n * MS_NCLIN; i++) {
        float v = src[i];
        if (isinf(v) || (isnan(v) && !impute)) {
            PyErr_Format(PyExc_ValueError, "clinical: row %zu, column %zu is %s (use impute_clinical=True to fill missing values)",
                         i / MS_NCLIN, i % MS_NCLIN, isnan(v) ? "missing (nan)" : "inf");
            free(out);
            Py_DECREF(c);
            return -1;
        }
        out[i] = isnan(v) ? fill[i % MS_NCLIN] : v;
    }
    Py_DECREF(c);
    *clin = out;
    return 0;
}

/* scores(x, clinical, impute) -> (n,) float32 logits, as `medselect select --scores`. */
static PyObject *selector_scores(SelectorObject *self, PyObject *args) {
    PyObject *xo, *co;
    int impute;
    if (!PyArg_ParseTuple(args, "OOp", &xo, &co, &impute)) return NULL;
    PyArrayObject *x = as_matrix(xo, "x", 0, 1);
    if (!x) return NULL;
    float *clin;
    if (selector_inputs(self, x, co, impute, &clin)) {
        Py_DECREF(x);
        return NULL;
    }
    int n = (int)PyArray_DIM(x, 0), d = (int)PyArray_DIM(x, 1);
    npy_intp dim = n;
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(1, &dim, NPY_FLOAT32);
    if (!out) {
        free(clin);
        Py_DECREF(x);
        return NULL;
    }
    ms_status st;
    ms_pool pool = {.n = n, .d = d, .x = NULL, .raw = PyArray_DATA(x), .clin = clin};
    float *logits = PyArray_DATA(out);
    ms_strategy *s = self->greedy;
    Py_BEGIN_ALLOW_THREADS
    /* one greedy pick and the first step's logit of every item: for a static architecture
     * (the BiLSTM) its scores, as `select --scores` writes them */
    int pick;
    ms_arena ws;
    ms_arena_init(&ws);
    st = ms_selector_run(s, &pool, 1, 0, &pick, logits, &ws);
    ms_arena_free(&ws);
    Py_END_ALLOW_THREADS
    free(clin);
    Py_DECREF(x);
    if (st) {
        Py_DECREF(out);
        return raise_status(st);
    }
    return (PyObject *)out;
}

/* select(x, k, clinical, impute, sample, seed) -> (k,) int64: greedy or a draw, as
 * `medselect select --model` (ms_selector_run). */
static PyObject *selector_select(SelectorObject *self, PyObject *args) {
    PyObject *xo, *co;
    long long k;
    int impute, sample;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "OLOppK", &xo, &k, &co, &impute, &sample, &seed)) return NULL;
    PyArrayObject *x = as_matrix(xo, "x", 0, 1);
    if (!x) return NULL;
    int n = (int)PyArray_DIM(x, 0), d = (int)PyArray_DIM(x, 1);
    float *clin;
    if (check_k(k, n) || selector_inputs(self, x, co, impute, &clin)) {
        Py_DECREF(x);
        return NULL;
    }
    if (sample && !self->sampled) self->sampled = selector_strategy(self, MS_DECODE_SAMPLE);
    ms_strategy *s = sample ? self->sampled : self->greedy;
    float *logits = malloc(sizeof(float) * (size_t)n);
    int *pick = malloc(sizeof(int) * (size_t)k);
    if (!logits || !pick) {
        free(logits), free(pick), free(clin);
        Py_DECREF(x);
        return PyErr_NoMemory();
    }
    ms_status st;
    ms_pool pool = {.n = n, .d = d, .x = NULL, .raw = PyArray_DATA(x), .clin = clin};
    Py_BEGIN_ALLOW_THREADS
    ms_arena ws;
    ms_arena_init(&ws);
    st = ms_selector_run(s, &pool, (int)k, seed, pick, logits, &ws);
    ms_arena_free(&ws);
    Py_END_ALLOW_THREADS
    PyObject *r = st ? raise_status(st) : index_array(pick, (int)k);
    free(logits), free(pick), free(clin);
    Py_DECREF(x);
    return r;
}

static PyObject *selector_get(SelectorObject *self, void *which) {
    switch ((intptr_t)which) {
    case 0: return PyLong_FromLong(self->net.D);
    case 1: return PyLong_FromLong(self->net.H);
    case 2: return PyBool_FromLong(self->clinical);
    case 3: if (self->K > 0) return PyLong_FromLong(self->K); Py_RETURN_NONE;
    case 4: if (self->sampler[0]) return PyUnicode_FromString(self->sampler); Py_RETURN_NONE;
    case 5: if (self->has_seed) return PyLong_FromUnsignedLongLong(self->seed); Py_RETURN_NONE;
    case 7: return PyUnicode_FromString(self->net.arch->name);
    default: Py_INCREF(self->path); return self->path;
    }
}

static PyGetSetDef selector_getset[] = {
    {"input_dim", (getter)selector_get, NULL, "input size D of the network (embedding size, + 3 when clinical)", (void *)0},
    {"hidden", (getter)selector_get, NULL, "hidden size H of the BiLSTM", (void *)1},
    {"clinical", (getter)selector_get, NULL, "True when the selector also reads the 3 clinical features", (void *)2},
    {"k", (getter)selector_get, NULL, "the label budget it was trained for (None when unknown)", (void *)3},
    {"sampler", (getter)selector_get, NULL, "the training sampler (None when unknown)", (void *)4},
    {"seed", (getter)selector_get, NULL, "the training seed (None when unknown)", (void *)5},
    {"path", (getter)selector_get, NULL, "the checkpoint file it was loaded from", (void *)6},
    {"arch", (getter)selector_get, NULL, "the selector architecture (e.g. 'bilstm')", (void *)7},
    {NULL, NULL, NULL, NULL, NULL}};

static PyMethodDef selector_methods[] = {
    {"_load", (PyCFunction)selector_load, METH_VARARGS | METH_CLASS, "_load(path): read a checkpoint"},
    {"_scores", (PyCFunction)selector_scores, METH_VARARGS, "_scores(x, clinical, impute)"},
    {"_select", (PyCFunction)selector_select, METH_VARARGS, "_select(x, k, clinical, impute, sample, seed)"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject SelectorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "medselect._medselect._Selector",
    .tp_basicsize = sizeof(SelectorObject),
    .tp_dealloc = (destructor)selector_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A trained selector (the C object behind medselect.Selector).",
    .tp_methods = selector_methods,
    .tp_getset = selector_getset,
};

/* ---- strategies written in Python ----------------------------------------------------------- */

typedef struct {
    PyObject *obj;           /* has select(x, k, seed) */
    PyObject *et, *ev, *tb;  /* the first exception it raised (re-raised after the call) */
} pystrat;

static void pystrat_free(void *p) {
    pystrat *c = p;
    PyGILState_STATE g = PyGILState_Ensure();
    Py_XDECREF(c->obj);
    Py_XDECREF(c->et);
    Py_XDECREF(c->ev);
    Py_XDECREF(c->tb);
    PyGILState_Release(g);
    free(c);
}

/* Validates obj.select's answer and copies it to out. With the GIL. 0 or -1 (exception set). */
static int pystrat_answer(PyObject *r, int n, int k, int *out, const char *label) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_OTF(r, NPY_INT64, NPY_ARRAY_IN_ARRAY);
    if (!a) return -1;
    int rc = 0;
    if (PyArray_NDIM(a) != 1 || PyArray_DIM(a, 0) != k) {
        PyErr_Format(PyExc_ValueError, "strategy %s: select() must return %d indices, got an array of %d dimension(s) and %zd values",
                     label, k, PyArray_NDIM(a), (Py_ssize_t)PyArray_SIZE(a));
        rc = -1;
    }
    unsigned char *seen = rc ? NULL : calloc((size_t)n, 1);
    const int64_t *v = PyArray_DATA(a);
    for (int i = 0; !rc && i < k; i++) {
        if (v[i] < 0 || v[i] >= n) {
            PyErr_Format(PyExc_ValueError, "strategy %s: select() returned index %lld outside the pool [0, %d)", label,
                         (long long)v[i], n);
            rc = -1;
        } else if (seen[v[i]]++) {
            PyErr_Format(PyExc_ValueError, "strategy %s: select() returned index %lld twice", label, (long long)v[i]);
            rc = -1;
        } else {
            out[i] = (int)v[i];
        }
    }
    free(seen);
    Py_DECREF(a);
    return rc;
}

static ms_status pystrat_select(const ms_strategy *s, const ms_pool *pool, int k, uint64_t seed, int *out,
                                ms_arena *ws) {
    (void)ws;
    pystrat *c = s->ctx;
    ms_status st = MS_OK;
    PyGILState_STATE g = PyGILState_Ensure();
    if (c->et) {
        st = ms_fail(MS_ERR_ARG, "strategy %s raised an exception", s->label);
        goto done;
    }
    npy_intp dims[2] = {pool->n, pool->d};
    PyObject *x = PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    PyObject *r = NULL;
    if (x) {
        memcpy(PyArray_DATA((PyArrayObject *)x), pool->raw, sizeof(float) * (size_t)pool->n * (size_t)pool->d);
        r = PyObject_CallMethod(c->obj, "select", "OiK", x, k, (unsigned long long)seed);
        Py_DECREF(x);
    }
    if (!r || pystrat_answer(r, pool->n, k, out, s->label)) {
        PyErr_Fetch(&c->et, &c->ev, &c->tb);
        st = ms_fail(MS_ERR_ARG, "strategy %s raised an exception", s->label);
    }
    Py_XDECREF(r);
done:
    PyGILState_Release(g);
    return st;
}

/* Re-raises the first exception of any Python strategy in strats (returns 1) or 0. */
static int pystrat_restore(ms_strategy *const *strats, int n) {
    for (int i = 0; i < n; i++)
        if (strats[i] && strats[i]->select == pystrat_select) {
            pystrat *c = strats[i]->ctx;
            if (c->et) {
                PyErr_Restore(c->et, c->ev, c->tb);
                c->et = c->ev = c->tb = NULL;
                return 1;
            }
        }
    return 0;
}

/* A strategy from a spec string, a Selector, or an object with select(). s: the split (for
 * checking a selector's input). NULL with an exception set. */
static ms_strategy *make_strategy(PyObject *item, const ms_split *s, ms_decode decode) {
    if (PyUnicode_Check(item)) {
        ms_strategy *st;
        if (ms_strategy_create(&st, PyUnicode_AsUTF8(item))) {
            raise_status(MS_ERR_ARG);
            return NULL;
        }
        return st;
    }
    if (PyObject_TypeCheck(item, &SelectorType)) {
        SelectorObject *so = (SelectorObject *)item;
        if (so->net.D != s->d + (so->clinical ? MS_NCLIN : 0)) {
            PyErr_Format(PyExc_ValueError, "%S: the selector takes %d-dimensional input but %s has %d-dimensional embeddings%s",
                         so->path, so->net.D, s->pos_name, s->d, so->clinical ? " (+3 clinical)" : "");
            return NULL;
        }
        if (so->clinical) {
            if (!s->clin || s->clin_cols != 7) {
                PyErr_Format(PyExc_ValueError, "%S: the selector uses clinical features but %s lacks Age, Sex or Frontal/Lateral",
                             so->path, s->pos_name);
                return NULL;
            }
            static const char *const what[MS_NCLIN] = {"Age", "Sex", "Frontal/Lateral"};
            for (int r = 0; r < s->n; r++)
                for (int j = 0; j < MS_NCLIN; j++)
                    if (isnan(s->clin[(size_t)r * MS_NCLIN + j])) {
                        PyErr_Format(PyExc_ValueError, "%s: line %d: missing %s, which the selector's clinical input needs",
                                     r < s->n_pos ? s->pos_name : s->norm_name, (r < s->n_pos ? r : r - s->n_pos) + 2, what[j]);
                        return NULL;
                    }
        }
        return selector_strategy(so, decode);
    }
    PyObject *m = PyObject_GetAttrString(item, "select");
    if (!m || !PyCallable_Check(m)) {
        Py_XDECREF(m);
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "a strategy is a name (e.g. 'kmedoids'), a medselect.Selector or an object with a select(x, k, seed) method, not %R", item);
        return NULL;
    }
    Py_DECREF(m);
    PyObject *name = PyObject_GetAttrString(item, "name");
    if (!name || !PyUnicode_Check(name)) {
        Py_XDECREF(name);
        PyErr_Clear();
        name = PyUnicode_FromString(Py_TYPE(item)->tp_name);
        if (!name) return NULL;
    }
    pystrat *c = calloc(1, sizeof *c);
    if (!c) {
        Py_DECREF(name);
        PyErr_NoMemory();
        return NULL;
    }
    Py_INCREF(item);
    c->obj = item;
    ms_strategy *st = ms_strategy_new(PyUnicode_AsUTF8(name), NULL, pystrat_select, c, pystrat_free);
    Py_DECREF(name);
    return st;
}

/* ---- splits, configurations ---------------------------------------------------------------- */

static const char *opt_str(PyObject *o) { return o == Py_None ? NULL : PyUnicode_AsUTF8(o); }

/* data = (pos_csv, pos_emb|None, norm_csv, norm_emb|None, uncertain) -> s (GIL released while
 * reading). 0 or -1. */
static int load_split(PyObject *data, ms_split *s) {
    PyObject *pc, *pe, *nc, *ne;
    const char *unc;
    memset(s, 0, sizeof *s);
    if (!PyArg_ParseTuple(data, "UOUOs", &pc, &pe, &nc, &ne, &unc)) return -1;
    ms_uncertain u;
    if (ms_uncertain_parse(unc, &u)) return raise_status(MS_ERR_ARG), -1;
    const char *pcs = PyUnicode_AsUTF8(pc), *ncs = PyUnicode_AsUTF8(nc);
    const char *pes = opt_str(pe), *nes = opt_str(ne);
    if (!pcs || !ncs || PyErr_Occurred()) return -1;
    ms_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ms_split_load(s, pcs, pes, ncs, nes, u);
    Py_END_ALLOW_THREADS
    if (st) return raise_status(st), -1;
    return 0;
}

/* Condition names (a list of str) -> indices into s (malloc'd). */
static int resolve_names(PyObject *names, const ms_split *s, int **idx, int *n) {
    Py_ssize_t m = PyList_Size(names);
    if (m < 1) {
        PyErr_SetString(PyExc_ValueError, "an empty list of conditions");
        return -1;
    }
    char **v = calloc((size_t)m, sizeof *v);
    for (Py_ssize_t i = 0; i < m; i++) {
        const char *c = PyUnicode_AsUTF8(PyList_GET_ITEM(names, i));
        if (!c) {
            free(v);
            return -1;
        }
        v[i] = (char *)c;
    }
    *idx = malloc(sizeof(int) * (size_t)m);
    ms_status st = ms_split_resolve(s, v, (int)m, *idx);
    free(v);
    if (st) {
        free(*idx);
        *idx = NULL;
        return raise_status(st), -1;
    }
    *n = (int)m;
    return 0;
}

static void config_free(ms_eval_config *cfg) {
    for (int g = 0; g < cfg->n_groups; g++) free(cfg->group[g].cond);
    cfg->n_groups = 0;
}

/* groups: [(name, [conditions])]; shape: (pool, pos_frac, query, query_pos_frac); ks: [int] */
static int make_config(ms_eval_config *cfg, const ms_split *s, PyObject *groups, PyObject *shape, PyObject *ks,
                       int tasks, unsigned long long seed, const char *pred) {
    memset(cfg, 0, sizeof *cfg);
    if (!PyArg_ParseTuple(shape, "idid", &cfg->shape.pool, &cfg->shape.pos_frac, &cfg->shape.query,
                          &cfg->shape.query_pos_frac))
        return -1;
    if (ms_pred_kind_parse(pred, &cfg->pred)) return raise_status(MS_ERR_ARG), -1;
    Py_ssize_t nk = PyList_Size(ks), ng = PyList_Size(groups);
    if (nk < 1 || nk > MS_MAX_K) {
        PyErr_Format(PyExc_ValueError, "k: give 1 to %d budgets", MS_MAX_K);
        return -1;
    }
    if (ng < 1 || ng > MS_MAX_GROUPS) {
        PyErr_Format(PyExc_ValueError, "give 1 to %d condition groups", MS_MAX_GROUPS);
        return -1;
    }
    cfg->n_k = (int)nk;
    for (Py_ssize_t i = 0; i < nk; i++) {
        long v = PyLong_AsLong(PyList_GET_ITEM(ks, i));
        if (v == -1 && PyErr_Occurred()) return -1;
        if (v < 1 || v > cfg->shape.pool) {
            PyErr_Format(PyExc_ValueError, "k = %ld must be between 1 and the pool size (%d)", v, cfg->shape.pool);
            return -1;
        }
        cfg->k[i] = (int)v;
    }
    cfg->tasks = tasks;
    cfg->seed = seed;
    for (Py_ssize_t g = 0; g < ng; g++) {
        const char *name;
        PyObject *names;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(groups, g), "sO!", &name, &PyList_Type, &names)) goto fail;
        ms_eval_group *grp = &cfg->group[cfg->n_groups];
        snprintf(grp->name, sizeof grp->name, "%s", name);
        if (resolve_names(names, s, &grp->cond, &grp->n_cond)) goto fail;
        cfg->n_groups++;
        ms_status st = ms_task_check(s, &cfg->shape, grp->cond, grp->n_cond);
        if (st) {
            raise_status(st);
            goto fail;
        }
    }
    return 0;
fail:
    config_free(cfg);
    return -1;
}

static void strats_free(ms_strategy **strats, int n) {
    for (int i = 0; i < n; i++) ms_strategy_free(strats[i]);
    free(strats);
}

/* Runs ms_evaluate with the GIL released and Ctrl-C polled between tasks. 0 or -1. */
static int run_evaluate(ms_eval_result *res, const ms_split *s, const ms_eval_config *cfg, ms_strategy **strats,
                        int n, const char *label) {
    cancel_state cs;
    cancel_init(&cs);
    ms_status st;
    Py_BEGIN_ALLOW_THREADS
    ms_progress prog;
    ms_progress_begin(&prog, label, (long)cfg->n_groups * cfg->tasks);
    prog.cancel = cancel_hook;
    prog.cancel_ctx = &cs;
    st = ms_evaluate(res, s, cfg, strats, n, &prog);
    ms_progress_end(&prog);
    Py_END_ALLOW_THREADS
    if (!st) return 0;
    if (pystrat_restore(strats, n)) {
        Py_XDECREF(cs.et), Py_XDECREF(cs.ev), Py_XDECREF(cs.tb);
        return -1;
    }
    if (cancel_restore(&cs)) return -1;
    raise_status(st);
    return -1;
}

static PyObject *json_result(char *text) {
    PyObject *r = PyUnicode_FromString(text);
    free(text);
    return r;
}

/* The validation run of versus="best" and b="best" (evaluate.h: the choice is the library's,
 * as in the CLI): loads val_data (a data tuple, as load_split), runs fn with the GIL released
 * and Ctrl-C polled between tasks, frees the split. 0 or -1 with an exception. */
typedef ms_status (*val_fn)(void *ctx, const ms_split *val, ms_progress *prog);
static int run_validation(PyObject *val_data, long total, val_fn fn, void *ctx) {
    ms_split val;
    if (load_split(val_data, &val)) return -1;
    cancel_state cs;
    cancel_init(&cs);
    ms_status st;
    Py_BEGIN_ALLOW_THREADS
    ms_progress prog;
    ms_progress_begin(&prog, "validation", total);
    prog.cancel = cancel_hook;
    prog.cancel_ctx = &cs;
    st = fn(ctx, &val, &prog);
    ms_progress_end(&prog);
    Py_END_ALLOW_THREADS
    ms_split_free(&val);
    if (!st) return 0;
    if (cancel_restore(&cs)) return -1;
    raise_status(st);
    return -1;
}

typedef struct {
    ms_eval_config *cfg;
    const ms_split *test;
    int val_tasks, n_cand;
    ms_strategy **strats;
    const int *cand;
} versus_ctx;

static ms_status versus_fn(void *ctx, const ms_split *val, ms_progress *prog) {
    versus_ctx *c = ctx;
    return ms_eval_versus_best(c->cfg, c->test, val, c->val_tasks, c->strats, c->cand, c->n_cand, prog);
}

/* Every task's AUROC of res as NumPy arrays, for the caller's own tests: (auroc (groups, K,
 * strategies, tasks) float64, task_cond (groups, tasks) int64 condition indices, the split's
 * condition names, the strategies' labels). NULL with an exception. */
static PyObject *per_task_arrays(const ms_eval_result *res, const ms_split *s, ms_strategy *const *strats) {
    npy_intp dims[4] = {res->n_groups, res->n_k, res->n_strat, res->tasks};
    PyObject *a = PyArray_SimpleNew(4, dims, NPY_FLOAT64);
    npy_intp cdims[2] = {res->n_groups, res->tasks};
    PyObject *tc = PyArray_SimpleNew(2, cdims, NPY_INT64);
    PyObject *names = PyList_New(s->n_cond), *labels = PyList_New(res->n_strat);
    if (!a || !tc || !names || !labels) goto fail;
    memcpy(PyArray_DATA((PyArrayObject *)a), res->auroc,
           sizeof(double) * (size_t)res->n_groups * (size_t)res->n_k * (size_t)res->n_strat * (size_t)res->tasks);
    npy_int64 *t = PyArray_DATA((PyArrayObject *)tc);
    for (size_t i = 0; i < (size_t)res->n_groups * (size_t)res->tasks; i++) t[i] = res->task_cond[i];
    for (int c = 0; c < s->n_cond; c++) {
        PyObject *u = PyUnicode_FromString(s->cond[c]);
        if (!u) goto fail;
        PyList_SET_ITEM(names, c, u);
    }
    for (int i = 0; i < res->n_strat; i++) {
        PyObject *u = PyUnicode_FromString(strats[i]->label);
        if (!u) goto fail;
        PyList_SET_ITEM(labels, i, u);
    }
    return Py_BuildValue("(NNNN)", a, tc, names, labels);
fail:
    Py_XDECREF(a), Py_XDECREF(tc), Py_XDECREF(names), Py_XDECREF(labels);
    return NULL;
}

/* _evaluate(data, groups, shape, ks, tasks, seed, predictor, strategies, bootstrap, decode,
 *           per_k, versus|None, val_data|None, val_tasks, per_task_path|None)
 *   -> (JSON, (auroc, task_cond, condition names, strategy labels)) (per_task_arrays)
 * versus "best" (any case) is chosen on val_data among the strategies given by name. */
static PyObject *py_evaluate(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *data, *groups, *shape, *ks, *slist, *versus;
    int tasks, boot, per_k;
    unsigned long long seed;
    const char *pred, *decode_name;
    PyObject *val_data, *per_task;
    int val_tasks;
    if (!PyArg_ParseTuple(args, "OO!OO!iKsO!ispOOiO", &data, &PyList_Type, &groups, &shape, &PyList_Type, &ks,
                          &tasks, &seed, &pred, &PyList_Type, &slist, &boot, &decode_name, &per_k, &versus,
                          &val_data, &val_tasks, &per_task))
        return NULL;
    const char *per_task_path = per_task == Py_None ? NULL : PyUnicode_AsUTF8(per_task);
    if (PyErr_Occurred()) return NULL;
    ms_decode decode;
    if (ms_decode_parse(decode_name, &decode)) return raise_status(MS_ERR_ARG);
    ms_split s;
    if (load_split(data, &s)) return NULL;
    ms_eval_config cfg;
    PyObject *out = NULL;
    if (make_config(&cfg, &s, groups, shape, ks, tasks, seed, pred)) {
        ms_split_free(&s);
        return NULL;
    }
    cfg.decode = decode;
    cfg.per_k = per_k;
    Py_ssize_t n = PyList_Size(slist);
    ms_strategy **strats = calloc((size_t)n, sizeof *strats);
    int ok = 1;
    for (Py_ssize_t i = 0; i < n && ok; i++)
        ok = (strats[i] = make_strategy(PyList_GET_ITEM(slist, i), &s, decode)) != NULL;
    const char *v = ok && versus != Py_None ? PyUnicode_AsUTF8(versus) : NULL;
    if (ok && v && !strcasecmp(v, "best")) {
        /* as --versus best: per group and K the baseline (a strategy given by name, random
         * included; never a Selector or a Python object) with the highest validation mean */
        if (val_data == Py_None) {
            PyErr_SetString(PyExc_ValueError, "versus='best' is chosen on a validation split: give "
                                              "val=(val_pos, val_norm)");
            ok = 0;
        } else {
            int *cand = malloc(sizeof(int) * (size_t)n), nc = 0;
            for (Py_ssize_t i = 0; i < n; i++)
                if (PyUnicode_Check(PyList_GET_ITEM(slist, i))) cand[nc++] = (int)i;
            versus_ctx vc = {&cfg, &s, val_tasks, nc, strats, cand};
            ok = !run_validation(val_data, (long)cfg.n_groups * (val_tasks > 0 ? val_tasks : cfg.tasks), versus_fn,
                                 &vc);
            free(cand);
        }
    } else if (ok && versus != Py_None) {
        /* as --versus NAME: a label of the list, else a strategy name (case-insensitive) */
        int which = -1;
        for (Py_ssize_t i = 0; v && i < n && which < 0; i++)
            if (!strcasecmp(strats[i]->label, v)) which = (int)i;
        for (Py_ssize_t i = 0; v && i < n && which < 0; i++)
            if (!strcasecmp(strats[i]->name, v)) which = (int)i;
        if (!v) ok = 0;
        else if (which < 0) {
            PyErr_Format(PyExc_ValueError, "versus: '%s' is not one of the evaluated strategies (or 'best')", v);
            ok = 0;
        } else {
            cfg.versus_on = 1;
            for (int g = 0; g < cfg.n_groups; g++)
                for (int ki = 0; ki < cfg.n_k; ki++) cfg.versus[g][ki] = which;
        }
    }
    ms_eval_result res;
    if (ok && !run_evaluate(&res, &s, &cfg, strats, (int)n, "evaluate")) {
        ms_eval_row *rows;
        int n_rows;
        char *text;
        ms_status st = MS_OK;
        Py_BEGIN_ALLOW_THREADS
        ms_eval_summarize(&res, &cfg, boot, &rows, &n_rows);
        text = ms_eval_json(&res, &cfg, &s, strats, rows, n_rows);
        if (per_task_path) st = ms_eval_write_per_task(per_task_path, &res, &cfg, &s, strats);
        Py_END_ALLOW_THREADS
        PyObject *js = json_result(text), *arrays = st || !js ? NULL : per_task_arrays(&res, &s, strats);
        if (st) raise_status(st);
        else if (arrays) out = Py_BuildValue("(NN)", js, arrays), js = NULL;
        Py_XDECREF(js);
        free(rows);
        ms_eval_result_free(&res);
    }
    strats_free(strats, (int)n);
    config_free(&cfg);
    ms_split_free(&s);
    return out;
}

/* Index of the strategy labelled like st among strats[0..n), or -1. */
static int find_label(ms_strategy **strats, int n, const char *label) {
    for (int i = 0; i < n; i++)
        if (!strcmp(strats[i]->label, label)) return i;
    return -1;
}

/* Adds item unless a strategy with its label is there (spec strings only); returns its index
 * or -1 with an exception. */
static int add_strategy(ms_strategy **strats, int *n, PyObject *item, const ms_split *s, ms_decode decode) {
    ms_strategy *st = make_strategy(item, s, decode);
    if (!st) return -1;
    int i = PyUnicode_Check(item) ? find_label(strats, *n, st->label) : -1;
    if (i >= 0) {
        ms_strategy_free(st);
        return i;
    }
    strats[*n] = st;
    return (*n)++;
}

typedef struct {
    int *b;
    char *note;
    size_t n;
    const ms_split *test;
    const ms_eval_config *cfg;
    int val_tasks, n_cand;
    ms_strategy *const *cand;
} choose_b_ctx;

static ms_status choose_b_fn(void *ctx, const ms_split *val, ms_progress *prog) {
    choose_b_ctx *c = ctx;
    return ms_analyze_choose_b(c->b, c->note, c->n, val, c->test, c->cfg, c->val_tasks, c->cand, c->n_cand, prog);
}

/* _analyze(data, groups, shape, ks, tasks, seed, predictor, a, b, perms, perm_seed,
 *          scheme, bootstrap, out_dir|None, decode, val_data|None, val_tasks) -> JSON, as
 * `medselect analyze --json`. b "best": as --b best, every built-in strategy but A is a
 * candidate, evaluated on val_data, and all of them are evaluated on the test tasks. */
static PyObject *py_analyze(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *data, *groups, *shape, *ks, *a, *b, *outdir;
    int tasks, perms, boot;
    unsigned long long seed, perm_seed;
    const char *pred, *scheme_name, *decode_name;
    PyObject *val_data;
    int val_tasks;
    if (!PyArg_ParseTuple(args, "OO!OO!iKsOOiKsiOsOi", &data, &PyList_Type, &groups, &shape, &PyList_Type, &ks,
                          &tasks, &seed, &pred, &a, &b, &perms, &perm_seed, &scheme_name, &boot, &outdir,
                          &decode_name, &val_data, &val_tasks))
        return NULL;
    int best = PyUnicode_Check(b) && PyUnicode_AsUTF8(b) && !strcasecmp(PyUnicode_AsUTF8(b), "best");
    if (PyErr_Occurred()) return NULL;
    if (best && val_data == Py_None)
        return PyErr_Format(PyExc_ValueError, "b='best' is chosen on a validation split: give val=(val_pos, val_norm)");
    ms_decode decode;
    if (ms_decode_parse(decode_name, &decode)) return raise_status(MS_ERR_ARG);
    ms_an_scheme scheme;
    if (!strcmp(scheme_name, "task-swap")) scheme = MS_AN_TASK_SWAP;
    else if (!strcmp(scheme_name, "pooled")) scheme = MS_AN_POOLED;
    else return PyErr_Format(PyExc_ValueError, "perm_scheme: '%s' is not task-swap or pooled", scheme_name);
    const char *dir = outdir == Py_None ? NULL : PyUnicode_AsUTF8(outdir);
    if (PyErr_Occurred()) return NULL;
    ms_split s;
    if (load_split(data, &s)) return NULL;
    ms_eval_config cfg;
    if (make_config(&cfg, &s, groups, shape, ks, tasks, seed, pred)) {
        ms_split_free(&s);
        return NULL;
    }
    /* as the CLI: random first (the paired baseline), then A, then B (a spec equal to one
     * already there is not added twice) */
    int n_names = 0;
    char **bnames = best ? ms_split_list(ms_strategy_names(), &n_names) : NULL;
    ms_strategy **strats = calloc(3 + (size_t)n_names, sizeof *strats);
    int n = 0, ia = -1, ib = -1;
    PyObject *out = NULL;
    PyObject *rnd = PyUnicode_FromString("random");
    int ok = add_strategy(strats, &n, rnd, &s, decode) >= 0;
    Py_DECREF(rnd);
    if (ok) ok = (ia = add_strategy(strats, &n, a, &s, decode)) >= 0;
    if (ok && !best) ok = (ib = add_strategy(strats, &n, b, &s, decode)) >= 0;
    for (int i = 0; ok && i < n_names; i++) {
        PyObject *nm = PyUnicode_FromString(bnames[i]);
        ok = nm && add_strategy(strats, &n, nm, &s, decode) >= 0;
        Py_XDECREF(nm);
    }
    if (bnames) ms_strv_free(bnames, n_names);
    cfg.decode = decode;
    char best_note[512] = "";
    if (ok && best) {
        /* B: the built-in strategy other than A with the highest validation mean */
        ms_strategy **cand = calloc((size_t)n, sizeof *cand);
        int n_cand = 0, bi = -1;
        for (int i = 0; i < n; i++)
            if (i != ia) cand[n_cand++] = strats[i];
        choose_b_ctx bc = {&bi, best_note, sizeof best_note, &s, &cfg, val_tasks, n_cand, cand};
        ok = !run_validation(val_data, (long)cfg.n_groups * (val_tasks > 0 ? val_tasks : cfg.tasks), choose_b_fn, &bc);
        for (int i = 0; ok && i < n; i++)
            if (strats[i] == cand[bi]) ib = i;
        free(cand);
    }
    cfg.keep_selections = 1;
    ms_eval_result res;
    if (ok && !run_evaluate(&res, &s, &cfg, strats, n, "analyze")) {
        ms_analysis *an = calloc((size_t)cfg.n_k, sizeof *an);
        ms_eval_row *rows = NULL;
        int n_rows = 0;
        char *text = NULL;
        ms_status st = MS_OK;
        Py_BEGIN_ALLOW_THREADS
        for (int ki = 0; ki < cfg.n_k && !st; ki++)
            st = ms_analyze(&an[ki], &s, &cfg, &res, ia, ib, ki, perms, perm_seed, scheme);
        if (!st) ms_eval_summarize(&res, &cfg, boot, &rows, &n_rows);
        ms_analysis_report rep = {.split = &s, .cfg = &cfg, .res = &res, .strats = strats, .an = an,
                                  .n_an = cfg.n_k, .rows = rows, .n_rows = n_rows, .command = NULL,
                                  .b_note = best ? best_note : NULL};
        if (!st && dir) st = ms_analysis_write_report(dir, &rep);
        if (!st) text = ms_analysis_json(&rep);
        Py_END_ALLOW_THREADS
        out = st ? raise_status(st) : json_result(text);
        free(rows);
        for (int ki = 0; ki < cfg.n_k; ki++) ms_analysis_free(&an[ki]);
        free(an);
        ms_eval_result_free(&res);
    }
    strats_free(strats, n);
    config_free(&cfg);
    ms_split_free(&s);
    return out;
}

/* ---- training ------------------------------------------------------------------------------ */

typedef struct {
    cancel_state cs;
    PyObject *callback; /* None or callable(dict) -> truthy to stop */
    PyObject *history;  /* list of per-iteration dicts */
    int failed;         /* the callback raised (exception stored in cs) */
} train_ctx;

static PyObject *num_or_none(double v) {
    if (isnan(v)) Py_RETURN_NONE;
    return PyFloat_FromDouble(v);
}

static int train_hook(const ms_train_progress *p, void *ctx) {
    train_ctx *t = ctx;
    PyGILState_STATE g = PyGILState_Ensure();
    int stop = 0;
    PyObject *d = Py_BuildValue("{s:l,s:l,s:l,s:d,s:d,s:d,s:N,s:d,s:i,s:d,s:d}", "iteration", p->iteration, "total",
                                p->total, "epoch", p->epoch, "reward", p->reward, "baseline", p->baseline,
                                "advantage", p->advantage, "val_auroc", num_or_none(p->val_auroc), "best_val_auroc",
                                p->best_val, "best_iteration", p->best_iteration, "lr", p->lr, "seconds", p->seconds);
    if (!d || PyList_Append(t->history, d) < 0) {
        stop = 1;
    } else if (t->callback != Py_None) {
        PyObject *r = PyObject_CallOneArg(t->callback, d);
        if (!r) stop = 1;
        else {
            int truth = PyObject_IsTrue(r);
            stop = truth != 0; /* truthy or an error in bool() */
            Py_DECREF(r);
        }
    }
    Py_XDECREF(d);
    if (!PyErr_Occurred() && PyErr_CheckSignals() < 0) stop = 1;
    if (PyErr_Occurred()) {
        t->failed = 1;
        PyErr_Fetch(&t->cs.et, &t->cs.ev, &t->cs.tb);
    }
    PyGILState_Release(g);
    return stop;
}

/* _train(train_data, val_data, out, train_conds, val_conds, shape, cfg dict, progress) -> dict */
static PyObject *py_train(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *tdata, *vdata, *outo, *tnames, *vnames, *shape, *opts, *callback;
    if (!PyArg_ParseTuple(args, "OOO&O!O!OO!O", &tdata, &vdata, PyUnicode_FSConverter, &outo, &PyList_Type, &tnames,
                          &PyList_Type, &vnames, &shape, &PyDict_Type, &opts, &callback))
        return NULL;
    ms_train_config cfg;
    ms_train_defaults(&cfg);
    cfg.out_dir = PyBytes_AS_STRING(outo);
    const char *sampler = "without-replacement", *pred = "cosine";
    unsigned long long seed = 0;
    int ok = PyArg_ParseTuple(shape, "idid", &cfg.shape.pool, &cfg.shape.pos_frac, &cfg.shape.query,
                              &cfg.shape.query_pos_frac);
    PyObject *empty = PyTuple_New(0);
    /* arch: "name[:key=value,...]" or None; its option text stays owned by the opts dict,
     * which outlives training */
    const char *arch = NULL;
    static char *kw[] = {"k", "batch", "epochs", "tasks", "val_tasks", "val_every", "lr", "lr_decay",
                         "lr_decay_epoch", "hidden", "sampler", "clinical", "impute_clinical", "predictor",
                         "seed", "resume", "max_iterations", "arch", "k_min", "pos_frac_hi",
                         "baseline_greedy", "augment_rotate", "samples", NULL};
    if (ok)
        ok = PyArg_ParseTupleAndKeywords(empty, opts, "|iiiiiiddiisppsKpizidppi", kw, &cfg.k, &cfg.batch,
                                         &cfg.epochs, &cfg.tasks, &cfg.val_tasks, &cfg.val_every, &cfg.lr,
                                         &cfg.lr_decay, &cfg.lr_decay_epoch, &cfg.hidden, &sampler, &cfg.clinical,
                                         &cfg.impute_clinical, &pred, &seed, &cfg.resume, &cfg.max_iterations,
                                         &arch, &cfg.k_min, &cfg.pos_frac_hi, &cfg.baseline_greedy,
                                         &cfg.augment_rotate, &cfg.samples);
    Py_DECREF(empty);
    if (!ok) {
        Py_DECREF(outo);
        return NULL;
    }
    cfg.seed = seed;
    if (ms_sampler_parse(sampler, &cfg.sampler) || ms_pred_kind_parse(pred, &cfg.pred) ||
        (arch && ms_arch_parse_spec(arch, &cfg.arch, &cfg.arch_opts))) {
        Py_DECREF(outo);
        return raise_status(MS_ERR_ARG);
    }
    if (cfg.k < 1 || cfg.batch < 1 || cfg.epochs < 1 || cfg.tasks < 1 || cfg.hidden < 0 || cfg.val_every < 1 ||
        cfg.val_tasks < 0 || cfg.max_iterations < 0 || cfg.k_min < 0 || cfg.samples < 0) {
        Py_DECREF(outo);
        return PyErr_Format(PyExc_ValueError, "k, batch_size, epochs, tasks, hidden, val_every and samples must be positive");
    }
    if (cfg.arch && cfg.arch->sequential && (cfg.clinical || cfg.sampler != MS_SAMPLER_WOR)) {
        Py_DECREF(outo);
        return PyErr_Format(PyExc_ValueError, "arch %s draws without replacement and uses no clinical features",
                            cfg.arch->name);
    }
    if (cfg.k > cfg.shape.pool) {
        Py_DECREF(outo);
        return PyErr_Format(PyExc_ValueError, "K = %d is larger than the pool (%d)", cfg.k, cfg.shape.pool);
    }
    ms_split tr, va;
    memset(&va, 0, sizeof va);
    int *tc = NULL, *vc = NULL, ntc = 0, nvc = 0;
    PyObject *out = NULL;
    if (load_split(tdata, &tr)) {
        Py_DECREF(outo);
        return NULL;
    }
    train_ctx t;
    memset(&t, 0, sizeof t);
    if (!load_split(vdata, &va) && !resolve_names(tnames, &tr, &tc, &ntc) && !resolve_names(vnames, &va, &vc, &nvc)) {
        cfg.train_cond = tc, cfg.n_train_cond = ntc;
        cfg.val_cond = vc, cfg.n_val_cond = nvc;
        cancel_init(&t.cs);
        t.callback = callback;
        t.history = PyList_New(0);
        cfg.on_iteration = train_hook;
        cfg.on_iteration_ctx = &t;
        ms_train_summary sum;
        ms_status st;
        Py_BEGIN_ALLOW_THREADS
        st = ms_train(&tr, &va, &cfg, &sum);
        Py_END_ALLOW_THREADS
        if (cancel_restore(&t.cs)) {
            /* the callback raised, or Ctrl-C: the state is saved, resume=True continues */
        } else if (st) {
            raise_status(st);
        } else {
            out = Py_BuildValue("{s:i,s:N,s:i,s:N,s:d,s:d,s:O,s:O}", "iterations", sum.iterations, "best_val_auroc",
                                num_or_none(sum.best_val), "best_iteration", sum.best_iteration, "random_val_auroc",
                                num_or_none(sum.random_val), "seconds", sum.seconds, "tasks_per_second",
                                sum.tasks_per_second, "stopped", sum.stopped ? Py_True : Py_False, "history",
                                t.history);
        }
        Py_XDECREF(t.history);
    }
    free(tc);
    free(vc);
    ms_split_free(&tr);
    ms_split_free(&va);
    Py_DECREF(outo);
    return out;
}

/* ---- embedding images ---------------------------------------------------------------------- */

/* _embed(model_dir, [paths], batch, chunk) -> (n, dim) float32 */
static PyObject *py_embed(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *mdir, *plist;
    int batch, chunk;
    if (!PyArg_ParseTuple(args, "O&O!ii", PyUnicode_FSConverter, &mdir, &PyList_Type, &plist, &batch, &chunk))
        return NULL;
    Py_ssize_t n = PyList_Size(plist);
    PyObject *bytes = PyList_New(n);
    const char **paths = calloc((size_t)n + 1, sizeof *paths);
    PyObject *out = NULL;
    ms_resnet *net = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = NULL;
        if (!PyUnicode_FSConverter(PyList_GET_ITEM(plist, i), &b)) goto done;
        PyList_SET_ITEM(bytes, i, b);
        paths[i] = PyBytes_AS_STRING(b);
    }
    ms_status st;
    const char *md = PyBytes_AS_STRING(mdir);
    Py_BEGIN_ALLOW_THREADS
    st = ms_resnet_load(&net, md);
    Py_END_ALLOW_THREADS
    if (st) {
        raise_status(st);
        goto done;
    }
    npy_intp dims[2] = {n, ms_resnet_dim(net)};
    out = PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!out) goto done;
    float *emb = PyArray_DATA((PyArrayObject *)out);
    char **errors = calloc((size_t)chunk, sizeof *errors);
    ms_embed_opts o = ms_embed_opts_default();
    o.batch = batch;
    for (Py_ssize_t start = 0; start < n; start += chunk) {
        int nb = (int)(n - start < chunk ? n - start : chunk);
        Py_BEGIN_ALLOW_THREADS
        st = ms_embed_files(net, paths + start, nb, &o, emb + (size_t)start * dims[1], errors, NULL);
        Py_END_ALLOW_THREADS
        for (int i = 0; i < nb; i++) free(errors[i]), errors[i] = NULL;
        if (st) raise_status(st);
        /* Ctrl-C between chunks of files */
        if (st || PyErr_CheckSignals() < 0) {
            Py_CLEAR(out);
            break;
        }
    }
    free(errors);
done:
    if (net) ms_resnet_free(net);
    free(paths);
    Py_DECREF(bytes);
    Py_DECREF(mdir);
    return out;
}

/* _read_matrix(path) -> (rows, cols) float32 from HDF5 (dataset "dataset") or NPY, as the CLI
 * reads embeddings */
static PyObject *py_read_matrix(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *po;
    if (!PyArg_ParseTuple(args, "O&", PyUnicode_FSConverter, &po)) return NULL;
    float *x = NULL;
    int rows = 0, cols = 0;
    ms_status st;
    const char *path = PyBytes_AS_STRING(po);
    Py_BEGIN_ALLOW_THREADS
    st = ms_matrix_read(path, &x, &rows, &cols);
    Py_END_ALLOW_THREADS
    Py_DECREF(po);
    if (st) return raise_status(st);
    npy_intp dims[2] = {rows, cols};
    PyObject *out = PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (out) memcpy(PyArray_DATA((PyArrayObject *)out), x, sizeof(float) * (size_t)rows * (size_t)cols);
    free(x);
    return out;
}

/* ---- module -------------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"_select", py_select, METH_VARARGS, "_select(x, k, spec, seed) -> int64 indices"},
    {"_evaluate", py_evaluate, METH_VARARGS, "_evaluate(...) -> JSON text"},
    {"_analyze", py_analyze, METH_VARARGS, "_analyze(...) -> JSON text"},
    {"_train", py_train, METH_VARARGS, "_train(...) -> dict"},
    {"_embed", py_embed, METH_VARARGS, "_embed(model_dir, paths, batch, chunk) -> (n, dim) float32"},
    {"_read_matrix", py_read_matrix, METH_VARARGS, "_read_matrix(path) -> (rows, cols) float32"},
    {"_strategy_names", py_strategy_names, METH_NOARGS, "comma-separated built-in strategy names"},
    {"_set_threads", py_set_threads, METH_VARARGS, "_set_threads(n): worker threads (<= 0: all cores)"},
    {"_get_threads", py_get_threads, METH_NOARGS, "worker threads in use"},
    {"_set_progress", py_set_progress, METH_VARARGS, "_set_progress(mode): progress bars on stderr (0 off, 1 on, -1 on a terminal)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_medselect",
                                    "C extension of the medselect package (see help(medselect)).", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__medselect(void); /* the module entry point CPython looks up */
PyMODINIT_FUNC PyInit__medselect(void) {
    import_array();
    if (PyType_Ready(&SelectorType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&SelectorType);
    if (PyModule_AddObject(m, "_Selector", (PyObject *)&SelectorType) < 0) {
        Py_DECREF(&SelectorType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddStringConstant(m, "version", MS_VERSION);
    /* the library draws progress bars only where the Python side asks for them */
    ms_set_progress(0);
    return m;
}
