#!/usr/bin/python3
"""Synthetic train/val splits at the paper's size for timing a full `medselect train` run.

Usage: /usr/bin/python3 bench/make_paper_data.py OUT_DIR   (Debian python3-numpy, python3-h5py)

Writes OUT_DIR/{train,val}_{pos,norm}.{csv,hdf5} in the reference layout: 512-d embeddings,
two conditions ("Cond A", "Cond B") as random directions with a random strength, enough
positives per condition (about 1,500 in train, 1,000 in val) for pools of 1,000 with 500
positives plus queries of 100 with 50. Fixed seed: the data is the same on every run.
"""
import os
import sys

import h5py
import numpy as np

out = sys.argv[1] if len(sys.argv) > 1 else "paper-data"
os.makedirs(out, exist_ok=True)
rng = np.random.RandomState(1)
D = 512
dirs = rng.randn(2, D)
dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)


def split(name, npos, nnorm):
    x = np.abs(rng.randn(npos + nnorm, D)) * 0.5
    lab = np.zeros((npos, 2))
    lab[np.arange(npos), rng.randint(0, 2, npos)] = 1
    x[:npos] += lab @ dirs * rng.uniform(0.5, 2.0, (npos, 1))
    x = x.astype(np.float32)
    for part, rows, labels in (("pos", slice(0, npos), lab),
                               ("norm", slice(npos, npos + nnorm), np.zeros((nnorm, 2)))):
        n = rows.stop - rows.start
        with open(os.path.join(out, f"{name}_{part}.csv"), "w") as f:
            f.write("Path,Cond A,Cond B\n")
            for i in range(n):
                f.write(f"{part}/{i}.png,{labels[i, 0]:.1f},{labels[i, 1]:.1f}\n")
        with h5py.File(os.path.join(out, f"{name}_{part}.hdf5"), "w") as h:
            h.create_dataset("dataset", data=x[rows])


split("train", 3000, 3000)
split("val", 2000, 2000)
print("wrote", out)
