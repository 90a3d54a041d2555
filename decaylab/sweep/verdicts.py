"""The verdicts of a sweep on the paper's four claims: statistics of seed losses and the claim
rules, pure functions of numbers (no files, no figures).

The metric is the final validation loss (nats; lower is better). Two designs A, B with seed
losses a, b are compared by Δ = mean(a) − mean(b) against a threshold τ = max(2·SE,
``MIN_EFFECT``), SE = sqrt(var(a)/n_a + var(b)/n_b) from the seed spread; with a single seed on
either side the spread is unknown and τ = 2·``ASSUMED_SEED_SD``. A is *worse* when Δ > τ,
*better* when Δ < −τ, else *tied*. Then:

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

import math
import statistics
from dataclasses import dataclass, replace

from decaylab.decay import DecaySpec
from decaylab.sweep.presets import Family, design_label

MIN_EFFECT = 0.01  # nats: the smallest difference in validation loss that counts (≈ 1% perplexity)
ASSUMED_SEED_SD = 0.01  # nats: seed-to-seed spread assumed when only one seed ran
RESOLUTION = 0.05  # nats: claim 4 needs comparisons able to see a gain of this size (≈ 5% perplexity)

Losses = dict[DecaySpec, list[float]]  # seed losses of each decay design that ran


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
    """One of the paper's claims (``paper``, tested on ``family``) and this sweep's verdict on it."""

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


def _paired(losses: Losses, axis: str, variant: object, baseline: object) -> list[Comparison]:
    """Compare each design d whose field ``axis`` is ``baseline`` with the same design at ``variant``,
    for every d where both ran."""
    out = []
    for d, values in losses.items():
        v = replace(d, **{axis: variant})
        if getattr(d, axis) == baseline and v in losses and v != d:
            out.append(compare(design_label(v), losses[v], design_label(d), values))
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


def claim_parameterization(losses: Losses,
                           medians: dict[DecaySpec, float] | None = None) -> tuple[str, str, list[str]]:
    """Claim 1; ``medians`` (median decay of each design, when analysed) describe the working range."""
    if len(losses) < 3:
        return "inconclusive", f"only {len(losses)} parameterizations ran", []
    best = min(losses, key=lambda d: statistics.fmean(losses[d]))
    comps = [compare(design_label(d), losses[d], design_label(best), losses[best]) for d in losses if d != best]
    worse = [c for c in comps if c.outcome == "worse"]
    tied = [c.a for c in comps if c.outcome == "tied"]
    means = [statistics.fmean(v) for v in losses.values()]
    summary = (f"best: {design_label(best)}; {len(worse)} of {len(comps)} others clearly worse; "
               f"tied with the best: {', '.join(tied) or 'none'}; spread of means {max(means) - min(means):.3f} nats")
    good = [best] + [d for d in losses if d != best and design_label(d) in tied]
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


def claim_sharing(losses: Losses) -> tuple[str, str, list[str]]:
    comps = _paired(losses, "share_decay_key", True, False)
    verdict, summary = _direction_verdict(comps, "worse")
    return verdict, f"shared is {summary}", [c.describe() for c in comps]


def claim_granularity(losses: Losses) -> tuple[str, str, list[str]]:
    comps = _paired(losses, "decay_granularity", "scalar", "vector")
    verdict, summary = _direction_verdict(comps, "worse")
    vectors = [d for d in losses if d.decay_granularity == "vector"]
    beats = sorted({f"{design_label(s)} beats {design_label(v)}"
                    for s in losses if s.decay_granularity == "scalar" for v in vectors
                    if s.decay != v.decay and compare(design_label(s), losses[s], design_label(v),
                                                      losses[v]).outcome == "better"})
    note = f"; scalar designs beating a vector design of another parameterization: {len(beats)}"
    return verdict, f"scalar is {summary}{note}", [c.describe() for c in comps] + beats


def claim_rope(losses: Losses) -> tuple[str, str, list[str]]:
    comps = _paired(losses, "positional", "rope", "none")
    others = [c for pos in ("lrpe-cos", "tpe") for c in _paired(losses, "positional", pos, "none")]
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


def median_decay(decay_records: list[dict]) -> float:
    """Median decay of one design: mean over seeds and layers of the per-layer medians of its
    decay statistics (``eval.json``'s ``decay`` records)."""
    return statistics.fmean(statistics.fmean(row["decay_median"] for row in s["layers"]) for s in decay_records)


def claims(families: dict[str, Family], losses: Losses, medians: dict[DecaySpec, float] | None = None) -> list[Claim]:
    """The four claims with verdicts computed from the validation losses of the families that ran;
    ``medians`` (:func:`median_decay` of the analysed designs) describe claim 1's working range."""
    out = []
    for number, (family_key, paper) in CLAIM_TEXT.items():
        if family_key not in families:
            out.append(Claim(number, family_key, paper, "inconclusive", "family not in this sweep", ()))
            continue
        ran = {d: losses[d] for d in families[family_key].designs if d is not None and losses.get(d)}
        if number == 1:
            verdict, measured, details = claim_parameterization(ran, medians)
        else:
            verdict, measured, details = CLAIM_RULES[number](ran)
        out.append(Claim(number, family_key, paper, verdict, measured, tuple(details)))
    return out
