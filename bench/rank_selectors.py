#!/usr/bin/python3
"""bench/rank_selectors.py: rank selectors by their paired difference to the best baseline.

    bench/rank_selectors.py [--by-rows] TASKS.csv [TASKS.csv ...]

Reads `medselect evaluate --per-task` files (one per task shape, e.g. pool 60 at prevalence
0.2 and pool 30 at 0.5) that hold the baselines random, kmedoids, kmeans, kcenter, herding
and any number of --model selectors on the same tasks. Per (file, K) row the best baseline
is the one with the highest mean AUROC on these tasks; every selector gets its mean paired
difference to it on every row (with t = mean / standard error), and the selectors are listed
by the mean of those differences over the rows, then the smallest. Every selector's line also
counts the rows where it is significantly below random and significantly behind best
(t < -1.96, the upper end of a normal 95% interval below 0). --by-rows sorts by those counts
first (fewest below random, then fewest behind best, then the mean): the design-choice
protocol of docs/selectors.md. Baselines are random, kmedoids, kmeans, kcenter, typiclust,
probcover and herding, those present in the files. Python standard library only.
"""
import collections
import csv
import math
import sys

BASE = ["random", "kmedoids", "kmeans", "kcenter", "typiclust", "probcover", "herding"]
SIG = 1.96


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(__doc__)
        return 0 if args else 1
    by_rows = args[0] == "--by-rows"
    if by_rows:
        args = args[1:]
    data = collections.defaultdict(dict)  # (file, k) -> column -> {task: auroc}
    order = []
    for fn in args:
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
    def paired(a, b):
        d = [a[t] - b[t] for t in a]
        m = mean(d)
        sd = math.sqrt(sum((x - m) ** 2 for x in d) / max(1, len(d) - 1))
        return m, (m / (sd / math.sqrt(len(d))) if sd > 0 else 0.0)

    out = []
    for c in names:
        diffs, ts, below = [], [], 0
        for key in order:
            m, t = paired(data[key][c], data[key][best[key]])
            diffs.append(m)
            ts.append(t)
            below += paired(data[key][c], data[key]["random"])[1] < -SIG if "random" in data[key] else 0
        behind = sum(t < -SIG for t in ts)
        out.append((mean(diffs), min(diffs), c, diffs, ts, below, behind))
    if by_rows:
        out.sort(key=lambda r: (-r[5], -r[6], r[0], r[1]), reverse=True)
    else:
        out.sort(key=lambda r: (r[0], r[1]), reverse=True)
    for m, mn, c, diffs, ts, below, behind in out:
        print(f"{c}: below random {below}/{len(order)}, behind best {behind}/{len(order)}, "
              f"mean {m:+.4f}, smallest {mn:+.4f} | " +
              " ".join(f"{d:+.3f} (t {t:+.1f})" for d, t in zip(diffs, ts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
