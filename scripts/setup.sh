#!/usr/bin/env bash
# Create .venv (if missing) and install decaylab with the CPU build of PyTorch and the test tools.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# torch first, pinned: a bare "torch" requirement would pull a multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,data,eval]"
# With --lowest: also an overlay of the lowest release of each dependency range (scripts/lowest-releases.txt)
# in .venv/lowest, used by putting it first on PYTHONPATH; rebuilt when that list changes.
if [ "${1:-}" = "--lowest" ] && ! cmp -s scripts/lowest-releases.txt .venv/lowest/.done; then
  rm -rf .venv/lowest
  .venv/bin/python -m pip install -q --no-deps --target .venv/lowest -r scripts/lowest-releases.txt
  cp scripts/lowest-releases.txt .venv/lowest/.done
fi
