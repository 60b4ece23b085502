#!/usr/bin/python3
"""convert_checkpoint.py: turn a ResNet-18 checkpoint into a medselect encoder folder.

Reads a PyTorch checkpoint holding a torchvision ResNet-18 backbone and writes
OUT_DIR/model.safetensors (the backbone's state_dict in torchvision's names, F32, without fc.*)
and OUT_DIR/config.json (input size, channels, normalisation, resampling), the folder that
`medselect embed --model OUT_DIR` reads.

Accepted inputs (torch.load, CPU):
  * a torchvision resnet18 state_dict (conv1.weight, bn1.*, layer1.0.conv1.weight, ...), as
    saved by torch.save(model.state_dict(), path);
  * a dict with a 'state_dict' (or 'model') entry holding one, e.g. a MoCo v1/v2 checkpoint
    (.pth.tar) whose backbone tensors are prefixed 'module.encoder_q.' (the key encoder
    'module.encoder_k.*' and the queue are ignored);
  * any other prefix via --prefix (e.g. 'backbone.').
fc.* (the classifier or MoCo's projection head) is dropped. The layer widths follow
conv1.weight (64 for resnet18). Every one of the 120 backbone tensors must be present with the
shape the architecture implies; otherwise the script stops with exit code 2 and a message
naming the tensor, e.g. "ckpt.pth: tensor layer3.1.bn2.running_var: missing".

Usage:
  /usr/bin/python3 tools/convert_checkpoint.py CHECKPOINT OUT_DIR [--input-size 224]
      [--channels rgb|gray] [--mean 0.485,0.456,0.406] [--std 0.229,0.224,0.225]
      [--resample lanczos|bicubic|bilinear] [--prefix PREFIX] [--name NAME]

Defaults are ImageNet's RGB normalisation at 224x224. For a gray chest X-ray model trained on
gray images copied to 3 channels, use --channels gray and the training pool's mean/std.

The safetensors layout written here: 8-byte little-endian header length N, an N-byte JSON header
(padded with spaces to a multiple of 8) mapping each name to dtype, shape and
data_offsets, then the tensors' little-endian bytes back to back.
"""
import argparse
import json
import os
import struct
import sys
from collections import OrderedDict

import numpy as np

BN_PARTS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def expected_shapes(width=64):
    """Name -> shape of every backbone tensor of a torchvision resnet18 (num_batches_tracked: [])."""
    shapes = OrderedDict()

    def conv(name, cout, cin, k):
        shapes[name + ".weight"] = (cout, cin, k, k)

    def bn(name, c):
        for p in BN_PARTS:
            shapes[name + "." + p] = () if p == "num_batches_tracked" else (c,)

    conv("conv1", width, 3, 7)
    bn("bn1", width)
    cin = width
    for layer in range(4):
        c = width << layer
        for b in range(2):
            pre = "layer%d.%d." % (layer + 1, b)
            conv(pre + "conv1", c, cin if b == 0 else c, 3)
            bn(pre + "bn1", c)
            conv(pre + "conv2", c, c, 3)
            bn(pre + "bn2", c)
            if b == 0 and layer > 0:
                conv(pre + "downsample.0", c, cin, 1)
                bn(pre + "downsample.1", c)
        cin = c
    return shapes


class ConversionError(Exception):
    pass


def extract_backbone(obj, source, prefix=None):
    """Returns an OrderedDict name -> numpy array of the backbone (fc.* and others dropped)."""
    sd = obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                sd = obj[key]
                break
    if not isinstance(sd, dict):
        raise ConversionError("%s: not a state_dict or a checkpoint holding one" % source)
    keys = list(sd.keys())
    if prefix is None:
        for cand in ("module.encoder_q.", "encoder_q.", "module."):
            if any(k.startswith(cand + "conv1.") for k in keys):
                prefix = cand
                break
        else:
            prefix = ""
    tensors = OrderedDict()
    for k, v in sd.items():
        if not k.startswith(prefix):
            continue
        name = k[len(prefix):]
        if name.startswith("fc."):
            continue
        tensors[name] = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
    if "conv1.weight" not in tensors:
        raise ConversionError("%s: tensor %sconv1.weight: missing" % (source, prefix))
    w = tensors["conv1.weight"].shape[0]
    out = OrderedDict()
    for name, shape in expected_shapes(w).items():
        if name not in tensors:
            raise ConversionError("%s: tensor %s%s: missing" % (source, prefix, name))
        t = tensors[name]
        if tuple(t.shape) != shape and not (name.endswith("num_batches_tracked") and t.size == 1):
            raise ConversionError("%s: tensor %s%s: has shape %s, expected %s"
                                  % (source, prefix, name, list(t.shape), list(shape)))
        if name.endswith("num_batches_tracked"):
            out[name] = np.asarray(t, dtype="<i8").reshape(())
        else:
            t = np.ascontiguousarray(t, dtype="<f4")
            if not np.all(np.isfinite(t)):
                raise ConversionError("%s: tensor %s%s: non-finite values" % (source, prefix, name))
            out[name] = t
    return out


def write_safetensors(path, tensors, metadata=None):
    """Writes name -> numpy array (float32 as F32, int64 as I64) in the safetensors layout."""
    header, blobs, offset = OrderedDict(), [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        dtype = {np.dtype("<f4"): "F32", np.dtype("<i8"): "I64"}[t.dtype]
        data = t.tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    hdr.pop("__metadata__", None)
    buf = raw[8 + n:]
    dt = {"F32": "<f4", "I64": "<i8"}
    return {k: np.frombuffer(buf[v["data_offsets"][0]:v["data_offsets"][1]], dtype=dt[v["dtype"]]).reshape(v["shape"])
            for k, v in hdr.items()}


def floats(s, what):
    try:
        v = [float(x) for x in s.split(",")]
    except ValueError:
        raise ConversionError("%s: '%s' is not a comma-separated list of numbers" % (what, s))
    if len(v) not in (1, 3):
        raise ConversionError("%s: expected 1 or 3 numbers, got %d" % (what, len(v)))
    return v * 3 if len(v) == 1 else v


def convert(checkpoint, out_dir, input_size=(224, 224), channels="rgb", mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225), resample="lanczos", prefix=None, name=None, obj=None):
    """Writes out_dir/model.safetensors and out_dir/config.json; returns the tensor dict."""
    if obj is None:
        import torch
        try:
            obj = torch.load(checkpoint, map_location="cpu")
        except Exception as e:  # noqa: BLE001 - any unreadable file is a conversion error
            raise ConversionError("%s: cannot load: %s" % (checkpoint, e))
    tensors = extract_backbone(obj, checkpoint, prefix)
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors,
                      {"source": os.path.basename(str(checkpoint)), "format": "pt"})
    back = read_safetensors(os.path.join(out_dir, "model.safetensors"))
    assert all(np.array_equal(back[k], v) for k, v in tensors.items())
    width = int(tensors["conv1.weight"].shape[0])
    config = OrderedDict([
        ("name", name or os.path.basename(os.path.normpath(out_dir))),
        ("architecture", "torchvision.models.resnet18 backbone (fc removed)" if width == 64
         else "torchvision-style ResNet-18 backbone with widths %d/%d/%d/%d (fc removed)"
         % (width, 2 * width, 4 * width, 8 * width)),
        ("weights_file", "model.safetensors"),
        ("source_checkpoint", os.path.basename(str(checkpoint))),
        ("input_size", [int(input_size[0]), int(input_size[1])]),
        ("input_channels", 3),
        ("channels", channels),
        ("channel_handling", "8-bit grayscale image copied to 3 identical channels" if channels == "gray"
         else "RGB image, 3 channels"),
        ("normalization", OrderedDict([("mean", [float(m) for m in mean]), ("std", [float(s) for s in std]),
                                       ("scale", "x = uint8 / 255.0; x = (x - mean) / std")])),
        ("resample", resample),
        ("resize_method", "shorter side -> input size with PIL %s (antialiased), centre crop" % resample.upper()),
        ("embedding", OrderedDict([("dim", 8 * width),
                                   ("definition", "global-average-pooled output of layer4 (input of fc)"),
                                   ("mode", "eval (BatchNorm running statistics), float32")])),
    ])
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return tensors


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("out_dir")
    ap.add_argument("--input-size", default="224", help="S or H,W (default 224)")
    ap.add_argument("--channels", choices=("rgb", "gray"), default="rgb")
    ap.add_argument("--mean", default="0.485,0.456,0.406")
    ap.add_argument("--std", default="0.229,0.224,0.225")
    ap.add_argument("--resample", choices=("lanczos", "bicubic", "bilinear"), default="lanczos")
    ap.add_argument("--prefix", default=None, help="key prefix of the backbone (default: auto)")
    ap.add_argument("--name", default=None)
    a = ap.parse_args(argv)
    try:
        size = [int(x) for x in a.input_size.split(",")]
        if len(size) == 1:
            size = size * 2
        if len(size) != 2 or min(size) < 1:
            raise ValueError
    except ValueError:
        print("convert_checkpoint.py: --input-size: expected S or H,W", file=sys.stderr)
        return 1
    try:
        t = convert(a.checkpoint, a.out_dir, size, a.channels, floats(a.mean, "--mean"), floats(a.std, "--std"),
                    a.resample, a.prefix, a.name)
    except ConversionError as e:
        print("convert_checkpoint.py: %s" % e, file=sys.stderr)
        return 2
    print("wrote %s/model.safetensors (%d tensors, embedding dim %d) and config.json"
          % (a.out_dir, len(t), 8 * t["conv1.weight"].shape[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
