#!/bin/bash
# test_embed_cli.sh: `medselect embed` end to end on the committed fixtures: the reference
# layout (CSV rows copied in order + HDF5 "dataset"), NPY output, paths relative to the CSV
# or to --root, --on-error fail (exit 2, one line naming the file, nothing written) and skip
# (rows left out of both outputs and listed in OUT.skipped.csv), usage errors (exit 1).
# Embeddings are compared with PyTorch's (tests/fixtures/embed/pipe_out.npy) by tests/tools/cmp_rows
# (the project's own NPY/HDF5 readers, so no Python is needed);
# tools/convert_checkpoint.py is checked on a MoCo-style checkpoint against torchvision.
set -u
CLI=${MS_CLI:?MS_CLI must point at the medselect binary}
FIX=${MS_FIXTURES:?}/embed
T=${MS_TMP:-/tmp/medselect-test}/embed_cli
PY=/usr/bin/python3
CMP=${MS_CMP_ROWS:?MS_CMP_ROWS must point at tests/tools/cmp_rows}
rm -rf "$T" && mkdir -p "$T/model" "$T/imgs"
fails=0
check() { # check DESCRIPTION COMMAND...
    if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi
}

if ! "$CLI" embed --help > "$T/help.txt" 2>&1; then
    echo "FAIL: '$CLI embed --help' failed (is embed listed in src/cli/main.c?)"; cat "$T/help.txt"; exit 1
fi
check "help text" grep -q "Usage: medselect embed --model MODEL_DIR --images LIST.csv --out OUT.csv" "$T/help.txt"

# a gray model: the tiny fixture weights with the gray config
ln -s "$(cd "$FIX/tiny" && pwd)/model.safetensors" "$T/model/model.safetensors"
cp "$FIX/tiny_gray.json" "$T/model/config.json"
cp "$FIX"/pipe_*.png "$T/imgs/"
printf 'Path,Note,Effusion\npipe_0.png,"a, quoted ""note""",1\npipe_1.png,,0\npipe_2.png,resized,1\n' > "$T/list.csv"

# 1. HDF5 layout with --root
"$CLI" embed --model "$T/model" --images "$T/list.csv" --root "$FIX" --out "$T/out.csv" --threads 2 --batch 2 \
    > "$T/o1" 2> "$T/e1"
check "embed exits 0" test $? -eq 0
check "out.csv copies the input rows" cmp -s "$T/list.csv" "$T/out.csv"
# the same list with paths one level up, through another --root
sed -i 's/^pipe_/embed\/pipe_/' "$T/list.csv"
"$CLI" embed --model "$T/model" --images "$T/list.csv" --root "$(dirname "$FIX")" --out "$T/out.csv" 2> "$T/e1"
check "embed with --root exits 0" test $? -eq 0
check "out.hdf5 written" test -f "$T/out.hdf5"
check "HDF5 embeddings match PyTorch" "$CMP" "$FIX/pipe_out.npy" "$T/out.hdf5" 0,1,2

# 2. NPY output, paths relative to the CSV's directory (no --root)
printf 'Path\nimgs/pipe_2.png\nimgs/pipe_0.png\n' > "$T/rel.csv"
"$CLI" embed --model "$T/model" --images "$T/rel.csv" --out "$T/rel.csv.out.csv" --format npy 2> "$T/e2"
check "npy run exits 0" test $? -eq 0
check "NPY embeddings match PyTorch" "$CMP" "$FIX/pipe_out.npy" "$T/rel.csv.out.npy" 2,0

# 3. --on-error fail: exit 2, one line naming the file, nothing written
printf 'Path\nimgs/pipe_0.png\nimgs/nope.png\nimgs/pipe_1.png\n' > "$T/bad.csv"
"$CLI" embed --model "$T/model" --images "$T/bad.csv" --out "$T/bad_out.csv" 2> "$T/e3"
check "missing image exits 2" test $? -eq 2
check "error names the file" grep -q "^medselect embed: .*imgs/nope.png: cannot open" "$T/e3"
check "error is one line" test "$(wc -l < "$T/e3")" -eq 1
check "no partial output" test ! -e "$T/bad_out.csv" -a ! -e "$T/bad_out.hdf5"
check "no temporary files left" test -z "$(ls "$T" | grep -E '\.tmp\.|\.part\.')"

# 4. --on-error skip: the row leaves both outputs and is listed in the report
"$CLI" embed --model "$T/model" --images "$T/bad.csv" --out "$T/skip.csv" --on-error skip 2> "$T/e4"
check "skip exits 0" test $? -eq 0
check "skip summary on stderr" grep -q "skipped 1 of 3 images" "$T/e4"
check "skipped row left out of the CSV" test "$(printf 'Path\nimgs/pipe_0.png\nimgs/pipe_1.png\n')" = "$(cat "$T/skip.csv")"
check "report lists row 2" grep -q "^2,imgs/nope.png,.*nope.png: cannot open" "$T/skip.skipped.csv"
check "HDF5 rows stay aligned" "$CMP" "$FIX/pipe_out.npy" "$T/skip.hdf5" 0,1

# 5. usage and data errors
"$CLI" embed --images "$T/list.csv" --out "$T/x.csv" 2> /dev/null
check "missing --model exits 1" test $? -eq 1
"$CLI" embed --model "$T/model" --images "$T/list.csv" --out "$T/x.csv" --on-error maybe 2> /dev/null
check "bad --on-error exits 1" test $? -eq 1
"$CLI" embed --model "$T/model" --images "$T/list.csv" --out "$T/x.csv" --batch 0 2> /dev/null
check "bad --batch exits 1" test $? -eq 1
"$CLI" embed --model "$T/nomodel" --images "$T/list.csv" --out "$T/x.csv" 2> "$T/e5"
check "missing model exits 2 naming config.json" grep -q "nomodel/config.json" "$T/e5"
printf 'File\na.png\n' > "$T/nopath.csv"
"$CLI" embed --model "$T/model" --images "$T/nopath.csv" --out "$T/x.csv" 2> "$T/e6"
check "list without Path column exits 2" grep -q "nopath.csv: no Path column" "$T/e6"
check "nothing written on errors" test ! -e "$T/x.csv"

# 6. tools/convert_checkpoint.py on a MoCo-style checkpoint of a torchvision resnet18 (random
#    weights and batch-norm statistics), then embed with the converted folder and compare with
#    torchvision's own forward; a missing and a misshapen tensor are errors naming the tensor.
if $PY -c "import torch, torchvision" 2> /dev/null; then
    cat > "$T/moco.py" <<'PYEOF'
import sys, numpy as np, torch, torchvision
from PIL import Image
T, FIX = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
net = torchvision.models.resnet18()
for m in net.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.normal_(0, 0.1); m.running_var.uniform_(0.5, 2); m.weight.data.uniform_(0.5, 1.5)
sd = {}
for k, v in net.state_dict().items():
    if not k.startswith("fc."):
        sd["module.encoder_q." + k] = v
        sd["module.encoder_k." + k] = v.clone()
sd["module.encoder_q.fc.0.weight"] = torch.randn(512, 512); sd["module.encoder_q.fc.2.weight"] = torch.randn(128, 512)
torch.save({"epoch": 200, "arch": "resnet18", "state_dict": sd, "queue": torch.randn(128, 16)}, T + "/moco.pth.tar")
bad = dict(sd); del bad["module.encoder_q.layer2.1.bn1.running_mean"]
torch.save({"state_dict": bad}, T + "/moco_missing.pth.tar")
bad = dict(sd); bad["module.encoder_q.layer3.0.downsample.0.weight"] = torch.randn(256, 128, 3, 3)
torch.save({"state_dict": bad}, T + "/moco_shape.pth.tar")
net.fc = torch.nn.Identity(); net.eval()
xs = [(torch.as_tensor(np.array(Image.open("%s/pipe_%d.png" % (FIX, i)).convert("L"))).float() / 255.0 - 0.5) / 0.25
      for i in (0, 1)]
with torch.no_grad():
    np.save(T + "/moco_ref.npy", net(torch.stack(xs).unsqueeze(1).expand(-1, 3, -1, -1)).numpy())
PYEOF
    $PY "$T/moco.py" "$T" "$FIX"
    check "MoCo checkpoint written" test -f "$T/moco.pth.tar"
    $PY "$(dirname "$0")/../tools/convert_checkpoint.py" "$T/moco.pth.tar" "$T/moco" --input-size 40,36 \
        --channels gray --mean 0.5 --std 0.25 > "$T/c1" 2>&1
    check "convert_checkpoint.py exits 0" test $? -eq 0
    printf 'Path\npipe_0.png\npipe_1.png\n' > "$T/moco.csv"
    "$CLI" embed --model "$T/moco" --images "$T/moco.csv" --root "$FIX" --out "$T/moco_out.csv" 2> "$T/e7"
    check "embed with the converted model exits 0" test $? -eq 0
    check "converted model matches torchvision" "$CMP" "$T/moco_ref.npy" "$T/moco_out.hdf5" 0,1
    $PY "$(dirname "$0")/../tools/convert_checkpoint.py" "$T/moco_missing.pth.tar" "$T/m2" > /dev/null 2> "$T/c2"
    check "missing tensor exits 2" test $? -eq 2
    check "missing tensor named" grep -q "tensor module.encoder_q.layer2.1.bn1.running_mean: missing" "$T/c2"
    $PY "$(dirname "$0")/../tools/convert_checkpoint.py" "$T/moco_shape.pth.tar" "$T/m3" > /dev/null 2> "$T/c3"
    check "misshapen tensor exits 2" test $? -eq 2
    check "misshapen tensor named" grep -q "tensor module.encoder_q.layer3.0.downsample.0.weight: has shape \[256, 128, 3, 3\], expected \[256, 128, 1, 1\]" "$T/c3"
else
    echo "skip: convert_checkpoint.py checks (no torch in /usr/bin/python3)"
fi

echo "$fails failed"
exit $((fails > 0))
