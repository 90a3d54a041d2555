"""A sweep's recall record: MQAR accuracy against the number of key–value pairs for each probed design.

The probe trains a fresh small model of each design on multi-query associative recall
(:func:`decaylab.evaluate.recall.train_and_eval_mqar`), so it does not depend on the language-model
runs; measuring it apart from them lets a whole grid of probes (designs × pairs × seeds) share one
GPU in parallel processes, and lets its task be harder than the per-run probe's without retraining
a run. The record is ``SWEEP_DIR/recall.json``::

    {"probe":  the RecallProbe fields of every point but num_pairs,
     "pairs":  [N, ...], "seeds": [s, ...], "families": ["a", "c"],
     "points": [{"design": <design record>, "num_pairs", "seed", "accuracy", "chance", "final_loss",
                 "skipped_steps", "seconds"}, ...],
     "invocations": [{"started", "wall_s", "workers", "trained", "not_started", "hardware", "torch", ...}, ...]}

It is rewritten (atomically) after every point, so a call stopped at its time limit keeps what it
finished, and a later call with the same settings trains only the missing points; other probe
settings are refused (the record must be moved away first). The report draws it
(:mod:`decaylab.sweep.report`).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from decaylab.decay import DecaySpec
from decaylab.evaluate.recall import RecallProbe
from decaylab.sweep.presets import Family, design_key
from decaylab.sweep.rundir import SweepError, design_from_record, design_record, read_json, write_json_atomic

RECALL_FILE = "recall.json"


@dataclass(frozen=True)
class Job:
    """One probe to train: a design (None: the softmax reference), the probe's settings, a seed."""

    design: DecaySpec | None
    probe: RecallProbe
    seed: int


def train_job(job: Job, device: str | None = None) -> dict:
    """Train and score one probe (``device``: CUDA when there is one); the result of
    :func:`~decaylab.evaluate.recall.train_and_eval_mqar`."""
    import torch

    from decaylab.evaluate.recall import train_and_eval_mqar
    from decaylab.model import make_config

    design = {} if job.design is None else dataclasses.asdict(job.design)
    config = make_config(job.probe.size or "tiny", **({"arch": "softmax"} if job.design is None else design))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return train_and_eval_mqar(config, job.probe, seed=job.seed, device=device, progress=False)


def _train_in_worker(job: Job) -> dict:
    import torch

    torch.set_num_threads(1)  # many workers share the machine
    return train_job(job)


def run_jobs(jobs: list[Job], workers: int, on_result: Callable[[Job, dict], None],
             deadline: float | None = None) -> list[Job]:
    """Train ``jobs``, ``workers`` at a time in spawned processes of one thread each (sharing the GPU
    where there is one; ``workers`` 1: in this process), calling ``on_result(job, result)`` as each
    ends. With a ``deadline`` (a :func:`time.monotonic` value) a job starts only if it would end in
    time should it take as long as the longest finished so far (until one has finished, any starts
    before the deadline).
    Returns the jobs not started."""
    longest, pending = 0.0, list(jobs)

    def fits() -> bool:
        return deadline is None or time.monotonic() + longest <= deadline

    if workers <= 1:
        while pending and fits():
            job, start = pending.pop(0), time.monotonic()
            on_result(job, train_job(job))
            longest = max(longest, time.monotonic() - start)
        return pending
    running: dict[Future, tuple[Job, float]] = {}
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        while pending or running:
            while pending and len(running) < workers and fits():
                job = pending.pop(0)
                running[pool.submit(_train_in_worker, job)] = (job, time.monotonic())
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job, start = running.pop(future)
                longest = max(longest, time.monotonic() - start)
                on_result(job, future.result())
    return pending


# --------------------------------------------------------------------------- the record


def probed_designs(families: dict[str, Family], keys: Iterable[str]) -> list[DecaySpec | None]:
    """The designs of the families ``keys``, once each: the softmax reference first (the probe's own
    check: it should reach ~1 wherever the task is learnable), then in family order."""
    found: list[DecaySpec | None] = []
    for key in keys:
        if key not in families:
            raise ValueError(f"unknown family {key!r}: the sweep has {', '.join(sorted(families))}")
        found += [d for d in families[key].designs if d not in found]
    return sorted(found, key=lambda d: d is not None)  # stable: the rest keep their order


def probe_settings(probe: RecallProbe) -> dict:
    """The probe's fields but ``num_pairs`` (which the record varies), as stored in ``recall.json``."""
    return {k: v for k, v in dataclasses.asdict(probe).items() if k != "num_pairs"}


def read_recall(root: Path) -> dict | None:
    """The recall record of the sweep in ``root``, or None where it has none; :class:`SweepError`
    when the file is not a recall record."""
    path = Path(root) / RECALL_FILE
    try:
        record = read_json(path)
    except ValueError as err:
        raise SweepError(f"{path} is not valid JSON ({err}); move it away and measure again") from None
    missing = sorted({"probe", "pairs", "seeds", "families", "points"} - set(record or {}))
    if record is not None and missing:
        raise SweepError(f"{path} is not a recall record (it lacks {', '.join(missing)}); move it away and measure again")
    return record


def measure_recall(root: Path, families: dict[str, Family], family_keys: list[str], probe: RecallProbe,
                   pairs: list[int], seeds: list[int], workers: int, deadline: float | None = None,
                   log: Callable[[str], None] = print) -> tuple[dict, int, int]:
    """Train every missing (design, pairs, seed) point of the families ``family_keys`` into
    ``root/recall.json``; the record, the number of points trained and the number not started
    (``deadline``, as :func:`run_jobs`). :class:`SweepError` where the record holds other probe settings."""
    for n in pairs:
        dataclasses.replace(probe, num_pairs=n).task.validate()
    settings = probe_settings(probe)
    record = read_recall(root) or {"probe": settings, "pairs": [], "seeds": [], "families": [], "points": []}
    if record["probe"] != settings:
        changed = sorted(k for k in {*settings, *record["probe"]} if settings.get(k) != record["probe"].get(k))
        raise SweepError(f"{root / RECALL_FILE} was measured with other probe settings ({', '.join(changed)}); "
                         "give the same ones, or move it away to measure anew")
    record.update(pairs=sorted({*record["pairs"], *pairs}), seeds=sorted({*record["seeds"], *seeds}),
                  families=sorted({*record["families"], *family_keys}))
    done = {(design_key(design_from_record(p["design"])), p["num_pairs"], p["seed"]) for p in record["points"]}
    jobs = [Job(d, dataclasses.replace(probe, num_pairs=n), s)
            for d in probed_designs(families, family_keys) for n in pairs for s in seeds
            if (design_key(d), n, s) not in done]
    log(f"recall: {len(jobs)} probes to train ({len(done)} in the record), {workers} at a time")

    finished: list[Job] = []

    def keep(job: Job, result: dict) -> None:
        record["points"].append({"design": design_record(job.design), "num_pairs": job.probe.num_pairs,
                                 "seed": job.seed, **{k: result[k] for k in (
                                     "accuracy", "chance", "final_loss", "skipped_steps", "seconds")}})
        write_json_atomic(root / RECALL_FILE, record)
        finished.append(job)
        log(f"  [{len(finished)}/{len(jobs)}] {design_key(job.design):<34} {job.probe.num_pairs:>4} pairs  seed {job.seed}  "
            f"accuracy {result['accuracy']:.3f}  ({result['seconds']:.0f} s)")

    left = run_jobs(jobs, workers, keep, deadline)
    return record, len(jobs) - len(left), len(left)


def mean_by_pairs(points: Iterable[tuple[int, float]]) -> dict[int, float]:
    """Number of pairs → mean accuracy of the ``(num_pairs, accuracy)`` points, by increasing number."""
    by: dict[int, list[float]] = {}
    for n, accuracy in points:
        by.setdefault(n, []).append(accuracy)
    return {n: statistics.fmean(a) for n, a in sorted(by.items())}


def recall_curves(record: dict) -> dict[str, dict[int, float]]:
    """Design key → number of pairs → accuracy (mean over the record's seeds)."""
    by: dict[str, list[tuple[int, float]]] = {}
    for p in record["points"]:
        by.setdefault(design_key(design_from_record(p["design"])), []).append((p["num_pairs"], p["accuracy"]))
    return {k: mean_by_pairs(points) for k, points in by.items()}
