#!/bin/bash
# test_convert.sh: tools/convert_checkpoint.py --selector on the MedSelect authors' training
# checkpoints (tests/fixtures/compat/authors_*.pt, written by their code through
# tests/fixtures/gen_compat.py). The converter needs Python 3 and NumPy only (scripts/deps.sh
# installs both), not torch. Checked here:
#  - the zip-format dicts, with and without clinical inputs, convert to exactly the committed
#    files whose logits gen_compat.py checked in their LSTMSelector and test_compat checks in
#    medselect (equal to 1e-6);
#  - the pre-1.6 single-stream format converts to the same tensors (same select --scores);
#  - --no-clinical / --embedding-dim decide the metadata; medselect then refuses a mismatch;
#  - bad input: a file that is not a checkpoint, a state_dict without the selector, and a
#    pickle that would run a command (it must not run) all give exit 2 and one line.
set -u
CLI=${MS_CLI:?MS_CLI must point at the medselect binary}
FIX=${MS_FIXTURES:?}/compat
CONV="$(cd "$(dirname "$0")/.." && pwd)/tools/convert_checkpoint.py"
T=${MS_TMP:-/tmp/medselect-test}/convert
PY=/usr/bin/python3
rm -rf "$T" && mkdir -p "$T"
fails=0
passes=0
check() { # check DESCRIPTION COMMAND...
    if "${@:2}"; then echo "ok: $1"; passes=$((passes + 1)); else echo "FAIL: $1"; fails=$((fails + 1)); fi
}

# 1. zip format, clinical (515-style: D + 3 inputs) and plain; the source name is recorded,
#    so the inputs keep their names
cp "$FIX/authors_clinical.pt" "$FIX/authors_plain.pt" "$T/"
$PY "$CONV" --selector "$T/authors_clinical.pt" "$T/converted_clinical.safetensors" --embedding-dim 6 > "$T/o1" 2> "$T/e1"
check "clinical checkpoint converts (exit 0)" test $? -eq 0
check "reports clinical order" grep -q "clinical 1, order sex,age,frontal" "$T/o1"
check "identical to the committed conversion" cmp -s "$T/converted_clinical.safetensors" "$FIX/converted_clinical.safetensors"
$PY "$CONV" --selector "$T/authors_plain.pt" "$T/converted_plain.safetensors" --embedding-dim 6 > "$T/o2" 2> "$T/e2"
check "plain checkpoint converts (exit 0)" test $? -eq 0
check "plain: identical to the committed conversion" cmp -s "$T/converted_plain.safetensors" "$FIX/converted_plain.safetensors"

# 2. the old single-stream format gives the same selector
$PY "$CONV" --selector "$FIX/authors_clinical_legacy.pt" "$T/legacy.safetensors" --embedding-dim 6 > /dev/null 2> "$T/e3"
check "legacy format converts (exit 0)" test $? -eq 0
"$CLI" select --model "$T/converted_clinical.safetensors" --pool "$FIX/pool.csv" -k 3 --out "$T/w1.csv" --scores "$T/s1.csv" 2> /dev/null
"$CLI" select --model "$T/legacy.safetensors" --pool "$FIX/pool.csv" -k 3 --out "$T/w2.csv" --scores "$T/s2.csv" 2> /dev/null
check "legacy format: same logits as the zip format" cmp -s "$T/s1.csv" "$T/s2.csv"
check "scores written" test -s "$T/s1.csv"

# 3. the clinical decision
$PY "$CONV" --selector "$T/authors_clinical.pt" "$T/noclin.safetensors" --no-clinical > /dev/null 2>&1
check "--no-clinical accepted" test $? -eq 0
"$CLI" select --model "$T/noclin.safetensors" --pool "$FIX/pool.csv" -k 3 --out "$T/w3.csv" 2> "$T/e4"
check "medselect refuses a 9-input non-clinical selector on 6-d data (exit 2)" test $? -eq 2
check "... naming the checkpoint" grep -q "noclin.safetensors: the selector takes 9-dimensional input" "$T/e4"
check "... and writes no worklist" test ! -e "$T/w3.csv"
$PY "$CONV" --selector "$T/authors_clinical.pt" "$T/x.safetensors" > /dev/null 2> "$T/e5"
check "default --embedding-dim 512 does not fit 9 inputs (exit 2)" test $? -eq 2
check "... one line naming the file and the sizes" test "$(wc -l < "$T/e5")" -eq 1 -a -n "$(grep 'authors_clinical.pt: the selector takes 9 inputs' "$T/e5")"
check "... and nothing written" test ! -e "$T/x.safetensors"

# 4. bad input
$PY "$CONV" --selector "$FIX/pool.csv" "$T/y.safetensors" > /dev/null 2> "$T/e6"
check "a CSV is not a checkpoint (exit 2)" test $? -eq 2
check "... one line" test "$(wc -l < "$T/e6")" -eq 1
# a torch.save-style zip whose pickle names os.system: never called
$PY - "$T/evil.pt" "$T/pwned" <<'PYEOF'
import sys, zipfile
cmd = ("touch " + sys.argv[2]).encode()
pkl = b"\x80\x02cos\nsystem\nq\x00X" + len(cmd).to_bytes(4, "little") + cmd + b"\x85R."
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("archive/data.pkl", pkl)
PYEOF
$PY "$CONV" --selector "$T/evil.pt" "$T/z.safetensors" > /dev/null 2> "$T/e7"
check "a pickle naming os.system is refused (exit 2)" test $? -eq 2
check "... and did not run" test ! -e "$T/pwned"
# an encoder-style checkpoint has no selector
$PY - "$T/other.pt" <<'PYEOF'
import sys, zipfile
# {'conv1.weight': 1}
pkl = b"\x80\x02}q\x00X\x0c\x00\x00\x00conv1.weightq\x01K\x01s."
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("archive/data.pkl", pkl)
PYEOF
$PY "$CONV" --selector "$T/other.pt" "$T/z.safetensors" > /dev/null 2> "$T/e8"
check "a checkpoint without LSTM.weight_ih_l0 (exit 2)" test $? -eq 2
check "... says so" grep -q "not a MedSelect selector" "$T/e8"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
