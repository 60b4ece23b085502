#!/usr/bin/python3
"""half_safetensors.py: store a safetensors file's F32 tensors in 16 bits (half the size).

    /usr/bin/python3 tools/half_safetensors.py IN.safetensors OUT.safetensors [--dtype f16|bf16]

Every F32 tensor is rounded to the nearest 16-bit value (ties to even): F16 is IEEE binary16
(10 fraction bits: relative rounding error <= 2^-11 = 4.9e-4, range +-65504, values below
6.1e-5 lose relative precision), BF16 keeps float's exponent with 7 fraction bits (relative
error <= 2^-8 = 3.9e-3, float's range). Other tensors (e.g. I64 counters) are copied unchanged.
Names, shapes, order and the header's `__metadata__` are kept; the metadata gains
"stored_dtype" (F16 or BF16) and "converted_from" (F32). With F16, a finite F32 value beyond
the F16 range is an error (exit 2) rather than an infinity.

`medselect embed` widens F16/BF16 tensors back to float exactly when it loads them; the network
runs in float. Only NumPy is needed.
"""
import argparse
import json
import struct
import sys

import numpy as np


def read(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    meta = hdr.pop("__metadata__", {}) or {}
    return hdr, meta, raw[8 + n:]


def to_bf16_bits(a):
    """float32 -> bfloat16 bits, round to nearest even (NaN stays NaN)."""
    u = a.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)  # quiet NaN, sign kept
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--dtype", choices=["f16", "bf16"], default="f16")
    a = ap.parse_args()
    hdr, meta, buf = read(a.inp)
    want = a.dtype.upper()
    names = sorted(hdr, key=lambda k: hdr[k]["data_offsets"][0])  # keep the file's order
    out_hdr, chunks, off = {}, [], 0
    for k in names:
        v = hdr[k]
        b, e = v["data_offsets"]
        data = buf[b:e]
        dt = v["dtype"]
        if dt == "F32":
            x = np.frombuffer(data, dtype="<f4")
            if want == "F16":
                if np.any(np.isfinite(x) & (np.abs(x) > 65504)):
                    sys.exit(f"{a.inp}: tensor {k}: values beyond the F16 range (use --dtype bf16)")
                data = x.astype("<f2").tobytes()
            else:
                data = to_bf16_bits(x).astype("<u2").tobytes()
            dt = want
        out_hdr[k] = {"dtype": dt, "shape": v["shape"], "data_offsets": [off, off + len(data)]}
        chunks.append(data)
        off += len(data)
    meta = dict(meta)
    meta["stored_dtype"] = want
    meta["converted_from"] = "F32"
    full = {"__metadata__": meta}
    full.update(out_hdr)
    js = json.dumps(full, separators=(",", ":")).encode()
    js += b" " * ((8 - len(js) % 8) % 8)
    with open(a.out, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for c in chunks:
            f.write(c)


if __name__ == "__main__":
    try:
        main()
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            sys.exit(2)
        raise
