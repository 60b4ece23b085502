#!/usr/bin/env bash
# fuzz/run.sh [SECONDS] [NAMES...]: builds the libFuzzer harnesses (clang, ASan + UBSan,
# in build-fuzz/) and runs each for SECONDS (default 60), starting from the committed seeds
# in fuzz/seeds/NAME (copied into build-fuzz/corpus/NAME, which keeps what the run finds).
# NAMES default to every harness except hdf5_inproc (libhdf5 itself, whose crashes the
# program contains in a child process; run it by name). Prints, per harness, the executions
# and the result; a crash, leak, timeout or memory blow-up leaves its input in
# build-fuzz/crashes/ and makes the script exit 1.
# Environment: MS_FUZZ_JOBS (build jobs, default: nproc), MS_FUZZ_NICE (nice level, 10).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
all=(npy csv hdf5 safetensors image dicom config weights)
names=("$@")
[ ${#names[@]} -eq 0 ] && names=("${all[@]}")
if ! command -v clang >/dev/null || ! command -v clang++ >/dev/null; then
  echo "fuzz/run.sh: clang is not installed (scripts/deps.sh installs it)" >&2
  exit 2
fi
B=build-fuzz
jobs=${MS_FUZZ_JOBS:-$(nproc)}
nice_lvl=${MS_FUZZ_NICE:-10}
CC=clang CXX=clang++ cmake -S . -B $B -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMS_FUZZ=ON -DMS_NATIVE=OFF >/dev/null
targets=()
for n in "${names[@]}"; do targets+=("fuzz_$n"); done
nice -n "$nice_lvl" cmake --build $B -j"$jobs" --target "${targets[@]}" >/dev/null
mkdir -p $B/crashes $B/tmp
failed=0
printf '%-14s %12s %10s  %s\n' harness executions exec/s result
for n in "${names[@]}"; do
  corpus=$B/corpus/$n
  mkdir -p "$corpus"
  [ -d fuzz/seeds/$n ] && cp -n fuzz/seeds/$n/* "$corpus"/ 2>/dev/null || true
  log=$B/fuzz_$n.log
  set +e
  TMPDIR=$PWD/$B/tmp ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    nice -n "$nice_lvl" $B/fuzz_$n -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix=$B/crashes/$n- "$corpus" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  if [ $rc -eq 0 ]; then
    result="ok, 0 crashes"
  else
    result="FAILED (exit $rc): $(grep -m1 -E 'ERROR|SUMMARY|Timeout|out-of-memory|deadly signal' "$log" || echo see log) -> $log"
    failed=1
  fi
  printf '%-14s %12s %10s  %s\n' "$n" "${execs:-0}" "${rate:-0}" "$result"
done
rm -rf $B/tmp/ms-fuzz-* 2>/dev/null || true
exit $failed
