"""The report of a sweep: Markdown, CSV and PNG files under ``SWEEP_DIR/report/``.

    report.md            the paper's four claims with this sweep's verdicts (and the verdicts of
                         an earlier report of the same preset, "then → now"), the decision rule,
                         the designs that need more seeds; then one section per family: its
                         table and figures
    results.csv          one row per (family, design): mean, spread and seed count of each metric,
                         and the 95% half-width of the mean validation loss (pooled seed variance)
    runs.csv             one row per run
    claim1_decay.png     family a: validation loss against the learned and initial median decay
    val_loss_<f>.png     final validation loss of each design of family f with its 95% interval, sorted
    loss_<f>.png         training loss over the last half of training (smoothed), one line per design
    decay_<f>.png        median decay per layer, one line per design, decay on [0, 1]
    extrapolation_<f>.png  perplexity by position up to 4× the training length
    recall_<f>.png       MQAR accuracy by design and number of key–value pairs, a grid on [0, 1]
                         (with its table), where the scale measures the recall curve on the runs
    recall_pairs_<f>.png the same from the sweep's recall record (``decaylab recall``), where it has one

Within a family every design keeps one colour, marker and line style in the line figures (:func:`design_style`).

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
from decaylab.sweep.presets import CURVE_SEED, Family, design_key, design_label
from decaylab.sweep.recall import RECALL_FILE, mean_by_pairs, read_recall, recall_curves
from decaylab.sweep.rundir import REPORT_DIR, DesignResult, collect
from decaylab.sweep.verdicts import (
    Claim,
    MIN_SEEDS,
    PooledVariance,
    claims,
    mean_sd,
    median_decay,
    pooled_variance,
    rule_text,
    seeds_needed,
    starting_decay,
)

# The verdicts of earlier reports, as written there (their rule: a difference beyond 2·SE of two
# seeds), shown as "then → now" when a sweep of the same preset, or of its successors at the
# compute-optimal scales (issue 16), is reported.
PREVIOUS_VERDICTS = dict.fromkeys(("h200", "h200-optimal", "h200-optimal-wide"), (
    "reports/h200-2026-11-28/report.md", {1: "agree", 2: "agree", 3: "inconclusive", 4: "inconclusive"}))

# (column header, key of the per-run metrics, decimals)
COLUMNS = (
    ("val ppl", "val_ppl", 1),
    ("val loss", "val_loss", 3),
    ("extrap. ppl", "extrap_ppl", 1),
    ("MQAR acc.", "recall", 3),
    ("cloze acc.", "cloze_acc", 3),
    ("tokens/s", "steady_tokens_per_s", 0),
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
    fields = (["family", "design", "design_key", "seeds"]
              + [f"{key}_{s}" for _, key, _ in COLUMNS for s in ("mean", "sd")] + ["val_loss_ci95"])
    pool = sweep_pool(results)
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
            if res and res.losses() and pool.df:
                row["val_loss_ci95"] = pool.t * pool.se(len(res.losses()))
            writer.writerow(row)
    return buf.getvalue()


def runs_csv(rows: list[dict]) -> str:
    fields = ["run_id", "design", "seed", "families", "state", "val_loss", "val_ppl", "extrap_ppl", "recall",
              "cloze_acc", "cloze_ppl", "steady_tokens_per_s", "tokens_per_s", "params", "tokens", "train_time_s",
              "runs_per_gpu", "error"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


# --------------------------------------------------------------------------- figures
# One palette for every figure of a family: ten distinct hues (tab10, no light/dark pairs), and
# after ten designs another marker and line style, so no two designs of a family share a style.
MARKERS = ("o", "s", "^", "D", "v", "P")
LINESTYLES = ("-", "--", ":", "-.")
SMOOTH_POINTS = 9  # loss curves: trailing moving average over this many logged steps


def design_style(i: int) -> dict:
    """Colour, marker and line style of the i-th design of a family."""
    import matplotlib

    colors = matplotlib.colormaps["tab10"].colors
    return {"color": colors[i % len(colors)], "marker": MARKERS[(i // len(colors)) % len(MARKERS)],
            "linestyle": LINESTYLES[(i // len(colors)) % len(LINESTYLES)]}


def _figure(width: float = 9, height: float = 4.5):
    from decaylab.figures import new_figure

    return new_figure(width, height)


def _legend(ax, n: int) -> None:
    ax.legend(fontsize="x-small", ncol=1 if n <= 8 else 2, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _save(fig, path: Path) -> None:
    from decaylab.figures import save_figure

    save_figure(fig, path, dpi=110)


def sweep_pool(results: dict[str, DesignResult]) -> PooledVariance:
    """The seed variance of the validation loss pooled over every design of the sweep."""
    return pooled_variance(r.losses() for r in results.values())


def plot_loss_intervals(family: Family, results: dict[str, DesignResult], path: Path) -> bool:
    """Final validation loss of each design of the family, a dot with its 95% interval
    (mean ± t·s_p/√n with the pooled seed variance), sorted best first; the band is the best's interval."""
    pool = sweep_pool(results)
    rows = sorted(((statistics.fmean(res.losses()), len(res.losses()), design_label(d))
                   for d in family.designs if (res := results.get(design_key(d))) and res.losses()), reverse=True)
    if not rows:
        return False
    fig, ax = _figure(8, 0.3 * len(rows) + 1.5)
    means, counts, labels = zip(*rows)
    errors = [pool.half_width(n) for n in counts] if pool.df else None
    ax.errorbar(means, range(len(rows)), xerr=errors, fmt="o", color="black", ecolor="grey", capsize=3)
    if errors:
        ax.axvspan(means[-1] - errors[-1], means[-1] + errors[-1], color="tab:green", alpha=0.15,
                   label="the best's 95% interval")
        ax.legend(fontsize="x-small", loc="upper right")  # rows run best (left) at the top to worst at the bottom
    ax.set_yticks(range(len(rows)), labels, fontsize="small")
    ax.set_xlabel("final validation loss (nats)")
    basis = f"95% t-intervals, pooled s_p = {pool.sd:.4f}, df {pool.df}" if pool.df else "no seed variance (one seed)"
    ax.set_title(f"({family.key}) {family.name}: validation loss ({basis})", fontsize="medium")
    _save(fig, path)
    return True


def _smooth(values: list[float], window: int = SMOOTH_POINTS) -> list[float]:
    """Trailing moving average over ``window`` points (fewer at the start)."""
    return [statistics.fmean(values[max(0, i + 1 - window):i + 1]) for i in range(len(values))]


def plot_losses(family: Family, results: dict[str, DesignResult], path: Path) -> bool:
    """Training loss (seed mean, smoothed) over the last half of training and each run's validation
    losses on the same tokens as its final one: an evaluation during training that saw only the
    split's first ``eval_batches`` batches (another text; or a run recorded before ``val_tokens``
    was logged) is left out, as its level is not comparable."""
    fig, ax = _figure()
    drawn = 0
    for i, d in enumerate(family.designs):
        res = results.get(design_key(d))
        curves = [c for c in (res.curves if res else []) if c]
        if not curves:
            continue
        by_step: dict[int, list[tuple[int, float]]] = {}
        for curve in curves:
            for r in curve:
                by_step.setdefault(r["step"], []).append((r["tokens"], r["loss"]))
        half = max(by_step) / 2
        steps = sorted(by_step)
        loss = _smooth([statistics.fmean(v for _, v in by_step[s]) for s in steps])
        kept = [(by_step[s][0][0], v) for s, v in zip(steps, loss) if s >= half]
        style = design_style(i)
        ax.plot(*zip(*kept), linewidth=1.2, label=design_label(d), color=style["color"], linestyle=style["linestyle"])
        val = [(r["tokens"], r["val_loss"]) for curve in curves if "val_loss" in curve[-1] for r in curve
               if r is curve[-1] or ("val_loss" in r and r["step"] >= half
                                     and r.get("val_tokens", -1) == curve[-1].get("val_tokens"))]
        if val:
            ax.plot(*zip(*val), linestyle="none", marker=style["marker"], color=style["color"], markersize=4)
        drawn += 1
    if not drawn:
        return False
    ax.set_xlabel("training tokens")
    ax.set_ylabel(f"loss (nats; moving average of {SMOOTH_POINTS} logs; dots: validation)")
    ax.set_title(f"({family.key}) {family.name}: training loss, last half of training")
    _legend(ax, drawn)
    _save(fig, path)
    return True


def plot_decay(family: Family, results: dict[str, DesignResult], path: Path) -> bool:
    """Median decay per layer (seed mean), one line per design, decay on [0, 1]."""
    fig, ax = _figure()
    drawn = 0
    for i, d in enumerate(family.designs):
        res = results.get(design_key(d))
        if not (res and res.decay):
            continue
        layers = range(len(res.decay[0]["layers"]))
        medians = [statistics.fmean(s["layers"][j]["decay_median"] for s in res.decay) for j in layers]
        ax.plot(layers, medians, label=design_label(d), **design_style(i))
        drawn += 1
    if not drawn:
        return False
    ax.set_ylim(0, 1)
    ax.set_xlabel("layer")
    ax.set_ylabel("median decay λ")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"({family.key}) {family.name}: median decay per layer")
    _legend(ax, drawn)
    _save(fig, path)
    return True


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


def plot_loss_against_decay(family: Family, results: dict[str, DesignResult], path: Path,
                            decay_range: tuple[float, float] | None) -> bool:
    """Claim 1: final validation loss (95% interval of each mean) against the learned median decay
    (filled) and the initial one (hollow, joined to the learned: verdicts.starting_decay), decay on
    [0, 1]; the band is ``decay_range``, the median decay of the designs tied with the best."""
    pool = sweep_pool(results)
    points = [(d, res) for d in family.designs if d is not None and (res := results.get(design_key(d)))
              and res.losses() and res.decay]
    if not points:
        return False
    fig, ax = _figure()
    if decay_range:
        low, high = decay_range
        ax.axvspan(low - 0.005, high + 0.005, color="tab:green", alpha=0.15, label="working range (tied with the best)")
    for i, (d, res) in enumerate(points):
        style, loss = design_style(i), statistics.fmean(res.losses())
        learned = median_decay(res.decay)
        ax.errorbar([learned], [loss], yerr=pool.half_width(len(res.losses())),
                    fmt=style["marker"], color=style["color"], capsize=3, label=design_label(d))
        initial = starting_decay(d, res.initial_decay)
        if initial is not None:
            ax.plot([initial, learned], [loss, loss], color=style["color"], linewidth=0.8, linestyle=":")
            ax.plot([initial], [loss], marker=style["marker"], markerfacecolor="none", color=style["color"])
    ax.set_xlim(0, 1)
    ax.set_xlabel("median decay λ (filled: learned; hollow: initial)")
    ax.set_ylabel("final validation loss (nats)")
    ax.set_title(f"({family.key}) {family.name}: loss against median decay")
    _legend(ax, len(points) + 1)
    _save(fig, path)
    return True


def _curve(res: DesignResult, main_pairs: int) -> dict[int, float]:
    """Number of pairs → MQAR accuracy (mean over the runs that measured it): the recall curve's
    points and the main probe's ``main_pairs``."""
    main = [(main_pairs, accuracy) for accuracy in res.values.get("recall", [])]
    return mean_by_pairs(main + [(p["num_pairs"], p["accuracy"]) for points in res.recall_curve for p in points])


def recall_section(family: Family, curves: dict[str, dict[int, float]], chance: float, path: Path,
                   what: str) -> list[str]:
    """Figure (``path``) and table of MQAR accuracy against the number of key–value pairs, a row per
    design of ``family`` in ``curves`` (design key → pairs → accuracy), under the sentence ``what``; []
    (and no figure) where no design of the family has a curve. The figure is a grid, design × pairs,
    coloured on the fixed scale [0, 1] with each accuracy written in its cell: designs that all
    reach 1 stay apart, where their lines would lie on one another."""
    found = [(d, curves[design_key(d)]) for d in family.designs if curves.get(design_key(d))]
    if not found:
        path.unlink(missing_ok=True)
        return []
    import numpy as np

    pairs = sorted({n for _, c in found for n in c})  # chance (the value range) is the same for every number
    grid = np.array([[c.get(n, np.nan) for n in pairs] for _, c in found])
    fig, ax = _figure(1.1 * len(pairs) + 4.5, 0.32 * len(found) + 1.6)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (row, column), accuracy in np.ndenumerate(grid):
        missing = np.isnan(accuracy)  # an empty (white) cell
        ax.text(column, row, "—" if missing else f"{accuracy:.2f}", ha="center", va="center",
                fontsize="x-small", color="black" if missing or accuracy > 0.6 else "white")
    ax.set_xticks(range(len(pairs)), [str(n) for n in pairs])
    ax.set_yticks(range(len(found)), [design_label(d) for d, _ in found], fontsize="small")
    ax.set_xlabel(f"key–value pairs in the sequence (chance {chance:.3f})")
    fig.colorbar(image, ax=ax, label="MQAR query accuracy")
    ax.set_title(f"({family.key}) {family.name}: recall against the number of pairs", fontsize="medium")
    _save(fig, path)
    table = ["| design | " + " | ".join(f"{n} pair{'s' * (n != 1)}" for n in pairs) + " |",
             "|---|" + "---|" * len(pairs)]
    table += [f"| {design_label(d)} | " + " | ".join(f"{c[n]:.3f}" if n in c else "—" for n in pairs) + " |"
              for d, c in found]
    table.append("| chance | " + " | ".join(f"{chance:.4f}" for _ in pairs) + " |")
    return [f"![MQAR accuracy against key–value pairs, family {family.key}]({path.name})", "", what, "", *table, ""]


def run_recall_section(family: Family, results: dict[str, DesignResult], scale: dict, path: Path) -> list[str]:
    """:func:`recall_section` of the recall curve the scale measures on the runs (with its main probe)."""
    from decaylab.evaluate.recall import MQARTask

    task = MQARTask(**scale["mqar_task"])
    curves = {key: _curve(res, task.num_pairs) for key, res in results.items() if res.recall_curve}
    return recall_section(family, curves, task.chance, path, (
        f"MQAR accuracy by number of key–value pairs in {task.seq_len} tokens (the seed-{CURVE_SEED} run of each "
        "design, one fresh probe per number):"))


CALIBRATED_ACCURACY = 0.95  # of the softmax reference, for a recall task that ranks designs (issue 16)


def record_recall_section(family: Family, recall: dict | None, path: Path) -> list[str]:
    """:func:`recall_section` of the sweep's recall record (``decaylab recall``; None: there is none), for a
    family the record probed."""
    from decaylab.evaluate.recall import MQARTask

    if recall is None or family.key not in recall["families"]:
        path.unlink(missing_ok=True)
        return []
    probe, curves = recall["probe"], recall_curves(recall)
    task = MQARTask(probe["seq_len"], max(recall["pairs"]), probe["vocab_size"])
    what = (f"MQAR accuracy by number of key–value pairs in {task.seq_len} tokens (`decaylab recall`, "
            f"[recall.json](../{RECALL_FILE}): a fresh `{probe['size']}` model of each design trained "
            f"{probe['steps']:,} steps of {probe['batch_size']} sequences at lr {probe['lr']:g}, task vocabulary "
            f"{task.vocab_size}, " + (f"seed {recall['seeds'][0]}" if len(recall["seeds"]) == 1 else
                                       f"mean over seeds {', '.join(map(str, recall['seeds']))}") + "):")
    reference = curves.get(design_key(None))
    if reference and max(reference.values()) < CALIBRATED_ACCURACY:
        what = (f"**Not calibrated:** the softmax reference reaches at most {max(reference.values()):.3f} (it should "
                f"reach {CALIBRATED_ACCURACY} where the task is learnable), so the probe's training, not the "
                "designs' memory, limits these numbers. " + what)
    return recall_section(family, curves, task.chance, path, what)


FIGURES = (("val_loss", "validation loss with 95% intervals", plot_loss_intervals),
           ("loss", "loss curves", plot_losses), ("decay", "median decay per layer", plot_decay),
           ("extrapolation", "length extrapolation", plot_extrapolation))
CLAIM1_FIGURE = "claim1_decay.png"

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
            f"{task.chance:.4f})" + (f", on the seed-{CURVE_SEED} run of each design (with the recall curve)."
                                     if scale.get("mqar_curve") else "."))
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
         f"length L. {recall} Cloze acc.: share of last-word cloze examples from the validation documents "
         "whose every target token is the model's greedy choice (an lm-eval local task; — where the scale "
         "runs none). Tokens/s: median training throughput over the logged windows of steps, the first step "
         "(which compiles the model) left out; train s: seconds of all training steps, compile included "
         "(runs.csv has both rates). " + _shared_note(rows) +
         "Per-run numbers: [runs.csv](runs.csv); per design: [results.csv](results.csv)."),
    ]
    return lines


def _shared_note(rows: list[dict]) -> str:
    """Which runs the throughput columns leave out: those trained with other runs on their GPU."""
    shared = [r for r in rows if r.get("runs_per_gpu")]
    if not shared:
        return ""
    counts = sorted({r["runs_per_gpu"] for r in shared})
    sharing = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    return (f"Both rates count only runs that had their GPU to themselves: {len(shared)} runs trained with "
            f"{sharing} workers sharing a GPU are left out "
            "of them (runs.csv keeps their rates and `runs_per_gpu`). ")


def _claims(families: dict[str, Family], results: dict[str, DesignResult]) -> list[Claim]:
    """The verdicts on the paper's claims from the seed losses and median decays of the decay
    designs, with the seed variance pooled over every design (the softmax reference included)."""
    decays = [r for r in results.values() if r.design is not None]
    return claims(families, {r.design: r.losses() for r in decays if r.losses()},
                  {r.design: median_decay(r.decay) for r in decays if r.decay}, sweep_pool(results),
                  {r.design: start for r in decays
                   if (start := starting_decay(r.design, r.initial_decay)) is not None})


def wanted_seeds(found: list[Claim], results: dict[str, DesignResult]) -> dict[str, int]:
    """Design label → the seeds the verdict rule wants where a design has fewer finished runs
    (:func:`decaylab.sweep.verdicts.seeds_needed` over every comparison of the claims ``found``)."""
    seeds = {design_label(r.design): len(r.losses()) for r in results.values()}
    return seeds_needed(seeds, [x for c in found for x in c.comparisons])


def extra_seeds_for_close_calls(root: str | Path, seeds: tuple[int, ...],
                                extra: dict[str, list[int]]) -> dict[str, list[int]]:
    """Design key → the seeds the verdict rule asks of the design beyond those it has already (``seeds``
    and its ``extra`` ones), judged on the runs of ``root`` finished so far: ``MIN_SEEDS`` for every
    design, ``CLOSE_CALL_SEEDS`` for one in a close call."""
    _, families, results, _ = collect(Path(root))
    keys = {design_label(r.design): key for key, r in results.items()}
    added = {}
    for label, n in wanted_seeds(_claims(families, results), results).items():
        scheduled = set(seeds) | set(extra.get(keys[label], ()))
        if n > len(scheduled):
            added[keys[label]] = list(range(max(scheduled) + 1, max(scheduled) + 1 + n - len(scheduled)))
    return added


def previous_verdicts(preset: str) -> tuple[str, dict[int, str]] | None:
    """The report and verdicts an earlier sweep of ``preset`` (or of one of ``a+b``'s parts) reached."""
    return next((PREVIOUS_VERDICTS[p] for p in preset.split("+") if p in PREVIOUS_VERDICTS), None)


def _more_seeds(seeds: dict[str, int], wanted: dict[str, int]) -> list[str]:
    """One line per target seed count (close calls first); "every other design" where it applies to all the rest."""
    lines, named = [], set()
    for n in sorted(set(wanted.values()), reverse=True):
        labels = sorted(label for label, want in wanted.items() if want == n)
        rest = set(seeds) - named
        who = (f"every {'other ' if named else ''}design ({len(labels)})" if set(labels) == rest and len(labels) > 3
               else ", ".join(labels))
        why = "close calls: an interval that crosses zero by less than half its half-width" if n > MIN_SEEDS \
            else "the minimum"
        lines += [f"More seeds needed ({why}): {n} for {who}.", ""]
        named |= set(labels)
    return lines


def _provisional(family: Family | None, results: dict[str, DesignResult]) -> str:
    """`` (provisional: …)`` where some decay design of ``family`` has fewer than ``MIN_SEEDS``
    finished seeds (the verdict may change as the sweep goes on), else '' (also for a family the
    sweep does not hold: its claim is not decided)."""
    designs = [] if family is None else [d for d in family.designs if d is not None]
    ready = sum(len(results[design_key(d)].losses()) >= MIN_SEEDS for d in designs if design_key(d) in results)
    return "" if ready == len(designs) else f" (provisional: {ready} of {len(designs)} designs have {MIN_SEEDS} seeds)"


def _claims_section(found: list[Claim], pool: PooledVariance, results: dict[str, DesignResult],
                    previous: tuple[str, dict[int, str]] | None, families: dict[str, Family]) -> list[str]:
    head = "| # | family | the paper says | this sweep measured | verdict |"
    if previous:
        head += " then → now |"
    lines = ["", "## The paper's claims against this sweep", "", head, "|---" * head.count(" | ") + "|---|"]
    for c in found:
        row = f"| {c.number} | ({c.family}) | {c.paper} | {c.measured} | **{c.verdict}**{_provisional(families.get(c.family), results)} |"
        if previous:
            row += f" {previous[1].get(c.number, '—')} → {c.verdict} |"
        lines.append(row)
    lines += [""]
    if previous:
        lines += [f"Then: the verdicts of `{previous[0]}` (rule: a difference beyond 2·SE of two "
                  "seeds; its *inconclusive* is *not decided* here). Now: this report's rule, below.", ""]
    lines += [rule_text(pool), ""]
    seeds = {design_label(r.design): len(r.losses()) for r in results.values()}
    lines += _more_seeds(seeds, wanted_seeds(found, results))
    lines += ["Comparisons:", ""]
    for c in found:
        if c.details:
            lines.append(f"<details><summary>claim {c.number}: {len(c.details)} lines</summary>\n")
            lines += [f"- {d}" for d in c.details]
            lines.append("\n</details>\n")
    return lines


def _throughput(call: dict, by_run: dict[str, dict]) -> str:
    """Training tokens of the runs an invocation completed, tokens/s over its wall time and over their
    training time (— for an invocation recorded before ``runs_done`` was)."""
    done = [by_run[r] for r in call.get("runs_done", []) if by_run.get(r, {}).get("tokens")]
    if not done:
        return "—"
    tokens, train_s = sum(r["tokens"] for r in done), sum(r["train_time_s"] for r in done)
    return f"{tokens / 1e6:,.1f}M / {tokens / call['wall_s'] / 1e6:.2f}M / {tokens / train_s / 1e6:.2f}M"


def _provenance(record: dict, rows: list[dict]) -> list[str]:
    """Every invocation of the sweep: command, start, wall time, outcome counts, training tokens and
    tokens/s of the runs it completed, versions, hardware."""
    calls = record.get("invocations", [])
    if not calls:
        return []
    by_run = {r["run_id"]: r for r in rows}
    lines = ["", "## How this sweep ran", "",
             f"Total wall time of the invocations: {sum(c['wall_s'] for c in calls) / 60:.1f} minutes. Tokens: "
             "training tokens of the runs the invocation completed / per second of its wall time / per second "
             "of their training steps.", "",
             "| started | command | wall | runs done / skipped / failed / interrupted | tokens | hardware | versions |",
             "|---|---|---|---|---|---|---|"]
    for c in calls:
        lines.append(f"| {c['started']} | `{c['command']}` | {c['wall_s'] / 60:.1f} min | "
                     f"{c['done']} / {c['skipped']} / {c['failed']} / {c.get('interrupted', 0)} | "
                     f"{_throughput(c, by_run)} | {c['hardware']} ({c['host']}) | "
                     f"Python {c['python']}, torch {c['torch']}, decaylab {c['decaylab']}"
                     + (f" ({c['commit']})" if c.get("commit") else "") + " |")
    return lines


def write_report(root: str | Path) -> Path:
    """Write the report of the sweep in ``root`` and return the path of ``report.md``."""
    root = Path(root)
    record, families, results, rows = collect(root)
    recall = read_recall(root)
    out = root / REPORT_DIR
    out.mkdir(exist_ok=True)
    write_text_atomic(out / "results.csv", results_csv(families, results))
    write_text_atomic(out / "runs.csv", runs_csv(rows))
    found = _claims(families, results)
    lines = _header(record, results, rows) + _claims_section(found, sweep_pool(results), results,
                                                             previous_verdicts(record["preset"]), families)
    if "a" in families and plot_loss_against_decay(families["a"], results, out / CLAIM1_FIGURE, found[0].decay_range):
        lines += [f"![claim 1: validation loss against median decay, family a]({CLAIM1_FIGURE})", ""]
    else:
        (out / CLAIM1_FIGURE).unlink(missing_ok=True)
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
        lines += run_recall_section(fam, results, record["scale"], out / f"recall_{fam.key}.png")
        lines += record_recall_section(fam, recall, out / f"recall_pairs_{fam.key}.png")
    lines += _provenance(record, rows)
    path = out / "report.md"
    write_text_atomic(path, "\n".join(lines).rstrip() + "\n")
    return path
