"""Calibrate the MQAR recall probe: query accuracy over a grid of designs × tasks × training settings.

Each grid point trains a fresh model of the ``--size`` preset on MQAR as ``decaylab recall`` does
(``decaylab.sweep.recall``: the training loop's optimizer, schedule and step) and scores held-out
sequences; points run in parallel worker processes (one thread each) sharing the device. This script
adds the axes ``decaylab recall`` keeps fixed (learning rate, steps, width, depth), to choose them.
The goal (issue 16): settings where the softmax reference reaches ≥ 0.95 accuracy and the decay
designs spread between chance and 1.

A design is a decay name with an optional granularity (``tnl:scalar``; ``--granularity`` otherwise) or
``softmax``. The task axes are the number of key–value pairs and the sequence length (a longer sequence
puts the queries further from their pairs, which a fast-forgetting decay loses). ``--json`` is rewritten
after every point, so a run stopped at a time limit keeps the points it finished; ``--plot`` draws
accuracy against the number of pairs, one line per design and sequence length.

Usage: python benchmarks/calibrate_mqar.py --designs softmax,sd-0.99,mamba2,tnl:scalar --pairs 16,32,64 \\
           --lrs 3e-4 --steps 3000 [--seq-lens 256 --vocab 256 --batch 64 --size tiny --width 128 --layers 2
           --compile-mode reduce-overhead] [--json out.json] [--plot out.png]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from decaylab.decay import DecaySpec
from decaylab.evaluate.recall import RecallProbe
from decaylab.sweep.recall import Job, run_jobs


def job(point: dict) -> Job:
    """The probe of one grid point (``design`` a decay name with an optional ``:granularity``, or softmax)."""
    name, _, granularity = point["design"].partition(":")
    design = None if name == "softmax" else DecaySpec(name, granularity or point["granularity"])
    probe = RecallProbe(seq_len=point["seq_len"], num_pairs=point["pairs"], vocab_size=point["vocab"],
                        steps=point["steps"], lr=point["lr"], batch_size=point["batch"], size=point["size"],
                        hidden_size=point["width"], num_hidden_layers=point["layers"],
                        compile_mode=point["compile_mode"])
    return Job(design, probe, point["seed"])


def plot(rows: list[dict], path: Path) -> None:
    """Accuracy against the number of pairs (log scale), a line per (design, sequence length, lr, steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[tuple, dict[int, float]] = {}
    for r in rows:
        lines.setdefault((r["design"], r["seq_len"], r["lr"], r["steps"]), {})[r["pairs"]] = r["accuracy"]
    several = {k: len({key[i] for key in lines}) > 1 for i, k in enumerate(("design", "T", "lr", "steps"))}
    designs = sorted({key[0] for key in lines})
    settings = sorted({key[1:] for key in lines})
    colours = plt.get_cmap("tab20" if len(designs) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key, points in sorted(lines.items()):  # a colour per design, a line style per setting
        label = ", ".join(f"{k} {v}" if k != "design" else str(v)
                          for k, v in zip(("design", "T", "lr", "steps"), key) if several[k] or k == "design")
        pairs = sorted(points)
        ax.plot(pairs, [points[n] for n in pairs], marker="o", label=label, color=colours(designs.index(key[0])),
                linestyle=("-", "--", ":", "-.")[settings.index(key[1:]) % 4])
    ax.axhline(rows[0]["chance"], color="grey", linestyle="--", linewidth=0.8, label="chance")  # one vocabulary
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({r["pairs"] for r in rows}), [str(n) for n in sorted({r["pairs"] for r in rows})])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("key–value pairs in the sequence")
    ax.set_ylabel("MQAR query accuracy")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_json(rows: list[dict], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--designs", default="softmax,sd-0.99,mamba2")
    parser.add_argument("--granularity", default="vector", help="for designs named without one")
    parser.add_argument("--pairs", default="16,32,64")
    parser.add_argument("--seq-lens", default="256", help="comma-separated")
    parser.add_argument("--lrs", default="1e-3,3e-3")
    parser.add_argument("--steps", default="2000", help="comma-separated")
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=int, default=None, help="probe model width (default: the preset's)")
    parser.add_argument("--layers", type=int, default=None, help="probe model depth (default: the preset's)")
    parser.add_argument("--size", default="small")
    parser.add_argument("--compile-mode", default=None,
                        help="torch.compile mode of each probe on CUDA (e.g. reduce-overhead; default eager)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--json", type=Path, help="the points so far, rewritten after each")
    parser.add_argument("--plot", type=Path, help="accuracy against the number of pairs, drawn at the end")
    args = parser.parse_args()
    points = [dict(design=d, pairs=int(n), seq_len=int(t), lr=float(lr), steps=int(s), vocab=args.vocab,
                   batch=args.batch, width=args.width, layers=args.layers, size=args.size,
                   granularity=args.granularity, compile_mode=args.compile_mode, seed=args.seed)
              for d, n, t, lr, s in itertools.product(args.designs.split(","), args.pairs.split(","),
                                                      args.seq_lens.split(","), args.lrs.split(","),
                                                      args.steps.split(","))]
    print("| design | pairs | T | lr | steps | accuracy | chance | final loss | seconds |", flush=True)
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    rows = []

    def keep(point: dict, result: dict) -> None:
        r = {**point, **{k: result[k] for k in ("accuracy", "chance", "final_loss", "seconds")}}
        rows.append(r)
        print(f"| {r['design']} | {r['pairs']} | {r['seq_len']} | {r['lr']:g} | {r['steps']} | {r['accuracy']:.3f} "
              f"| {r['chance']:.4f} | {r['final_loss']:.3f} | {r['seconds']:.0f} |", flush=True)
        if args.json:
            write_json(rows, args.json)

    jobs = {job(p): p for p in points}
    run_jobs(list(jobs), args.workers, lambda j, result: keep(jobs[j], result))
    if args.plot and rows:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
