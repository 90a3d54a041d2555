"""The verdicts of a sweep on the paper's four claims: the statistics of seed losses and the claim
rules, pure functions of numbers (no files, no figures). :func:`rule_text` states the rules for
the report.

**Statistics.** The metric is the final validation loss (nats; lower is better). The seed
variance is pooled over every design d of the sweep (n_d seeds, mean x̄_d):

    s_p² = Σ_d Σ_i (x_di − x̄_d)² / Σ_d (n_d − 1),    df = Σ_d (n_d − 1)

For two designs A, B: Δ = x̄_A − x̄_B, SE = s_p·√(1/n_A + 1/n_B), the 95% interval
Δ ± t_{df, 0.975}·SE and the two-sided p-value of t = Δ / SE with df degrees of freedom. Where a
claim makes m comparisons, their p-values are Holm-adjusted (the i-th smallest times m − i + 1,
made monotone); a comparison *decides* (A "worse" or "better" than B) when its adjusted p is
below ``ALPHA``, else A and B are "tied". With df = 0 (one seed of every design) there is no
estimate of the seed variance and nothing is judged: "no seed variance: not decided".

**Claims** (verdicts: ``AGREE``, ``DISAGREE``, ``NOT_DECIDED``):

1. parameterization matters and works only in a narrow range (family a). Each design is compared
   with the best (lowest mean), Holm over those comparisons; the designs not worse than the best
   form the *working set*, and the range of their median decay (learned, and initial: measured on
   the step-0 model, or p of SD-p where it was not measured) is the finding. Disagree when every
   design's interval lies below ``NO_REAL_GAIN`` (no parameterization is really worse); agree
   when some are worse and worse designs lie on
   both sides of the working range (below its lowest and above its highest median decay); else
   not decided (e.g. the range is open on one side, or no median decay was measured).
2. sharing hurts (family b): shared vs separate per decay, Holm over the pairs; agree when shared
   is worse in at least half of the pairs and in more pairs than it is better; disagree when the
   opposite holds; else not decided. Each pair shows both models' median decay.
3. scalar usually loses to vector, though some scalar beats some vector (family c): (i) scalar vs
   vector within each parameterization, the rule of claim 2; (ii) every scalar against every
   vector of another parameterization, Holm over those; (ii) holds when some scalar is better,
   fails when every scalar is worse than every such vector. Agree when both hold, disagree when
   either fails, else not decided.
4. RoPE brings no real gain to most linear attentions (family d): per decay the gain
   G = −Δ(RoPE − none) is tested against the bound ``NO_REAL_GAIN`` by two one-sided tests at
   ``ALPHA``/2 (so with one pair: the 95% interval of G lies wholly above or below the bound),
   Holm over the pairs for each; agree when more than half of the pairs show no real gain
   (G < bound), disagree when more than half show one (G > bound), else not decided.

:func:`seeds_needed` says which designs need more seeds: ``MIN_SEEDS`` for every design,
``CLOSE_CALL_SEEDS`` for a design in a close call (an interval that contains zero, but whose
estimate lies more than half its half-width from zero, i.e. that crosses zero by less than half
its half-width).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from scipy import stats

from decaylab.decay import DecaySpec
from decaylab.decay.spec import parse_decay_name
from decaylab.sweep.presets import Family, design_label

ALPHA = 0.05  # two-sided level of every test and interval (95% confidence)
NO_REAL_GAIN = 0.01  # nats (≈ 1% perplexity): a loss difference below this is no real difference
MIN_SEEDS = 3  # seeds every design needs
CLOSE_CALL_SEEDS = 5  # seeds a design in a close call needs
SD_P_GRID = (0.5, 0.8, 0.9, 0.95, 0.99, 0.999)  # claim 1's Simple Decay p values (those that ran are used)

AGREE, DISAGREE, NOT_DECIDED = "agree", "disagree", "not decided"
NO_VARIANCE = "no seed variance: not decided"

Losses = dict[DecaySpec, list[float]]  # seed losses of each decay design that ran
Medians = dict[DecaySpec, float]  # median decay of a design


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None with fewer than two values)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class PooledVariance:
    """The seed standard deviation s_p pooled over designs, with its degrees of freedom (sd None when df = 0)."""

    sd: float | None
    df: int

    @property
    def t(self) -> float:
        """t_{df, 1 − ALPHA/2}: the multiplier of SE in a 95% interval."""
        return float(stats.t.ppf(1 - ALPHA / 2, self.df))

    def se(self, n_a: int, n_b: int | None = None) -> float:
        """SE of a difference of means of n_a and n_b seeds (of one mean when n_b is None)."""
        return self.sd * math.sqrt(1 / n_a + (1 / n_b if n_b else 0.0))

    def half_width(self, n: int) -> float | None:
        """Half-width t·SE of the 95% interval of one mean of n seeds (None when df = 0)."""
        return self.t * self.se(n) if self.df else None


def pooled_variance(groups: Iterable[Sequence[float]]) -> PooledVariance:
    """s_p² = Σ_d Σ_i (x_di − x̄_d)² / Σ_d (n_d − 1) over the seed values of every design d."""
    groups = [list(g) for g in groups if g]
    df = sum(len(g) - 1 for g in groups)
    if df == 0:
        return PooledVariance(None, 0)
    ss = sum((x - statistics.fmean(g)) ** 2 for g in groups for x in g)
    return PooledVariance(math.sqrt(ss / df), df)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order: the i-th smallest (i from 0) becomes
    max over j ≤ i of min(1, (m − j)·p_(j))."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Comparison:
    """A vs B on validation loss: Δ = mean(A) − mean(B), its SE and interval, p and Holm-adjusted p.
    ``se`` is None when the pooled df is 0 (nothing decided)."""

    a: str
    b: str
    delta: float
    se: float | None
    df: int
    p: float | None
    p_holm: float | None = None
    t: float | None = None  # t_{df, 0.975}

    @property
    def half_width(self) -> float | None:
        return None if self.se is None else self.t * self.se

    @property
    def interval(self) -> tuple[float, float] | None:
        return None if self.se is None else (self.delta - self.half_width, self.delta + self.half_width)

    @property
    def outcome(self) -> str:
        """``worse`` (A worse than B), ``better``, ``tied``, or ``undecided`` (df = 0)."""
        if self.se is None:
            return "undecided"
        p = self.p if self.p_holm is None else self.p_holm
        return "tied" if p >= ALPHA else ("worse" if self.delta > 0 else "better")

    def describe(self) -> str:
        pct = 100 * (math.exp(self.delta) - 1)
        text = f"{self.a} vs {self.b}: Δ = {self.delta:+.3f} nats ({pct:+.1f}% ppl)"
        if self.se is None:
            return f"{text}, {NO_VARIANCE}"
        low, high = self.interval
        text += f", 95% CI [{low:+.3f}, {high:+.3f}], df {self.df}, p = {self.p:.3g}"
        if self.p_holm is not None:
            text += f", Holm p = {self.p_holm:.3g}"
        return f"{text} → {self.outcome}"


def compare(a_label: str, a: Sequence[float], b_label: str, b: Sequence[float], pool: PooledVariance) -> Comparison:
    """A vs B with the pooled seed variance ``pool`` (see the module docstring)."""
    delta = statistics.fmean(a) - statistics.fmean(b)
    if pool.df == 0:
        return Comparison(a_label, b_label, delta, None, 0, None)
    se = pool.se(len(a), len(b))
    p = 2 * float(stats.t.sf(abs(delta) / se, pool.df)) if se > 0 else (0.0 if delta else 1.0)
    return Comparison(a_label, b_label, delta, se, pool.df, p, t=pool.t)


def with_holm(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The comparisons of one claim with Holm-adjusted p-values (unchanged when df = 0)."""
    if not comparisons or comparisons[0].p is None:
        return list(comparisons)
    return [replace(c, p_holm=p) for c, p in zip(comparisons, holm([c.p for c in comparisons]))]


def one_sided_p(c: Comparison, gain_above: float) -> tuple[float, float]:
    """For the gain G = −Δ of A over B: p of "G > bound" (H0: G ≤ bound) and of "G < bound"."""
    excess = -c.delta - gain_above
    t = excess / c.se if c.se else math.copysign(math.inf, excess)  # s_p = 0: seeds that agree exactly
    return float(stats.t.sf(t, c.df)), float(stats.t.cdf(t, c.df))


def seeds_needed(seeds: dict[str, int], comparisons: Iterable[Comparison]) -> dict[str, int]:
    """Design label → the number of seeds it should have, for designs with fewer: ``MIN_SEEDS``
    for every design, ``CLOSE_CALL_SEEDS`` for one in a close call (see the module docstring)."""
    want = {label: MIN_SEEDS for label in seeds}
    for c in comparisons:
        if c.se is not None and c.half_width / 2 < abs(c.delta) < c.half_width:
            for label in (c.a, c.b):
                want[label] = CLOSE_CALL_SEEDS
    return {label: n for label, n in want.items() if seeds.get(label, 0) < n}


# --------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims (``paper``, tested on ``family``) and this sweep's verdict on it."""

    number: int
    family: str
    paper: str
    verdict: str  # AGREE, DISAGREE, NOT_DECIDED
    measured: str
    details: tuple[str, ...]
    comparisons: tuple[Comparison, ...] = ()
    decay_range: tuple[float, float] | None = None  # claim 1: median decay of the designs tied with the best


CLAIM_TEXT = {
    1: ("a", "The parameterization of the decay needs care: results depend on it and it works only in a narrow range."),
    2: ("b", "Sharing the decay's parameters with the key hurts (it can push decays too high or too low)."),
    3: ("c", ("Scalar decay usually loses to vector decay under the same parameterization "
             "(though some scalar parameterizations beat vector ones).")),
    4: ("d", "RoPE brings no real gain to most linear attentions."),
}


@dataclass(frozen=True)
class Evidence:
    """What a claim rule sees: the seed losses of its family's decay designs, the pooled variance of
    the whole sweep, and each design's median decay after training (``medians``) and at its start
    (``initial``: :func:`starting_decay`)."""

    losses: Losses
    pool: PooledVariance
    medians: Medians
    initial: Medians

    def compare(self, a: DecaySpec, b: DecaySpec) -> Comparison:
        return compare(design_label(a), self.losses[a], design_label(b), self.losses[b], self.pool)

    def median_text(self, d: DecaySpec) -> str:
        learned = f"{self.medians[d]:.3f}" if d in self.medians else "not measured"
        return f"{design_label(d)}: median decay {learned}" + (
            f" (initial {self.initial[d]:.3f})" if d in self.initial else "")


class Outcome(NamedTuple):
    """What a claim rule returns (see :class:`Claim`)."""

    verdict: str
    measured: str
    details: list[str]
    comparisons: list[Comparison]
    decay_range: tuple[float, float] | None = None


def initial_decay(design: DecaySpec) -> float | None:
    """The decay a design starts from when its parameterization fixes it (p of SD-p), else None."""
    base, options = parse_decay_name(design.decay)
    return options.get("p", 0.99) if base == "sd" else None


def starting_decay(design: DecaySpec, step0_records: list[dict]) -> float | None:
    """A design's median decay at step 0: :func:`median_decay` of its ``step0_records`` (the sweep's
    ``initial_decay`` piece) where there are any, else :func:`initial_decay`."""
    return median_decay(step0_records) if step0_records else initial_decay(design)


def _range(values: Iterable[float]) -> str:
    values = sorted(values)
    return f"{values[0]:.3f} to {values[-1]:.3f}" if values else "not measured"


def claim_parameterization(ev: Evidence) -> Outcome:
    """Claim 1 (see the module docstring)."""
    if len(ev.losses) < 3:
        return Outcome(NOT_DECIDED, f"only {len(ev.losses)} parameterizations ran", [], [])
    best = min(ev.losses, key=lambda d: statistics.fmean(ev.losses[d]))
    others = [d for d in ev.losses if d != best]
    comps = with_holm([ev.compare(d, best) for d in others])
    worse = [d for d, c in zip(others, comps) if c.outcome == "worse"]
    good = [d for d in ev.losses if d not in worse]
    low_high = [ev.medians[d] for d in good if d in ev.medians]
    summary = (f"best: {design_label(best)}; {len(worse)} of {len(comps)} others worse (Holm); "
               f"working set {len(good)} designs, median decay {_range(low_high)}, "
               f"initial {_range(ev.initial[d] for d in good if d in ev.initial)}")
    sd_p = sorted((d for d in ev.losses if d.decay.startswith("sd") and initial_decay(d) in SD_P_GRID),
                  key=initial_decay)
    mamba = [d for d in ev.losses if d.decay.startswith("mamba2")]
    details = [c.describe() for c in comps] + [
        f"{series}: " + "; ".join(f"{ev.median_text(d)}, loss {statistics.fmean(ev.losses[d]):.3f}" for d in group)
        for series, group in (("SD-p", sd_p), ("Mamba2 and ablations", mamba)) if group]
    decay_range = (min(low_high), max(low_high)) if low_high else None
    if ev.pool.df and all(c.interval[1] < NO_REAL_GAIN for c in comps):
        verdict, summary = DISAGREE, summary + f"; every design within {NO_REAL_GAIN} nats of the best"
    elif not worse:
        verdict = NOT_DECIDED
    elif not low_high:
        verdict, summary = NOT_DECIDED, summary + "; median decay not measured"
    else:
        below = [d for d in worse if d in ev.medians and ev.medians[d] < decay_range[0]]
        above = [d for d in worse if d in ev.medians and ev.medians[d] > decay_range[1]]
        summary += f"; worse designs below the range: {len(below)}, above: {len(above)}"
        verdict = AGREE if below and above else NOT_DECIDED
        if verdict == NOT_DECIDED:
            summary += f" (range open {'below' if not below else 'above'})"
    return Outcome(verdict, summary, details, comps, decay_range)


def _paired(ev: Evidence, axis: str, variant: object, baseline: object) -> list[tuple[DecaySpec, DecaySpec]]:
    """(variant, baseline) designs: each design whose field ``axis`` is ``baseline`` with the same
    design at ``variant``, where both ran."""
    out = []
    for d in ev.losses:
        v = replace(d, **{axis: variant})
        if getattr(d, axis) == baseline and v in ev.losses and v != d:
            out.append((v, d))
    return out


def _direction_verdict(comparisons: list[Comparison], claimed: str) -> tuple[str, str]:
    """Verdict of a claim that the variant is ``claimed`` ("worse"/"better") than the baseline."""
    opposite = "better" if claimed == "worse" else "worse"
    n = len(comparisons)
    if n == 0:
        return NOT_DECIDED, "no pair of designs ran"
    won = sum(c.outcome == claimed for c in comparisons)
    lost = sum(c.outcome == opposite for c in comparisons)
    summary = f"{claimed} in {won} of {n} pairs, {opposite} in {lost}, tied in {n - won - lost} (Holm)"
    if won > lost and 2 * won >= n:
        return AGREE, summary
    if lost > won and 2 * lost >= n:
        return DISAGREE, summary
    return NOT_DECIDED, summary


def claim_sharing(ev: Evidence) -> Outcome:
    """Claim 2 (see the module docstring)."""
    pairs = _paired(ev, "share_decay_key", True, False)
    comps = with_holm([ev.compare(v, d) for v, d in pairs])
    verdict, summary = _direction_verdict(comps, "worse")
    details = [f"{c.describe()}; {ev.median_text(v)}, {ev.median_text(d)}" for c, (v, d) in zip(comps, pairs)]
    return Outcome(verdict, f"shared is {summary}", details, comps)


def claim_granularity(ev: Evidence) -> Outcome:
    """Claim 3, both clauses (see the module docstring)."""
    within = with_holm([ev.compare(v, d) for v, d in _paired(ev, "decay_granularity", "scalar", "vector")])
    first, summary = _direction_verdict(within, "worse")
    scalars = [d for d in ev.losses if d.decay_granularity == "scalar"]
    vectors = [d for d in ev.losses if d.decay_granularity == "vector"]
    cross = with_holm([ev.compare(s, v) for s in scalars for v in vectors if s.decay != v.decay])
    beats = [c for c in cross if c.outcome == "better"]
    if beats:
        second = AGREE
    elif cross and all(c.outcome == "worse" for c in cross):
        second = DISAGREE
    else:
        second = NOT_DECIDED
    verdict = (DISAGREE if DISAGREE in (first, second) else AGREE if first == second == AGREE else NOT_DECIDED)
    measured = (f"(i) within a parameterization scalar is {summary}: {first}; (ii) scalar better than a vector "
                f"of another parameterization in {len(beats)} of {len(cross)} pairs (Holm): {second}")
    details = ([c.describe() for c in within] + [f"(ii) {c.describe()}" for c in beats]
               + ([f"(ii) {len(cross) - len(beats)} other cross pairs: no scalar better"] if cross else []))
    return Outcome(verdict, measured, details, within + cross)


def claim_rope(ev: Evidence) -> Outcome:
    """Claim 4 (see the module docstring); the other positional encodings are listed, not judged."""
    comps = [ev.compare(v, d) for v, d in _paired(ev, "positional", "rope", "none")]
    others = [ev.compare(v, d) for pos in ("lrpe-cos", "tpe") for v, d in _paired(ev, "positional", pos, "none")]
    n = len(comps)
    if n == 0 or ev.pool.df == 0:
        why = "no pair of designs ran" if n == 0 else NO_VARIANCE
        return Outcome(NOT_DECIDED, why, [c.describe() for c in comps + others], comps + others)
    gain_p, small_p = zip(*(one_sided_p(c, NO_REAL_GAIN) for c in comps))
    gains = [p < ALPHA / 2 for p in holm(gain_p)]
    small = [p < ALPHA / 2 for p in holm(small_p)]
    summary = (f"RoPE's gain is above {NO_REAL_GAIN} nats in {sum(gains)} of {n} pairs, below it in "
               f"{sum(small)}, undetermined in {n - sum(gains) - sum(small)} (one-sided at {ALPHA / 2}, Holm)")
    verdict = AGREE if 2 * sum(small) > n else DISAGREE if 2 * sum(gains) > n else NOT_DECIDED
    details = [f"{c.describe()}; gain {'above' if g else 'below' if s else 'not shown above or below'} the bound"
               for c, g, s in zip(comps, gains, small)] + [c.describe() for c in others]
    return Outcome(verdict, summary, details, comps + others)


CLAIM_RULES = {1: claim_parameterization, 2: claim_sharing, 3: claim_granularity, 4: claim_rope}


def median_decay(decay_records: list[dict]) -> float:
    """Median decay of one design: mean over seeds and layers of the per-layer medians of its
    decay statistics (``eval.json``'s ``decay`` records)."""
    return statistics.fmean(statistics.fmean(row["decay_median"] for row in s["layers"]) for s in decay_records)


def claims(families: dict[str, Family], losses: Losses, medians: Medians | None = None,
           pool: PooledVariance | None = None, initial_medians: Medians | None = None) -> list[Claim]:
    """The four claims with verdicts from the validation losses of the families that ran.

    ``medians``: :func:`median_decay` of the analysed designs; ``initial_medians``: their
    :func:`starting_decay` (by default the one their parameterization fixes); ``pool``: the seed
    variance pooled over every design of the sweep (the softmax reference included), by default
    over ``losses``."""
    pool = pool or pooled_variance(losses.values())
    medians = medians or {}
    if initial_medians is None:
        initial_medians = {d: start for d in losses if (start := starting_decay(d, [])) is not None}
    out = []
    for number, (family_key, paper) in CLAIM_TEXT.items():
        if family_key not in families:
            out.append(Claim(number, family_key, paper, NOT_DECIDED, "family not in this sweep", ()))
            continue
        ran = {d: losses[d] for d in families[family_key].designs if d is not None and losses.get(d)}
        evidence = Evidence(ran, pool, medians, {d: initial_medians[d] for d in ran if d in initial_medians})
        verdict, measured, details, comps, decay_range = CLAIM_RULES[number](evidence)
        if pool.df == 0:
            verdict, measured = NOT_DECIDED, f"{NO_VARIANCE} (one seed per design); {measured}"
        out.append(Claim(number, family_key, paper, verdict, measured, tuple(details), tuple(comps), decay_range))
    return out


def rule_text(pool: PooledVariance) -> str:
    """The decision rule in words, for the report."""
    if pool.df == 0:
        spread = "every design ran one seed, so the seed variance is unknown (df = 0) and no claim is decided"
    else:
        spread = f"s_p = {pool.sd:.4f} nats with df = {pool.df}, t = {pool.t:.3f}"
    return (
        "Verdicts compare final validation losses. The seed variance is pooled over every design of the sweep, "
        "s_p² = Σ_d Σ_i (x_di − x̄_d)² / Σ_d (n_d − 1), df = Σ_d (n_d − 1): "
        f"{spread}. Every difference Δ of two means has SE = s_p·√(1/n_A + 1/n_B), a t-based 95% interval "
        f"Δ ± t_(df, 0.975)·SE and a two-sided p-value; a claim that makes several comparisons Holm-adjusts them, "
        f"and a comparison decides (worse / better) when its adjusted p < {ALPHA}, else the designs are tied. "
        "Claim 1: every parameterization against the best; the designs tied with it form the working set, "
        "whose range of median decay is the finding; agree when worse designs lie both below and above that range, "
        f"disagree when every interval lies below {NO_REAL_GAIN} nats. "
        "Claims 2 and 3(i): agree when the claimed direction wins at least half the pairs and more than the "
        "opposite; disagree when the opposite does. Claim 3(ii): holds when some scalar design beats a vector "
        "design of another parameterization, fails when every scalar loses to every such vector; claim 3 agrees "
        f"when both clauses hold. Claim 4: RoPE's gain against the no-real-gain bound {NO_REAL_GAIN} nats by two "
        f"one-sided tests at {ALPHA / 2} (Holm); agree when more than half of the pairs gain less than the bound, "
        "disagree when more than half gain more. Anything else: not decided. Seeds: "
        f"≥ {MIN_SEEDS} for every design, {CLOSE_CALL_SEEDS} for a design whose interval contains zero "
        "but crosses it by less than half its half-width."
    )
