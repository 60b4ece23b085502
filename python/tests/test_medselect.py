"""Tests of the medselect Python package against the medselect CLI (same numbers) and against
PyTorch (a committed fixture), plus bad input from Python.

Run by tests/test_python.sh (CTest), which sets PYTHONPATH to the built package and
MS_CLI / MS_SHARED / MS_FIXTURES / MS_TMP like the other tests. Needs only numpy and pytest.
"""
import csv
import json
import os
import signal
import subprocess
import threading
import tracemalloc

import numpy as np
import pytest

import medselect as ms

CLI = os.environ.get("MS_CLI", "build/medselect")
SHARED = os.environ.get("MS_SHARED", ".")
FIXTURES = os.environ.get("MS_FIXTURES", "tests/fixtures")
E = os.path.join(SHARED, "data", "nih1000", "embeddings")
MODEL = os.path.join(SHARED, "models", "cxr-simclr-resnet18-64")
have_nih = pytest.mark.skipif(not os.path.exists(os.path.join(E, "test_pos.csv")),
                              reason="the NIH data (data/nih1000) is not here")
TASKS = ["--seen", "Effusion,Infiltration", "--unseen", "Atelectasis,Cardiomegaly",
         "--pool", "30", "--query", "20"]
# (the lists in another order: the CLI and the package sort each group's conditions)
PY_TASKS = dict(seen=["infiltration", "Effusion"], unseen=["Cardiomegaly", "Atelectasis"],
                pool=30, query=20)


def cli(*args):
    r = subprocess.run([CLI, *args], capture_output=True, text=True)
    assert r.returncode == 0, f"medselect {' '.join(args)} failed: {r.stderr}"
    return r


def csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def e(name):
    return os.path.join(E, name)


@pytest.fixture(scope="session")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("py")


@pytest.fixture(scope="session")
def selector_ckpt(tmp):
    """A tiny selector trained with the CLI (a few iterations on the NIH train split)."""
    out = str(tmp / "cli-run")
    cli("train", "--train-pos-csv", e("train_pos.csv"), "--train-norm-csv", e("train_norm.csv"),
        "--val-pos-csv", e("val_pos.csv"), "--val-norm-csv", e("val_norm.csv"),
        *TRAIN_ARGS, "--out", out)
    return out


TRAIN_ARGS = ["--seen", "Effusion,Infiltration", "--pool", "30", "--query", "20", "-k", "5",
              "--tasks", "48", "--epochs", "2", "--batch-size", "16", "--val-tasks", "32",
              "--val-every", "2", "--hidden", "16", "--seed", "3", "--threads", "2"]
PY_TRAIN = dict(seen=["Effusion", "Infiltration"], pool=30, query=20, k=5, tasks=48, epochs=2,
                batch_size=16, val_tasks=32, val_every=2, hidden=16, seed=3, threads=2)


# ---- select: the worklists of the CLI --------------------------------------------------------

@have_nih
@pytest.mark.parametrize("strategy", ["random", "kmedoids", "kcenter", "typiclust", "herding",
                                      "probcover:delta=0.6"])
def test_select_matches_cli_worklist(tmp, strategy):
    x = ms.read_embeddings(e("test_pos.hdf5"))
    paths = [r["Path"] for r in csv_rows(e("test_pos.csv"))]
    wl = str(tmp / f"wl-{strategy}.csv")
    cli("select", "--strategy", strategy, "--pool", e("test_pos.csv"), "-k", "12", "--seed", "7",
        "--out", wl)
    want = [paths.index(r["Path"]) for r in csv_rows(wl)]
    got = ms.select(x, k=12, strategy=strategy, seed=7)
    assert got.dtype == np.int64 and got.shape == (12,)
    assert got.tolist() == want


def test_select_conversions_and_zero_copy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 32)).astype(np.float32)
    ref = ms.select(x, 10, "kmedoids", seed=2)
    # other dtypes and memory orders are converted once and give the same answer
    assert ms.select(x.astype(np.float64), 10, "kmedoids", seed=2).tolist() == ref.tolist()
    assert ms.select(np.asfortranarray(x), 10, "kmedoids", seed=2).tolist() == ref.tolist()
    assert ms.select(x.tolist(), 10, "kmedoids", seed=2).tolist() == ref.tolist()
    # a C-contiguous float32 array is read in place: NumPy allocates nothing of its size
    big = rng.standard_normal((20000, 64)).astype(np.float32)
    tracemalloc.start()
    ms.select(big, 5, "random", seed=0)
    _, peak32 = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak32 < big.nbytes / 10, f"{peak32} bytes allocated for a {big.nbytes}-byte input"
    f64 = big.astype(np.float64)
    tracemalloc.start()
    ms.select(f64, 5, "random", seed=0)
    _, peak64 = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak64 >= big.nbytes  # the one float32 conversion


def test_gil_released_during_compute():
    """Another Python thread keeps running while select computes: the longest pause of a
    busy loop in the main thread stays far below the call's duration."""
    import time
    x = np.random.default_rng(2).standard_normal((60000, 256)).astype(np.float32)
    took = []

    def work():
        t0 = time.perf_counter()
        ms.select(x, 60, "kcenter", seed=0)
        took.append(time.perf_counter() - t0)
    th = threading.Thread(target=work)
    th.start()
    last, gap = time.perf_counter(), 0.0
    while th.is_alive():
        now = time.perf_counter()
        gap, last = max(gap, now - last), now
    th.join()
    assert took and gap < 0.5 * took[0], f"main thread paused {gap:.3f} s during a {took[0]:.3f} s call"


def test_select_seed_and_determinism():
    x = np.random.default_rng(3).standard_normal((300, 16)).astype(np.float32)
    a = ms.select(x, 20, "random", seed=5)
    assert ms.select(x, 20, "random", seed=5).tolist() == a.tolist()
    assert ms.select(x, 20, "random", seed=6).tolist() != a.tolist()
    assert len(set(a.tolist())) == 20


# ---- the selector: logits and worklists of `select --model` ------------------------------------

@have_nih
def test_selector_scores_equal_cli(tmp, selector_ckpt):
    ckpt = os.path.join(selector_ckpt, "best.safetensors")
    x = ms.read_embeddings(e("test_pos.hdf5"))
    paths = [r["Path"] for r in csv_rows(e("test_pos.csv"))]
    sc, wl = str(tmp / "scores.csv"), str(tmp / "wl-model.csv")
    cli("select", "--model", ckpt, "--pool", e("test_pos.csv"), "-k", "10", "--out", wl,
        "--scores", sc)
    sel = ms.Selector.load(ckpt)
    assert (sel.input_dim, sel.hidden, sel.k, sel.clinical) == (512, 16, 5, False)
    logits = sel.scores(x)
    assert logits.dtype == np.float32 and logits.shape == (x.shape[0],)
    rows = csv_rows(sc)
    assert [r["Path"] for r in rows] == paths
    for r, v in zip(rows, logits):
        # the CLI prints %.6g (or more digits): the printed value must be ours exactly
        txt = r["logit"]
        assert txt == "%.6g" % v or np.float32(float(txt)) == v, (txt, v)
    # the greedy worklist and a sampled one
    assert sel.select(x, 10).tolist() == [paths.index(r["Path"]) for r in csv_rows(wl)]
    wls = str(tmp / "wl-sample.csv")
    cli("select", "--model", ckpt, "--pool", e("test_pos.csv"), "-k", "10", "--sample", "--seed",
        "11", "--out", wls)
    assert sel.sample(x, 10, seed=11).tolist() == [paths.index(r["Path"]) for r in csv_rows(wls)]
    assert ms.select(x, 10, strategy=sel).tolist() == sel.select(x, 10).tolist()
    # bit-identical whatever the input's dtype
    assert np.array_equal(sel.scores(x.astype(np.float64)), logits)


def test_selector_pytorch_round_trip():
    """Logits of a PyTorch nn.LSTM + nn.Linear selector (tests/fixtures/gen_python.py, which
    saves its state_dict as safetensors and checks that torch loads the file back) equal
    Selector.scores of that file."""
    d = os.path.join(FIXTURES, "python")
    sel = ms.Selector.load(os.path.join(d, "torch_selector.safetensors"))
    x = np.load(os.path.join(d, "torch_x.npy"))
    ref = np.load(os.path.join(d, "torch_logits.npy"))
    got = sel.scores(x)
    err = np.abs(got.astype(np.float64) - ref)
    tol = 1e-5 + 1e-5 * np.abs(ref)
    assert np.all(err <= tol), f"largest difference {err.max():.3g} at {int(err.argmax())}"
    assert (sel.input_dim, sel.hidden) == (x.shape[1], 8)


# ---- evaluate / analyze: the CLI's JSON ------------------------------------------------------------

class PyKCenter:
    """A user strategy that delegates to the library's k-center: evaluate() must give it the
    same pools and seeds as the built-in one, so its rows must equal kcenter's."""
    name = "py-kcenter"

    def select(self, x, k, seed):
        assert x.dtype == np.float32 and x.shape == (30, 512)
        return ms.select(x, k, "kcenter", seed)


def strip(d, *keys):
    return {k: v for k, v in d.items() if k not in keys}


@have_nih
def test_evaluate_matches_cli_json(tmp, selector_ckpt):
    ckpt = os.path.join(selector_ckpt, "best.safetensors")
    js = str(tmp / "eval.json")
    cli("evaluate", "--pos-csv", e("test_pos.csv"), "--norm-csv", e("test_norm.csv"), *TASKS,
        "-k", "5,10", "--tasks", "60", "--seed", "4", "--bootstrap", "300",
        "--strategies", "random,kmedoids,kcenter", "--model", ckpt, "--versus", "kmedoids",
        "--json", js)
    want = json.load(open(js))
    got = ms.evaluate(pos=e("test_pos.csv"), norm=e("test_norm.csv"), k=[5, 10], tasks=60, seed=4,
                      bootstrap=300, strategies=["random", "kmedoids", "kcenter",
                                                 ms.Selector.load(ckpt)], versus="kmedoids",
                      **PY_TASKS)
    assert strip(got, "seconds", "per_task") == strip(want, "seconds")
    # the selector decoding by sampling (--decode sample)
    js2 = str(tmp / "eval-sample.json")
    cli("evaluate", "--pos-csv", e("test_pos.csv"), "--norm-csv", e("test_norm.csv"), *TASKS,
        "-k", "5", "--tasks", "30", "--seed", "5", "--bootstrap", "200", "--strategies", "random",
        "--model", ckpt, "--decode", "sample", "--json", js2)
    got = ms.evaluate(pos=e("test_pos.csv"), norm=e("test_norm.csv"), k=5, tasks=30, seed=5,
                      bootstrap=200, strategies=["random", ms.Selector.load(ckpt)],
                      decode="sample", **PY_TASKS)
    assert strip(got, "seconds", "per_task") == strip(json.load(open(js2)), "seconds")

    # a strategy written in Python, on the same tasks as the built-in ones
    res = ms.evaluate(pos=(e("test_pos.csv"), e("test_pos.hdf5")), norm=e("test_norm.csv"),
                      k=[5, 10], tasks=60, seed=4, bootstrap=300,
                      strategies=["kcenter", PyKCenter()], **PY_TASKS)
    for g in res["groups"]:
        rows = {}
        for r in g["rows"]:
            rows.setdefault((r["condition"], r["k"]), {})[r["strategy"]] = r
        for cell in rows.values():
            # same selections, same AUROCs (the bootstrap CIs differ: each strategy column
            # resamples with its own stream)
            assert cell["py-kcenter"]["auroc"]["mean"] == cell["kcenter"]["auroc"]["mean"]
            assert cell["py-kcenter"]["difference"]["mean"] == cell["kcenter"]["difference"]["mean"]
            assert cell["py-kcenter"]["p_wilcoxon"] == cell["kcenter"]["p_wilcoxon"]


VAL_CLI = ["--val-pos-csv", e("val_pos.csv"), "--val-norm-csv", e("val_norm.csv")]
VAL_PY = (e("val_pos.csv"), e("val_norm.csv"))


@have_nih
def test_evaluate_versus_best_matches_cli(tmp, selector_ckpt):
    """versus="best": the baseline chosen per group and K on the validation split, as the
    CLI's --versus best (NIH val holds too few Atelectasis/Cardiomegaly images for one task,
    so the unseen group is validated on the other conditions: the note says so), and the
    per-task CSV and arrays of --per-task."""
    ckpt = os.path.join(selector_ckpt, "best.safetensors")
    js, pt = str(tmp / "vb.json"), str(tmp / "vb-tasks.csv")
    md = cli("evaluate", "--pos-csv", e("test_pos.csv"), "--norm-csv", e("test_norm.csv"), *TASKS,
             "-k", "5,10", "--tasks", "60", "--seed", "4", "--bootstrap", "300",
             "--strategies", "random,kmedoids,kcenter,herding", "--model", ckpt, *VAL_CLI,
             "--val-tasks", "40", "--versus", "best", "--json", js, "--per-task", pt).stdout
    want = json.load(open(js))
    py_pt = str(tmp / "vb-tasks-py.csv")
    got = ms.evaluate(pos=e("test_pos.csv"), norm=e("test_norm.csv"), k=[5, 10], tasks=60, seed=4,
                      bootstrap=300, strategies=["random", "kmedoids", "kcenter", "herding",
                                                 ms.Selector.load(ckpt)],
                      versus="best", val=VAL_PY, val_tasks=40, per_task=py_pt, **PY_TASKS)
    per = got.pop("per_task")
    assert strip(got, "seconds") == strip(want, "seconds")
    # the chosen baselines: one per group and K, a baseline (never the selector), named in
    # the note the Markdown report prints above the group's table
    for g, wg in zip(got["groups"], want["groups"]):
        assert g["versus_best"] is True
        chosen = [v["strategy"] for v in g["versus"]]
        assert chosen == [v["strategy"] for v in wg["versus"]]
        assert set(chosen) <= {"random", "kmedoids", "kcenter", "herding"}
        assert g["versus_note"].startswith("Best baseline chosen on the validation split")
        assert g["versus_note"] in md
        for r in g["rows"]:  # every row but the chosen baseline's own carries the difference
            vs = chosen[[5, 10].index(r["k"])]
            assert (r["versus"]["versus"] == vs) if "versus" in r else r["strategy"] == vs
    assert "because it holds too few images" in got["groups"][1]["versus_note"]
    # the per-task CSV, byte for byte, and the arrays it was written from
    assert open(py_pt, "rb").read() == open(pt, "rb").read()
    assert per["strategies"] == ["random", "kmedoids", "kcenter", "herding", "medselect"]
    assert per["auroc"].shape == (2, 2, 5, 60) and per["condition"].shape == (2, 60)
    rows = csv_rows(pt)
    assert len(rows) == 2 * 60 * 2
    for row in rows:
        g = per["groups"].index(row["group"])
        i, ki = int(row["task"]), per["k"].index(int(row["k"]))
        assert per["condition"][g, i] == row["condition"]
        for si, lab in enumerate(per["strategies"]):
            assert float(f"{per['auroc'][g, ki, si, i]:.9g}") == float(row[lab])
    # your own paired test from the arrays: the versus difference's mean is theirs
    for g, grp in enumerate(got["groups"]):
        for r in grp["rows"]:
            if r["condition"] is None and r["strategy"] == "medselect":
                ki = per["k"].index(r["k"])
                vi = per["strategies"].index(r["versus"]["versus"])
                d = per["auroc"][g, ki, 4] - per["auroc"][g, ki, vi]
                assert d.mean() == pytest.approx(r["versus"]["mean"], abs=1e-12)


@have_nih
def test_analyze_best_matches_cli(tmp):
    js, out = str(tmp / "anb.json"), str(tmp / "anb")
    cli("analyze", "--pos-csv", e("test_pos.csv"), "--norm-csv", e("test_norm.csv"), *TASKS,
        "-k", "5", "--tasks", "40", "--seed", "2", "--a", "kcenter", "--b", "best", *VAL_CLI,
        "--val-tasks", "30", "--permutations", "200", "--bootstrap", "200", "--out", out,
        "--json", js)
    want = json.load(open(js))
    got = ms.analyze(pos=e("test_pos.csv"), norm=e("test_norm.csv"), a="kcenter", b="best",
                     val=VAL_PY, val_tasks=30, k=5, tasks=40, seed=2, permutations=200,
                     bootstrap=200, **PY_TASKS)
    assert got == strip(want, "command")
    an = got["analyses"][0]
    assert an["a"] == "kcenter" and an["b"] != "kcenter"
    assert an["b_chosen_as"].startswith("best baseline on the validation split (30 tasks")


@have_nih
def test_versus_best_bad_input(tmp):
    kw = dict(pos=e("test_pos.csv"), norm=e("test_norm.csv"), k=5, tasks=5,
              strategies=["random", "kmedoids"], **PY_TASKS)
    with pytest.raises(ValueError, match=r"versus='best' is chosen on a validation split: give val="):
        ms.evaluate(**kw, versus="best")
    with pytest.raises(ValueError, match="'kcenter' is not one of the evaluated strategies"):
        ms.evaluate(**kw, versus="kcenter")
    with pytest.raises(ValueError, match="val is the validation split for versus='best'"):
        ms.evaluate(**kw, versus="kmedoids", val=VAL_PY)
    with pytest.raises(ValueError, match="val is the validation split for versus='best'"):
        ms.evaluate(**kw, val=VAL_PY)
    with pytest.raises(OSError, match="nowhere_val.csv"):
        ms.evaluate(**kw, versus="best", val=("/nowhere_val.csv", e("val_norm.csv")))
    # a validation split of another embedding width
    n = len(csv_rows(e("val_pos.csv")))
    narrow = str(tmp / "narrow.npy")
    np.save(narrow, np.zeros((n, 16), np.float32))
    narrow_n = str(tmp / "narrow_n.npy")
    np.save(narrow_n, np.zeros((len(csv_rows(e("val_norm.csv"))), 16), np.float32))
    with pytest.raises(ValueError, match="embeddings have 16 columns, the evaluated split 512"):
        ms.evaluate(**kw, versus="best", val=((e("val_pos.csv"), narrow),
                                              (e("val_norm.csv"), narrow_n)))
    with pytest.raises(ValueError, match=r"b='best' is chosen on a validation split"):
        ms.analyze(pos=e("test_pos.csv"), norm=e("test_norm.csv"), a="kcenter", b="best",
                   **PY_TASKS)
    with pytest.raises(ValueError, match="val is the validation split for b='best'"):
        ms.analyze(pos=e("test_pos.csv"), norm=e("test_norm.csv"), a="kcenter", b="kmedoids",
                   val=VAL_PY, **PY_TASKS)


@have_nih
def test_analyze_matches_cli_json(tmp):
    js, out = str(tmp / "an.json"), str(tmp / "an")
    cli("analyze", "--pos-csv", e("test_pos.csv"), "--norm-csv", e("test_norm.csv"), *TASKS,
        "-k", "5", "--tasks", "40", "--seed", "2", "--a", "kcenter", "--b", "kmedoids",
        "--permutations", "200", "--bootstrap", "200", "--out", out, "--json", js)
    want = json.load(open(js))
    got = ms.analyze(pos=e("test_pos.csv"), norm=e("test_norm.csv"), a="kcenter", b="kmedoids",
                     k=5, tasks=40, seed=2, permutations=200, bootstrap=200,
                     out=str(tmp / "an-py"), **PY_TASKS)
    assert got == strip(want, "command")
    assert os.path.exists(str(tmp / "an-py" / "report.md"))
    with pytest.raises(ValueError, match="validation split"):
        ms.analyze(pos=e("test_pos.csv"), norm=e("test_norm.csv"), a="kcenter", b="best",
                   **PY_TASKS)


# ---- training -----------------------------------------------------------------------------------

@have_nih
def test_train_matches_cli_and_stops(tmp, selector_ckpt):
    data = dict(train=(e("train_pos.csv"), e("train_norm.csv")),
                val=(e("val_pos.csv"), e("val_norm.csv")))
    out = str(tmp / "py-run")
    seen = []
    res = ms.train(out=out, progress=lambda p: seen.append(p["iteration"]), **data, **PY_TRAIN)
    assert res["iterations"] == 6 and not res["stopped"] and seen == list(range(1, 7))
    assert len(res["history"]) == 6 and res["history"][1]["val_auroc"] is not None
    for f in ("best.safetensors", "last.safetensors"):
        assert open(os.path.join(out, f), "rb").read() == \
            open(os.path.join(selector_ckpt, f), "rb").read(), f
    strip_s = lambda rows: [strip(r, "seconds") for r in rows]  # noqa: E731
    assert strip_s(csv_rows(os.path.join(out, "metrics.csv"))) == \
        strip_s(csv_rows(os.path.join(selector_ckpt, "metrics.csv")))

    # the callback stops training after iteration 3; resume=True then ends with the same weights
    out2 = str(tmp / "py-stop")
    res = ms.train(out=out2, progress=lambda p: p["iteration"] == 3, **data, **PY_TRAIN)
    assert res["stopped"] and res["iterations"] == 3
    assert not os.path.exists(os.path.join(out2, "last.safetensors"))
    res = ms.train(out=out2, resume=True, **data, **PY_TRAIN)
    assert res["iterations"] == 6 and not res["stopped"]
    assert open(os.path.join(out2, "last.safetensors"), "rb").read() == \
        open(os.path.join(selector_ckpt, "last.safetensors"), "rb").read()

    # an exception in the callback stops training and is raised
    class Boom(Exception):
        pass

    def boom(p):
        raise Boom("stop here")
    with pytest.raises(Boom):
        ms.train(out=str(tmp / "py-boom"), progress=boom, **data, **PY_TRAIN)


@have_nih
def test_train_relational_options_match_cli(tmp):
    """arch, a budget range, a prevalence range and leave-one-out samples: the same weights
    as the CLI with the same options, bit for bit; bad values are ValueErrors."""
    flags = ["--seen", "Effusion,Infiltration", "--pool", "30", "--query", "20", "-k", "3:12",
             "--pos-frac", "0.2:0.5", "--tasks", "32", "--epochs", "1", "--batch-size", "8",
             "--val-tasks", "16", "--val-every", "2", "--seed", "5", "--threads", "2",
             "--arch", "relational:redundancy=8,coverage=1", "--samples", "4", "--lr", "1e-2"]
    cli_out = str(tmp / "cli-rel")
    cli("train", "--train-pos-csv", e("train_pos.csv"), "--train-norm-csv", e("train_norm.csv"),
        "--val-pos-csv", e("val_pos.csv"), "--val-norm-csv", e("val_norm.csv"), *flags,
        "--out", cli_out)
    data = dict(train=(e("train_pos.csv"), e("train_norm.csv")),
                val=(e("val_pos.csv"), e("val_norm.csv")))
    kw = dict(seen=["Effusion", "Infiltration"], pool=30, query=20, k=(3, 12),
              pos_frac=(0.2, 0.5), tasks=32, epochs=1, batch_size=8, val_tasks=16, val_every=2,
              seed=5, threads=2, arch="relational:redundancy=8,coverage=1", samples=4, lr=1e-2)
    out = str(tmp / "py-rel")
    res = ms.train(out=out, **data, **kw)
    assert res["iterations"] == 4
    for f in ("best.safetensors", "last.safetensors"):
        assert open(os.path.join(out, f), "rb").read() == \
            open(os.path.join(cli_out, f), "rb").read(), f
    assert ms.Selector.load(os.path.join(out, "last.safetensors")).arch == "relational"
    for bad in (dict(k=(12, 3)), dict(pos_frac=(0.5, 0.2)), dict(arch="nosuch"),
                dict(baseline="best"), dict(augment="flip"), dict(samples=4, baseline="greedy")):
        with pytest.raises(ValueError):
            ms.train(out=str(tmp / "py-bad"), **data, **{**kw, **bad})


@have_nih
def test_ctrl_c_stops_train(tmp):
    """SIGINT during training: KeyboardInterrupt after the current iteration, the state saved
    at that iteration, and resume=True continues from it."""
    import time
    out = str(tmp / "py-int")
    kw = dict(PY_TRAIN, epochs=400, val_every=1000)
    data = dict(train=(e("train_pos.csv"), e("train_norm.csv")),
                val=(e("val_pos.csv"), e("val_norm.csv")))
    timer = threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    t0 = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        ms.train(out=out, **data, **kw)
    timer.cancel()
    assert time.monotonic() - t0 < 30
    rows = csv_rows(os.path.join(out, "metrics.csv"))
    assert 0 < len(rows) < 1200
    res = ms.train(out=out, resume=True, max_iterations=2, **data, **kw)
    assert res["iterations"] == len(rows) + 2


# ---- embed -------------------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists(os.path.join(MODEL, "model.safetensors")),
                    reason="the encoder is not here")
@have_nih
def test_embed_matches_cli(tmp):
    root = os.path.join(SHARED, "data", "nih1000")
    rows = csv_rows(os.path.join(root, "labels.csv"))[:5]
    lst = str(tmp / "list.csv")
    with open(lst, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Path"])
        for r in rows:
            w.writerow([os.path.join(root, r["Path"])])
    cli("embed", "--model", MODEL, "--images", lst, "--out", str(tmp / "emb.csv"), "--threads", "2")
    want = ms.read_embeddings(str(tmp / "emb.hdf5"))
    got = ms.embed(MODEL, [os.path.join(root, r["Path"]) for r in rows])
    assert got.shape == (5, 512) and got.dtype == np.float32
    assert np.array_equal(got, want)
    with pytest.raises(OSError, match="missing.png"):
        ms.embed(MODEL, [os.path.join(root, rows[0]["Path"]), str(tmp / "missing.png")])
    bad = tmp / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ValueError, match="bad.png"):
        ms.embed(MODEL, [str(bad)])


# ---- bad input ----------------------------------------------------------------------------------

def test_bad_input():
    x = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="2-d"):
        ms.select(x[0], 3)
    with pytest.raises(ValueError, match="2-d"):
        ms.select(x[None], 3)
    with pytest.raises(ValueError, match="empty"):
        ms.select(x[:0], 1)
    with pytest.raises(ValueError, match="fewer than k = 51"):
        ms.select(x, 51)
    with pytest.raises(ValueError, match="at least 1"):
        ms.select(x, 0)
    y = x.copy()
    y[7, 2] = np.nan
    with pytest.raises(ValueError, match="row 7, column 2 is not finite"):
        ms.select(y, 3, "kmedoids")
    y[7, 2] = np.inf
    with pytest.raises(ValueError, match="not finite"):
        ms.select(y, 3)
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        ms.select(x, 3, "nope")
    with pytest.raises(ValueError, match="delta"):
        ms.select(x, 3, "probcover:delta=abc")
    with pytest.raises(ValueError, match="seed"):
        ms.select(x, 3, seed=-1)
    with pytest.raises(TypeError):
        ms.select(x, 3, strategy=42)
    with pytest.raises(OSError, match="nowhere.safetensors"):
        ms.Selector.load("/nowhere.safetensors")
    with pytest.raises(OSError, match="nowhere.hdf5"):
        ms.read_embeddings("/nowhere.hdf5")


def test_bad_checkpoint_and_shapes(tmp):
    bad = tmp / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(ValueError, match="bad.safetensors"):
        ms.Selector.load(str(bad))
    sel = ms.Selector.load(os.path.join(FIXTURES, "python", "torch_selector.safetensors"))
    with pytest.raises(ValueError, match="columns"):
        sel.scores(np.zeros((10, sel.input_dim + 1), np.float32))
    with pytest.raises(ValueError, match="not finite"):
        sel.scores(np.full((10, sel.input_dim), np.nan, np.float32))
    with pytest.raises(ValueError, match="fewer than k"):
        sel.select(np.zeros((4, sel.input_dim), np.float32), 5)
    with pytest.raises(ValueError, match="clinical"):
        sel.scores(np.zeros((4, sel.input_dim), np.float32), clinical=np.zeros((4, 3)))


class BadStrategy:
    def __init__(self, answer):
        self.answer = answer

    def select(self, x, k, seed):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer(x, k)


def test_user_strategy_errors():
    x = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    assert ms.select(x, 3, BadStrategy(lambda x, k: [4, 2, 0])).tolist() == [4, 2, 0]
    with pytest.raises(ValueError, match="twice"):
        ms.select(x, 3, BadStrategy(lambda x, k: [1, 1, 2]))
    with pytest.raises(ValueError, match="outside"):
        ms.select(x, 3, BadStrategy(lambda x, k: [1, 2, 40]))
    with pytest.raises(ValueError, match="3 integer indices"):
        ms.select(x, 3, BadStrategy(lambda x, k: [1, 2]))


@have_nih
def test_evaluate_bad_input(tmp):
    kw = dict(pos=e("test_pos.csv"), norm=e("test_norm.csv"), k=5, tasks=5, **PY_TASKS)
    with pytest.raises(OSError, match="nowhere_pos.csv"):
        ms.evaluate(**dict(kw, pos="/nowhere_pos.csv"))
    with pytest.raises(ValueError, match="Atlantis"):
        ms.evaluate(**dict(kw, seen=["Atlantis"]))
    with pytest.raises(ValueError, match="k = 31"):
        ms.evaluate(**dict(kw, k=31))
    with pytest.raises(ValueError, match="unknown strategy"):
        ms.evaluate(**dict(kw, strategies=["random", "bogus"]))
    with pytest.raises(ValueError, match="twice"):
        ms.evaluate(**dict(kw, strategies=[BadStrategy(lambda x, k: [0] * k)]))
    with pytest.raises(ZeroDivisionError):
        ms.evaluate(**dict(kw, strategies=[BadStrategy(ZeroDivisionError("user bug"))]))
    # a Python strategy's exception leaves the library usable
    assert ms.evaluate(**dict(kw, strategies=["random"]))["groups"][0]["rows"]


@have_nih
def test_ctrl_c_stops_evaluate():
    """SIGINT during a long evaluate raises KeyboardInterrupt within a second or so, and
    the module still works afterwards."""
    kw = dict(pos=e("test_pos.csv"), norm=e("test_norm.csv"), k=[5, 10], tasks=200000,
              strategies=["random", "kmedoids"], **PY_TASKS)
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    import time
    t0 = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        ms.evaluate(**kw)
    assert time.monotonic() - t0 < 10
    timer.cancel()
    assert ms.select(np.eye(4, dtype=np.float32), 2).shape == (2,)


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def test_no_leak_on_repeated_calls_and_errors():
    """Memory stays flat over many calls, failing ones included (the extension frees what
    the library returns on every path)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 64)).astype(np.float32)
    sel = ms.Selector.load(os.path.join(FIXTURES, "python", "torch_selector.safetensors"))
    xs = rng.standard_normal((500, sel.input_dim))
    bad = x.copy()
    bad[5, 5] = np.nan

    def round_():
        ms.select(x, 20, "kcenter", seed=1)
        ms.select(x.astype(np.float64), 20, "random", seed=1)
        sel.scores(xs)
        sel.sample(xs, 10, seed=2)
        for args in ((bad, 3), (x, 5000), (x[0], 3)):
            with pytest.raises(ValueError):
                ms.select(*args)
        with pytest.raises(ValueError):
            ms.select(x, 3, "nope")
        with pytest.raises(OSError):
            ms.Selector.load("/nowhere.safetensors")
        with pytest.raises(ValueError):
            ms.select(x, 3, BadStrategy(lambda x, k: [1, 1, 1]))
    for _ in range(20):
        round_()
    before = rss_mb()
    for _ in range(200):
        round_()
    grown = rss_mb() - before
    assert grown < 8, f"resident memory grew by {grown:.1f} MB over 200 rounds"


def test_help_documents_everything():
    for name in ms.__all__:
        obj = getattr(ms, name)
        if callable(obj):
            assert obj.__doc__ and len(obj.__doc__) > 40, name
    for m in ("load", "scores", "select", "sample"):
        assert getattr(ms.Selector, m).__doc__, m
