"""medselect: selective labeling of medical images (MedSelect, MIDL 2022) from Python.

A thin layer over the C library libmedselect: the same strategies, selector, evaluation,
analysis, training and image encoder as the ``medselect`` command-line tool, with NumPy
arrays in and out and the same numbers.

    import numpy as np, medselect as ms
    x = np.load("pool.npy")                                 # (n, d) float32 embeddings
    order = ms.select(x, k=20, strategy="kcenter", seed=0)  # (20,) int64, ranked
    sel = ms.Selector.load("runs/nih-k10/best.safetensors")
    logits = sel.scores(x)                                  # (n,) float32
    order = sel.select(x, k=20)                             # top 20 logits
    res = ms.evaluate(pos="test_pos.csv", norm="test_norm.csv",
                      seen=["Effusion"], unseen=["Atelectasis"], pool=30, query=20,
                      strategies=["random", "kmedoids", sel], k=[5, 10], tasks=1000)
    emb = ms.embed("models/cxr-simclr-resnet18-64", ["a.png", "b.dcm"])  # (2, 512)

Functions: select, Selector (load, scores, select, sample), evaluate, analyze, train, embed,
read_embeddings, strategies, set_threads. Your own strategy is any object with a ``select(x, k, seed)``
method returning k distinct row indices; it can stand wherever a strategy name can.

Arrays: a C-contiguous float32 array is read in place (no copy); any other dtype or memory
order is converted once. The GIL is released while the library computes, so other Python
threads keep running. Ctrl-C stops evaluate, analyze, train and embed at the next unit of
work (a task, an iteration, a chunk of files) and raises KeyboardInterrupt; a single
``select``/``scores`` call finishes first. Errors are Python exceptions with the library's
one-line message: ValueError for bad arguments or data (wrong shape, NaN, k larger than the
pool, malformed files), OSError for files that cannot be read or written.

Data files follow the reference layout (see the project README): a positives CSV and a
normals CSV, each with its embeddings in an HDF5 file of the same base name (or give the
embedding file: ``pos=("test_pos.csv", "test_pos.npy")``).
"""

import json as _json

__all__ = ["select", "Selector", "evaluate", "analyze", "train", "embed", "read_embeddings",
           "strategies", "set_threads", "PAPER_SEEN", "PAPER_UNSEEN", "__version__"]

__version__ = "0.1.0"

#: The seen conditions of the paper (the CLI's default --seen).
PAPER_SEEN = ["Consolidation", "Lung Opacity", "Pleural Effusion", "Pneumothorax",
              "Enlarged Cardiomediastinum", "Cardiomegaly"]
#: The unseen conditions of the paper (the CLI's default --unseen).
PAPER_UNSEEN = ["Atelectasis", "Edema"]

_C = None


def _lib():
    # The extension (and NumPy, and the shared libraries behind libmedselect) load on first
    # use, so that `import medselect` stays cheap.
    global _C
    if _C is None:
        from . import _medselect
        _C = _medselect
    return _C


def _seed(seed):
    seed = int(seed)
    if seed < 0 or seed >= 2 ** 64:
        raise ValueError(f"seed must be a non-negative integer below 2**64, got {seed}")
    return seed


def _user_strategy(obj):
    return not isinstance(obj, (str, Selector)) and callable(getattr(obj, "select", None))


def _check_user_pick(obj, pick, n, k):
    import numpy as np
    p = np.asarray(pick)
    if p.ndim != 1 or p.shape[0] != k or not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"strategy {obj!r}: select() must return {k} integer indices")
    p = p.astype(np.int64)
    if p.min() < 0 or p.max() >= n:
        raise ValueError(f"strategy {obj!r}: select() returned an index outside the pool [0, {n})")
    if np.unique(p).shape[0] != k:
        raise ValueError(f"strategy {obj!r}: select() returned an index twice")
    return p


def strategies():
    """Names of the built-in strategies, e.g. ['random', 'kmedoids', ...].

    Options follow a name after ':' as in the CLI, e.g. 'probcover:delta=0.4',
    'herding:sigma=0.5', 'kmeans:iters=300' (see include/medselect/strategy.h).
    """
    return _lib()._strategy_names().split(",")


def read_embeddings(path):
    """Reads an embedding matrix as the CLI does: (rows, cols) float32 from an HDF5 file
    (dataset "dataset"; .hdf5/.h5) or an NPY file (.npy, float32/float64, C order).
    OSError when the file cannot be read, ValueError when it is not such a matrix."""
    import os
    return _lib()._read_matrix(os.fspath(path))


def set_threads(n):
    """Sets the number of worker threads of the library (n <= 0: all cores).

    Results never depend on it. Returns the number now in use.
    """
    c = _lib()
    c._set_threads(int(n))
    return c._get_threads()


def select(x, k, strategy="random", seed=0):
    """Chooses k rows of an unlabeled pool to send for labeling.

    x: (n, d) embeddings, one row per image, as stored (any float array; C-contiguous
    float32 is used without a copy). k: 1 <= k <= n. strategy: a built-in name with optional
    options ('random', 'kmedoids', 'kcenter', 'probcover:delta=0.4', ...; see strategies()),
    a Selector, or your own object with select(x, k, seed). seed: the seed of every random
    choice (non-negative int).

    Returns the k chosen row indices, int64, in the strategy's order of preference: the
    same rows, in the same order, as ``medselect select --strategy NAME --seed SEED`` writes
    to its worklist for the same embeddings.
    Raises ValueError for a bad shape, a non-finite value, k outside [1, n] or an unknown
    strategy.
    """
    if isinstance(strategy, Selector):
        return strategy.select(x, k)
    if _user_strategy(strategy):
        import numpy as np
        xa = np.ascontiguousarray(x, dtype=np.float32)
        if xa.ndim != 2 or xa.shape[0] < 1:
            raise ValueError("x must be a non-empty 2-d array (n, d)")
        if not 1 <= int(k) <= xa.shape[0]:
            raise ValueError(f"the pool has {xa.shape[0]} items, fewer than k = {k}" if int(k) > 0
                             else f"k must be at least 1, got {k}")
        return _check_user_pick(strategy, strategy.select(xa, int(k), _seed(seed)), xa.shape[0], int(k))
    if not isinstance(strategy, str):
        raise TypeError("strategy must be a name, a Selector or an object with select(x, k, seed)")
    return _lib()._select(x, int(k), strategy, _seed(seed))


class Selector:
    """A trained MedSelect selector (a BiLSTM that scores every pool item).

    Load one with Selector.load(path) from a checkpoint written by ``medselect train`` or
    ``medselect.train`` (or a PyTorch state_dict saved as safetensors with the same names).
    Attributes: path, arch, input_dim, hidden, clinical, k (trained budget), sampler, seed.

    A Selector can be passed wherever a strategy is accepted (select, evaluate, analyze);
    there it selects greedily (top k logits), as ``--model`` does in the CLI, unless
    evaluate/analyze are given another decode rule.
    """

    __slots__ = ("_c",)

    def __init__(self, _c):
        self._c = _c

    @classmethod
    def load(cls, path):
        """Reads a selector checkpoint (.safetensors). OSError when the file cannot be
        read, ValueError when it is not a selector (names the file and the tensor)."""
        return cls(_lib()._Selector._load(path))

    def scores(self, x, clinical=None, impute_clinical=False):
        """One logit per pool item: (n,) float32, bit-identical to the logit column of
        ``medselect select --model CKPT --scores FILE`` for the same embeddings. (For a
        sequential architecture such as 'relational', whose logits change as items are
        picked, these are the first step's logits, as the CLI writes them.)

        x: (n, D) embeddings as stored (D = input_dim, or input_dim - 3 for a clinical
        selector). clinical: (n, 3) standardized age, sex (female 1), frontal (1), required
        by clinical selectors only; NaN marks a missing value, filled with the column mean
        when impute_clinical is True (as --impute-clinical), else a ValueError.
        """
        return self._c._scores(x, clinical, bool(impute_clinical))

    def select(self, x, k, clinical=None, impute_clinical=False):
        """The k items with the highest logits, best first: (k,) int64 (as the CLI's
        worklist with --model)."""
        return self._c._select(x, int(k), clinical, bool(impute_clinical), False, 0)

    def sample(self, x, k, seed=0, clinical=None, impute_clinical=False):
        """A draw of k distinct items from the selector's policy (Plackett-Luce over the
        logits), in draw order: (k,) int64, the same as ``select --model --sample --seed``."""
        return self._c._select(x, int(k), clinical, bool(impute_clinical), True, _seed(seed))

    def __getattr__(self, name):
        if name in ("path", "input_dim", "hidden", "clinical", "k", "sampler", "seed", "arch"):
            return getattr(self._c, name)
        raise AttributeError(name)

    def __repr__(self):
        return (f"Selector({self.path!r}, arch={self.arch!r}, input_dim={self.input_dim}, "
                f"hidden={self.hidden}, "
                f"clinical={self.clinical}, k={self.k})")


def _files(arg, what):
    """'x.csv' or ('x.csv', 'x.hdf5') -> (csv, emb or None)"""
    import os
    if isinstance(arg, (str, os.PathLike)):
        return os.fspath(arg), None
    try:
        csv, emb = arg
    except (TypeError, ValueError):
        raise TypeError(f"{what}: give a CSV path or a (CSV, embeddings) pair") from None
    return os.fspath(csv), (None if emb is None else os.fspath(emb))


def _data(pos, norm, uncertain):
    pc, pe = _files(pos, "pos")
    nc, ne = _files(norm, "norm")
    return (pc, pe, nc, ne, str(uncertain))


def _names(v, what):
    if isinstance(v, str):
        v = [c.strip() for c in v.split(",")]
    v = [str(c) for c in v]
    if not v:
        raise ValueError(f"{what}: an empty list of conditions")
    return v


def _group(name, v):
    # As the CLI: a group's conditions in canonical order (by name, case and '_' ignored),
    # so that its tasks depend on the set of conditions only.
    v = sorted(_names(v, name), key=lambda c: c.lower().replace("_", " "))
    for a, b in zip(v, v[1:]):
        if a.lower().replace("_", " ") == b.lower().replace("_", " "):
            raise ValueError(f"condition '{b}' is listed twice in the {name} group")
    return (name, v)


def _groups(conditions, seen, unseen):
    if conditions is not None:
        if seen is not None or unseen is not None:
            raise ValueError("conditions excludes seen/unseen")
        return [_group("all", conditions)]
    if seen is None and unseen is None:
        return [_group("seen", PAPER_SEEN), _group("unseen", PAPER_UNSEEN)]
    g = []
    if seen is not None:
        g.append(_group("seen", seen))
    if unseen is not None:
        g.append(_group("unseen", unseen))
    return g


def _ks(k):
    return [int(v) for v in ([k] if isinstance(k, int) else k)]


def _strategy_arg(s):
    if isinstance(s, Selector):
        return s._c
    if isinstance(s, str) or _user_strategy(s):
        return s
    raise TypeError(f"a strategy is a name, a Selector or an object with select(x, k, seed), not {s!r}")


def _threads(threads):
    if threads is not None:
        _lib()._set_threads(int(threads))


def evaluate(pos, norm, strategies=("random", "kmedoids", "kmeans"), k=20, conditions=None,
             seen=None, unseen=None, pool=1000, pos_frac=0.5, query=100, query_pos_frac=0.5,
             tasks=1000, seed=0, predictor="cosine", uncertain="positive", bootstrap=2000,
             decode="greedy", versus=None, val=None, val_tasks=None, per_task=None, per_k=False,
             threads=None):
    """The paper's meta-test: every strategy on the same sampled tasks; a dict.

    pos, norm: the positives and normals CSVs ('test_pos.csv', or ('test_pos.csv',
    'test_pos.hdf5') to name the embeddings). strategies: names (with options), Selectors
    and your own objects with select(x, k, seed) (they receive each task's pool rows as
    stored, (pool, d) float32, and return k distinct indices); 'random' is always evaluated
    and comes first (the paired baseline), as in the CLI. k: an int or a list of budgets.
    Groups: conditions=[...] (one group "all"), or seen=[...] and/or unseen=[...]; neither:
    the paper's sets (PAPER_SEEN, PAPER_UNSEEN). Task shape, tasks per group, seed,
    predictor ('cosine' or 'euclidean'), uncertain ('positive', 'negative', 'ignore') and
    bootstrap resamples as the CLI's options of the same names. decode: how Selectors pick
    ('greedy', 'sample' or 'multinomial', as --decode). per_k: run ranking strategies once
    per K (as --per-k).

    versus: rows also carry the paired difference (bootstrap CI, Wilcoxon p) against a
    second strategy: a strategy's label or name (as --versus NAME), or "best": per group and
    K the baseline with the highest mean AUROC on the VALIDATION split val=(val_pos,
    val_norm) (each a CSV path or a (CSV, embeddings) pair), as ``--versus best`` with
    --val-pos-csv/--val-norm-csv: same validation tasks (the test tasks' shape, seed and
    conditions; val_tasks per group, default tasks), same choice, same note in each group's
    "versus_note". The candidates are the strategies given by name, random included; a
    Selector or your own object is never chosen. val is only for versus="best".
    per_task: a path: every task's AUROC per strategy written there as CSV, the file
    ``--per-task`` writes (group,task,condition,k, one column per strategy label).

    Returns the dict ``medselect evaluate --json`` writes (medselect_version, config,
    seconds, groups: [{name, conditions, [versus_note, versus_best, versus: [{k, strategy}]],
    rows: [{condition, k, strategy, tasks, auroc: {mean, lo, hi}, difference: {mean, lo, hi,
    versus}, p_wilcoxon, [versus: {mean, lo, hi, versus, p_wilcoxon}]}]}]), the bracketed
    entries with versus only; with the same settings the numbers are
    the CLI's. It also holds every task's AUROC under "per_task", for your own tests:
    {"strategies": [labels], "k": [budgets], "groups": [names], "auroc": float64 array
    (groups, K, strategies, tasks), "condition": str array (groups, tasks), each task's
    condition}; e.g. ``a = r["per_task"]["auroc"]; a[g, ki, 3] - a[g, ki, 0]`` are the paired
    differences of the fourth strategy against random, task by task.
    Ctrl-C stops it between tasks (KeyboardInterrupt).
    """
    import os
    slist = [_strategy_arg(s) for s in strategies]
    if not any(s == "random" for s in slist if isinstance(s, str)):
        slist.insert(0, "random")
    else:
        slist = ["random"] + [s for s in slist if not (isinstance(s, str) and s == "random")]
    val_data = _val(val, uncertain, "versus", versus)
    _threads(threads)
    text, (auroc, task_cond, conds, labels) = _lib()._evaluate(
        _data(pos, norm, uncertain), _groups(conditions, seen, unseen),
        (int(pool), float(pos_frac), int(query), float(query_pos_frac)), _ks(k), int(tasks),
        _seed(seed), str(predictor), slist, int(bootstrap), str(decode), bool(per_k),
        None if versus is None else str(versus), val_data, _val_tasks(val_tasks),
        None if per_task is None else os.fspath(per_task))
    res = _json.loads(text)
    import numpy as np
    res["per_task"] = {"strategies": labels, "k": _ks(k), "groups": [g["name"] for g in res["groups"]],
                       "auroc": auroc, "condition": np.array(conds)[task_cond]}
    return res


def _val(val, uncertain, what, choice):
    """val=(val_pos, val_norm) -> the data tuple, checked against the choice it serves."""
    best = isinstance(choice, str) and choice.lower() == "best"
    if val is None:
        if best:
            raise ValueError(f"{what}='best' is chosen on a validation split: give "
                             "val=(val_pos, val_norm)")
        return None
    if not best:
        raise ValueError(f"val is the validation split for {what}='best'; {what} is {choice!r}")
    try:
        vpos, vnorm = val
    except (TypeError, ValueError):
        raise TypeError("val is a (val_pos, val_norm) pair") from None
    return _data(vpos, vnorm, uncertain)


def _val_tasks(val_tasks):
    if val_tasks is None:
        return 0
    if int(val_tasks) < 1:
        raise ValueError(f"val_tasks must be at least 1, got {val_tasks}")
    return int(val_tasks)


def analyze(pos, norm, a, b, k=20, conditions=None, seen=None, unseen=None, pool=1000,
            pos_frac=0.5, query=100, query_pos_frac=0.5, tasks=1000, seed=0,
            predictor="cosine", uncertain="positive", permutations=2000, perm_seed=None,
            perm_scheme="task-swap", bootstrap=2000, out=None, decode="greedy", val=None,
            val_tasks=None, threads=None):
    """What strategies a and b select on the same meta-test tasks; a dict.

    a, b: strategy names, Selectors or your own objects; b="best" as the CLI's --b best: B
    is the built-in strategy other than a with the highest mean AUROC (over every group and
    K) on the VALIDATION split val=(val_pos, val_norm) (val_tasks per group, default tasks),
    never on the test tasks it is then analysed on; every built-in strategy is then
    evaluated on the test tasks too (the AUROC table) and the result says how B was chosen
    ("b_chosen_as" of the analysis).
    permutations, perm_seed (default: seed), perm_scheme ('task-swap' or 'pooled') as the
    CLI's --permutations, --perm-seed, --perm-scheme; the data and task arguments as in
    evaluate(). out: a directory for report.md and the figures (None: no files). decode: how
    a Selector picks (as --decode).

    Returns the dict ``medselect analyze --json`` writes (medselect_version, config,
    analyses: [{k, a, b, permutations, seed, selections, scheme, quantities: [...],
    proportions: [...]}], auroc: [...]), without the "command" entry; the same numbers as
    the CLI with the same settings.
    """
    import os
    val_data = _val(val, uncertain, "b", b)
    b_arg = "best" if val_data is not None else _strategy_arg(b)
    _threads(threads)
    text = _lib()._analyze(_data(pos, norm, uncertain), _groups(conditions, seen, unseen),
                           (int(pool), float(pos_frac), int(query), float(query_pos_frac)),
                           _ks(k), int(tasks), _seed(seed), str(predictor), _strategy_arg(a), b_arg,
                           int(permutations), _seed(seed if perm_seed is None else perm_seed),
                           str(perm_scheme), int(bootstrap),
                           None if out is None else os.fspath(out), str(decode), val_data,
                           _val_tasks(val_tasks))
    return _json.loads(text)


def train(train, val, out, seen=None, val_conditions=None, k=20, pool=1000, pos_frac=0.5,
          query=100, query_pos_frac=0.5, tasks=10000, epochs=5, val_tasks=1000, val_every=30,
          batch_size=64, lr=1e-4, lr_decay=0.1, lr_decay_epoch=3, hidden=None,
          sampling="without-replacement", clinical=False, impute_clinical=False, resume=False,
          max_iterations=0, seed=0, predictor="cosine", uncertain="positive", threads=None,
          progress=None, arch=None, baseline="random", augment=None, samples=1):
    """Meta-trains a selector with REINFORCE, as ``medselect train``; returns its metrics.

    train, val: (positives, normals) pairs, each a CSV path or a (CSV, embeddings) pair.
    out: the output directory (best.safetensors, last.safetensors, state.safetensors,
    metrics.csv). seen: the meta-train conditions (default PAPER_SEEN); val_conditions: the
    meta-validation ones (default: seen). The other arguments are the CLI's options of the
    same names (defaults equal); max_iterations > 0 stops after that many iterations.
    arch: None (the paper's BiLSTM) or "NAME[:key=value,...]" as --arch (e.g.
    "relational:redundancy=8,coverage=1"); hidden: None for the architecture's default.
    k and pos_frac also take a (low, high) pair, as -k LO:HI and --pos-frac LO:HI (every
    budget of the range from one ranking; each task's prevalence drawn from the range).
    baseline ('random' or 'greedy'), augment (None or 'rotate') and samples (draws per task
    with the leave-one-out baseline) as --baseline, --augment and --samples.

    progress: None or False (nothing drawn), True (the CLI's progress bar on stderr), or a
    callable called after every iteration with a dict {iteration, total, epoch, reward,
    baseline, advantage, val_auroc (None without validation), best_val_auroc,
    best_iteration, lr, seconds}; when it returns a true value training stops after that
    iteration (its state saved: resume=True continues exactly). An exception raised by the
    callback, or Ctrl-C, stops training the same way and is then raised.

    Returns {iterations, best_val_auroc, best_iteration, random_val_auroc, seconds,
    tasks_per_second, stopped, history (the per-iteration dicts), best (path of
    best.safetensors)}. Same settings, same data: the same weights as the CLI, bit for bit.
    """
    import os
    try:
        tpos, tnorm = train
        vpos, vnorm = val
    except (TypeError, ValueError):
        raise TypeError("train and val are (positives, normals) pairs") from None
    seen_l = _names(seen, "seen") if seen is not None else list(PAPER_SEEN)
    val_l = _names(val_conditions, "val_conditions") if val_conditions is not None else seen_l
    if isinstance(k, (tuple, list)):
        if len(k) != 2 or int(k[0]) > int(k[1]):
            raise ValueError(f"k: expected an int or a (low, high) pair, got {k!r}")
        k_min, k = int(k[0]), int(k[1])
    else:
        k_min = 0
    if isinstance(pos_frac, (tuple, list)):
        if len(pos_frac) != 2 or float(pos_frac[0]) > float(pos_frac[1]):
            raise ValueError(f"pos_frac: expected a float or a (low, high) pair, got {pos_frac!r}")
        pos_frac, pos_frac_hi = float(pos_frac[0]), float(pos_frac[1])
    else:
        pos_frac_hi = float(pos_frac)
    if not 0.0 < float(pos_frac) <= pos_frac_hi < 1.0:
        raise ValueError("pos_frac: fractions must lie strictly between 0 and 1")
    if baseline not in ("random", "greedy"):
        raise ValueError(f"baseline: expected 'random' or 'greedy', got {baseline!r}")
    if augment not in (None, "none", "rotate"):
        raise ValueError(f"augment: expected None or 'rotate', got {augment!r}")
    opts = dict(k=int(k), k_min=k_min, pos_frac_hi=pos_frac_hi,
                arch=None if arch is None else str(arch), baseline_greedy=baseline == "greedy",
                augment_rotate=augment == "rotate", samples=int(samples), batch=int(batch_size),
                epochs=int(epochs), tasks=int(tasks),
                val_tasks=int(val_tasks), val_every=int(val_every), lr=float(lr),
                lr_decay=float(lr_decay), lr_decay_epoch=int(lr_decay_epoch),
                hidden=0 if hidden is None else int(hidden),
                sampler=str(sampling), clinical=bool(clinical),
                impute_clinical=bool(impute_clinical), predictor=str(predictor), seed=_seed(seed),
                resume=bool(resume), max_iterations=int(max_iterations))
    callback = progress if callable(progress) else None
    _threads(threads)
    c = _lib()
    c._set_progress(1 if progress is True else 0)
    try:
        res = c._train(_data(tpos, tnorm, uncertain), _data(vpos, vnorm, uncertain), out, seen_l,
                       val_l, (int(pool), float(pos_frac), int(query), float(query_pos_frac)),
                       opts, callback)
    finally:
        c._set_progress(0)
    res["best"] = os.path.join(os.fspath(out), "best.safetensors")
    return res


def embed(model_dir, paths, batch=32, threads=None):
    """Embeds image files (PNG, JPEG, DICOM) with a ResNet-18 encoder: (n, dim) float32.

    model_dir: a folder with model.safetensors and config.json (e.g.
    models/cxr-simclr-resnet18-64). paths: image files; row i is paths[i], the numbers of
    ``medselect embed``. A file that cannot be read raises OSError, one that cannot be
    decoded ValueError, naming the file. Ctrl-C stops it between chunks of files.
    """
    import os
    plist = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    _threads(threads)
    return _lib()._embed(os.fspath(model_dir), plist, int(batch), max(int(batch), 64))
