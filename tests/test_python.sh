#!/usr/bin/env bash
# The Python package (python/): runs python/tests with Debian's python3-pytest against the
# extension CMake built into build/python (MS_PYTHONPATH), comparing it with the CLI (MS_CLI)
# on the shared NIH data and with PyTorch through a committed fixture. Skipped (exit 77)
# when the extension was not built: under the sanitizers (MS_SANITIZE builds no extension,
# since an ASan library cannot be loaded into an uninstrumented python) or without
# python3-dev/python3-numpy.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py=${MS_PYTHON:-}
if [ -z "$py" ] || ! ls "${MS_PYTHONPATH:-/nonexistent}"/medselect/_medselect*.so >/dev/null 2>&1; then
  echo "test_python: skipped (the Python extension was not built)"
  exit 77
fi
mkdir -p "$MS_TMP"
cd "$MS_TMP"
PYTHONPATH="$MS_PYTHONPATH" PYTHONDONTWRITEBYTECODE=1 exec "$py" -m pytest -q -p no:cacheprovider \
  --basetemp="$MS_TMP/pytest" "$here/python/tests"
