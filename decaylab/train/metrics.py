"""The metrics log of a run: one JSON object per line in ``metrics.jsonl``, mirrored to TensorBoard.

When a run resumes from a checkpoint at step ``c``, records after ``c`` (written by the
interrupted run after its last checkpoint) are dropped from the JSONL file and purged from
TensorBoard, so the log of a resumed run equals that of an uninterrupted one.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

from decaylab.atomic import write_text_atomic
from decaylab.train.rundir import METRICS_FILE, TENSORBOARD_DIR

log = logging.getLogger(__name__)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every complete record of a run's ``metrics.jsonl`` (an empty list when there is none).

    A last line without its newline was cut off by a crash mid-write and is left out."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    complete = path.read_text().split("\n")[:-1]
    return [json.loads(line) for line in complete if line.strip()]


class MetricsLog:
    """Appends records to ``run_dir/metrics.jsonl`` and TensorBoard scalars to ``run_dir/tensorboard``.

    Created with ``enabled=False`` on ranks other than 0, where it does nothing."""

    def __init__(self, run_dir: str | Path, *, start_step: int, enabled: bool, tensorboard: bool):
        self.enabled = enabled
        self._file = None
        self._writer = None
        if not enabled:
            return
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(run_dir) if r["step"] <= start_step]
        path = run_dir / METRICS_FILE
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(path, "a")
        if tensorboard and importlib.util.find_spec("tensorboard") is None:
            log.warning("tensorboard is not installed: writing %s only (pip install 'decaylab[tensorboard]', "
                        "or set tensorboard=false)", path)
        elif tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR), purge_step=start_step + 1, flush_secs=10)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (which has a ``step``); numeric fields also go to TensorBoard."""
        if not self.enabled:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(key, value, record["step"])

    def close(self) -> None:
        """Flush and close the JSONL file and the TensorBoard writer."""
        if self._file is not None:
            self._file.close()
        if self._writer is not None:
            self._writer.close()
