"""Decay analysis: per-layer and per-head statistics of the decay a trained model computes on real
text, their CSV/JSON writers, and plots."""

from decaylab.analysis.decay_stats import (
    DecayStats,
    collect_log_decays,
    decay_stats,
    half_life,
    write_csv,
    write_json,
)
from decaylab.analysis.plots import (
    plot_half_life_distribution,
    plot_head_heatmap,
    plot_median_decay_by_layer,
)

__all__ = [
    "DecayStats",
    "collect_log_decays",
    "decay_stats",
    "half_life",
    "plot_half_life_distribution",
    "plot_head_heatmap",
    "plot_median_decay_by_layer",
    "write_csv",
    "write_json",
]
