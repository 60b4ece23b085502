#!/usr/bin/python3
"""Writes the fuzz harnesses' seed corpora into fuzz/seeds/<harness>/ (small valid and
near-valid inputs of every format; a few KB each). Run once with Debian's python3-numpy,
python3-h5py and python3-pil; the output is committed, so fuzzing needs no Python.
"""
import io
import json
import os
import struct
import sys

import h5py
import numpy as np
from PIL import Image

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
rng = np.random.default_rng(7)


def put(harness, name, data):
    d = os.path.join(root, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- NPY ------------------------------------------------------------------------------------
def npy(a, version=(1, 0), fortran=False):
    b = io.BytesIO()
    if fortran:
        a = np.asfortranarray(a)
    np.lib.format.write_array(b, a, version=version)
    return b.getvalue()


put("npy", "f4_v1.npy", npy(rng.standard_normal((3, 4)).astype("<f4")))
put("npy", "f8_v2.npy", npy(rng.standard_normal((2, 3)).astype("<f8"), (2, 0)))
put("npy", "f4_v3.npy", npy(np.ones((1, 1), "<f4"), (3, 0)))
put("npy", "rank1.npy", npy(np.arange(5, dtype="<f4")))
put("npy", "fortran.npy", npy(rng.standard_normal((3, 2)).astype("<f4"), fortran=True))
put("npy", "big_endian.npy", npy(np.ones((2, 2), ">f4")))
put("npy", "int.npy", npy(np.ones((2, 2), "<i8")))

# ---- CSV ------------------------------------------------------------------------------------
put("csv", "reference.csv", b"Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Atelectasis,Edema\n"
    b"p/1.jpg,Female,61,Frontal,PA,,1.0,-1.0\np/2.jpg,Male,45,Lateral,,,0.0,1.0\n"
    b"p/3.jpg,F,,Frontal,AP,,1,\n")
put("csv", "quoted.csv", b'\xef\xbb\xbfPath,"A, b",B\r\n"x ""1"".png",1,0\r\n"multi\nline.png",,1\r\n\r\n')
put("csv", "view.csv", b"Unnamed: 0,Path,View,Age,Sex,PatientID,A\n0,a.png,LL,30,M,7,1\n1,b.png,PA,x,U,8,0\n")
put("csv", "ragged.csv", b"Path,A\na.png,1,2\n")
put("csv", "header_only.csv", b"Path,A,B\n")

# ---- HDF5 -----------------------------------------------------------------------------------
def h5(build):
    b = io.BytesIO()
    with h5py.File(b, "w", libver="earliest") as f:
        build(f)
    return b.getvalue()


put("hdf5", "f4.hdf5", h5(lambda f: f.create_dataset("dataset", data=rng.standard_normal((3, 4)).astype("f4"))))
put("hdf5", "f8.hdf5", h5(lambda f: f.create_dataset("dataset", data=rng.standard_normal((2, 2)))))
put("hdf5", "chunked_gzip.hdf5", h5(lambda f: f.create_dataset(
    "dataset", data=rng.standard_normal((8, 4)).astype("f4"), chunks=(4, 4), compression="gzip")))
put("hdf5", "int.hdf5", h5(lambda f: f.create_dataset("dataset", data=np.ones((2, 2), "i4"))))
put("hdf5", "rank1.hdf5", h5(lambda f: f.create_dataset("dataset", data=np.ones(3, "f4"))))
put("hdf5", "other_name.hdf5", h5(lambda f: f.create_group("g").create_dataset("x", data=np.ones((2, 2), "f4"))))

# ---- safetensors ------------------------------------------------------------------------------
def safetensors(tensors, meta=None):
    header, blobs, off = {}, [], 0
    for name, (dtype, a) in tensors.items():
        raw = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


D, H = 3, 2
lstm = {}
for suffix in ("", "_reverse"):
    lstm["LSTM.weight_ih_l0" + suffix] = ("F32", rng.standard_normal((4 * H, D)).astype("<f4"))
    lstm["LSTM.weight_hh_l0" + suffix] = ("F32", rng.standard_normal((4 * H, H)).astype("<f4"))
    lstm["LSTM.bias_ih_l0" + suffix] = ("F32", rng.standard_normal(4 * H).astype("<f4"))
    lstm["LSTM.bias_hh_l0" + suffix] = ("F32", rng.standard_normal(4 * H).astype("<f4"))
lstm["linear.weight"] = ("F32", rng.standard_normal((1, 2 * H)).astype("<f4"))
lstm["linear.bias"] = ("F32", rng.standard_normal(1).astype("<f4"))
put("safetensors", "selector.safetensors", safetensors(lstm, {
    "format": "medselect-selector", "version": "1", "D": str(D), "H": str(H), "clinical": "0", "K": "5",
    "sampler": "without-replacement", "seed": "3", "data": "x"}))
put("safetensors", "selector_plain.safetensors", safetensors(lstm))
put("safetensors", "dtypes.safetensors", safetensors({
    "a": ("F64", np.ones((2, 2), "<f8")), "b": ("I64", np.arange(3, dtype="<i8")),
    "c": ("I32", np.arange(2, dtype="<i4")), "d": ("U8", np.zeros(0, "u1")), "e": ("BF16", np.zeros(2, "<u2"))},
    {"k": "v"}))

# ---- images (first byte: the harness's options) -----------------------------------------------
def img(im, fmt, opt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return bytes([opt]) + b.getvalue()


g = Image.fromarray((rng.random((6, 8)) * 255).astype("u1"), "L")
c = Image.fromarray((rng.random((7, 5, 3)) * 255).astype("u1"), "RGB")
put("image", "gray.png", img(g, "PNG", 0x00))
put("image", "rgb.png", img(c, "PNG", 0x29))
put("image", "palette.png", img(c.convert("P"), "PNG", 0x52))
put("image", "rgba.png", img(c.convert("RGBA"), "PNG", 0x9b))
put("image", "gray16.png", img(Image.fromarray((rng.random((5, 4)) * 65535).astype("<u2")), "PNG", 0xe4))
put("image", "interlaced.png", img(c, "PNG", 0x47, optimize=False))
put("image", "rgb.jpg", img(c, "JPEG", 0x11, quality=90))
put("image", "gray.jpg", img(g, "JPEG", 0x63))
put("image", "progressive.jpg", img(c.resize((17, 9)), "JPEG", 0xa8, progressive=True))

# ---- DICOM (without the 128-byte preamble and "DICM", which the harness adds) ----------------
def elem(group, el, vr, value):
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH", group, el) + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return struct.pack("<HH", group, el) + vr + struct.pack("<H", len(value)) + value


def dicom(rows, cols, bits, photometric, pixels, samples=1, extra=()):
    ts = b"1.2.840.10008.1.2.1\0"
    meta = elem(2, 0x10, b"UI", ts)
    out = elem(2, 0, b"UL", struct.pack("<I", len(meta))) + meta
    us = lambda v: struct.pack("<H", v)
    items = [((0x28, 0x2), b"US", us(samples)), ((0x28, 0x4), b"CS", photometric),
             ((0x28, 0x10), b"US", us(rows)), ((0x28, 0x11), b"US", us(cols)),
             ((0x28, 0x100), b"US", us(bits)), ((0x28, 0x101), b"US", us(bits)),
             ((0x28, 0x102), b"US", us(bits - 1)), ((0x28, 0x103), b"US", us(0)),
             ((0x7fe0, 0x10), b"OW" if bits > 8 else b"OB", pixels)] + list(extra)
    if samples == 3:
        items.append(((0x28, 0x6), b"US", us(0)))
    for (g, e), vr, v in sorted(items, key=lambda t: t[0]):  # ascending tags, as DICOM requires
        out += elem(g, e, vr, v)
    return out


put("dicom", "mono2_8.dcm", dicom(4, 4, 8, b"MONOCHROME2 ", bytes(range(16))))
put("dicom", "mono1_16_window.dcm", dicom(3, 2, 16, b"MONOCHROME1 ", struct.pack("<6H", 0, 100, 200, 300, 400, 4095),
                                          extra=[((0x28, 0x1050), b"DS", b"2048"), ((0x28, 0x1051), b"DS", b"4096"),
                                                 ((0x28, 0x1053), b"DS", b"2 ")]))
put("dicom", "rgb.dcm", dicom(2, 2, 8, b"RGB ", bytes(range(12)), samples=3))

# ---- config.json ----------------------------------------------------------------------------
tiny_cfg = os.path.join(os.path.dirname(root), "..", "tests", "fixtures", "embed", "tiny", "config.json")
put("config", "tiny.json", open(tiny_cfg, "rb").read())
put("config", "gray.json", json.dumps({"input_size": [64, 64], "channels": "gray", "resample": "bicubic",
                                       "normalization": {"mean": [0.5], "std": [0.25]}}).encode())
put("config", "handling.json", json.dumps({"input_size": [8, 9], "channel_handling": "grey copied",
                                           "normalization": {"mean": [0.1, 0.2, 0.3], "std": [1, 2, 3]}}).encode())

# ---- ResNet-18 weights, width 1 (conv1 has one output channel) --------------------------------
def resnet(w):
    t = {}

    def conv(name, cout, cin, k):
        t[name] = ("F32", (rng.standard_normal((cout, cin, k, k)) * 0.1).astype("<f4"))

    def bn(name, c):
        t[name + ".weight"] = ("F32", np.ones(c, "<f4"))
        t[name + ".bias"] = ("F32", np.zeros(c, "<f4"))
        t[name + ".running_mean"] = ("F32", np.zeros(c, "<f4"))
        t[name + ".running_var"] = ("F32", np.ones(c, "<f4"))

    conv("conv1.weight", w, 3, 7)
    bn("bn1", w)
    cin = w
    for l in range(4):
        c = w << l
        for b in range(2):
            p = "layer%d.%d." % (l + 1, b)
            conv(p + "conv1.weight", c, cin if b == 0 else c, 3)
            bn(p + "bn1", c)
            conv(p + "conv2.weight", c, c, 3)
            bn(p + "bn2", c)
            if b == 0 and l > 0:
                conv(p + "downsample.0.weight", c, cin, 1)
                bn(p + "downsample.1", c)
        cin = c
    return safetensors(t)


put("weights", "resnet_w1.safetensors", resnet(1))
print("seeds written to", root, file=sys.stderr)
