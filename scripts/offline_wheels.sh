#!/usr/bin/env bash
# Wheels of lm-eval and the packages it needs that a typical offline GPU image lacks, for the
# cloze and lm-eval pieces of `decaylab eval` / `decaylab sweep` on a machine without network.
#
#   bash scripts/offline_wheels.sh [DIR] [PYTHON_VERSION]      # default: .whl, 3.12
#
# Then, on the offline machine:
#   python3 -m pip install --no-index --no-deps --target /tmp/site DIR/*.whl && export PYTHONPATH=/tmp/site
#
# The packages scientific images usually carry (numpy, pandas, pyarrow, scikit-learn, sacrebleu,
# jinja2, huggingface-hub, fsspec, xxhash, tqdm) are not fetched. Three of lm-eval's needs publish
# no wheels (sqlitedict, word2number, rouge-score); they are built here (pure Python).
set -euo pipefail
DIR="${1:-.whl}"
PY="${2:-3.12}"
mkdir -p "$DIR"
python3 -m pip wheel -q --no-deps -w "$DIR" sqlitedict word2number rouge-score
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$DIR" \
  "lm_eval==0.4.13" "datasets==5.2.0" "evaluate==0.4.6" dill multiprocess more_itertools nltk \
  pytablewriter DataProperty mbstrdecoder pathvalidate tabledata tcolorpy typepy chardet
ls "$DIR"
