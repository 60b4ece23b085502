#!/bin/bash
# test_outputs.sh: how the commands write files (include/medselect/output.h), end to end on the
# demo's synthetic data: missing parent folders are created (README's `train --out
# runs/nih-k10` on a fresh checkout); a second `train` into a folder in use is refused with
# one line naming the folder and the owner's pid (exit 2), and the lock of a killed run
# stops nobody; failed runs leave no empty folder; a full disk (a file-size limit) leaves no
# header-only metrics.csv and no folder; named temporaries (the fallback when O_TMPFILE is
# not available, forced by MS_NO_TMPFILE) of dead writers are removed, those of live ones
# kept; select publishes its scores and worklist as a pair.
set -u
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" # see test_kill.sh
CLI=${MS_CLI:?MS_CLI must point at the medselect binary}
T=${MS_TMP:-/tmp/medselect-test}/outputs
rm -rf "$T" && mkdir -p "$T"
cd "$T" || exit 1
fails=0
check() { # check DESCRIPTION COMMAND...
    if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi
}
no_temporaries() { # no_temporaries DIR: nothing named like a temporary below DIR
    test -z "$(find "$1" -name '*.ms-tmp.*' -o -name '*.tmp.*' -o -name '*.part.*')"
}

"$CLI" demo --no-train --tasks 5 --write-data data > /dev/null 2>&1 || { echo "FAIL: demo --write-data"; exit 1; }
D=data
train() { # train OUT [more options]
    "$CLI" train --train-pos-csv $D/train_pos.csv --train-norm-csv $D/train_norm.csv \
        --val-pos-csv $D/val_pos.csv --val-norm-csv $D/val_norm.csv --seen finding_a,finding_b \
        --pool 20 --query 10 -k 4 --hidden 8 --batch-size 8 --epochs 1 --val-tasks 8 --val-every 2 \
        --out "$@"
}

# 1. missing parents are created, for every command that writes
train runs/nih-k10 --tasks 32 > /dev/null 2> e1
check "train --out with missing parents exits 0" test $? -eq 0
check "train created runs/nih-k10/best.safetensors" test -f runs/nih-k10/best.safetensors
check "train released its lock" test ! -e runs/nih-k10/.medselect.lock
"$CLI" select --model runs/nih-k10/best.safetensors --pool $D/test_pos.csv -k 5 \
    --out lists/a/worklist.csv --scores lists/b/scores.csv 2> e2
check "select creates the folders of --out and --scores" test -f lists/a/worklist.csv -a -f lists/b/scores.csv
check "select released its lock" test ! -e lists/a/.worklist.csv.lock
"$CLI" evaluate --pos-csv $D/test_pos.csv --norm-csv $D/test_norm.csv --pool 20 --query 10 -k 4 \
    --tasks 4 --conditions finding_a --strategies random --json res/eval/out.json > /dev/null 2> e3
check "evaluate --json creates its folder" test -f res/eval/out.json
"$CLI" analyze --pos-csv $D/test_pos.csv --norm-csv $D/test_norm.csv --pool 20 --query 10 -k 4 \
    --tasks 4 --conditions finding_a --a kcenter --b random --permutations 20 --out an/deep/dir --json an/deep/dir/a.json 2> e4
check "analyze creates --out with its parents" test -f an/deep/dir/report.md -a -f an/deep/dir/a.json
check "nothing temporary left" no_temporaries "$T"

# 2. one run per output folder
(exec_train() { exec "$CLI" train --train-pos-csv $D/train_pos.csv --train-norm-csv $D/train_norm.csv \
    --val-pos-csv $D/val_pos.csv --val-norm-csv $D/val_norm.csv --seen finding_a,finding_b \
    --pool 20 --query 10 -k 4 --hidden 8 --batch-size 8 --epochs 1 --val-tasks 8 --val-every 2 \
    --out busy --tasks 2000000; }; exec_train) > /dev/null 2> e5 &
first=$! # the subshell execs the binary: this is its pid
for i in $(seq 1 100); do [ -s busy/.medselect.lock ] && break; sleep 0.05; done
train busy --tasks 2000000 > /dev/null 2> e6
rc=$?
check "second train into a folder in use exits 2" test $rc -eq 2
check "the refusal is one line" test "$(wc -l < e6)" -eq 1
check "it names the folder and the owner's pid" grep -q "^medselect train: busy: in use by another medselect process (pid $first)$" e6
kill -9 $first; wait $first 2> /dev/null
check "a killed run leaves no temporary" no_temporaries busy
train busy --tasks 2000000 --resume --max-iterations 2 > /dev/null 2> e7
check "the lock of a killed run stops nobody (resume exits 0)" test $? -eq 0
"$CLI" select --strategy random --pool $D/test_pos.csv -k 5 --out busy/list.csv 2> /dev/null
check "another command's output in the same folder is not blocked" test -f busy/list.csv

# 3. failures leave no empty folder
train fail/deep/run --tasks 32 --seen no_such_condition > /dev/null 2> e8
check "train with a bad condition fails" test $? -ne 0
check "... and leaves no folder" test ! -e fail
"$CLI" analyze --pos-csv $D/missing.csv --norm-csv $D/test_norm.csv --a kcenter --out fail2/x 2> e9
check "analyze on a missing file exits 2" test $? -eq 2
check "... and leaves no folder" test ! -e fail2
"$CLI" select --strategy random --pool $D/missing.csv -k 5 --out fail3/list.csv 2> /dev/null
check "select on a missing file leaves no folder" test ! -e fail3
mkdir keep
train keep --tasks 32 --seen no_such_condition > /dev/null 2>&1
check "a folder that existed before is kept" test -d keep

# 4. a full disk (a file-size limit: writes fail with EFBIG): nothing half-written
(ulimit -f 8; trap '' XFSZ; exec "$CLI" train --train-pos-csv $D/train_pos.csv --train-norm-csv $D/train_norm.csv \
    --val-pos-csv $D/val_pos.csv --val-norm-csv $D/val_norm.csv --seen finding_a,finding_b \
    --pool 20 --query 10 -k 4 --hidden 32 --batch-size 8 --epochs 1 --val-tasks 8 --val-every 2 \
    --tasks 32 --out full/run) > /dev/null 2> e10
check "train on a full disk exits 2" test $? -eq 2
check "... naming the file" grep -q "full/run/state.safetensors: cannot write: File too large" e10
check "... and leaves no metrics.csv and no folder" test ! -e full
(ulimit -f 1; trap '' XFSZ; exec "$CLI" select --model runs/nih-k10/best.safetensors --pool $D/train_pos.csv -k 5 \
    --out lists/a/worklist.csv --scores lists/b/scores.csv) 2> e11
check "select on a full disk exits 2" test $? -eq 2
check "... and keeps the old worklist" cmp -s lists/a/worklist.csv <(cd "$T" && "$CLI" select --model runs/nih-k10/best.safetensors --pool $D/test_pos.csv -k 5 --out - 2> /dev/null)
check "nothing temporary left" no_temporaries "$T"

# 5. named temporaries (no O_TMPFILE): those of dead writers go, those of live ones stay
mkdir tmpdir
sleep 300 & live=$!
dead=$(sh -c 'echo $$')
printf 'partial' > tmpdir/.worklist.csv.ms-tmp.$dead.0
printf 'partial' > tmpdir/.other.csv.ms-tmp.$live.0
MS_NO_TMPFILE=1 "$CLI" select --strategy random --pool $D/test_pos.csv -k 5 --out tmpdir/worklist.csv 2> e12
check "select with named temporaries exits 0" test $? -eq 0
check "... the worklist is in place" test "$(wc -l < tmpdir/worklist.csv)" -eq 6
check "... a dead writer's temporary is removed" test ! -e tmpdir/.worklist.csv.ms-tmp.$dead.0
check "... a live writer's temporary is kept" test -e tmpdir/.other.csv.ms-tmp.$live.0
kill $live; wait $live 2> /dev/null
rm tmpdir/.other.csv.ms-tmp.$live.0
MS_NO_TMPFILE=1 train tmpdir/run --tasks 32 > /dev/null 2>&1
check "train with named temporaries exits 0 and leaves none" no_temporaries tmpdir

echo "$fails failed"
exit $((fails > 0))
