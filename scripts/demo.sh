#!/usr/bin/env bash
# Builds medselect (installing missing Debian packages) and runs `medselect demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target medselect_cli >/dev/null
exec build/medselect demo "$@"
