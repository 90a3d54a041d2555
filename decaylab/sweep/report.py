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

The verdicts on the paper's claims are computed by :mod:`decaylab.sweep.verdicts`; this module
renders them with the tables and figures.
"""

from __future__ import annotations

import csv
import io
import statistics
import time
from pathlib import Path

from decaylab.atomic import write_text_atomic
from decaylab.sweep.presets import Family, design_key, design_label
from decaylab.sweep.rundir import REPORT_DIR, DesignResult, collect
from decaylab.sweep.verdicts import (
    ASSUMED_SEED_SD,
    MIN_EFFECT,
    RESOLUTION,
    Claim,
    claims,
    mean_sd,
    median_decay,
)

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
        res = results.get(design_key(d))
        states = res.states if res else []
        done = sum(s in ("complete", "trained") for s in states)
        status = f"{done}/{len(states)}" + (f" (failed: {states.count('failed')})" if "failed" in states else "")
        cells = [_cell(res.values.get(key, []) if res else [], dec) for _, key, dec in COLUMNS]
        lines.append("| " + " | ".join([design_label(d), status] + cells) + " |")
    return "\n".join(lines)


def results_csv(families: dict[str, Family], results: dict[str, DesignResult]) -> str:
    fields = ["family", "design", "design_key", "seeds"] + [f"{key}_{s}" for _, key, _ in COLUMNS for s in ("mean", "sd")]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for fam in families.values():
        for d in fam.designs:
            res = results.get(design_key(d))
            row = {"family": fam.key, "design": design_label(d), "design_key": design_key(d),
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
        res = results.get(design_key(d))
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
                          linewidth=1.2, label=design_label(d))
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
        res = results.get(design_key(d))
        if res and res.decay:
            layers = [{"decay_median": statistics.fmean(s["layers"][i]["decay_median"] for s in res.decay)}
                      for i in range(len(res.decay[0]["layers"]))]
            lines.append(DecayStats(design_label(d), d.decay_granularity, layers=layers))
    if lines:
        plot_median_decay_by_layer(lines, path, title=f"({family.key}) {family.name}: median decay per layer")
    return bool(lines)


def plot_extrapolation(family: Family, results: dict[str, DesignResult], path: Path) -> bool:
    """Perplexity by position bucket (seed mean) up to 4× the training length (decaylab.evaluate's figure)."""
    from decaylab.evaluate.extrapolation import plot_extrapolation as plot

    tables = {}
    for d in family.designs:
        res = results.get(design_key(d))
        if res and res.extrapolation:
            first = res.extrapolation[0]
            buckets = [{**b, "ppl": statistics.fmean(t["buckets"][i]["ppl"] for t in res.extrapolation)}
                       for i, b in enumerate(first["buckets"])]
            tables[design_label(d)] = {**first, "buckets": buckets}
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
    means = {design_label(r.design): statistics.mean(r.values["recall"]) for r in results.values() if r.values.get("recall")}
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


def _claims(families: dict[str, Family], results: dict[str, DesignResult]) -> list[Claim]:
    """The verdicts on the paper's claims from the seed losses and median decays of the decay designs."""
    decays = [r for r in results.values() if r.design is not None]
    return claims(families, {r.design: r.losses() for r in decays if r.losses()},
                  {r.design: median_decay(r.decay) for r in decays if r.decay})


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
    lines = _header(record, results, rows) + _claims_section(_claims(families, results))
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
