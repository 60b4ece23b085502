#!/usr/bin/python3
"""Overhead of the Python package over the C library alone, on one 100,000 x 512 pool.

    PYTHONPATH=build/python /usr/bin/python3 bench/bench_python.py [--n 100000] [--reps 5]

For each case, the same call is timed in rounds that alternate the C program
build/bench_pyref (exactly the library calls the extension makes, in a separate process,
no file I/O inside the timed region; of its two calls the second, warm one is taken) and the
Python call (warm) on a C-contiguous float32 array;
prints the median seconds of each and their ratio (Python / C), one JSON object per case:
  select:<strategy>  medselect.select(x, 20, strategy, seed=0)
  scores             Selector.scores(x) of a selector with D 512, H 256 (random weights,
                     written to a temporary safetensors file)
Also times `import medselect` (a fresh interpreter, median of 5) and the first call that
loads the extension.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_selector(path, D, H, seed=0):
    rng = np.random.default_rng(seed)
    b = 1 / np.sqrt(H)
    shapes = [("LSTM.weight_ih_l0", (4 * H, D)), ("LSTM.weight_ih_l0_reverse", (4 * H, D)),
              ("LSTM.weight_hh_l0", (4 * H, H)), ("LSTM.weight_hh_l0_reverse", (4 * H, H)),
              ("LSTM.bias_ih_l0", (4 * H,)), ("LSTM.bias_hh_l0", (4 * H,)),
              ("LSTM.bias_ih_l0_reverse", (4 * H,)), ("LSTM.bias_hh_l0_reverse", (4 * H,)),
              ("linear.weight", (1, 2 * H)), ("linear.bias", (1,))]
    header, blobs, off = {}, [], 0
    for name, shape in shapes:
        data = rng.uniform(-b, b, size=shape).astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--strategies", default="random,kcenter")
    ap.add_argument("--no-scores", action="store_true")
    a = ap.parse_args()
    ref = os.path.join(a.build, "bench_pyref")

    # import time first, in fresh interpreters
    env = dict(os.environ, PYTHONPATH=os.path.join(a.build, "python"))
    code = ("import time; t = time.perf_counter(); import medselect; t1 = time.perf_counter(); "
            "import numpy as np; t2 = time.perf_counter(); medselect.strategies(); "
            "print(t1 - t, time.perf_counter() - t2)")
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           check=True).stdout.split() for _ in range(5)]
    print(json.dumps({"case": "import", "import_medselect_s": float(np.median([float(r[0]) for r in runs])),
                      "first_call_s": float(np.median([float(r[1]) for r in runs]))}), flush=True)

    sys.path.insert(0, os.path.join(a.build, "python"))
    import medselect as ms
    ms.set_threads(0)
    x = np.random.default_rng(0).standard_normal((a.n, a.d)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        xp = os.path.join(tmp, "x.npy")
        np.save(xp, x)
        cases = [("select:" + s, [xp, "20", s], lambda s=s: ms.select(x, 20, s, seed=0))
                 for s in a.strategies.split(",")]
        if not a.no_scores:
            ck = os.path.join(tmp, "sel.safetensors")
            write_selector(ck, a.d, 256)
            sel = ms.Selector.load(ck)
            cases.append(("scores", [xp, "--scores", ck], lambda: sel.scores(x)))
        for name, args, call in cases:
            c_times, py_times = [], []
            call()  # warm-up (first touch of the extension's buffers)
            for _ in range(a.reps):
                # two calls in one process, the second timed: warm like the Python side
                out = subprocess.run([ref, *args, "2"], capture_output=True, text=True, check=True)
                c_times.append(json.loads(out.stdout)["seconds"][-1])
                t0 = time.perf_counter()
                call()
                py_times.append(time.perf_counter() - t0)
            mc, mp = float(np.median(c_times)), float(np.median(py_times))
            print(json.dumps({"case": name, "n": a.n, "d": a.d, "reps": a.reps, "c_median_s": round(mc, 4),
                              "python_median_s": round(mp, 4), "ratio": round(mp / mc, 3),
                              "c_s": [round(t, 4) for t in c_times],
                              "python_s": [round(t, 4) for t in py_times]}), flush=True)


if __name__ == "__main__":
    main()
