#!/bin/bash
# test_kill.sh: SIGKILL at seeded pseudo-random moments of `select --scores`, `evaluate --json`,
# `analyze`, `embed` and `train`. After every kill each output must be byte-identical to the
# complete file of one of the two runs that wrote it (never partial), no temporary may be
# left, and outputs that belong together (worklist + scores, CSV + embeddings) must come
# from the same run when the one readers open first is new. `train` is killed repeatedly
# (also before its first validation; each restart uses --resume, the first one with no state
# yet) and must then resume to the end byte-identical to an uninterrupted run.
#
# The kill moment is uniform over [0, 1.1 x the command's measured duration] (the shorter of
# its two variants). Knobs:
#   MS_KILL_SEED (1)        seed of the moments and of which variant each run writes
#   MS_KILLS (6; 3 under MS_SANITIZED=1)  kills per command (train: per round)
#   MS_TRAIN_ROUNDS (2; 1 under MS_SANITIZED=1)
# A longer stress run: MS_KILLS=50 MS_TRAIN_ROUNDS=10 bash tests/test_kill.sh
set -u
CLI=${MS_CLI:?MS_CLI must point at the medselect binary}
FIX=${MS_FIXTURES:?}/embed
ST_CHECK=${MS_ST_CHECK:?MS_ST_CHECK must point at tests/tools/st_check}
T=${MS_TMP:-/tmp/medselect-test}/kill
SEED=${MS_KILL_SEED:-1}
# under the sanitizers everything runs several times slower: fewer kills, smaller runs
if [ "${MS_SANITIZED:-0}" = 1 ]; then KILLS=${MS_KILLS:-3} ROUNDS=${MS_TRAIN_ROUNDS:-1} SMALL=1; else
    KILLS=${MS_KILLS:-6} ROUNDS=${MS_TRAIN_ROUNDS:-2} SMALL=0; fi
RANDOM=$SEED
# the figures' font library keeps some memory until exit under the sanitizers; leaks are not
# what this test is about (and a killed process reports none)
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
rm -rf "$T" && mkdir -p "$T" && cd "$T" || exit 1
fails=0 kills=0 finished=0 partial=0 temporaries=0 mismatched=0 resumes=0 resumes_same=0 early=0
check() { # check DESCRIPTION COMMAND...
    if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# run_killed DURATION_MS COMMAND...: runs the command, SIGKILLs it at a random moment in
# [0, 1.1 DURATION]; sets was_killed (1, or 0 when it finished first)
run_killed() {
    local dur=$1
    shift
    local ms=$((RANDOM * dur * 11 / 10 / 32768))
    "$@" > /dev/null 2>&1 &
    local pid=$!
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    kill -9 "$pid" 2> /dev/null
    wait "$pid" 2> /dev/null
    # 137: killed; anything else: it had exited before the kill
    if [ $? = 137 ]; then was_killed=1 kills=$((kills + 1)); else was_killed=0 finished=$((finished + 1)); fi
}

# temps DIR: names of temporaries below DIR (the fallback's ".NAME.ms-tmp.PID.N", older names)
temps() { find "$1" -name '*.ms-tmp.*' -o -name '*.tmp.*' -o -name '*.part.*'; }

# whose FILE REF_A REF_B [filter]: prints a, b, absent or partial
whose() {
    local f=$1 a=$2 b=$3 filt=${4:-cat}
    if [ ! -e "$f" ]; then echo absent; return; fi
    if cmp -s <($filt < "$f") <($filt < "$a"); then echo a; return; fi
    if cmp -s <($filt < "$f") <($filt < "$b"); then echo b; return; fi
    echo partial
}
no_seconds() { sed '/"seconds":/d'; }

# kill_loop NAME DIR "FILES..." PAIR_PRIMARY PAIR_OTHER FILTER CMD_A CMD_B: alternates the two
# variants at random, each killed once, checking every file against refs/NAME/{a,b}/
kill_loop() {
    local name=$1 dir=$2 files=$3 primary=$4 other=$5 filt=$6 cmd_a=$7 cmd_b=$8
    local n=0 v state
    mkdir -p "refs/$name"
    for v in a b; do
        rm -rf "$dir"
        local cmd=cmd_$v
        local t0
        t0=$(now_ms)
        bash -c "${!cmd}" > /dev/null 2> "refs/$name/err.$v" || { echo "FAIL: $name variant $v"; cat "refs/$name/err.$v"; fails=$((fails + 1)); return; }
        eval "dur_$v=\$((\$(now_ms) - t0))"
        rm -rf "refs/$name/$v" && cp -r "$dir" "refs/$name/$v"
    done
    local dur=$(( (dur_a < dur_b ? dur_a : dur_b) ))
    echo "$name: uninterrupted runs ${dur_a} ms and ${dur_b} ms"
    local before=$kills
    while [ $((kills - before)) -lt "$KILLS" ] && [ $n -lt $((KILLS * 4)) ]; do
        n=$((n + 1))
        if [ $((RANDOM % 2)) = 0 ]; then v=a; else v=b; fi
        local cmd=cmd_$v prev=""
        # the primary file as it was before this run: if the kill left it byte-identical, this
        # run did not publish it (a stale copy of an earlier run of the same variant may sit
        # beside partners that a later killed run of the other variant published first)
        [ -n "$primary" ] && [ -f "$dir/$primary" ] && prev=$(cksum < "$dir/$primary")
        run_killed "$dur" bash -c "exec ${!cmd}"
        for f in $files; do
            state=$(whose "$dir/$f" "refs/$name/a/$f" "refs/$name/b/$f" "$filt")
            if [ "$state" = partial ]; then
                partial=$((partial + 1))
                echo "FAIL: $name: $f is neither run's complete file after a kill"
                fails=$((fails + 1))
            fi
        done
        # the file readers open first is this run's (and not also the other's): its partner
        # must be this run's too
        if [ -n "$primary" ] && [ "$(whose "$dir/$primary" "refs/$name/$v/$primary" "refs/$name/$v/$primary" "$filt")" = a ] &&
            [ "$(cksum < "$dir/$primary")" != "$prev" ] && ! cmp -s "$dir/$other" "refs/$name/$v/$other"; then
            mismatched=$((mismatched + 1))
            echo "FAIL: $name: new $primary beside $other of the other run"
            fails=$((fails + 1))
        fi
        local left
        left=$(temps "$dir")
        if [ -n "$left" ]; then
            temporaries=$((temporaries + $(echo "$left" | wc -l)))
            echo "FAIL: $name: temporary left: $left"
            fails=$((fails + 1))
        fi
    done
    echo "$name: $((kills - before)) kills in $n runs"
}

# ---- data -----------------------------------------------------------------------------------
"$CLI" demo --no-train --tasks 5 --write-data data > /dev/null 2>&1 || { echo "FAIL: demo --write-data"; exit 1; }
D=$T/data
TRAIN="$CLI train --train-pos-csv $D/train_pos.csv --train-norm-csv $D/train_norm.csv \
    --val-pos-csv $D/val_pos.csv --val-norm-csv $D/val_norm.csv --seen finding_a,finding_b \
    --pool 20 --query 10 -k 4 --hidden 8 --batch-size 8 --epochs 1 --val-tasks 8 --val-every 4"
$TRAIN --tasks 32 --out "$T/model" > /dev/null 2>&1 || { echo "FAIL: training the selector"; exit 1; }
$TRAIN --tasks 32 --seed 1 --out "$T/model2" > /dev/null 2>&1 || { echo "FAIL: training the selector"; exit 1; }
mkdir -p enc imgs
ln -s "$(cd "$FIX/tiny" && pwd)/model.safetensors" enc/model.safetensors
cp "$FIX/tiny_gray.json" enc/config.json
cp "$FIX"/pipe_*.png imgs/
NI=$((SMALL ? 30 : 100))
{ echo Path; for i in $(seq 1 $NI); do echo "imgs/pipe_$((i % 3)).png"; done; } > list_a.csv
{ echo Path; for i in $(seq 1 $((NI + 20))); do echo "imgs/pipe_$(((i + 1) % 3)).png"; done; } > list_b.csv

# ---- select --scores: the worklist (published last) and its scores --------------------------
POOL=$D/train_pos.csv
[ $SMALL = 1 ] && POOL=$D/val_pos.csv
SEL="$CLI select --pool $POOL --out $T/sel/worklist.csv --scores $T/sel/scores.csv"
kill_loop select sel "worklist.csv scores.csv" worklist.csv scores.csv cat "$SEL --model $T/model/best.safetensors -k 20" \
    "$SEL --model $T/model2/best.safetensors -k 30"

# ---- evaluate --json ------------------------------------------------------------------------
EV="$CLI evaluate --pos-csv $D/test_pos.csv --norm-csv $D/test_norm.csv --pool 20 --query 10 -k 4 --conditions finding_a,finding_b --json $T/ev/eval.json"
NT=$((SMALL ? 10 : 40))
kill_loop evaluate ev "eval.json" "" "" no_seconds "$EV --tasks $NT" "$EV --tasks $NT --seed 7"

# ---- analyze: figures, then report.md; --json -------------------------------------------------
AN="$CLI analyze --pos-csv $D/test_pos.csv --norm-csv $D/test_norm.csv --pool 20 --query 10 -k 4 --tasks 10 --conditions finding_a --a kcenter --b random --permutations 50 --out $T/an --json $T/an/analysis.json"
kill_loop analyze an "report.md k4_age.png k4_auroc.png k4_l2_norm.png analysis.json" report.md k4_age.png cat "$AN" "$AN --seed 5"

# ---- embed: embeddings, then the CSV ----------------------------------------------------------
EM="$CLI embed --model $T/enc --threads 2 --batch 8"
kill_loop embed emb "out.csv out.hdf5" out.csv out.hdf5 cat "$EM --images $T/list_a.csv --out $T/emb/out.csv" "$EM --images $T/list_b.csv --out $T/emb/out.csv"

# ---- train: killed again and again, resumed to the end, compared with an uninterrupted run ----
TR="$TRAIN --tasks $((SMALL ? 80 : 160))"
t0=$(now_ms)
$TR --out "$T/train_ref" > /dev/null 2>&1 || { echo "FAIL: uninterrupted training"; exit 1; }
dur=$(($(now_ms) - t0))
echo "train: uninterrupted run $dur ms"
strip_seconds() { sed 's/,[^,]*$//' "$1"; }
for round in $(seq 1 "$ROUNDS"); do
    run=$T/train_$round
    rm -rf "$run"
    before=$kills
    for i in $(seq 1 "$KILLS"); do
        # every second restart is killed within the first tenth of the run (before its
        # first validation when it starts from scratch)
        d=$dur
        [ $((i % 2)) = 1 ] && d=$((dur / 10))
        run_killed "$d" bash -c "exec $TR --out $run --resume"
        if [ ! -e "$run/state.safetensors" ]; then early=$((early + 1)); fi
        left=$(temps "$T/train_$round" 2> /dev/null)
        if [ -n "$left" ]; then
            temporaries=$((temporaries + $(echo "$left" | wc -l)))
            echo "FAIL: train: temporary left: $left"
            fails=$((fails + 1))
        fi
        for f in best.safetensors state.safetensors last.safetensors; do
            if [ -e "$run/$f" ] && ! "$ST_CHECK" "$run/$f"; then
                partial=$((partial + 1))
                echo "FAIL: train: $f is not a complete safetensors file"
                fails=$((fails + 1))
            fi
        done
        if [ -e "$run/metrics.csv" ] && { [ -n "$(tail -c 1 "$run/metrics.csv")" ] ||
            ! head -1 "$run/metrics.csv" | grep -q '^iteration,'; }; then
            partial=$((partial + 1))
            echo "FAIL: train: metrics.csv is partial"
            fails=$((fails + 1))
        fi
    done
    $TR --out "$run" --resume > /dev/null 2> "$T/resume.err"
    rc=$?
    resumes=$((resumes + 1))
    same=1
    for f in best.safetensors last.safetensors state.safetensors; do cmp -s "$run/$f" "$T/train_ref/$f" || same=0; done
    cmp -s <(strip_seconds "$run/metrics.csv") <(strip_seconds "$T/train_ref/metrics.csv") || same=0
    if [ $rc = 0 ] && [ $same = 1 ]; then resumes_same=$((resumes_same + 1)); else
        echo "FAIL: train round $round: resume exit $rc, identical $same"; cat "$T/resume.err"; fails=$((fails + 1)); fi
    echo "train round $round: $((kills - before)) kills, resumed to the end: exit $rc, identical to the uninterrupted run: $same"
done

echo "kill test (seed $SEED): $kills kills ($finished runs finished before their kill), partial files $partial," \
    "temporaries $temporaries, mismatched pairs $mismatched, train resumes identical $resumes_same of $resumes" \
    "($early kills before the first state)"
check "no partial file" test $partial -eq 0
check "no temporary file" test $temporaries -eq 0
check "no mismatched pair" test $mismatched -eq 0
check "every resume succeeds and ends identical" test $resumes_same -eq $resumes
check "enough kills landed" test $kills -ge $((KILLS * 3))
echo "$fails failed"
exit $((fails > 0))
