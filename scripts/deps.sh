#!/usr/bin/env bash
# Installs the Debian packages medselect needs to build and test, when any is missing.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (does nothing then).
set -euo pipefail
MS_PACKAGES=(build-essential cmake pkg-config libopenblas-openmp-dev libhdf5-dev libgsl-dev
             libcjson-dev libpng-dev libjpeg62-turbo-dev libcairo2-dev libgdcm-dev)
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
