"""The layout of one training run's directory: written by :mod:`decaylab.train`, read by
evaluation, analysis and sweeps (which add their own files next to these)::

    run_dir/
        checkpoints/     step_…/ checkpoints and the ``latest`` pointer (decaylab.train.checkpoint)
        metrics.jsonl    the training curve, one JSON object per line (decaylab.train.metrics)
        tensorboard/     the same scalars for TensorBoard (when enabled)
        final.json       the final metrics, written when the run finishes; its presence marks the run done
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
FINAL_FILE = "final.json"


def checkpoints_root(run_dir: str | Path) -> Path:
    """The directory holding a run's checkpoints and its ``latest`` pointer."""
    return Path(run_dir) / CHECKPOINTS_DIR


def is_checkpoint_dir(path: str | Path) -> bool:
    """Whether ``path`` is a checkpoint inside a run directory (``run_dir/checkpoints/step_…``)."""
    return Path(path).parent.name == CHECKPOINTS_DIR
