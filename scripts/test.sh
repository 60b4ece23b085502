#!/usr/bin/env bash
# Builds medselect with -Werror (installing missing Debian packages) and runs the whole test
# suite with CTest, then builds and runs it once more under AddressSanitizer and
# UndefinedBehaviorSanitizer, then runs every libFuzzer harness briefly (15 s each, fuzz/run.sh)
# when clang is installed. Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)
lsan_supp="$(pwd)/tests/lsan.supp" # third-party leaks only (fontconfig)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMS_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMS_WERROR=ON -DMS_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions="$lsan_supp" UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   MS_SANITIZED=1 ctest --output-on-failure -j"$jobs")
if command -v clang >/dev/null && command -v clang++ >/dev/null; then
  MS_FUZZ_NICE=0 bash fuzz/run.sh "${MS_FUZZ_SECONDS:-15}"
else
  echo "scripts/test.sh: clang not found; fuzz harnesses skipped" >&2
fi
