"""The statistics of the sweep verdicts against cases computed by hand and with scipy.stats, and each
claim rule on synthetic seed losses on both sides of each of its thresholds (decaylab.sweep.verdicts)."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from decaylab.decay import DecaySpec
from decaylab.sweep.presets import SOFTMAX, Family
from decaylab.sweep.verdicts import (
    AGREE,
    CLOSE_CALL_SEEDS,
    DISAGREE,
    MIN_SEEDS,
    NO_REAL_GAIN,
    NO_VARIANCE,
    NOT_DECIDED,
    PooledVariance,
    claims,
    compare,
    holm,
    pooled_variance,
    rule_text,
    seeds_needed,
    with_holm,
)

# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("df, t", [(1, 12.706), (2, 4.303), (3, 3.182), (10, 2.228), (28, 2.048), (1000, 1.962)])
def test_t_multiplier_matches_the_table(df, t):
    assert PooledVariance(1.0, df).t == pytest.approx(t, abs=5e-4)


def test_two_groups_interval_by_hand_and_as_scipy_ttest():
    a, b = [4.0, 4.2, 4.1], [3.9, 4.0]
    pool = pooled_variance([a, b])
    # by hand: SS = 0.02 + 0.005, df = 2 + 1, s_p² = 0.025 / 3
    assert pool.df == 3 and pool.sd == pytest.approx(math.sqrt(0.025 / 3))
    c = compare("a", a, "b", b, pool)
    assert c.delta == pytest.approx(0.15)
    assert c.se == pytest.approx(math.sqrt(0.025 / 3 * (1 / 3 + 1 / 2)))
    assert c.se == pytest.approx(1 / 12)  # √(0.025/3 · 5/6) = √(1/144)
    low, high = c.interval
    t3 = 3.182446  # t_(3, 0.975) from the table
    assert (low, high) == pytest.approx((0.15 - t3 / 12, 0.15 + t3 / 12), abs=1e-6)
    ref = stats.ttest_ind(a, b, equal_var=True)
    assert c.delta / c.se == pytest.approx(ref.statistic) and c.p == pytest.approx(ref.pvalue)
    assert c.outcome == "tied"  # t = 1.8 with 3 df: p ≈ 0.17


def test_variance_pooled_over_several_groups_by_hand():
    groups = [[1.0, 2.0, 3.0], [2.0, 4.0], [5.0], [0.0, 0.0, 0.0, 4.0]]
    pool = pooled_variance(groups)
    # SS: 2 + 2 + 0 + 12 = 16; df: 2 + 1 + 0 + 3 = 6 (a single seed adds nothing)
    assert pool.df == 6 and pool.sd ** 2 == pytest.approx(16 / 6)
    c = compare("x", groups[0], "y", groups[3], pool)
    assert c.se == pytest.approx(math.sqrt(16 / 6 * (1 / 3 + 1 / 4)))
    assert c.p == pytest.approx(2 * stats.t.sf(1 / c.se, 6))
    assert c.half_width == pytest.approx(stats.t.ppf(0.975, 6) * c.se)


def test_holm_by_hand():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → kept monotone: 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([0.2]) == [0.2] and holm([]) == []


def test_holm_turns_two_marginal_differences_into_ties():
    pool = PooledVariance(0.01, 10)
    se = pool.se(3, 3)
    delta = stats.t.isf(0.015, 10) * se  # raw two-sided p = 0.03
    comps = [compare(n, [4.0 + delta] * 3, "best", [4.0] * 3, pool) for n in ("x", "y")]
    assert [c.p for c in comps] == pytest.approx([0.03, 0.03]) and {c.outcome for c in comps} == {"worse"}
    adjusted = with_holm(comps)
    assert [c.p_holm for c in adjusted] == pytest.approx([0.06, 0.06]) and {c.outcome for c in adjusted} == {"tied"}
    assert "Holm p = 0.06" in adjusted[0].describe() and "95% CI [" in adjusted[0].describe()


def test_one_seed_everywhere_has_no_variance_and_decides_nothing():
    pool = pooled_variance([[4.0], [4.5], [3.0]])
    assert pool == PooledVariance(None, 0)
    c = compare("a", [4.5], "b", [4.0], pool)
    assert c.outcome == "undecided" and c.interval is None and NO_VARIANCE in c.describe()
    assert with_holm([c]) == [c]
    families = {k: _family(k, designs) for k, designs in (
        ("a", [DecaySpec(n) for n in ("gla", "mamba2", "sd-0.8")]),
        ("b", [DecaySpec("gla", "vector", s) for s in (False, True)]),
        ("c", [DecaySpec("gla", g) for g in ("scalar", "vector")]),
        ("d", [DecaySpec("gla", "scalar", False, p) for p in ("none", "rope")]))}
    losses = {d: [4.0 + 0.5 * i] for i, d in enumerate({d for f in families.values() for d in f.designs if d})}
    for claim in claims(families, losses):
        assert claim.verdict == NOT_DECIDED and claim.measured.startswith(NO_VARIANCE), claim
    assert "df = 0" in rule_text(pool)


def test_seeds_needed():
    pool = PooledVariance(0.01, 10)
    hw = pool.t * pool.se(3, 3)
    close = compare("a", [4.0 + 0.75 * hw] * 3, "b", [4.0] * 3, pool)  # crosses zero by a quarter of hw
    clear = compare("c", [4.0 + 2 * hw] * 3, "d", [4.0] * 3, pool)
    null = compare("e", [4.0 + 0.25 * hw] * 3, "f", [4.0] * 3, pool)
    seeds = {"a": 3, "b": 5, "c": 3, "d": 2, "e": 3, "f": 1}
    assert seeds_needed(seeds, [close, clear, null]) == {"a": CLOSE_CALL_SEEDS, "d": MIN_SEEDS, "f": MIN_SEEDS}
    assert seeds_needed({"a": 1}, [compare("a", [4.0], "b", [4.1], PooledVariance(None, 0))]) == {"a": MIN_SEEDS}


# --------------------------------------------------------------------------- claim rules


def _family(key: str, designs: list[DecaySpec]) -> Family:
    return Family(key, key, "?", tuple(designs) + (SOFTMAX,))


def _seeds(mean: float, sd: float) -> list[float]:
    """Three seeds with this mean and sample SD."""
    return [mean - sd, mean, mean + sd]


def _claim(family: Family, losses: dict, number: int, medians: dict | None = None):
    return {c.number: c for c in claims({family.key: family}, losses, medians)}[number]


PARAM = [DecaySpec(n) for n in ("mamba2", "gla", "hgrn2", "sd-0.9", "sd-0.99")]


def _claim1(losses: dict[DecaySpec, float], medians: dict[DecaySpec, float] | None, sd: float = 0.01):
    return _claim(_family("a", list(losses)), {d: _seeds(m, sd) for d, m in losses.items()}, 1, medians)


def test_claim1_agrees_when_worse_designs_lie_on_both_sides_of_the_working_range():
    mamba, gla, hgrn, sd9, sd99 = PARAM
    losses = {mamba: 4.3, gla: 4.0, hgrn: 4.004, sd9: 4.003, sd99: 4.3}
    medians = {mamba: 0.2, gla: 0.6, hgrn: 0.75, sd9: 0.85, sd99: 0.99}
    claim = _claim1(losses, medians)
    assert claim.verdict == AGREE
    assert "median decay 0.600 to 0.850" in claim.measured and "initial 0.900 to 0.900" in claim.measured
    assert claim.decay_range == (0.6, 0.85)
    assert "below the range: 1, above: 1" in claim.measured
    assert any(line.startswith("SD-p: sd-0.9 (vector): median decay 0.850 (initial 0.900)") for line in claim.details)
    # the same losses, but the high-decay design is tied: the range is open above
    open_above = _claim1({**losses, sd99: 4.004}, medians)
    assert open_above.verdict == NOT_DECIDED and "range open above" in open_above.measured
    # no median decay measured: the range, which is the claim, is unknown
    assert _claim1(losses, None).verdict == NOT_DECIDED
    # measured step-0 medians replace the one the parameterization fixes, and are shown for every design
    seeds = {d: _seeds(m, 0.01) for d, m in losses.items()}
    measured = claims({"a": _family("a", list(losses))}, seeds, medians, None, {gla: 0.7, sd9: 0.88})[0]
    assert "initial 0.700 to 0.880" in measured.measured
    assert any(line.startswith("SD-p: sd-0.9 (vector): median decay 0.850 (initial 0.880)") for line in measured.details)


def test_claim1_disagrees_only_when_every_interval_is_below_the_bound():
    means = {d: 4.0 + 0.001 * i for i, d in enumerate(PARAM)}
    medians = {d: 0.1 + 0.2 * i for i, d in enumerate(PARAM)}
    assert _claim1(means, medians, sd=0.001).verdict == DISAGREE  # precise, all within 0.004 nats
    noisy = _claim1(means, medians, sd=0.05)  # tied, but a real difference is not ruled out
    assert noisy.verdict == NOT_DECIDED and "0 of 4 others worse" in noisy.measured
    near = {d: 4.0 + (NO_REAL_GAIN if i else 0.0) for i, d in enumerate(PARAM)}
    assert _claim1(near, medians, sd=0.001).verdict != DISAGREE  # Δ at the bound: intervals reach beyond it
    assert _claim(_family("a", PARAM[:2]), {d: _seeds(4.0, 0.01) for d in PARAM[:2]}, 1).verdict == NOT_DECIDED


DECAYS = ("gla", "mamba2", "sd-0.99")
SHARING = _family("b", [DecaySpec(n, "vector", s) for n in DECAYS for s in (False, True)])


@pytest.mark.parametrize("shared_offsets, verdict", [
    ((0.2, 0.2, 0.2), AGREE),
    ((-0.5, 0.2, 0.2), AGREE),           # worse in 2 of 3 pairs, better in 1
    ((-0.5, -0.2, 0.2), DISAGREE),       # better in 2 of 3
    ((0.005, 0.005, 0.005), NOT_DECIDED),  # within the seed spread: tied everywhere
    ((0.2, -0.2, 0.005), NOT_DECIDED),   # one each way
])
def test_claim2_counts_the_pairs_after_holm(shared_offsets, verdict):
    losses = {}
    for name, offset in zip(DECAYS, shared_offsets):
        losses[DecaySpec(name, "vector")] = _seeds(4.0, 0.01)
        losses[DecaySpec(name, "vector", True)] = _seeds(4.0 + offset, 0.01)
    medians = {d: 0.9 if d.share_decay_key else 0.8 for d in losses}
    claim = _claim(SHARING, losses, 2, medians)
    assert claim.verdict == verdict
    assert "gla (vector, shared): median decay 0.900, gla (vector): median decay 0.800" in claim.details[0]


GRANULARITY = _family("c", [DecaySpec(n, g) for n in DECAYS for g in ("scalar", "vector")])


@pytest.mark.parametrize("bases, scalar_offset, sd, verdict", [
    ((4.0, 4.3, 4.6), 0.10, 0.005, AGREE),          # scalar worse within; gla scalar (4.1) beats sd vector (4.6)
    ((4.0, 4.0, 4.0), 0.10, 0.005, DISAGREE),       # (ii) fails: every scalar loses to every vector
    ((4.0, 4.3, 4.6), -0.10, 0.005, DISAGREE),      # (i) fails: scalar better within each parameterization
    ((4.0, 4.3, 4.6), 0.01, 0.05, NOT_DECIDED),     # (i) tied: overlapping spreads
])
def test_claim3_tests_both_clauses(bases, scalar_offset, sd, verdict):
    losses = {}
    for name, base in zip(DECAYS, bases):
        losses[DecaySpec(name, "vector")] = _seeds(base, sd)
        losses[DecaySpec(name, "scalar")] = _seeds(base + scalar_offset, sd)
    claim = _claim(GRANULARITY, losses, 3)
    assert claim.verdict == verdict, claim.measured
    assert claim.measured.startswith("(i) within a parameterization") and "(ii)" in claim.measured


POSITIONAL = _family("d", [DecaySpec(n, "scalar", False, p) for n in DECAYS for p in ("none", "rope", "tpe")])


def _rope_losses(gains, sd: float = 0.001) -> dict:
    losses = {}
    for name, gain in zip(DECAYS, gains):
        losses[DecaySpec(name, "scalar")] = _seeds(4.0, sd)
        losses[DecaySpec(name, "scalar", False, "rope")] = _seeds(4.0 - gain, sd)
        losses[DecaySpec(name, "scalar", False, "tpe")] = _seeds(4.05, sd)
    return losses


@pytest.mark.parametrize("gains, sd, verdict", [
    ((0.0, 0.0, 0.0), 0.001, AGREE),                  # no gain, measured precisely
    ((NO_REAL_GAIN - 0.004,) * 3, 0.001, AGREE),      # a gain, but surely below the bound
    ((NO_REAL_GAIN + 0.004,) * 3, 0.001, DISAGREE),   # surely above the bound
    ((NO_REAL_GAIN,) * 3, 0.001, NOT_DECIDED),        # at the bound
    ((0.0, 0.0, 0.0), 0.2, NOT_DECIDED),              # too noisy to rule out a gain
    ((0.2, 0.0, 0.0), 0.001, AGREE),                  # a real gain in 1 of 3 pairs only
    ((0.2, 0.2, 0.0), 0.001, DISAGREE),
])
def test_claim4_against_the_no_real_gain_bound(gains, sd, verdict):
    claim = _claim(POSITIONAL, _rope_losses(gains, sd), 4)
    assert claim.verdict == verdict, claim.measured
    assert len(claim.details) == 6 and any("tpe" in line for line in claim.details)  # listed, not judged


def test_claim4_with_two_pairs_split_is_not_decided():
    two = _family("d", [DecaySpec(n, "scalar", False, p) for n in DECAYS[:2] for p in ("none", "rope")])
    losses = {d: v for d, v in _rope_losses((0.2, 0.0)).items() if d.positional != "tpe" and d.decay in DECAYS[:2]}
    assert _claim(two, losses, 4).verdict == NOT_DECIDED


def test_claims_use_the_pool_they_are_given():
    """The report pools the seed variance over the whole sweep: a precise pool decides what the
    family's own seeds (two, noisy) cannot."""
    fam = _family("c", [DecaySpec("gla", "scalar"), DecaySpec("gla", "vector")])
    losses = {DecaySpec("gla", "scalar"): [4.05, 4.15], DecaySpec("gla", "vector"): [4.0, 4.0]}
    own = _claim(fam, losses, 3)
    assert own.comparisons[0].outcome == "tied"
    pooled = {c.number: c for c in claims({"c": fam}, losses, None, PooledVariance(0.01, 40))}[3]
    assert pooled.comparisons[0].outcome == "worse"


def test_seeds_that_agree_exactly_give_a_zero_width_interval():
    """Training can be deterministic per seed and seeds can still agree to the last digit: s_p = 0."""
    pool = pooled_variance([[4.0, 4.0], [4.1, 4.1]])
    assert pool == PooledVariance(0.0, 2)
    assert compare("a", [4.1, 4.1], "b", [4.0, 4.0], pool).outcome == "worse"
    assert compare("a", [4.0, 4.0], "b", [4.0, 4.0], pool).outcome == "tied"
    assert _claim(POSITIONAL, _rope_losses((0.0, 0.0, 0.0), sd=0.0), 4).verdict == AGREE
    assert _claim(POSITIONAL, _rope_losses((0.02, 0.02, 0.02), sd=0.0), 4).verdict == DISAGREE
