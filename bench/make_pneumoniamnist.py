#!/usr/bin/python3
"""PneumoniaMNIST as a second hospital for medselect: the npz in data/pneumoniamnist
(paediatric chest X-rays, Guangzhou, 28x28, label 0 normal / 1 pneumonia) turned into the
reference layout and embedded with `medselect embed` and the shared encoder.

    /usr/bin/python3 bench/make_pneumoniamnist.py [--out runs/pneumoniamnist] [--medselect build/medselect]

writes OUT/images/<split>_<index>.png (64x64 8-bit gray) and, per split (train, val, test),
OUT/<split>_pos.csv + .hdf5 (pneumonia: condition column `Pneumonia` = 1) and
OUT/<split>_norm.csv + .hdf5 (normal images), i.e. what `evaluate --pos-csv/--norm-csv`
reads. The images are upsampled 28 -> 64 with PIL's bicubic filter, exactly as the encoder's
training pool was made (../shared/models/cxr-simclr-resnet18-64/config.json,
"resize_method"), so `embed` sees them at the model's input size and resizes nothing.
The CSVs have no Age/Sex/View columns: MedMNIST does not ship them.

Everything it writes is derived data: regenerate it, do not commit it (runs/ is ignored).
Needs python3-numpy and python3-pil (installed with apt-get when missing).
"""
import argparse
import csv
import os
import subprocess
import sys


def need(module, package):
    try:
        __import__(module)
    except ImportError:
        print(f"installing {package} (apt-get)", file=sys.stderr)
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "install", "-y", "-q", package], check=True)


need("numpy", "python3-numpy")
need("PIL", "python3-pil")
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--npz", default=os.path.join(ROOT, "data", "pneumoniamnist", "pneumoniamnist.npz"))
    # the encoder in float32 as trained (../shared); the repository's F16 copy when that is absent
    model = os.path.join(ROOT, "..", "shared", "models", "cxr-simclr-resnet18-64")
    if not os.path.exists(os.path.join(model, "model.safetensors")):
        model = os.path.join(ROOT, "models", "cxr-simclr-resnet18-64")
    ap.add_argument("--model", default=model)
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "pneumoniamnist"))
    ap.add_argument("--medselect", default=os.path.join(ROOT, "build", "medselect"))
    ap.add_argument("--threads", default="2")
    a = ap.parse_args()
    if not os.access(a.medselect, os.X_OK):
        sys.exit(f"{a.medselect}: not found; build medselect first (cmake ... && cmake --build build)")
    d = np.load(a.npz)
    img_dir = os.path.join(a.out, "images")
    os.makedirs(img_dir, exist_ok=True)
    for split in ["train", "val", "test"]:
        x, y = d[f"{split}_images"], d[f"{split}_labels"].reshape(-1)
        assert x.shape[1:] == (28, 28) and x.dtype == np.uint8 and set(np.unique(y)) <= {0, 1}
        rows = {0: [], 1: []}
        for i in range(len(x)):
            rel = f"images/{split}_{i:04d}.png"
            Image.fromarray(x[i], mode="L").resize((64, 64), Image.BICUBIC).save(os.path.join(a.out, rel))
            rows[int(y[i])].append(rel)
        for lab, part in [(1, "pos"), (0, "norm")]:
            lst = os.path.join(a.out, f"{split}_{part}.list.csv")
            with open(lst, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["Path", "Pneumonia"])
                for rel in rows[lab]:
                    w.writerow([rel, lab])
            subprocess.run([a.medselect, "embed", "--model", a.model, "--images", lst,
                            "--out", os.path.join(a.out, f"{split}_{part}.csv"), "--threads", a.threads],
                           check=True)
            os.remove(lst)
        print(f"{split}: {len(rows[1])} pneumonia, {len(rows[0])} normal", file=sys.stderr)


if __name__ == "__main__":
    main()
