#!/usr/bin/python3
"""bench/rank_selectors.py: rank selectors by their paired difference to the best baseline.

    bench/rank_selectors.py TASKS.csv [TASKS.csv ...]

Reads `medselect evaluate --per-task` files (one per task shape, e.g. pool 60 at prevalence
0.2 and pool 30 at 0.5) that hold the baselines random, kmedoids, kmeans, kcenter, herding
and any number of --model selectors on the same tasks. Per (file, K) row the best baseline
is the one with the highest mean AUROC on these tasks; every selector gets its mean paired
difference to it on every row (with t = mean / standard error), and the selectors are listed
by the mean of those differences over the rows, then the smallest. Python standard library
only. Used to choose the relational selector's weights on NIH train and validation tasks
(docs/selectors.md).
"""
import collections
import csv
import math
import sys

BASE = ["random", "kmedoids", "kmeans", "kcenter", "herding"]


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        sys.stdout.write(__doc__)
        return 0 if len(sys.argv) > 1 else 1
    data = collections.defaultdict(dict)  # (file, k) -> column -> {task: auroc}
    order = []
    for fn in sys.argv[1:]:
        with open(fn, newline="") as f:
            r = csv.DictReader(f)
            cols = [c for c in r.fieldnames if c not in ("group", "task", "condition", "k")]
            for row in r:
                key = (fn, int(row["k"]))
                if key not in order:
                    order.append(key)
                for c in cols:
                    data[key].setdefault(c, {})[(row["group"], row["task"], row["condition"])] = float(row[c])
    mean = lambda v: sum(v) / len(v)
    best = {}
    for key in order:
        have = [b for b in BASE if b in data[key]]
        best[key] = max(have, key=lambda b: mean(list(data[key][b].values())))
    names = [c for c in data[order[0]] if c not in BASE and all(c in data[k] for k in order)]
    print("best baseline per row: " + ", ".join(f"{fn.split('/')[-1]} K{k} {best[(fn, k)]}" for fn, k in order))
    out = []
    for c in names:
        diffs, ts = [], []
        for key in order:
            a, b = data[key][c], data[key][best[key]]
            d = [a[t] - b[t] for t in a]
            m = mean(d)
            sd = math.sqrt(sum((x - m) ** 2 for x in d) / max(1, len(d) - 1))
            diffs.append(m)
            ts.append(m / (sd / math.sqrt(len(d))) if sd > 0 else 0.0)
        out.append((mean(diffs), min(diffs), c, diffs, ts))
    out.sort(key=lambda r: (r[0], r[1]), reverse=True)
    for m, mn, c, diffs, ts in out:
        print(f"{c}: mean {m:+.4f}, smallest {mn:+.4f} | " +
              " ".join(f"{d:+.3f} (t {t:+.1f})" for d, t in zip(diffs, ts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
