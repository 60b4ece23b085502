#!/usr/bin/python3
"""peer_torchvision.py: torchvision's resnet18 forward throughput (images/s), the peer of
bench_embed.c. Same protocol: fc = Identity, eval(), no_grad, random input of B images of
S x S x 3, W warm-up passes (default 2), R timed passes (default 10), median; and the
images per CPU-second of the timed passes (process user + system time, all threads).

Usage: /usr/bin/python3 bench/peer_torchvision.py [--size S] [--batch B] [--threads T] [--reps R] [--warmup W]
Prints "torchvision size=S batch=B threads=T median_img_s=X img_per_cpu_s=Y" (plus one line
per repetition). torch.set_num_threads(T) sets its intra-op (OpenMP) threads, which convolution
(oneDNN, the same jit:avx512_core kernels medselect uses) and the elementwise ops share; it
checks that torch really runs T threads.
Weights are random: the speed of a forward pass does not depend on them.
"""
import argparse
import statistics
import time

import torch
import torchvision


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if torch.get_num_threads() != a.threads:
        raise SystemExit("peer_torchvision: torch runs %d threads, not %d" % (torch.get_num_threads(), a.threads))
    torch.manual_seed(0)
    net = torchvision.models.resnet18()
    net.fc = torch.nn.Identity()
    net.eval()
    x = torch.randn(a.batch, 3, a.size, a.size)
    ips = []
    with torch.no_grad():
        for _ in range(a.warmup):
            net(x)
        c0 = time.process_time()
        for k in range(a.reps):
            t0 = time.perf_counter()
            net(x)
            ips.append(a.batch / (time.perf_counter() - t0))
            print("torchvision size=%d batch=%d threads=%d rep=%d img_s=%.1f" % (a.size, a.batch, a.threads, k, ips[-1]))
        cpu = time.process_time() - c0
    print("torchvision size=%d batch=%d threads=%d median_img_s=%.1f img_per_cpu_s=%.1f"
          % (a.size, a.batch, a.threads, statistics.median(ips), a.batch * a.reps / cpu))


if __name__ == "__main__":
    main()
