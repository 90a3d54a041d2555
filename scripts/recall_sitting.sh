#!/usr/bin/env bash
# Usage (on the device, carrying .whl): bash scripts/recall_sitting.sh [MINUTES, default 8.3 [SEEDS, default 0]]
# One device call: the recall record (issue 16 item 1); if its softmax reference stays below 0.95 at
# every number of pairs, the record is stopped and the rest of the call calibrates the reference alone.
source "$(dirname "$0")/device_env.sh"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u; git log -1 --format=%h
START=$(date +%s)
R=reports/h200-optimal/sweep/recall.json
(while sleep 10; do [ -f $R ] && cp $R $OUT/; done) &
trap "kill $! 2>/dev/null" EXIT  # the copier holds stdout: a pipe after this script would wait for it
python3 -m decaylab recall reports/h200-optimal/sweep --pairs 8,16,31 --seq-len 128 --vocab 64 --batch 256 \
    --lr 1e-3 --seeds ${2:-0} --time-limit ${1:-8.3} > $OUT/recall.log 2>&1 &
P=$!
verdict() { python3 - <<'PY'
from pathlib import Path
from decaylab.sweep.presets import design_key
from decaylab.sweep.recall import read_recall, recall_curves
from decaylab.sweep.report import CALIBRATED_ACCURACY
record = read_recall(Path("reports/h200-optimal/sweep"))
if record is None:
    print("wait")
else:  # the reference is probed first, at every number of pairs
    reference = recall_curves(record).get(design_key(None), {})
    done = len(reference) == len(record["pairs"])
    print("wait" if not done else "ok" if max(reference.values()) >= CALIBRATED_ACCURACY else "fail")
PY
}
V=wait
while kill -0 $P 2>/dev/null; do
    sleep 10; V=$(verdict)
    [ "$V" = wait ] || break
done
echo "softmax reference: $V after $(( $(date +%s) - START )) s"
if [ "$V" = fail ]; then
    kill -TERM $P; pkill -TERM -f multiprocessing.spawn; sleep 5  # the record and its workers
    cp $R $OUT/recall-uncalibrated.json
    python3 benchmarks/calibrate_mqar.py --designs softmax --pairs 8,16 --seq-lens 64,128 --lrs 3e-4,1e-3,3e-3 \
        --steps 3000 --vocab 64 --batch 256 --size tiny --workers 16 --json $OUT/calibrate.json \
        > $OUT/calibrate.log 2>&1
    tail -20 $OUT/calibrate.log
else
    wait $P; echo "recall exit $?"
fi
cp $R $OUT/ 2>/dev/null; date -u; tail -30 $OUT/recall.log
