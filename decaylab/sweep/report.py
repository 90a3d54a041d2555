"""The report of a sweep: Markdown, CSV and PNG files under ``SWEEP_DIR/report/``.

    report.md            the paper's four claims with this sweep's verdicts, then one section per
                         family: its table, loss curves, median decay per layer, extrapolation
    results.csv          one row per (family, design): mean, spread and seed count of each metric
    runs.csv             one row per run
    loss_<f>.png         training loss against tokens, one line per design of family f
    decay_<f>.png        median decay per layer, one line per design of family f
    extrapolation_<f>.png  perplexity by position up to 4× the training length

Every file is written to a temporary name and renamed into place, and ``report.md`` is written
last, so a reader never sees a partial file or a Markdown file pointing at a missing figure.

**Verdicts.** The metric is the final validation loss (nats; lower is better). Two designs A, B
with seed losses a, b are compared by Δ = mean(a) − mean(b) against a threshold
τ = max(2·SE, ``MIN_EFFECT``), SE = sqrt(var(a)/n_a + var(b)/n_b) from the seed spread; with a
single seed on either side the spread is unknown and τ = 2·``ASSUMED_SEED_SD``. A is *worse*
when Δ > τ, *better* when Δ < −τ, else *tied*. Then:

1. parameterization matters (family a): agree when at least one decay is worse than the best
   one; disagree when all are tied with the best, every spread was measured (≥ 2 seeds) and the
   means lie within ``MIN_EFFECT`` of each other; otherwise inconclusive.
2. sharing hurts (family b, shared vs separate per decay), 3. scalar loses to vector (family c,
   scalar vs vector per decay): agree when the claimed direction wins at least half of the pairs
   and more pairs than the opposite direction; disagree when the opposite direction does;
   otherwise (ties, overlapping spreads) inconclusive.
4. RoPE brings no real gain (family d, RoPE vs none per decay): disagree when RoPE is better in
   most pairs; agree when it is better in fewer than half and every τ ≤ ``RESOLUTION`` (a gain of
   that size would have been seen); otherwise (e.g. better in exactly half) inconclusive.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from decaylab.atomic import write_text_atomic
from decaylab.sweep.evaluation import read_evaluation
from decaylab.sweep.presets import Design, Family
from decaylab.sweep.runner import (
    FAILED_FILE,
    FINAL_FILE,
    corrupt_result,
    load_sweep,
    read_json,
    run_state,
)

REPORT_DIR = "report"
MIN_EFFECT = 0.01  # nats: the smallest difference in validation loss that counts (≈ 1% perplexity)
ASSUMED_SEED_SD = 0.01  # nats: seed-to-seed spread assumed when only one seed ran
RESOLUTION = 0.05  # nats: claim 4 needs comparisons able to see a gain of this size (≈ 5% perplexity)

# (column header, key of the per-run metrics, decimals)
COLUMNS = (
    ("val ppl", "val_ppl", 1),
    ("val loss", "val_loss", 3),
    ("extrap. ppl", "extrap_ppl", 1),
    ("MQAR acc.", "recall", 3),
    ("tokens/s", "tokens_per_s", 0),
    ("train s", "train_time_s", 0),
    ("params", "params", 0),
)

# --------------------------------------------------------------------------- collecting results


@dataclass
class DesignResult:
    """The runs of one design: per-metric seed values, status counts and the training curves."""

    design: Design
    values: dict[str, list[float]] = field(default_factory=dict)
    states: list[str] = field(default_factory=list)
    curves: list[list[dict]] = field(default_factory=list)
    extrapolation: list[dict] = field(default_factory=list)
    decay: list[dict] = field(default_factory=list)

    def losses(self) -> list[float]:
        return self.values.get("val_loss", [])


def run_metrics(run_dir: Path) -> dict[str, float]:
    """The scalar metrics of one run (only those it has)."""
    final = read_json(run_dir / FINAL_FILE) or {}
    evaluation = read_evaluation(run_dir)
    out = {k: final[k] for k in ("val_loss", "val_ppl", "tokens_per_s", "params", "tokens", "train_time_s")
           if final.get(k) is not None}
    buckets = evaluation.get("extrapolation", {}).get("buckets")
    if buckets:
        out["extrap_ppl"] = buckets[-1]["ppl"]
    if "accuracy" in evaluation.get("recall", {}):
        out["recall"] = evaluation["recall"]["accuracy"]
    return out


def collect(root: Path) -> tuple[dict, dict[str, Family], dict[str, DesignResult], list[dict]]:
    """Read a sweep directory: its record, families, results by design key and one row per run."""
    from decaylab.train.metrics import read_metrics

    record, families, runs = load_sweep(root)
    results: dict[str, DesignResult] = {}
    rows = []
    for run in runs:
        run_dir = root / "runs" / run.run_id
        res = results.setdefault(run.design.key, DesignResult(run.design))
        state = run_state(run_dir)
        res.states.append(state)
        metrics = run_metrics(run_dir) if state in ("complete", "trained") else {}
        for k, v in metrics.items():
            res.values.setdefault(k, []).append(float(v))
        if state in ("complete", "trained"):
            res.curves.append(read_metrics(run_dir))
            evaluation = read_evaluation(run_dir)
            if "buckets" in evaluation.get("extrapolation", {}):
                res.extrapolation.append(evaluation["extrapolation"])
            if "layers" in evaluation.get("decay", {}):
                res.decay.append(evaluation["decay"])
        failed = read_json(run_dir / FAILED_FILE)
        error = corrupt_result(run_dir) or (failed["log_tail"][-1] if failed and failed["log_tail"] else "")
        rows.append({"run_id": run.run_id, "design": run.design.label, "seed": run.seed,
                     "families": " ".join(run.families), "state": state, **metrics, "error": error})
    return record, families, results, rows


# --------------------------------------------------------------------------- statistics and verdicts


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None with fewer than two values)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


@dataclass(frozen=True)
class Comparison:
    """A vs B on validation loss: Δ = mean(A) − mean(B), its threshold τ and the outcome."""

    a: str
    b: str
    delta: float
    threshold: float
    measured: bool  # τ comes from seed spreads (both sides had ≥ 2 seeds)
    outcome: str  # "worse" (A worse than B), "better", "tied"

    def describe(self) -> str:
        pct = 100 * (math.exp(self.delta) - 1)
        basis = "2·SE of seeds" if self.measured else "single seed"
        return (f"{self.a} vs {self.b}: Δ = {self.delta:+.3f} nats ({pct:+.1f}% ppl), "
                f"τ = {self.threshold:.3f} ({basis}) → {self.outcome}")


def compare(a_label: str, a: list[float], b_label: str, b: list[float]) -> Comparison:
    """Compare two designs' seed losses (see the module docstring)."""
    (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
    measured = sa is not None and sb is not None
    if measured:
        threshold = max(2 * math.sqrt(sa ** 2 / len(a) + sb ** 2 / len(b)), MIN_EFFECT)
    else:
        threshold = 2 * ASSUMED_SEED_SD
    delta = ma - mb
    outcome = "worse" if delta > threshold else "better" if delta < -threshold else "tied"
    return Comparison(a_label, b_label, delta, threshold, measured, outcome)


@dataclass(frozen=True)
class Claim:
    number: int
    family: str
    paper: str
    verdict: str  # "agree", "disagree", "inconclusive"
    measured: str
    details: tuple[str, ...]


CLAIM_TEXT = {
    1: ("a", "The parameterization of the decay needs care: results depend on it and it works only in a narrow range."),
    2: ("b", "Sharing the decay's parameters with the key hurts (it can push decays too high or too low)."),
    3: ("c", ("Scalar decay usually loses to vector decay under the same parameterization "
             "(though some scalar parameterizations beat vector ones).")),
    4: ("d", "RoPE brings no real gain to most linear attentions."),
}


def _decay_losses(results: dict[str, DesignResult], family: Family) -> dict[Design, list[float]]:
    return {d: results[d.key].losses() for d in family.designs
            if d.decay is not None and d.key in results and results[d.key].losses()}


def _paired(losses: dict[Design, list[float]], variant, baseline) -> list[Comparison]:
    """Compare ``variant(d)`` with ``baseline(d)`` for every design d where both ran."""
    out = []
    for d, values in losses.items():
        v = variant(d)
        if d == baseline(d) and v in losses and v != d:
            out.append(compare(v.label, losses[v], d.label, values))
    return out


def _direction_verdict(comparisons: list[Comparison], claimed: str) -> tuple[str, str]:
    """Verdict of a claim that the variant is ``claimed`` ("worse"/"better") than the baseline."""
    opposite = "better" if claimed == "worse" else "worse"
    n = len(comparisons)
    if n == 0:
        return "inconclusive", "no pair of designs ran"
    won = sum(c.outcome == claimed for c in comparisons)
    lost = sum(c.outcome == opposite for c in comparisons)
    summary = f"{claimed} in {won} of {n} pairs, {opposite} in {lost}, tied in {n - won - lost}"
    if won > lost and 2 * won >= n:
        return "agree", summary
    if lost > won and 2 * lost >= n:
        return "disagree", summary
    return "inconclusive", summary


def claim_parameterization(losses: dict[Design, list[float]],
                           medians: dict[Design, float] | None = None) -> tuple[str, str, list[str]]:
    """Claim 1; ``medians`` (median decay of each design, when analysed) describe the working range."""
    if len(losses) < 3:
        return "inconclusive", f"only {len(losses)} parameterizations ran", []
    best = min(losses, key=lambda d: statistics.fmean(losses[d]))
    comps = [compare(d.label, losses[d], best.label, losses[best]) for d in losses if d != best]
    worse = [c for c in comps if c.outcome == "worse"]
    tied = [c.a for c in comps if c.outcome == "tied"]
    means = [statistics.fmean(v) for v in losses.values()]
    summary = (f"best: {best.label}; {len(worse)} of {len(comps)} others clearly worse; "
               f"tied with the best: {', '.join(tied) or 'none'}; spread of means {max(means) - min(means):.3f} nats")
    good = [best] + [d for d in losses if d != best and d.label in tied]
    rest = [d for d in losses if d not in good]
    medians = medians or {}
    for name, group in (("the best and those tied with it", good), ("the others", rest)):
        values = [medians[d] for d in group if d in medians]
        if values:
            summary += f"; median decay of {name}: {min(values):.3f} to {max(values):.3f}"
    if worse:
        verdict = "agree"
    elif all(c.measured for c in comps) and max(means) - min(means) < MIN_EFFECT:
        verdict = "disagree"
    else:
        verdict = "inconclusive"
    return verdict, summary, [c.describe() for c in comps]


def claim_sharing(losses: dict[Design, list[float]]) -> tuple[str, str, list[str]]:
    comps = _paired(losses, lambda d: Design(d.decay, d.granularity, True, d.positional),
                    lambda d: Design(d.decay, d.granularity, False, d.positional))
    verdict, summary = _direction_verdict(comps, "worse")
    return verdict, f"shared is {summary}", [c.describe() for c in comps]


def claim_granularity(losses: dict[Design, list[float]]) -> tuple[str, str, list[str]]:
    comps = _paired(losses, lambda d: Design(d.decay, "scalar", d.shared, d.positional),
                    lambda d: Design(d.decay, "vector", d.shared, d.positional))
    verdict, summary = _direction_verdict(comps, "worse")
    vectors = [d for d in losses if d.granularity == "vector"]
    beats = sorted({f"{s.label} beats {v.label}" for s in losses if s.granularity == "scalar" for v in vectors
                    if s.decay != v.decay and compare(s.label, losses[s], v.label, losses[v]).outcome == "better"})
    note = f"; scalar designs beating a vector design of another parameterization: {len(beats)}"
    return verdict, f"scalar is {summary}{note}", [c.describe() for c in comps] + beats


def _with_positional(positional: str):
    return lambda d: Design(d.decay, d.granularity, d.shared, positional)


def claim_rope(losses: dict[Design, list[float]]) -> tuple[str, str, list[str]]:
    none = _with_positional("none")
    comps = _paired(losses, _with_positional("rope"), none)
    others = [c for pos in ("lrpe-cos", "tpe") for c in _paired(losses, _with_positional(pos), none)]
    n = len(comps)
    gains = sum(c.outcome == "better" for c in comps)
    summary = f"RoPE better in {gains} of {n} pairs, worse in {sum(c.outcome == 'worse' for c in comps)}"
    if n == 0:
        verdict, summary = "inconclusive", "no pair of designs ran"
    elif 2 * gains > n:
        verdict = "disagree"
    elif 2 * gains < n and all(c.threshold <= RESOLUTION for c in comps):
        verdict = "agree"
    else:
        verdict = "inconclusive"
        if 2 * gains < n:
            summary += f"; seed spread too large to rule out a gain of {RESOLUTION} nats"
    return verdict, summary, [c.describe() for c in comps + others]


CLAIM_RULES = {2: claim_sharing, 3: claim_granularity, 4: claim_rope}


def _median_decays(results: dict[str, DesignResult], designs) -> dict[Design, float]:
    """Median decay of each analysed design: mean over layers and seeds of the per-layer medians."""
    return {d: statistics.fmean(statistics.fmean(row["decay_median"] for row in s["layers"])
                                for s in results[d.key].decay)
            for d in designs if results[d.key].decay}


def claims(families: dict[str, Family], results: dict[str, DesignResult]) -> list[Claim]:
    """The four claims with verdicts computed from the validation losses of the families that ran."""
    out = []
    for number, (family_key, paper) in CLAIM_TEXT.items():
        if family_key not in families:
            out.append(Claim(number, family_key, paper, "inconclusive", "family not in this sweep", ()))
            continue
        losses = _decay_losses(results, families[family_key])
        if number == 1:
            verdict, measured, details = claim_parameterization(losses, _median_decays(results, losses))
        else:
            verdict, measured, details = CLAIM_RULES[number](losses)
        out.append(Claim(number, family_key, paper, verdict, measured, tuple(details)))
    return out


# --------------------------------------------------------------------------- tables


def _cell(values: list[float], decimals: int) -> str:
    if not values:
        return "—"
    m, sd = mean_sd(values)
    text = f"{m:,.{decimals}f}"
    return text + (f" ± {sd:,.{decimals}f}" if sd is not None else "")


def family_table(family: Family, results: dict[str, DesignResult]) -> str:
    """The Markdown table of a family: one row per design, mean ± sample SD over seeds."""
    head = ["design", "runs"] + [c[0] for c in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in family.designs:
        res = results.get(d.key)
        states = res.states if res else []
        done = sum(s in ("complete", "trained") for s in states)
        status = f"{done}/{len(states)}" + (f" (failed: {states.count('failed')})" if "failed" in states else "")
        cells = [_cell(res.values.get(key, []) if res else [], dec) for _, key, dec in COLUMNS]
        lines.append("| " + " | ".join([d.label, status] + cells) + " |")
    return "\n".join(lines)


def results_csv(families: dict[str, Family], results: dict[str, DesignResult]) -> str:
    fields = ["family", "design", "design_key", "seeds"] + [f"{key}_{s}" for _, key, _ in COLUMNS for s in ("mean", "sd")]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for fam in families.values():
        for d in fam.designs:
            res = results.get(d.key)
            row = {"family": fam.key, "design": d.label, "design_key": d.key,
                   "seeds": len(res.losses()) if res else 0}
            for _, key, _ in COLUMNS:
                values = res.values.get(key, []) if res else []
                if values:
                    m, sd = mean_sd(values)
                    row[f"{key}_mean"], row[f"{key}_sd"] = m, ("" if sd is None else sd)
            writer.writerow(row)
    return buf.getvalue()


def runs_csv(rows: list[dict]) -> str:
    fields = ["run_id", "design", "seed", "families", "state", "val_loss", "val_ppl", "extrap_ppl", "recall",
              "tokens_per_s", "params", "tokens", "train_time_s", "error"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


# --------------------------------------------------------------------------- figures


def _figure():
    import matplotlib

    from decaylab.figures import new_figure

    fig, ax = new_figure(9, 4.5)
    ax.set_prop_cycle(color=matplotlib.colormaps["tab20"].colors)
    return fig, ax


def _legend(ax, n: int) -> None:
    ax.legend(fontsize="x-small", ncol=1 if n <= 8 else 2, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def plot_losses(family: Family, results: dict[str, DesignResult], path: Path) -> bool:
    """Training loss (seed mean) and validation points against tokens, one colour per design."""
    from decaylab.figures import save_figure

    fig, ax = _figure()
    drawn = 0
    for d in family.designs:
        res = results.get(d.key)
        curves = [c for c in (res.curves if res else []) if c]
        if not curves:
            continue
        by_step: dict[int, list[tuple[int, float]]] = {}
        for curve in curves:
            for r in curve:
                by_step.setdefault(r["step"], []).append((r["tokens"], r["loss"]))
        steps = sorted(by_step)
        tokens = [by_step[s][0][0] for s in steps]
        (line,) = ax.plot(tokens, [statistics.fmean(v for _, v in by_step[s]) for s in steps],
                          linewidth=1.2, label=d.label)
        val = [(r["tokens"], r["val_loss"]) for curve in curves for r in curve if "val_loss" in r]
        if val:
            ax.plot(*zip(*val), "o", color=line.get_color(), markersize=4)
        drawn += 1
    if not drawn:
        return False
    ax.set_xlabel("training tokens")
    ax.set_ylabel("loss (nats; dots: validation)")
    ax.set_title(f"({family.key}) {family.name}: training loss")
    _legend(ax, drawn)
    save_figure(fig, path, dpi=110)
    return True


def plot_decay(family: Family, results: dict[str, DesignResult], path: Path) -> bool:
    """Median decay per layer (seed mean), one line per design (decaylab.analysis's figure)."""
    from decaylab.analysis import DecayStats, plot_median_decay_by_layer

    lines = []
    for d in family.designs:
        res = results.get(d.key)
        if res and res.decay:
            layers = [{"decay_median": statistics.fmean(s["layers"][i]["decay_median"] for s in res.decay)}
                      for i in range(len(res.decay[0]["layers"]))]
            lines.append(DecayStats(d.label, d.granularity, layers=layers))
    if lines:
        plot_median_decay_by_layer(lines, path, title=f"({family.key}) {family.name}: median decay per layer")
    return bool(lines)


def plot_extrapolation(family: Family, results: dict[str, DesignResult], path: Path) -> bool:
    """Perplexity by position bucket (seed mean) up to 4× the training length (decaylab.evaluate's figure)."""
    from decaylab.evaluate.extrapolation import plot_extrapolation as plot

    tables = {}
    for d in family.designs:
        res = results.get(d.key)
        if res and res.extrapolation:
            first = res.extrapolation[0]
            buckets = [{**b, "ppl": statistics.fmean(t["buckets"][i]["ppl"] for t in res.extrapolation)}
                       for i, b in enumerate(first["buckets"])]
            tables[d.label] = {**first, "buckets": buckets}
    if tables:
        plot(tables, path)
    return bool(tables)


FIGURES = (("loss", "loss curves", plot_losses), ("decay", "median decay per layer", plot_decay),
           ("extrapolation", "length extrapolation", plot_extrapolation))

# --------------------------------------------------------------------------- the report


def _recall_note(scale: dict, results: dict[str, DesignResult]) -> str:
    """What the MQAR column measures, its chance level, and a warning when no design reaches
    twice the chance accuracy (the probe did not learn the task, so the column ranks nothing)."""
    from decaylab.evaluate.recall import MQARTask

    if not scale["mqar_steps"]:
        return "MQAR: off at this scale."
    task = MQARTask(**scale["mqar_task"])
    note = (f"MQAR: query accuracy of a fresh model of the same design trained {scale['mqar_steps']} steps on "
            f"multi-query associative recall ({task.num_pairs} pairs in {task.seq_len} tokens; chance "
            f"{task.chance:.4f}).")
    means = {r.design.label: statistics.mean(r.values["recall"]) for r in results.values() if r.values.get("recall")}
    if means:
        best = max(means, key=means.get)
        if means[best] < 2 * task.chance:
            note += (f" **No design reached twice the chance accuracy** (best: {best}, {means[best]:.4f}): the "
                     "probe did not learn the task at this budget, so this column does not rank the designs.")
    return note


def _header(record: dict, results: dict[str, DesignResult], rows: list[dict]) -> list[str]:
    scale, data = record["scale"], record["data"]
    train = scale["train"]
    tokens = train["steps"] * train["seq_len"] * train["micro_batch_size"] * train["grad_accum"]
    states = [r["state"] for r in rows]
    done = sum(s in ("complete", "trained") for s in states)
    ppls = [v for res in results.values() for v in res.values.get("val_ppl", [])]
    unigram = data.get("unigram_ppl")
    factor = scale["extrapolation_factor"]
    recall = _recall_note(scale, results)
    lines = [
        "# decaylab sweep report", "",
        (f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')}. Preset `{record['preset']}`, scale `{scale['name']}` "
        f"(model size `{scale['size']}`, sequence length {train['seq_len']}, {train['steps']} steps, "
        f"{tokens:,} training tokens per run), seeds {', '.join(map(str, record['seeds']))}."),
        "",
        f"Data: source `{data.get('source')}`, vocabulary {data.get('vocab_size')}, "
        + (f"unigram perplexity of the validation split **{unigram:.1f}**." if unigram else "unigram perplexity unknown."),
        "",
        f"Runs: {len(rows)} ({done} trained, {states.count('failed')} failed, "
        f"{len(rows) - done - states.count('failed')} not finished)."
        + (f" Validation perplexity of the trained runs: {min(ppls):.1f} to {max(ppls):.1f}." if ppls else ""),
        "",
        *[line for r in rows if r["state"] == "failed" for line in (f"Failed: `{r['run_id']}`: {r['error']}", "")],
        ("Tables show mean ± sample standard deviation over seeds (no ± when one seed ran). "
         f"Extrap. ppl: perplexity at positions {factor - 1}L to {factor}L of windows {factor}× the training "
         f"length L. {recall} Train s: seconds of training steps (tokens/s is over them). "
         "Per-run numbers: [runs.csv](runs.csv); per design: [results.csv](results.csv)."),
    ]
    return lines


def _claims_section(found: list[Claim]) -> list[str]:
    lines = ["", "## The paper's claims against this sweep", "",
             "| # | family | the paper says | this sweep measured | verdict |", "|---|---|---|---|---|"]
    for c in found:
        lines.append(f"| {c.number} | ({c.family}) | {c.paper} | {c.measured} | **{c.verdict}** |")
    lines += ["", (f"Verdicts compare final validation losses: a difference counts when it exceeds τ = max(2·SE of "
              f"the seed means, {MIN_EFFECT} nats), or 2 × {ASSUMED_SEED_SD} nats when a design ran with one seed. "
              f"Claim 4 needs τ ≤ {RESOLUTION} nats to agree. Comparisons:"), ""]
    for c in found:
        if c.details:
            lines.append(f"<details><summary>claim {c.number}: {len(c.details)} comparisons</summary>\n")
            lines += [f"- {d}" for d in c.details]
            lines.append("\n</details>\n")
    return lines


def _provenance(record: dict) -> list[str]:
    """Every invocation of the sweep: command, start, wall time, outcome counts, versions, hardware."""
    calls = record.get("invocations", [])
    if not calls:
        return []
    lines = ["", "## How this sweep ran", "",
             f"Total wall time of the invocations: {sum(c['wall_s'] for c in calls) / 60:.1f} minutes.", "",
             "| started | command | wall | runs done / skipped / failed / interrupted | hardware | versions |",
             "|---|---|---|---|---|---|"]
    for c in calls:
        lines.append(f"| {c['started']} | `{c['command']}` | {c['wall_s'] / 60:.1f} min | "
                     f"{c['done']} / {c['skipped']} / {c['failed']} / {c.get('interrupted', 0)} | "
                     f"{c['hardware']} ({c['host']}) | "
                     f"Python {c['python']}, torch {c['torch']}, decaylab {c['decaylab']} |")
    return lines


def write_report(root: str | Path) -> Path:
    """Write the report of the sweep in ``root`` and return the path of ``report.md``."""
    root = Path(root)
    record, families, results, rows = collect(root)
    out = root / REPORT_DIR
    out.mkdir(exist_ok=True)
    write_text_atomic(out / "results.csv", results_csv(families, results))
    write_text_atomic(out / "runs.csv", runs_csv(rows))
    lines = _header(record, results, rows) + _claims_section(claims(families, results))
    for fam in families.values():
        lines += ["", f"## ({fam.key}) {fam.name}", "", fam.question, "", family_table(fam, results), ""]
        for stem, title, plot in FIGURES:
            name = f"{stem}_{fam.key}.png"
            if plot(fam, results, out / name):
                lines.append(f"![{title}, family {fam.key}]({name})")
            else:
                (out / name).unlink(missing_ok=True)
                lines.append(f"*{title}: no data yet.*")
            lines.append("")
    lines += _provenance(record)
    path = out / "report.md"
    write_text_atomic(path, "\n".join(lines).rstrip() + "\n")
    return path
