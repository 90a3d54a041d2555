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
# With --lowest-transformers: also an overlay of the lowest supported transformers release (and the
# huggingface_hub it needs) in .venv/lowest-transformers, used by putting it first on PYTHONPATH.
if [ "${1:-}" = "--lowest-transformers" ] && [ ! -f .venv/lowest-transformers/.done ]; then
  rm -rf .venv/lowest-transformers
  .venv/bin/python -m pip install -q --no-deps --target .venv/lowest-transformers -r scripts/lowest-transformers.txt
  touch .venv/lowest-transformers/.done
fi
