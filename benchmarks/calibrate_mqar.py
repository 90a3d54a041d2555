"""Calibrate the MQAR recall probe: query accuracy over a grid of designs × tasks × training settings.

Each grid point trains a fresh model of the ``--size`` preset (the sweep's probe model) on MQAR through
``decaylab.evaluate.recall.train_and_eval_mqar`` (the training loop's optimizer, schedule and step) and
scores held-out sequences. Points run in parallel worker processes (one thread each) sharing the
device, so a grid of small models fills one GPU. The goal (issue 16): settings where the softmax
reference reaches ≥ 0.95 accuracy and the decay designs spread between chance and 1.

Usage: python benchmarks/calibrate_mqar.py --designs softmax,sd-0.99,mamba2 --pairs 16,32,64 \\
           --lrs 1e-3,3e-3 --steps 2000 [--seq-len 256 --vocab 512 --batch 32 --width 256 --layers 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch


def run_point(point: dict) -> dict:
    torch.set_num_threads(1)
    from decaylab.evaluate.recall import RecallProbe, train_and_eval_mqar
    from decaylab.model import make_config

    design = point["design"]
    config = (make_config(point["size"], arch="softmax") if design == "softmax"
              else make_config(point["size"], decay=design, decay_granularity=point["granularity"]))
    probe = RecallProbe(seq_len=point["seq_len"], num_pairs=point["pairs"], vocab_size=point["vocab"],
                        steps=point["steps"], lr=point["lr"], batch_size=point["batch"], hidden_size=point["width"],
                        num_hidden_layers=point["layers"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = train_and_eval_mqar(config, probe, seed=point["seed"], device=device, progress=False)
    return {**point, "accuracy": result["accuracy"], "chance": result["chance"],
            "final_loss": result["final_loss"], "seconds": result["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--designs", default="softmax,sd-0.99,mamba2")
    parser.add_argument("--granularity", default="vector")
    parser.add_argument("--pairs", default="16,32,64")
    parser.add_argument("--lrs", default="1e-3,3e-3")
    parser.add_argument("--steps", default="2000", help="comma-separated")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=int, default=None, help="probe model width (default: the preset's)")
    parser.add_argument("--layers", type=int, default=None, help="probe model depth (default: the preset's)")
    parser.add_argument("--size", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--json", help="also write the points to this file")
    args = parser.parse_args()
    points = [dict(design=d, pairs=int(n), lr=float(lr), steps=int(s), seq_len=args.seq_len, vocab=args.vocab,
                   batch=args.batch, width=args.width, layers=args.layers, size=args.size,
                   granularity=args.granularity, seed=args.seed)
              for d, n, lr, s in itertools.product(args.designs.split(","), args.pairs.split(","),
                                                   args.lrs.split(","), args.steps.split(","))]
    print("| design | pairs | lr | steps | accuracy | chance | final loss | seconds |", flush=True)
    print("|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in as_completed([pool.submit(run_point, p) for p in points]):  # a row as soon as it is done
            r = future.result()
            rows.append(r)
            print(f"| {r['design']} | {r['pairs']} | {r['lr']:g} | {r['steps']} | {r['accuracy']:.3f} | "
                  f"{r['chance']:.4f} | {r['final_loss']:.3f} | {r['seconds']:.0f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
