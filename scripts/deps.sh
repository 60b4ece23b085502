#!/usr/bin/env bash
# Installs the Debian packages medselect needs to build and test, when any is missing.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (does nothing then).
set -euo pipefail
# python3-numpy: tools/convert_checkpoint.py --selector (and its test) needs Python 3 and
# NumPy only; torch is not installed (the converter reads torch.save files without it).
# python3-dev/-numpy/-pytest/-setuptools: the Python package (python/) and its tests;
# python3-venv/-pip: its installation as README's "Python" section shows it.
MS_PACKAGES=(build-essential cmake pkg-config libdnnl-dev libhdf5-dev libgsl-dev
             libcjson-dev libpng-dev libjpeg62-turbo-dev libcairo2-dev libgdcm-dev
             python3-dev python3-numpy python3-pytest python3-setuptools python3-venv python3-pip
             clang libclang-rt-14-dev libomp-14-dev)
# clang, its runtime libraries (libFuzzer, sanitizers) and LLVM's OpenMP build the fuzz
# harnesses (fuzz/run.sh), which scripts/test.sh runs briefly.
missing=()
for p in "${MS_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "medselect: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
