"""PNG plots of decay statistics (figures from :mod:`decaylab.figures`; every function returns its Figure).

- :func:`plot_median_decay_by_layer`: median λ per layer, one line per model of a family (the
  paper's figures);
- :func:`plot_head_heatmap`: median λ (or half-life) per layer × head of one model;
- :func:`plot_half_life_distribution`: per layer, a box of the half-life quartiles with whiskers
  at min and max (log scale; infinite half-lives, λ = 1, are drawn at ``HALF_LIFE_CAP``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

from decaylab.analysis.decay_stats import DecayStats
from decaylab.figures import new_figure, save_figure

HALF_LIFE_CAP = 1e7  # tokens


def plot_median_decay_by_layer(stats: list[DecayStats], path: str | Path, key: str = "decay_median",
                               title: str = "Median decay per layer"):
    """One line per model: ``key`` (default median λ) of each layer against the layer index."""
    fig, ax = new_figure(8.5, 4.5)
    colors = matplotlib.colormaps["tab20"].colors  # distinct colours for up to 20 models
    styles = ("-", "--", ":")
    for i, s in enumerate(stats):
        ax.plot(range(s.num_layers), s.layer_values(key), marker="o", label=s.model,
                color=colors[i % len(colors)], linestyle=styles[(i // len(colors)) % len(styles)])
    ax.set_xlabel("layer")
    ax.set_ylabel("median decay λ" if key == "decay_median" else key)
    ax.set_title(title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    save_figure(fig, path)
    return fig


def plot_head_heatmap(stats: DecayStats, path: str | Path, key: str = "decay_median"):
    """A layer × head heatmap of ``key`` for one model."""
    matrix = stats.head_matrix(key)
    if key.startswith("half_life"):
        matrix = np.minimum(matrix, HALF_LIFE_CAP)
    fig, ax = new_figure(max(4.0, 0.5 * matrix.shape[1] + 2), max(3.0, 0.4 * matrix.shape[0] + 1.5))
    image = ax.imshow(matrix, aspect="auto", cmap="viridis", norm="log" if key.startswith("half_life") else None)
    fig.colorbar(image, ax=ax, label=key).formatter.set_useOffset(False)
    ax.set_xticks(range(matrix.shape[1]))
    ax.set_yticks(range(matrix.shape[0]))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(f"{stats.model}: {key} per head")
    save_figure(fig, path)
    return fig


def plot_half_life_distribution(stats: DecayStats, path: str | Path):
    """Per layer, the half-life's min / quartiles / max as a box plot (log scale, tokens)."""
    cap = lambda v: min(v, HALF_LIFE_CAP)
    boxes = [{"label": str(row["layer"]), "whislo": cap(row["half_life_min"]), "q1": cap(row["half_life_q25"]),
              "med": cap(row["half_life_median"]), "q3": cap(row["half_life_q75"]),
              "whishi": cap(row["half_life_max"]), "fliers": []} for row in stats.layers]
    fig, ax = new_figure()
    ax.bxp(boxes, showfliers=False)
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("half-life −ln2 / ln λ (tokens)")
    ax.set_title(f"{stats.model}: half-life distribution")
    save_figure(fig, path)
    return fig
