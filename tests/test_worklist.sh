#!/bin/bash
# test_worklist.sh: `medselect select` worklists on the shipped NIH data: --group-by COLUMN
# --max-per-group N keeps the ranking and skips images over the cap (checked against the
# selector's full ranking from --scores and a ranking baseline's ungrouped order), the error
# when the groups cannot fill K, and the csv/json/labelstudio formats (checked with
# grep/sed/awk, no Python).
set -u
CLI=${MS_CLI:?MS_CLI must point at the medselect binary}
DATA=${MS_DATA:?}
T=${MS_TMP:-/tmp/medselect-test}/worklist
rm -rf "$T" && mkdir -p "$T"
fails=0
check() { # check DESCRIPTION COMMAND...
    if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi
}
E=$DATA/data/nih1000/embeddings
POOL=$E/test_pos.csv   # 147 images of 46 patients, with a PatientID column

# a small selector trained here (seconds), so that the test does not depend on a shipped one
"$CLI" train --train-pos-csv "$E/train_pos.csv" --train-norm-csv "$E/train_norm.csv" \
    --val-pos-csv "$E/val_pos.csv" --val-norm-csv "$E/val_norm.csv" --seen Effusion,Infiltration \
    --pool 10 --query 6 -k 3 --hidden 8 --tasks 64 --epochs 1 --batch-size 16 --val-tasks 16 --val-every 2 \
    --seed 1 --threads 2 --group-by PatientID --out "$T/run" > "$T/train.out" 2>&1
check "train a tiny selector on patient-grouped pools" test -f "$T/run/best.safetensors"
M=$T/run/best.safetensors

# 1. the selector: grouped worklist = the full logit ranking walked with a cap of 1 per patient
"$CLI" select --model "$M" --pool "$POOL" -k 12 --group-by PatientID --out "$T/g1.csv" \
    --scores "$T/scores.csv" 2> "$T/e1"
check "grouped select exits 0" test $? -eq 0
check "header has the group column" test "$(head -1 "$T/g1.csv")" = "rank,Path,logit,probability,PatientID"
check "12 rows" test "$(tail -n +2 "$T/g1.csv" | wc -l)" -eq 12
check "one image per patient" test "$(tail -n +2 "$T/g1.csv" | cut -d, -f5 | sort | uniq -d | wc -l)" -eq 0
# expected: scores sorted by logit (descending, stable), first image of each patient
sort -t, -k2,2gr -s <(tail -n +2 "$T/scores.csv" | awk -F, '{ print $1 "," $2 }') > "$T/by_logit.txt"
awk -F, 'NR == FNR { if (FNR > 1) pid[$1] = $2; next } { if (!seen[pid[$1]]++) print $1 }' \
    <(cut -d, -f1,2 "$POOL") "$T/by_logit.txt" | head -12 > "$T/expect_g1.txt"
tail -n +2 "$T/g1.csv" | cut -d, -f2 > "$T/got_g1.txt"
check "grouped worklist = logit ranking, first image of each patient" cmp -s "$T/expect_g1.txt" "$T/got_g1.txt"
# ungrouped: the top 12 of the ranking, and at least one patient twice (so the cap matters)
"$CLI" select --model "$M" --pool "$POOL" -k 12 --out "$T/u1.csv" 2> /dev/null
tail -n +2 "$T/u1.csv" | cut -d, -f2 > "$T/got_u1.txt"
check "ungrouped worklist = top of the logit ranking" cmp -s <(head -12 "$T/by_logit.txt" | cut -d, -f1) "$T/got_u1.txt"

# 2. --max-per-group 2
"$CLI" select --model "$M" --pool "$POOL" -k 20 --group-by patientid --max-per-group 2 --out "$T/g2.csv" 2> /dev/null
check "max 2 per patient" test "$(tail -n +2 "$T/g2.csv" | cut -d, -f5 | sort | uniq -c | awk '$1 > 2' | wc -l)" -eq 0
check "some patient has 2" test "$(tail -n +2 "$T/g2.csv" | cut -d, -f5 | sort | uniq -c | awk '$1 == 2' | wc -l)" -gt 0
awk -F, 'NR == FNR { if (FNR > 1) pid[$1] = $2; next } { if (n[pid[$1]]++ < 2) print $1 }' \
    <(cut -d, -f1,2 "$POOL") "$T/by_logit.txt" | head -20 > "$T/expect_g2.txt"
check "cap 2 keeps the ranking" cmp -s "$T/expect_g2.txt" <(tail -n +2 "$T/g2.csv" | cut -d, -f2)

# 3. a ranking baseline (k-center greedy): grouped = its whole order walked with the cap
"$CLI" select --strategy kcenter --pool "$POOL" -k 147 --out "$T/kc_all.csv" 2> /dev/null
"$CLI" select --strategy kcenter --pool "$POOL" -k 15 --group-by PatientID --out "$T/kc_g.csv" 2> /dev/null
awk -F, 'NR == FNR { if (FNR > 1) pid[$1] = $2; next } FNR > 1 { if (!seen[pid[$2]]++) print $2 }' \
    <(cut -d, -f1,2 "$POOL") "$T/kc_all.csv" | head -15 > "$T/expect_kc.txt"
check "kcenter grouped keeps its ranking" cmp -s "$T/expect_kc.txt" <(tail -n +2 "$T/kc_g.csv" | cut -d, -f2)
# a clustering baseline: distinct patients, K rows
"$CLI" select --strategy kmedoids --pool "$POOL" -k 15 --group-by PatientID --out "$T/km_g.csv" 2> /dev/null
check "kmedoids grouped: 15 distinct patients" test "$(tail -n +2 "$T/km_g.csv" | cut -d, -f5 | sort -u | wc -l)" -eq 15

# 4. errors: too few groups (exit 2, one line, nothing written), unknown column, usage
"$CLI" select --strategy kcenter --pool "$POOL" -k 80 --group-by PatientID --out "$T/bad.csv" 2> "$T/e4"
check "too few groups exits 2" test $? -eq 2
check "too few groups message" grep -q "test_pos.csv: 46 groups of PatientID with at most 1 image each cannot fill K = 80" "$T/e4"
check "one line, no output" test "$(wc -l < "$T/e4")" -eq 1 -a ! -e "$T/bad.csv"
"$CLI" select --strategy kcenter --pool "$POOL" -k 5 --group-by Patient --out "$T/bad.csv" 2> "$T/e5"
check "unknown group column exits 2" test $? -eq 2
check "unknown group column message" grep -q "no column 'Patient' for --group-by" "$T/e5"
"$CLI" select --strategy kcenter --pool "$POOL" -k 5 --max-per-group 2 --out "$T/bad.csv" 2> /dev/null
check "--max-per-group without --group-by is a usage error" test $? -eq 1
"$CLI" select --strategy kcenter --pool "$POOL" -k 5 --format xml --out "$T/bad.csv" 2> /dev/null
check "unknown format is a usage error" test $? -eq 1

# 5. formats: json and labelstudio hold the same items as the csv
"$CLI" select --model "$M" --pool "$POOL" -k 12 --group-by PatientID --format json --out "$T/g1.json" 2> /dev/null
"$CLI" select --model "$M" --pool "$POOL" -k 12 --group-by PatientID --format labelstudio \
    --image-url "/data/local-files/?d=nih1000/" --out "$T/g1.ls.json" 2> /dev/null
check "json settings" grep -q '"group_by":	"PatientID"' "$T/g1.json"
check "json paths = csv paths" cmp -s "$T/got_g1.txt" <(grep '"path":' "$T/g1.json" | sed 's/.*"path":[[:space:]]*"\(.*\)",*/\1/')
check "labelstudio is a list of tasks" test "$(head -c 1 "$T/g1.ls.json")" = "["
check "labelstudio: 12 data objects" test "$(grep -c '"data":' "$T/g1.ls.json")" -eq 12
check "labelstudio image URLs" cmp -s <(sed 's#^#/data/local-files/?d=nih1000/#' "$T/got_g1.txt") \
    <(grep '"image":' "$T/g1.ls.json" | sed 's/.*"image":[[:space:]]*"\(.*\)",*/\1/' | sed 's#\\/#/#g')
check "labelstudio carries the group column" test "$(grep -c '"PatientID":' "$T/g1.ls.json")" -eq 12

# 6. evaluate --group-by: pools of distinct patients where the data allows, the counts where not
"$CLI" evaluate --pos-csv "$E/test_pos.csv" --norm-csv "$E/test_norm.csv" --seen Effusion --unseen Cardiomegaly \
    --pool 16 --query 20 -k 5 --tasks 50 --strategies random --group-by PatientID > "$T/ev.md" 2> "$T/ev.err"
check "grouped evaluate exits 0" test $? -eq 0
check "grouped evaluate reports" grep -q "pool 16 (8 positive), query 20 (10 positive); each pool holds at most one image per PatientID" "$T/ev.md"
"$CLI" evaluate --pos-csv "$E/test_pos.csv" --norm-csv "$E/test_norm.csv" --seen Effusion --unseen Cardiomegaly \
    --pool 30 --query 20 -k 5 --tasks 50 --strategies random --group-by PatientID --json "$T/ev.json" > /dev/null 2> "$T/ev2.err"
check "grouped evaluate that cannot fit exits 2" test $? -eq 2
check "cannot fit: the counts" grep -q "condition 'Cardiomegaly' has positives from 8 groups of PatientID, a pool of 15 positives without repeated groups needs 15" "$T/ev2.err"
check "cannot fit: no JSON left" test ! -e "$T/ev.json"

echo "$fails failed"
test $fails -eq 0
