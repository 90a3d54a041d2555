"""``decaylab analyze``: decay statistics (CSV, JSON) and plots (PNG) of one or more trained models."""

from __future__ import annotations

import argparse
from pathlib import Path

from decaylab.cli_args import positive_int
from decaylab.device import pick_device
from decaylab.train.rundir import is_checkpoint_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL_DIR",
                        help="model directories (config.json + model.safetensors), checkpoints or run directories")
    parser.add_argument("--data", required=True, help="a prepared dataset directory (real text to run through the models)")
    parser.add_argument("--out", required=True, help="output directory for decay_stats.{csv,json} and the PNG plots")
    parser.add_argument("--labels", nargs="+", help="one name per model (default: from the directory names)")
    parser.add_argument("--split", default="val", choices=("train", "val"))
    parser.add_argument("--seq-len", type=positive_int, default=256)
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--max-tokens", type=positive_int, default=8192, help="real tokens per model to collect decays on")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--no-progress", action="store_true")


def model_label(path: Path) -> str:
    """The run directory's name for a checkpoint (run/checkpoints/step_…), else the directory's name."""
    return path.parent.parent.name if is_checkpoint_dir(path) else path.name


def main(args: argparse.Namespace) -> int:
    from decaylab.analysis.decay_stats import (
        decay_modules,
        decay_stats,
        write_csv,
        write_json,
    )
    from decaylab.analysis.plots import (
        plot_half_life_distribution,
        plot_head_heatmap,
        plot_median_decay_by_layer,
    )
    from decaylab.data import TokenDataset
    from decaylab.evaluate.loading import load_model, resolve_model_dir

    if args.labels and len(args.labels) != len(args.models):
        raise SystemExit(f"analyze: {len(args.labels)} labels for {len(args.models)} models")
    device = pick_device(args.device)
    dataset = TokenDataset.open(args.data, args.split)
    out = Path(args.out)
    dirs = [resolve_model_dir(m) for m in args.models]
    labels = args.labels or _unique([model_label(d) for d in dirs])
    stats = []
    for label, model_dir in zip(labels, dirs):
        model = load_model(model_dir, device)
        try:
            decay_modules(model)
        except ValueError as err:
            print(f"skipping {label}: {err}")
            continue
        batches = (x for x, _ in dataset.iter_eval(args.seq_len, args.batch_size))
        s = decay_stats(model, batches, name=label, max_tokens=args.max_tokens, progress=not args.no_progress)
        stats.append(s)
        plot_head_heatmap(s, out / f"{label}_head_median_decay.png")
        plot_half_life_distribution(s, out / f"{label}_half_life.png")
        print(f"{label}: median decay per layer " + ", ".join(f"{v:.4f}" for v in s.layer_values()))
    if not stats:
        raise SystemExit("analyze: none of the models has a decay to analyse")
    write_csv(stats, out / "decay_stats.csv")
    write_json(stats, out / "decay_stats.json")
    plot_median_decay_by_layer(stats, out / "median_decay_by_layer.png")
    print(f"decay statistics and plots written to {out}")
    return 0


def _unique(labels: list[str]) -> list[str]:
    """Append -2, -3, … to repeated labels."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}-{seen[label]}")
    return out
