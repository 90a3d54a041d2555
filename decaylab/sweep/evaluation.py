"""Evaluation of one trained run of a sweep, cached in ``run_dir/eval.json``.

Four pieces, each computed once and stored as soon as it is done (a crash loses at most the
piece in progress):

    extrapolation   loss/perplexity by position bucket on validation windows of
                    ``extrapolation_factor`` × the training length (decaylab.evaluate)
    recall          MQAR query accuracy of a fresh model of the same design trained on the task
                    (decaylab.evaluate.recall); ``{"skipped": reason}`` when ``mqar_steps`` is 0,
                    for a design of none of the scale's ``mqar_families`` (``probes_recall`` false),
                    and where the scale has a recall curve, on every run but the seed-0 one
    recall_curve    on the seed-0 run of each design: the same probe's accuracy for each number
                    of key–value pairs in ``mqar_curve`` (``{"points": [{"num_pairs", "accuracy",
                    "chance"}, …]}``); ``{"skipped": reason}`` on other seeds and where the scale has none
    decay           per layer and head decay statistics on validation text
                    (decaylab.analysis.decay_stats, as its ``to_dict``); ``{"skipped": reason}``
                    for the softmax reference
    initial_decay   the same statistics, on the same text, of the run's step-0 model (rebuilt from
                    its config and seed: decaylab.train.build.initial_model), so a design's median
                    decay is known where training starts as well as where it ends
    cloze           last-word cloze accuracy and target perplexity through lm-eval
                    (decaylab.evaluate.cloze), on the same ``cloze_examples`` validation examples
                    for every run (seed 0, contexts of up to seq_len / 2 tokens); ``{"skipped": reason}``
                    when ``cloze_examples`` is 0 or absent (a run.json written before this piece)

A piece whose module is not installed is recorded as ``{"unavailable": reason}``, one that raised
as ``{"error": message}`` (the trained run stays usable); both are tried again by the next
evaluation. ``complete`` is true when every piece has a result or a ``skipped`` reason. A run whose
checkpoints are gone (a sweep directory moved without them) records its missing pieces as skipped.
"""

from __future__ import annotations

import time
from pathlib import Path

from transformers.utils import CONFIG_NAME

from decaylab.sweep.presets import CURVE_SEED
from decaylab.sweep.rundir import EVAL_FILE, read_json, write_json_atomic
from decaylab.train.checkpoint import checkpoints_root

PIECES = ("extrapolation", "recall", "recall_curve", "decay", "initial_decay", "cloze")
RETRY = {"unavailable", "error"}  # markers of a piece to compute again


def evaluate_run(run_dir: Path, spec: dict) -> dict:
    """Compute the pieces missing from ``run_dir/eval.json`` for the run described by ``spec``
    (the content of ``run.json``) and return the whole evaluation record."""
    from decaylab.data import TokenDataset
    from decaylab.device import pick_device
    from decaylab.evaluate.loading import load_model

    path = run_dir / EVAL_FILE
    record = read_json(path) or {}
    todo = [p for p in PIECES if p not in record or RETRY & set(record[p])]
    if todo and not ((run_dir / CONFIG_NAME).is_file() or checkpoints_root(run_dir).is_dir()):
        # no model left to evaluate: e.g. a sweep directory carried without its checkpoints
        gone = {"skipped": "the run's checkpoints are gone, so this piece cannot be computed any more"}
        record.update({piece: gone for piece in todo}, complete=True)
        write_json_atomic(path, record)
    elif todo:
        model = load_model(run_dir, pick_device("auto"))
        val = TokenDataset.open(spec["train"]["data"]["dir"], "val")
        settings = spec["evaluation"]
        for piece in todo:
            start = time.perf_counter()
            try:
                result = COMPUTE[piece](model, val, settings, spec)
            except ImportError as err:
                result = {"unavailable": str(err)}
            except Exception as err:  # noqa: BLE001  (recorded; the run's training result stands)
                result = {"error": f"{type(err).__name__}: {err}"}
            if not ({"skipped"} | RETRY) & set(result):
                result["seconds"] = time.perf_counter() - start
            record[piece] = result
            record["complete"] = all(p in record and not RETRY & set(record[p]) for p in PIECES)
            write_json_atomic(path, record)
    return record


def _extrapolation(model, val, settings: dict, spec: dict) -> dict:
    from decaylab.evaluate.extrapolation import extrapolation_table

    return extrapolation_table(model, val, settings["seq_len"], factor=settings["extrapolation_factor"],
                               batch_size=4, max_batches=settings["extrapolation_batches"], progress=False)


def _probe(settings: dict, num_pairs: int | None = None):
    """The sweep's MQAR probe (``mqar_task``, or the same task with ``num_pairs`` pairs; trained as
    ``mqar_steps``, ``mqar_batch_size`` and ``mqar_probe`` say)."""
    from decaylab.evaluate.recall import RecallProbe

    task = {**settings["mqar_task"], **({} if num_pairs is None else {"num_pairs": num_pairs})}
    return RecallProbe(**task, steps=settings["mqar_steps"], batch_size=settings["mqar_batch_size"],
                       **settings.get("mqar_probe", {}))


def _train_probe(model, settings: dict, spec: dict, num_pairs: int | None = None) -> dict:
    """:func:`decaylab.evaluate.recall.train_and_eval_mqar` of a fresh model of ``model``'s design on
    the sweep's probe (:func:`_probe`), seeded with the run's seed."""
    from decaylab.device import model_device
    from decaylab.evaluate.recall import train_and_eval_mqar

    return train_and_eval_mqar(model.config, _probe(settings, num_pairs), seed=spec["seed"],
                               device=model_device(model), progress=False)


def _unprobed(settings: dict) -> dict | None:
    """Why the run gets no MQAR probe at all (no steps at this scale, or a design of no family
    that is probed), or None."""
    if not settings["mqar_steps"]:
        return {"skipped": "mqar_steps = 0 at this scale"}
    if not settings.get("probes_recall", True):
        return {"skipped": f"recall is probed for families {', '.join(settings['mqar_families'])} only"}
    return None


def trains_probes(settings: dict, seed: int) -> bool:
    """Whether the evaluation of a run (its ``settings``, the ``evaluation`` of run.json) trains MQAR
    probes: the main one on every seed, or with a recall curve the main one and the curve's on the
    seed-``CURVE_SEED`` run only."""
    return _unprobed(settings) is None and (not settings.get("mqar_curve") or seed == CURVE_SEED)


def _recall(model, val, settings: dict, spec: dict) -> dict:
    if unprobed := _unprobed(settings):
        return unprobed
    if not trains_probes(settings, spec["seed"]):  # the probe's cost goes into the curve
        return {"skipped": f"with a recall curve, the probe runs on the seed-{CURVE_SEED} run of each design"}
    return _train_probe(model, settings, spec)


def _recall_curve(model, val, settings: dict, spec: dict) -> dict:
    if unprobed := _unprobed(settings):
        return unprobed
    if not settings.get("mqar_curve"):
        return {"skipped": "no recall curve at this scale"}
    if spec["seed"] != CURVE_SEED:
        return {"skipped": f"the recall curve is measured on the seed-{CURVE_SEED} run of each design"}
    points = []
    for n in settings["mqar_curve"]:
        result = _train_probe(model, settings, spec, n)
        points.append({"num_pairs": n, "accuracy": result["accuracy"], "chance": result["chance"]})
    return {"points": points}


def _decay(model, val, settings: dict, spec: dict) -> dict:
    if spec["design"]["decay"] is None:
        return {"skipped": "the softmax reference has no decay"}
    from decaylab.analysis.decay_stats import decay_stats, to_dict

    inputs = (x for x, _ in val.iter_eval(settings["seq_len"], 8, settings["analysis_batches"]))
    return to_dict(decay_stats(model, inputs, name=spec["run_id"], progress=False))


def _initial_decay(model, val, settings: dict, spec: dict) -> dict:
    if spec["design"]["decay"] is None:
        return {"skipped": "the softmax reference has no decay"}
    from decaylab.device import model_device
    from decaylab.train.build import initial_model

    start = initial_model(spec["train"]["model"], model.config.vocab_size, spec["seed"])
    return _decay(start.to(model_device(model)).eval(), val, settings, spec)


def _cloze(model, val, settings: dict, spec: dict) -> dict:
    n = settings.get("cloze_examples", 0)
    if not n:
        return {"skipped": "cloze_examples = 0 at this scale"}
    from decaylab.evaluate.cloze import context_budget, evaluate_cloze

    return evaluate_cloze(model, val.directory, n, context_tokens=context_budget(settings["seq_len"]), seed=0,
                          batch_size=32)


COMPUTE = {"extrapolation": _extrapolation, "recall": _recall, "recall_curve": _recall_curve, "decay": _decay,
           "initial_decay": _initial_decay, "cloze": _cloze}

