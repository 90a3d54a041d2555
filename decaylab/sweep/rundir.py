"""The layout of a sweep directory, its files, and reading it back.

Layout::

    sweep.json              families, designs, scale, seeds (and extra seeds of some designs) and
                            dataset of the sweep; its invocations
    runs/<run id>/          one training run (the layout of decaylab.train.rundir), plus:
        run.json            what the run is: design, seed, TrainConfig fields, evaluation settings
        worker.log          output of the worker process (training, then evaluation)
        eval.json           cached evaluation: extrapolation, recall, decay statistics
        failed.json         only while the last attempt failed: exit status and the log's tail
    report/                 written by decaylab.sweep.report

A run id is ``<design key>-s<seed>`` (e.g. ``gla-vector-sep-none-s0``): stable across restarts
and shared by every family that contains the design, so a design is trained once.

Designs are stored in sweep.json and run.json as ``{"decay", "granularity", "shared",
"positional"}`` (``decay`` null for the softmax reference): the format of every sweep directory
written so far, kept so that they all still load and resume. Every file is replaced atomically.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from decaylab.atomic import write_text_atomic
from decaylab.decay import DecaySpec
from decaylab.errors import DecaylabError
from decaylab.sweep.presets import Family, Scale, design_key, design_label, design_problems
from decaylab.train.metrics import read_metrics
from decaylab.train.rundir import CHECKPOINTS_DIR, FINAL_FILE

SWEEP_FILE = "sweep.json"
RUNS_DIR = "runs"
RUN_FILE = "run.json"
EVAL_FILE = "eval.json"
FAILED_FILE = "failed.json"
LOG_FILE = "worker.log"
REPORT_DIR = "report"


class SweepError(DecaylabError):
    """The sweep directory cannot hold this sweep (e.g. it was made at another scale)."""


# --------------------------------------------------------------------------- JSON files


def write_json_atomic(path: Path, value: object) -> None:
    """Replace ``path`` with ``value`` as JSON so that readers never see a partial file."""
    write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def read_json(path: Path) -> dict | None:
    """The JSON content of ``path``, or None when there is no such file."""
    return json.loads(path.read_text()) if path.is_file() else None


def design_record(design: DecaySpec | None) -> dict:
    """A design as stored in sweep.json and run.json (see the module docstring)."""
    if design is None:
        return {"decay": None, "granularity": "vector", "shared": False, "positional": "none"}
    return {"decay": design.decay, "granularity": design.decay_granularity, "shared": design.share_decay_key,
            "positional": design.positional}


def design_from_record(record: dict) -> DecaySpec | None:
    """The design of a stored record (inverse of :func:`design_record`)."""
    if record["decay"] is None:
        return None
    return DecaySpec(record["decay"], record["granularity"], record["shared"], record["positional"])


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Run:
    """One training run of a sweep: a design, a seed, and the families that show it."""

    design: DecaySpec | None
    seed: int
    families: tuple[str, ...]

    @property
    def run_id(self) -> str:
        return f"{design_key(self.design)}-s{self.seed}"


def run_dir(root: Path, run_id: str) -> Path:
    """The directory of one run of the sweep in ``root``."""
    return Path(root) / RUNS_DIR / run_id


def expand(families: dict[str, Family], seeds: tuple[int, ...],
           extra_seeds: dict[str, list[int]] | None = None) -> list[Run]:
    """Every (design, seed) of ``families``, once each, in family order then design order; a design
    of ``extra_seeds`` (design key → seeds) also gets those seeds, right after its own.

    Raises ``ValueError`` naming every invalid design."""
    invalid = [f"{design_key(d)}: {'; '.join(design_problems(d))}"
               for f in families.values() for d in f.designs if design_problems(d)]
    if invalid:
        raise ValueError("invalid designs in the sweep: " + " | ".join(invalid))
    owners: dict[DecaySpec | None, list[str]] = {}
    for key, family in families.items():
        for design in family.designs:
            owners.setdefault(design, [])
            if key not in owners[design]:
                owners[design].append(key)
    extra = extra_seeds or {}
    return [Run(d, seed, tuple(keys)) for d, keys in owners.items()
            for seed in (*seeds, *sorted(set(extra.get(design_key(d), ())) - set(seeds)))]


MEASURED_DATA = ("unigram_ppl", "checksums")  # properties of the prepared data, not settings of a run


def _settings_only(spec: dict) -> dict:
    """A data spec without what was measured of the prepared data (``MEASURED_DATA``)."""
    return {k: v for k, v in spec.items() if k not in MEASURED_DATA}


def _check_same_data(root: Path, old: dict, new: dict) -> None:
    """Raise :class:`SweepError` when the sweep's recorded dataset files (their sha256) differ from the
    ones at hand: a dataset rebuilt with another result would mix two datasets in one sweep."""
    changed = sorted(name for name, digest in old.get("checksums", {}).items()
                     if new.get("checksums", {}).get(name, digest) != digest)
    if changed:
        raise SweepError(f"{root} was trained on other data: the sha256 of {', '.join(changed)} in {new['dir']} "
                         f"differs from the one recorded in {root / SWEEP_FILE}; bring the dataset the sweep used, "
                         "or use another --out directory")


def run_spec(run: Run, scale: Scale, data: dict) -> dict:
    """The content of ``run.json``: everything the worker needs, and nothing that varies between
    restarts (the run directory itself is filled in by the worker, so a sweep directory can move)."""
    train = scale.train_values(run.design, run.seed)
    train["data"] = _settings_only(data)
    return {
        "run_id": run.run_id,
        "design": design_record(run.design),
        "seed": run.seed,
        "train": train,
        "evaluation": {
            "seq_len": scale.seq_len,
            "extrapolation_factor": scale.extrapolation_factor,
            "extrapolation_batches": scale.extrapolation_batches,
            "mqar_steps": scale.mqar_steps,
            "mqar_task": scale.mqar_task,
            "mqar_batch_size": scale.mqar_batch_size,
            "analysis_batches": scale.analysis_batches,
            **scale.added_settings(),
            **({"probes_recall": scale.probes_recall(run.families)} if scale.mqar_families else {}),
        },
    }


def corrupt_result(path: Path) -> str | None:
    """Why the run's final.json or eval.json cannot be read (a file that is not a JSON object), or None."""
    for name in (FINAL_FILE, EVAL_FILE):
        try:
            value = read_json(path / name)
        except (OSError, ValueError) as e:
            return f"{name} is corrupt ({e}); delete it to redo that stage"
        if value is not None and not isinstance(value, dict):
            return f"{name} is corrupt (a JSON {type(value).__name__}, not an object); delete it to redo that stage"
    return None


def run_state(path: Path) -> str:
    """``complete`` (trained and evaluated), ``trained``, ``started``, ``failed`` (also when its
    final.json or eval.json is corrupt) or ``new``."""
    if corrupt_result(path):
        return "failed"
    if (path / FINAL_FILE).is_file():
        evaluation = read_json(path / EVAL_FILE)
        return "complete" if evaluation is not None and evaluation.get("complete") else "trained"
    if (path / FAILED_FILE).is_file():
        return "failed"
    return "started" if (path / CHECKPOINTS_DIR).is_dir() else "new"


def read_evaluation(path: Path) -> dict:
    """The cached evaluation of a run (an empty dict when it has none yet)."""
    return read_json(Path(path) / EVAL_FILE) or {}


# --------------------------------------------------------------------------- the sweep record


def _family_record(family: Family) -> dict:
    return {"name": family.name, "question": family.question, "designs": [design_record(d) for d in family.designs]}


def init_sweep(root: Path, preset: str, families: dict[str, Family], scale: Scale, seeds: tuple[int, ...],
               data: dict, extra_seeds: dict[str, list[int]] | None = None) -> dict:
    """Create or extend ``root/sweep.json``; families, seeds and ``extra_seeds`` (design key → seeds
    of that design only, see :func:`expand`) are merged with a previous invocation's.

    Raises :class:`SweepError` if the directory holds a sweep at another scale or on other data."""
    root.mkdir(parents=True, exist_ok=True)
    old = read_json(root / SWEEP_FILE)
    record = {"preset": preset, "scale": scale.to_dict(), "data": data, "seeds": sorted(set(seeds)),
              "families": {k: _family_record(f) for k, f in families.items()}}
    if old is not None:
        for key in ("scale", "data"):
            if _settings_only(old[key]) != _settings_only(record[key]):
                raise SweepError(f"{root} holds a sweep with another {key} ({json.dumps(old[key])}); "
                                 f"this one has {json.dumps(record[key])}. Use another --out directory.")
        _check_same_data(root, old["data"], data)
        record["seeds"] = sorted(set(old["seeds"]) | set(record["seeds"]))
        merged = dict(old["families"])
        for key, fam in record["families"].items():
            designs = merged.get(key, {"designs": []})["designs"]
            union = designs + [d for d in fam["designs"] if d not in designs]
            merged[key] = {**fam, "designs": sorted(union, key=lambda d: d["decay"] is None)}  # reference last
        record["families"] = dict(sorted(merged.items()))
        record["preset"] = old["preset"] if old["preset"] == preset else f"{old['preset']}+{preset}"
        record["data"] = {**old["data"], **data}
        record["invocations"] = old.get("invocations", [])
    extra = merge_extra_seeds((old or {}).get("extra_seeds", {}), extra_seeds or {})
    if extra:
        record["extra_seeds"] = dict(sorted(extra.items()))
    write_json_atomic(root / SWEEP_FILE, record)
    return record


def merge_extra_seeds(old: dict[str, list[int]], new: dict[str, list[int]]) -> dict[str, list[int]]:
    """The extra seeds of both (design key → sorted seeds, their union for a design in both)."""
    return {key: sorted(set(old.get(key, ())) | set(new.get(key, ()))) for key in sorted({*old, *new})}


def record_invocation(root: Path, entry: dict) -> None:
    """Append one invocation (command, wall time, outcome counts, environment) to ``sweep.json``."""
    record = read_json(root / SWEEP_FILE)
    record.setdefault("invocations", []).append(entry)
    write_json_atomic(root / SWEEP_FILE, record)


def load_sweep(root: Path) -> tuple[dict, dict[str, Family], list[Run]]:
    """The sweep record of ``root``, its families and its runs (as :func:`expand` gives them)."""
    record = read_json(Path(root) / SWEEP_FILE)
    if record is None:
        raise SweepError(f"{root} is not a sweep directory: it has no {SWEEP_FILE} (run `decaylab sweep --out {root}`)")
    families = {k: Family(k, f["name"], f["question"], tuple(design_from_record(d) for d in f["designs"]))
                for k, f in record["families"].items()}
    return record, families, expand(families, tuple(record["seeds"]), record.get("extra_seeds"))


# --------------------------------------------------------------------------- results


@dataclass
class DesignResult:
    """The runs of one design: per-metric seed values, status counts, training curves and evaluations."""

    design: DecaySpec | None
    values: dict[str, list[float]] = field(default_factory=dict)
    states: list[str] = field(default_factory=list)
    curves: list[list[dict]] = field(default_factory=list)
    extrapolation: list[dict] = field(default_factory=list)
    decay: list[dict] = field(default_factory=list)
    initial_decay: list[dict] = field(default_factory=list)  # the same statistics at step 0
    recall_curve: list[list[dict]] = field(default_factory=list)  # MQAR accuracy by number of pairs

    def losses(self) -> list[float]:
        return self.values.get("val_loss", [])


def steady_throughput(curve: list[dict]) -> float | None:
    """Median training tokens/s over the logged windows of steps, leaving out the record of a
    session's first step, whose time includes compiling the model (a log written before that step
    had a record of its own holds it in its first window, which the median outweighs)."""
    rates = [r["tokens_per_s"] for r in curve if "tokens_per_s" in r and "first_step_s" not in r]
    return statistics.median(rates) if rates else None


def run_metrics(path: Path, curve: list[dict] | None = None) -> dict[str, float]:
    """The scalar metrics of one run (only those it has); ``curve``: its metrics log, if read already."""
    final = read_json(path / FINAL_FILE) or {}
    evaluation = read_evaluation(path)
    out = {k: final[k] for k in ("val_loss", "val_ppl", "tokens_per_s", "params", "tokens", "train_time_s")
           if final.get(k) is not None}
    steady = steady_throughput(read_metrics(path) if curve is None else curve)
    if steady is not None:
        out["steady_tokens_per_s"] = steady
    buckets = evaluation.get("extrapolation", {}).get("buckets")
    if buckets:
        out["extrap_ppl"] = buckets[-1]["ppl"]
    if "accuracy" in evaluation.get("recall", {}):
        out["recall"] = evaluation["recall"]["accuracy"]
    if "acc" in evaluation.get("cloze", {}):
        out["cloze_acc"], out["cloze_ppl"] = evaluation["cloze"]["acc"], evaluation["cloze"]["ppl"]
    return out


# Rates of a run that measure its GPU's load as much as the design.
THROUGHPUT_KEYS = ("steady_tokens_per_s", "tokens_per_s", "train_time_s")


def shared_gpu_runs(record: dict) -> dict[str, int]:
    """The runs an invocation of the sweep trained with other workers on their GPU, with how many
    shared it (its ``runs_per_gpu``; an invocation recorded before that was had one run per GPU)."""
    return {run_id: call["runs_per_gpu"] for call in record.get("invocations", [])
            if call.get("runs_per_gpu", 0) > 1 for run_id in call.get("runs_done", [])}


def collect(root: Path) -> tuple[dict, dict[str, Family], dict[str, DesignResult], list[dict]]:
    """Read a sweep directory: its record, families, results by design key and one row per run."""
    record, families, runs = load_sweep(root)
    shared = shared_gpu_runs(record)
    results: dict[str, DesignResult] = {}
    rows = []
    for run in runs:
        path = run_dir(root, run.run_id)
        res = results.setdefault(design_key(run.design), DesignResult(run.design))
        state = run_state(path)
        res.states.append(state)
        finished = state in ("complete", "trained")
        curve = read_metrics(path) if finished else []
        metrics = run_metrics(path, curve) if finished else {}
        for k, v in metrics.items():
            if not (run.run_id in shared and k in THROUGHPUT_KEYS):
                res.values.setdefault(k, []).append(float(v))
        if finished:
            res.curves.append(curve)
            evaluation = read_evaluation(path)
            if "buckets" in evaluation.get("extrapolation", {}):
                res.extrapolation.append(evaluation["extrapolation"])
            for piece in ("decay", "initial_decay"):
                if "layers" in evaluation.get(piece, {}):
                    getattr(res, piece).append(evaluation[piece])
            if "points" in evaluation.get("recall_curve", {}):
                res.recall_curve.append(evaluation["recall_curve"]["points"])
        failed = read_json(path / FAILED_FILE)
        error = corrupt_result(path) or (failed["log_tail"][-1] if failed and failed["log_tail"] else "")
        rows.append({"run_id": run.run_id, "design": design_label(run.design), "seed": run.seed,
                     "families": " ".join(run.families), "state": state, **metrics,
                     "runs_per_gpu": shared.get(run.run_id, ""), "error": error})
    return record, families, results, rows
