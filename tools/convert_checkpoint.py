#!/usr/bin/python3
"""convert_checkpoint.py: turn a PyTorch checkpoint into medselect's files.

Two kinds of checkpoint:

1. A MedSelect selector (the authors' LSTMSelector), as their training saves it:
   torch.save({'epoch', 'model_state_dict', 'optimizer_state_dict'}, path); a bare
   state_dict or a {'state_dict': ...} dict works too. Written as one safetensors file with
   medselect's metadata (checkpoint.h): D, H, clinical and, with clinical inputs,
   clinical_order "sex,age,frontal" (the order of the authors' get_age_sex_lat, which is
   medselect's). Whether the input carries the 3 clinical features follows from its size:
   --embedding-dim + 3 inputs (515 for 512-d embeddings, their USE_ASL) is clinical,
   --embedding-dim inputs is not; --clinical / --no-clinical decide when the embedding size
   differs. The optimizer state is ignored.

     /usr/bin/python3 tools/convert_checkpoint.py --selector model_epoch2_iter60 selector.safetensors \
         [--embedding-dim 512] [--clinical | --no-clinical] [--k 20]

   This path needs only Python's standard library and NumPy: the .pt file (zip format of
   torch >= 1.6, or the older single-stream format) is read without torch, and its pickle
   is unpickled with a fixed list of allowed classes (tensors, storages, OrderedDict), so a
   hostile file cannot run code.

2. A ResNet-18 encoder, written as a medselect encoder folder:

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

Usage (encoder):
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
import pickle
import struct
import sys
import zipfile
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


# ---- reading torch.save files without torch ------------------------------------------------

# storage class name -> little-endian numpy dtype
STORAGE_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
                  "BFloat16Storage": "<u2", "LongStorage": "<i8", "IntStorage": "<i4",
                  "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?"}


class _StorageType:
    def __init__(self, name):
        self.name = name


class _Opaque:
    """Stands for any class outside the allowed list (e.g. in an optimizer state); it never
    runs code and is never converted."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def _rebuild_tensor(storage, offset, size, stride, *rest):
    if not isinstance(storage, np.ndarray):
        return _Opaque()
    size, stride = tuple(size), tuple(stride)
    # views, not copies: the old single-stream format fills the storages after unpickling
    if not size:
        return storage[offset:offset + 1].reshape(())
    need = offset + 1 + sum((n - 1) * st for n, st in zip(size, stride))
    if offset < 0 or any(n < 0 or st < 0 for n, st in zip(size, stride)) or need > storage.size:
        raise ConversionError("a tensor of size %s reaches past its storage" % (list(size),))
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=[st * storage.itemsize for st in stride])


def _rebuild_parameter(data, *rest):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, load_storage):
        super().__init__(f)
        self.load_storage = load_storage
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        return _Opaque

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view metadata])
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise ConversionError("unsupported persistent id %r" % (pid[:1],))
        stype, key = pid[1], str(pid[2])
        if not isinstance(stype, _StorageType):
            return None
        if key not in self.storages:
            self.storages[key] = self.load_storage(key, STORAGE_DTYPES[stype.name], int(pid[4]))
        return self.storages[key]


def load_torch_file(path):
    """torch.load(path) without torch: dicts, lists and numpy arrays for the tensors."""
    import io
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                pkl = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
                if len(pkl) != 1:
                    raise ConversionError("%s: a zip file without one data.pkl (not a torch.save file)" % path)
                root = pkl[0][:-len("data.pkl")]

                def storage(key, dtype, numel):
                    raw = z.read(root + "data/" + key)
                    a = np.frombuffer(raw, dtype=dtype)
                    if a.size < numel:
                        raise ConversionError("storage %s holds %d of %d elements" % (key, a.size, numel))
                    return a

                return _Unpickler(io.BytesIO(z.read(pkl[0])), storage).load()
        # the single-stream format of torch < 1.6: magic, protocol, sys info, the object,
        # the storage keys, then each storage as int64 element count + raw bytes
        with open(path, "rb") as f:
            if f.read(1) != b"\x80":
                raise ConversionError("%s: not a torch.save file (neither a zip archive nor a pickle)" % path)
            f.seek(0)
            magic = pickle.load(f)
            if magic != 0x1950a86a20f9469cfc6c:
                raise ConversionError("%s: not a torch.save file" % path)
            pickle.load(f)
            pickle.load(f)
            pending = {}

            def lazy(key, dtype, numel):
                pending[key] = (dtype, numel)
                return np.zeros(numel, dtype=dtype)  # filled below, in place

            up = _Unpickler(f, lazy)
            obj = up.load()
            keys = pickle.load(f)
            for key in keys:
                n = struct.unpack("<q", f.read(8))[0]
                dtype, numel = pending.get(key, ("u1", 0))
                raw = f.read(n * np.dtype(dtype).itemsize)
                if key in up.storages:
                    a = np.frombuffer(raw, dtype=dtype)
                    if a.size != up.storages[key].size:
                        raise ConversionError("%s: storage %s is truncated" % (path, key))
                    up.storages[key][:] = a
            return obj
    except ConversionError:
        raise
    except Exception as e:  # noqa: BLE001 - any unreadable file is a conversion error
        raise ConversionError("%s: cannot read: %s" % (path, " ".join(str(e).split())))


# ---- the selector ---------------------------------------------------------------------------

SELECTOR_TENSORS = ("LSTM.weight_ih_l0", "LSTM.weight_hh_l0", "LSTM.bias_ih_l0", "LSTM.bias_hh_l0",
                    "LSTM.weight_ih_l0_reverse", "LSTM.weight_hh_l0_reverse", "LSTM.bias_ih_l0_reverse",
                    "LSTM.bias_hh_l0_reverse", "linear.weight", "linear.bias")
CLINICAL_ORDER = "sex,age,frontal"  # the authors' get_age_sex_lat; medselect's MS_CLIN_ORDER


def find_selector_state(obj):
    """The state_dict holding LSTM.weight_ih_l0 inside a loaded checkpoint, or None."""
    cands = [obj]
    if isinstance(obj, dict):
        cands += [obj[k] for k in ("model_state_dict", "state_dict", "model") if isinstance(obj.get(k), dict)]
    for sd in cands:
        if isinstance(sd, dict):
            for prefix in ("", "module."):
                if prefix + "LSTM.weight_ih_l0" in sd:
                    return OrderedDict((k[len(prefix):], v) for k, v in sd.items() if k.startswith(prefix))
    return None


def convert_selector(checkpoint, out_path, embedding_dim=512, clinical=None, k=None, obj=None):
    """Writes the selector of `checkpoint` to out_path (safetensors); returns (tensors, metadata)."""
    if obj is None:
        obj = load_torch_file(checkpoint)
    sd = find_selector_state(obj)
    if sd is None:
        raise ConversionError("%s: no LSTM.weight_ih_l0 in the checkpoint (not a MedSelect selector)" % checkpoint)
    extra = [n for n in sd if n not in SELECTOR_TENSORS]
    if extra:
        raise ConversionError("%s: unexpected tensor %s (not a single-layer LSTMSelector)" % (checkpoint, extra[0]))
    w = sd["LSTM.weight_ih_l0"]
    if not isinstance(w, np.ndarray) or w.ndim != 2 or w.shape[0] % 4:
        raise ConversionError("%s: tensor LSTM.weight_ih_l0 is not a (4H, D) matrix" % checkpoint)
    H, D = w.shape[0] // 4, w.shape[1]
    shapes = {"LSTM.weight_ih_l0": (4 * H, D), "LSTM.weight_hh_l0": (4 * H, H), "LSTM.bias_ih_l0": (4 * H,),
              "LSTM.bias_hh_l0": (4 * H,), "linear.weight": (1, 2 * H), "linear.bias": (1,)}
    tensors = OrderedDict()
    for name in SELECTOR_TENSORS:
        if name not in sd:
            raise ConversionError("%s: tensor %s: missing" % (checkpoint, name))
        t = sd[name]
        want = shapes[name.replace("_reverse", "")]
        if not isinstance(t, np.ndarray) or tuple(t.shape) != want:
            raise ConversionError("%s: tensor %s: has shape %s, expected %s"
                                  % (checkpoint, name, list(getattr(t, "shape", [])), list(want)))
        t = np.ascontiguousarray(t, dtype="<f4")
        if not np.all(np.isfinite(t)):
            raise ConversionError("%s: tensor %s: non-finite values" % (checkpoint, name))
        tensors[name] = t
    if clinical is None:
        if D == embedding_dim + 3:
            clinical = True
        elif D == embedding_dim:
            clinical = False
        else:
            raise ConversionError("%s: the selector takes %d inputs, neither the embedding size %d nor %d + 3 "
                                  "clinical features (give --embedding-dim, or --clinical / --no-clinical)"
                                  % (checkpoint, D, embedding_dim, embedding_dim))
    if clinical and D < 4:
        raise ConversionError("%s: --clinical with only %d inputs" % (checkpoint, D))
    meta = OrderedDict([("format", "medselect-selector"), ("version", "1"), ("D", str(D)), ("H", str(H)),
                        ("clinical", "1" if clinical else "0")])
    if clinical:
        meta["clinical_order"] = CLINICAL_ORDER
    if k is not None:
        meta["K"] = str(int(k))
    # the reference trains with K draws with replacement
    meta["sampler"] = "multinomial"
    meta["source"] = os.path.basename(str(checkpoint))
    if isinstance(obj, dict) and isinstance(obj.get("epoch"), int):
        meta["source_epoch"] = str(obj["epoch"])
    meta["converted_by"] = "tools/convert_checkpoint.py"
    write_safetensors(out_path, tensors, meta)
    back = read_safetensors(out_path)
    assert all(np.array_equal(back[n], t) for n, t in tensors.items())
    return tensors, meta


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
        try:
            import torch
        except ImportError:
            torch = None
        if torch is None:
            obj = load_torch_file(checkpoint)
        else:
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
    ap.add_argument("out_dir", help="encoder: the output folder; --selector: the output .safetensors file")
    ap.add_argument("--selector", action="store_true",
                    help="convert a MedSelect selector (LSTMSelector) checkpoint into one safetensors file")
    ap.add_argument("--embedding-dim", type=int, default=512,
                    help="--selector: embedding size of the data (default 512); D + 3 inputs are clinical")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--clinical", dest="clinical", action="store_true", default=None,
                   help="--selector: the last 3 inputs are [sex, age, frontal] (default: from the input size)")
    g.add_argument("--no-clinical", dest="clinical", action="store_false",
                   help="--selector: the input is the embedding alone")
    ap.add_argument("--k", type=int, default=None, help="--selector: the K the selector was trained for (recorded)")
    ap.add_argument("--input-size", default="224", help="S or H,W (default 224)")
    ap.add_argument("--channels", choices=("rgb", "gray"), default="rgb")
    ap.add_argument("--mean", default="0.485,0.456,0.406")
    ap.add_argument("--std", default="0.229,0.224,0.225")
    ap.add_argument("--resample", choices=("lanczos", "bicubic", "bilinear"), default="lanczos")
    ap.add_argument("--prefix", default=None, help="key prefix of the backbone (default: auto)")
    ap.add_argument("--name", default=None)
    a = ap.parse_args(argv)
    if a.selector:
        if a.embedding_dim < 1 or (a.k is not None and a.k < 1):
            print("convert_checkpoint.py: --embedding-dim and --k must be positive", file=sys.stderr)
            return 1
        try:
            t, meta = convert_selector(a.checkpoint, a.out_dir, a.embedding_dim, a.clinical, a.k)
        except ConversionError as e:
            print("convert_checkpoint.py: %s" % e, file=sys.stderr)
            return 2
        print("wrote %s (selector: D %s, H %s, clinical %s%s)" % (a.out_dir, meta["D"], meta["H"], meta["clinical"],
              ", order " + meta["clinical_order"] if "clinical_order" in meta else ""))
        return 0
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
