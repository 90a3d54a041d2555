#!/usr/bin/env bash
# What a GPU sitting of the study carries, built here where the package registries are reachable; each
# piece is built only when it is missing (a fresh checkout has none of them: all three are git-ignored).
#
#   bash scripts/study_inputs.sh        # -> .whl/ (14 MB), runs/data/large-8k/ (35 MB) and, packed for
#                                       #    the device, .carry/large-8k.tar.gz (19 MB)
#
# then carry [".whl", ".carry"] into `bash scripts/gpu_sitting.sh ...` (it unpacks the dataset there):
# the device takes a working tree of at most 64 MiB, and the unpacked dataset with the wheels and the
# growing study record would pass it.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/decaylab ]] || bash scripts/setup.sh
CORPUS="${DECAYLAB_CACHE:-$HOME/.cache/decaylab}/corpus-large/manifest.json"
[[ -f "$CORPUS" ]] || .venv/bin/python scripts/build_corpus.py --large
.venv/bin/decaylab prepare large --out runs/data/large-8k --vocab-size 8192 --seed 0   # cached when it is there
compgen -G ".whl/*.whl" >/dev/null || bash scripts/offline_wheels.sh .whl 3.12
PACKED=.carry/large-8k.tar.gz
if [[ ! -f "$PACKED" || runs/data/large-8k/manifest.json -nt "$PACKED" ]]; then
  mkdir -p .carry
  tar czf "$PACKED.tmp" runs/data/large-8k && mv "$PACKED.tmp" "$PACKED"
fi
du -sh .whl runs/data/large-8k "$PACKED"
