#!/usr/bin/python3
"""bench/peer_torch.py: the MedSelect training step in PyTorch, timed, as the peer of
medselect's bench_train.

One iteration is the reference training step on a batch of tasks, on synthetic embeddings:
  sampling   per task: a condition, a pool (half positives) and a disjoint query set (half
             positives), each shuffled; the pools are gathered into x (B, T, D)
  forward    nn.LSTM(D, H, bidirectional=True, batch_first=True) + nn.Linear(2H, 1):
             logits (B, T)
  selection  per task K distinct items by Gumbel-top-k on the logits (a draw from the
  + reward   Plackett-Luce policy, i.e. sampling without replacement) and its differentiable
             log-probability sum_j [logit_{s_j} - logsumexp(logits not yet selected)];
             reward = AUROC on the query of the cosine prototype predictor (mean cosine to
             the selected positives minus mean cosine to the selected negatives; a missing
             class gives 0); baseline = the same with K random distinct pool items;
             advantage = reward - baseline; loss = -mean(advantage * logp)
  backward   loss.backward() and one Adam(lr 1e-4) step
The default configuration is the reference's: 64 tasks, pool 1000, query 100, D 512,
H 256, K 20. After one warm-up iteration, --iters iterations are timed.

FLOP model (the same in bench_train): per task with T pool items,
  forward  = 2*T*(D*8H + H*8H)                       input projections of both directions
                                                     + recurrent products
  backward = 2*T*(D*8H) + 2*T*(H*8H) + 2*T*(H*8H)    dW_ih + dW_hh + the dh recurrence
  (elementwise work and the linear layer ignored; no gradient w.r.t. the embeddings).
At T 1000, D 512, H 256: 3.15 + 4.19 GFLOP per task, 469.8 GFLOP per 64-task iteration.

Output: per-iteration diagnostics and a time breakdown on stderr; the last line of stdout
is one JSON object
  {"name": "pytorch", "tasks_per_s": X, "s_per_iter": Y, "gflops": Z, "peak_rss_mb": W,
   "threads": T, ...}
Usage: /usr/bin/python3 bench/peer_torch.py [--iters N] [--threads T] [--json]
       [--pool P --query Q --dim D --hidden H --k K --batch B]  (smaller configs for checks)
       [--check]     fail (exit 1) unless loss is finite, rewards and baselines lie in
                     [0, 1] and the advantage mean of the warm-up (initial policy) is small
       [--selftest]  check the AUROC against scikit-learn and the vectorized log-probability
                     against a plain loop, then exit
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn as nn


def flops_per_task(T, D, H):
    """(forward, backward) FLOPs of one task under the model stated above."""
    fwd = 2.0 * T * (D * 8 * H + H * 8 * H)
    bwd = 2.0 * T * (D * 8 * H) + 2.0 * T * (H * 8 * H) + 2.0 * T * (H * 8 * H)
    return fwd, bwd


FLOP_MODEL = ("FLOP model per task: forward 2*T*(D*8H + H*8H), backward 2*T*(D*8H) + "
              "2*T*(H*8H) + 2*T*(H*8H) (elementwise and linear layer ignored, no dx)")


# ---------------------------------------------------------------------------------------
# Synthetic embeddings: modes (acquisition variation) + noise + condition directions.
# ---------------------------------------------------------------------------------------
class SynthData:
    def __init__(self, n_pos, n_norm, dim, n_cond, seed):
        rs = np.random.RandomState(seed)
        n_modes = 6
        centres = rs.normal(0.0, 1.0, (n_modes, dim)) / math.sqrt(dim) * 4.0
        dirs = rs.normal(0.0, 1.0, (n_cond, dim))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        noise_sd = 1.0 / math.sqrt(dim) * 2.0

        def base(n):
            modes = rs.randint(0, n_modes, n)
            return centres[modes] + rs.normal(0.0, noise_sd, (n, dim))

        # positives: a primary condition, a second one with probability 0.2
        labels = np.zeros((n_pos, n_cond), dtype=bool)
        primary = rs.randint(0, n_cond, n_pos)
        labels[np.arange(n_pos), primary] = True
        second = rs.randint(0, n_cond, n_pos)
        comorbid = rs.uniform(size=n_pos) < 0.2
        labels[np.arange(n_pos)[comorbid], second[comorbid]] = True
        severity = rs.uniform(0.3, 1.5, (n_pos, n_cond)) * labels
        pos = base(n_pos) + severity @ dirs * 1.0
        norm = base(n_norm)
        self.x = np.concatenate([pos, norm]).astype(np.float32)          # (n_pos+n_norm, D)
        self.pos_of = [np.flatnonzero(labels[:, c]) for c in range(n_cond)]  # rows per cond
        self.norm_rows = np.arange(n_pos, n_pos + n_norm)
        self.n_cond = n_cond


def sample_task(data, rs, pool, query):
    """Reference task sampling: condition c uniform; ceil(pool/2) positives for c and the
    rest normals in the pool, ceil(query/2) / rest in the query, disjoint, each shuffled.
    Returns (pool_rows, pool_labels, query_rows, query_labels)."""
    c = rs.randint(data.n_cond)
    pp, qp = (pool + 1) // 2, (query + 1) // 2
    pos = rs.choice(data.pos_of[c], pp + qp, replace=False)
    neg = rs.choice(data.norm_rows, (pool - pp) + (query - qp), replace=False)
    prow = np.concatenate([pos[:pp], neg[:pool - pp]])
    plab = np.concatenate([np.ones(pp), np.zeros(pool - pp)])
    qrow = np.concatenate([pos[pp:], neg[pool - pp:]])
    qlab = np.concatenate([np.ones(qp), np.zeros(query - qp)])
    p = rs.permutation(pool)
    q = rs.permutation(query)
    return prow[p], plab[p], qrow[q], qlab[q]


# ---------------------------------------------------------------------------------------
# Reward: the cosine prototype predictor and a rank-based AUROC.
# ---------------------------------------------------------------------------------------
def auroc_rank(scores, labels):
    """AUROC of one task by the Mann-Whitney rank formula, ties given their average rank.
    scores, labels: (Q,) numpy arrays (labels 0/1). NaN when a class is missing."""
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s), dtype=np.float64)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0  # average of ranks i+1 .. j+1
        i = j + 1
    npos = labels.sum()
    nneg = len(labels) - npos
    if npos == 0 or nneg == 0:
        return float("nan")
    return float((ranks[labels > 0].sum() - npos * (npos + 1) / 2.0) / (npos * nneg))


def predictor_scores(xs, ys, xq):
    """Cosine prototype predictor for a batch of tasks.
    xs (B, K, D) selected embeddings, ys (B, K) their labels 0/1, xq (B, Q, D) query.
    Returns (B, Q): mean cos to selected positives - mean cos to selected negatives (a mean
    over an empty set is 0)."""
    xs = xs / xs.norm(dim=2, keepdim=True).clamp_min(1e-12)
    xq = xq / xq.norm(dim=2, keepdim=True).clamp_min(1e-12)
    cos = torch.bmm(xq, xs.transpose(1, 2))                      # (B, Q, K)
    npos = ys.sum(1, keepdim=True)                               # (B, 1)
    nneg = ys.shape[1] - npos
    spos = (cos * ys.unsqueeze(1)).sum(2) / npos.clamp_min(1.0)  # 0 when npos == 0
    sneg = (cos * (1.0 - ys).unsqueeze(1)).sum(2) / nneg.clamp_min(1.0)
    return spos - sneg


def rewards(sel, x, plab, xq, qlab):
    """AUROC per task of the predictor built from pool items sel (B, K)."""
    B, K = sel.shape
    xs = torch.gather(x, 1, sel.unsqueeze(2).expand(B, K, x.shape[2]))
    ys = torch.gather(plab, 1, sel)
    sc = predictor_scores(xs, ys, xq).numpy()
    ql = qlab.numpy()
    return np.array([auroc_rank(sc[b], ql[b]) for b in range(B)])


# ---------------------------------------------------------------------------------------
# The policy: Gumbel-top-k draw and its Plackett-Luce log-probability.
# ---------------------------------------------------------------------------------------
def gumbel_topk(logits, k, gen):
    """K distinct items per row drawn from the Plackett-Luce distribution of logits (B, T):
    the top-k of logits + Gumbel noise, in the order of the draw (largest key first)."""
    u = torch.rand(logits.shape, generator=gen).clamp_(1e-20, 1.0 - 1e-7)
    keys = logits.detach() - torch.log(-torch.log(u))
    return torch.topk(keys, k, dim=1, sorted=True).indices          # (B, K)


def pl_logprob(logits, sel):
    """log p(sel) under sequential sampling without replacement, differentiable in logits.
    logits (B, T), sel (B, K) in draw order. Step j: logit_{sel_j} - logsumexp over the
    items not among sel_0 .. sel_{j-1}."""
    B, T = logits.shape
    K = sel.shape[1]
    onehot = torch.zeros(B, K, T, dtype=torch.bool)
    onehot.scatter_(2, sel.unsqueeze(2), True)
    # removed[b, j, t]: item t was drawn before step j (exclusive cumulative "or")
    removed = torch.cumsum(onehot.to(torch.int32), dim=1) - onehot.to(torch.int32) > 0
    masked = logits.unsqueeze(1).expand(B, K, T).masked_fill(removed, float("-inf"))
    lse = torch.logsumexp(masked, dim=2)                           # (B, K)
    return (torch.gather(logits, 1, sel) - lse).sum(1)             # (B,)


def pl_logprob_loop(logits_row, sel_row):
    """Plain reference of pl_logprob for one task (for --selftest)."""
    avail = torch.ones(logits_row.shape[0], dtype=torch.bool)
    total = 0.0
    for j in sel_row.tolist():
        total += float(logits_row[j] - torch.logsumexp(logits_row[avail], 0))
        avail[j] = False
    return total


class Selector(nn.Module):
    def __init__(self, D, H):
        super().__init__()
        self.LSTM = nn.LSTM(D, H, bidirectional=True, batch_first=True)
        self.linear = nn.Linear(2 * H, 1)

    def forward(self, x):                       # x (B, T, D) -> logits (B, T)
        return self.linear(self.LSTM(x)[0]).squeeze(-1)


def selftest():
    from sklearn.metrics import roc_auc_score
    rs = np.random.RandomState(3)
    worst = 0.0
    for trial in range(200):
        n = rs.randint(4, 60)
        lab = (rs.uniform(size=n) < 0.5).astype(np.float64)
        lab[0], lab[1] = 1, 0
        sc = np.round(rs.normal(size=n), 1 if trial % 2 else 6)  # half the trials with ties
        worst = max(worst, abs(auroc_rank(sc, lab) - roc_auc_score(lab, sc)))
    print(f"selftest: AUROC vs sklearn, max |diff| {worst:.3g} over 200 cases", file=sys.stderr)
    ok = worst < 1e-12
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(4, 50, generator=g, dtype=torch.float64)
    sel = gumbel_topk(logits, 10, g)
    assert all(len(set(r.tolist())) == 10 for r in sel), "selection not distinct"
    lp = pl_logprob(logits, sel)
    ref = [pl_logprob_loop(logits[b], sel[b]) for b in range(4)]
    d = max(abs(float(lp[b]) - ref[b]) for b in range(4))
    print(f"selftest: Plackett-Luce logp vs loop, max |diff| {d:.3g}", file=sys.stderr)
    ok = ok and d < 1e-9
    print("selftest:", "ok" if ok else "FAILED", file=sys.stderr)
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="stdout is only the JSON line")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--pool", type=int, default=1000)
    ap.add_argument("--query", type=int, default=100)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--autocast-bf16", action="store_true",
                    help="run the forward under torch.autocast('cpu', dtype=torch.bfloat16)"
                         " (bf16 operands, fp32 weights and optimizer): the bf16 peer")
    ap.add_argument("--selftest", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.selftest:
        return selftest()
    if a.iters < 1:
        ap.error("--iters must be >= 1")
    B, T, Q, D, H, K = a.batch, a.pool, a.query, a.dim, a.hidden, a.k

    def log(*args):
        print(*args, file=sys.stderr, flush=True)

    data = SynthData(4000, 4000, D, 6, seed=1234)
    torch.manual_seed(a.seed)
    model = Selector(D, H)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    gen = torch.Generator().manual_seed(a.seed + 1)

    fwd, bwd = flops_per_task(T, D, H)
    gflop_iter = B * (fwd + bwd) * 1e-9
    log(f"peer_torch: torch {torch.__version__}, {torch.get_num_threads()} threads "
        f"(OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}); "
        f"B {B} tasks, pool {T}, query {Q}, D {D}, H {H}, K {K}")
    log(f"{FLOP_MODEL}: forward {fwd * 1e-9:.3f} + backward {bwd * 1e-9:.3f} GFLOP per task, "
        f"{gflop_iter:.1f} GFLOP per iteration")

    phases = ("sampling", "forward", "select+reward", "backward+step")
    timed = {p: 0.0 for p in phases}
    iter_times = []
    failures = []
    task_index = 0
    for it in range(a.iters + 1):          # iteration 0 is the warm-up
        t = [time.perf_counter()]
        # -- sampling: B tasks (task i seeded by its index, as the reference does)
        prow, plab, qrow, qlab = [], [], [], []
        for _ in range(B):
            rs = np.random.RandomState(task_index)
            task_index += 1
            r = sample_task(data, rs, T, Q)
            prow.append(r[0]); plab.append(r[1]); qrow.append(r[2]); qlab.append(r[3])
        x = torch.from_numpy(data.x[np.stack(prow)])               # (B, T, D)
        xq = torch.from_numpy(data.x[np.stack(qrow)])              # (B, Q, D)
        plab_t = torch.from_numpy(np.stack(plab).astype(np.float32))
        qlab_t = torch.from_numpy(np.stack(qlab).astype(np.float32))
        t.append(time.perf_counter())
        # -- forward
        if a.autocast_bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(x).float()                          # (B, T)
        else:
            logits = model(x)                                      # (B, T)
        t.append(time.perf_counter())
        # -- selection, log-probability, rewards and baseline
        sel = gumbel_topk(logits, K, gen)
        logp = pl_logprob(logits, sel)
        with torch.no_grad():
            reward = rewards(sel, x, plab_t, xq, qlab_t)
            rsel = torch.topk(torch.rand(B, T, generator=gen), K, dim=1).indices
            base = rewards(rsel, x, plab_t, xq, qlab_t)
        adv = reward - base
        loss = -(torch.from_numpy(adv.astype(np.float32)) * logp).mean()
        t.append(time.perf_counter())
        # -- backward and Adam step
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t.append(time.perf_counter())

        dt = [t[i + 1] - t[i] for i in range(4)]
        lossv = float(loss)
        log(f"iter {it}{' (warm-up)' if it == 0 else ''}: {t[4] - t[0]:.3f} s "
            f"[" + ", ".join(f"{p} {d:.3f}" for p, d in zip(phases, dt)) + "]  "
            f"loss {lossv:.5f} reward {reward.mean():.4f} baseline {base.mean():.4f} "
            f"adv {adv.mean():+.4f} logp {float(logp.mean()):.2f}")
        if not math.isfinite(lossv):
            failures.append(f"iter {it}: loss not finite")
        for name, v in (("reward", reward), ("baseline", base)):
            if not (np.all(np.isfinite(v)) and v.min() >= 0.0 and v.max() <= 1.0):
                failures.append(f"iter {it}: {name} outside [0, 1]")
        if it == 0 and abs(adv.mean()) > 0.1:
            failures.append(f"iter 0: advantage mean {adv.mean():+.4f} far from 0 at init")
        if it > 0:
            iter_times.append(t[4] - t[0])
            for p, d in zip(phases, dt):
                timed[p] += d

    n = len(iter_times)
    s_per_iter = sum(iter_times) / n
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    res = {"name": "pytorch-autocast-bf16" if a.autocast_bf16 else "pytorch", "tasks_per_s": round(B / s_per_iter, 4),
           "s_per_iter": round(s_per_iter, 4), "gflops": round(gflop_iter / s_per_iter, 3),
           "peak_rss_mb": round(peak_rss_mb, 1), "threads": torch.get_num_threads(),
           "iters": n, "gflop_per_iter": round(gflop_iter, 2),
           "breakdown_s": {p: round(timed[p] / n, 4) for p in phases}}
    log("mean per timed iteration: " + ", ".join(f"{p} {timed[p] / n:.3f} s" for p in phases)
        + f"; total {s_per_iter:.3f} s (min {min(iter_times):.3f}, max {max(iter_times):.3f})")
    if not a.json:
        print(f"pytorch: {res['tasks_per_s']:.3f} tasks/s, {s_per_iter:.3f} s/iter, "
              f"{res['gflops']:.2f} GFLOP/s ({gflop_iter:.1f} GFLOP/iter), "
              f"peak RSS {peak_rss_mb:.0f} MB, {res['threads']} threads")
    print(json.dumps(res), flush=True)
    if a.check:
        for f in failures:
            log("check FAILED: " + f)
        if not failures:
            log("check: ok (loss finite, rewards and baselines in [0, 1], "
                "initial advantage mean small)")
        return 1 if failures else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
