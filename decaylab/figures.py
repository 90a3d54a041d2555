"""Figure creation and saving for every plot decaylab draws (matplotlib's Agg canvas, no pyplot
global state, PNGs written atomically)."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from decaylab.atomic import write_bytes_atomic


def new_figure(width: float = 6.4, height: float = 4.0):
    """(figure, axes): a figure with one axes on an Agg canvas (the process's backend is left alone)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically (readers never see a partial image)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=dpi)
    write_bytes_atomic(path, png.getvalue())
    return path
