#!/usr/bin/env bash
# One sitting of a long sweep on a GPU machine without network: installs the carried wheels, runs
# `decaylab sweep` for at most MINUTES (runs that would not end in time wait for the next sitting),
# and packs the record of the runs it completed, without checkpoints, as OUT/sweep.tgz, so that the
# next sitting (on a fresh machine) resumes from it.
#
#   bash scripts/gpu_sitting.sh PRESET SWEEP_DIR MINUTES [KILL_AFTER_S [SWEEP_OPTION ...]]
#
# Carry (or have at hand): .whl (scripts/offline_wheels.sh), the preset's prepared dataset (for
# h200-optimal: runs/data/large-8k, `decaylab prepare large --out runs/data/large-8k --vocab-size 8192`)
# and SWEEP_DIR from the last sitting. A dataset can travel packed, as .carry/NAME.tar.gz with paths from
# the repository root (scripts/study_inputs.sh packs runs/data/large-8k there: 19 MB instead of 35 MB of
# the device's 64 MiB working tree); each such archive is unpacked first, never over a file already
# there (the sweep then checks the dataset against the sha256 its record pins). KILL_AFTER_S (default
# MINUTES·60 + 120) stops a sweep that overruns, leaving time to pack. Further options go to
# `decaylab sweep` (e.g. --close-calls once every run is done). Unpack the record with
# `tar xzf sweep.tgz` in the repository root.
set -uo pipefail
if [[ $# -lt 3 || ! "$3" =~ ^[0-9]+$ ]]; then
  echo "usage: bash scripts/gpu_sitting.sh PRESET SWEEP_DIR MINUTES [KILL_AFTER_S [SWEEP_OPTION ...]] (MINUTES a whole number)" >&2
  exit 2
fi
PRESET="$1"; DIR="$2"; MINUTES="$3"; KILL_AFTER="${4:-$((MINUTES * 60 + 120))}"
OUT="${OUT:-.}"
mkdir -p "$OUT"
source "$(dirname "$0")/device_env.sh"
for archive in .carry/*.tar.gz; do
  [[ -e "$archive" ]] || continue
  tar xzf "$archive" --skip-old-files || { echo "gpu_sitting: unpacking $archive failed" >&2; exit 2; }
done
{
  date -u +"sitting start %Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)"
  git log -1 --format="decaylab %H %cd" 2>/dev/null
} 2>&1 | tee "$OUT/sitting.log"
timeout --signal=INT --kill-after=30 "$KILL_AFTER" \
  python3 -m decaylab sweep --preset "$PRESET" --out "$DIR" --time-limit "$MINUTES" "${@:5}" 2>&1 | tee -a "$OUT/sitting.log"
status=${PIPESTATUS[0]}
python3 -m decaylab sweep --preset "$PRESET" --out "$DIR" --list 2>&1 | tee -a "$OUT/sitting.log"
date -u +"sitting end %Y-%m-%dT%H:%M:%SZ (sweep exit status $status)" | tee -a "$OUT/sitting.log"
# Runs that did not complete are left out: without their checkpoints they could not resume, and
# the next sitting starts them afresh.
python3 -c '
import sys
from pathlib import Path

from decaylab.sweep.rundir import run_state

for run in sorted(Path(sys.argv[1], "runs").iterdir()):
    if run_state(run) != "complete":
        print(run)
' "$DIR" >/tmp/incomplete-runs
tar czf "$OUT/sweep.tgz" --exclude=checkpoints --exclude-from=/tmp/incomplete-runs "$DIR"
exit "$status"
