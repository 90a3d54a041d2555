"""``decaylab recall SWEEP_DIR``: MQAR accuracy against the number of key–value pairs for the designs of a
sweep's families, written to ``SWEEP_DIR/recall.json`` (see :mod:`decaylab.sweep.recall`) and drawn by
``decaylab report``. Re-running the same command trains only the points still missing.

The defaults are the task and training at which the softmax reference was measured to learn (1.000 on 2–16
pairs in 64 tokens, task vocabulary 64, on an H200, 2026-12-03); with a 256-token vocabulary it stayed on the
1/N plateau at every length and learning rate tried (benchmarks/RESULTS.md, 2026-12-06)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from decaylab.cli_args import integer_list, positive_float, positive_int
from decaylab.evaluate.recall import RecallProbe
from decaylab.model import PRESETS
from decaylab.sweep.recall import RECALL_FILE, measure_recall
from decaylab.sweep.report import write_report
from decaylab.sweep.rundir import load_sweep, write_json_atomic
from decaylab.sweep.runner import environment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``recall`` options to ``parser``."""
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a directory made by `decaylab sweep --out`")
    parser.add_argument("--families", default="a,c", help="the families whose designs are probed")
    parser.add_argument("--pairs", type=integer_list(1), default=[4, 8, 16], metavar="N,...",
                        help="numbers of key–value pairs, one probe each")
    parser.add_argument("--seeds", type=integer_list(0), default=[0], metavar="S,...", help="probe seeds")
    parser.add_argument("--seq-len", type=positive_int, default=64, help="MQAR sequence length")
    parser.add_argument("--vocab", type=positive_int, default=64, help="MQAR task vocabulary")
    parser.add_argument("--steps", type=positive_int, default=3000, help="training steps of each probe")
    parser.add_argument("--batch", type=positive_int, default=256, help="sequences per step")
    parser.add_argument("--lr", type=positive_float, default=3e-4, help="peak learning rate (warmup-cosine)")
    parser.add_argument("--size", default="tiny", choices=sorted(PRESETS), help="model preset of the probe")
    parser.add_argument("--compile-mode", default=None,
                        help="torch.compile mode of each probe on CUDA (default: eager, which many probes "
                             "sharing one GPU run faster than one compiled at a time)")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="probes in parallel (default: 16 on a GPU, the CPU cores otherwise)")
    parser.add_argument("--time-limit", type=positive_float, default=None, metavar="MINUTES",
                        help="start no probe that would not end within this many minutes, judged by the "
                             "longest finished so far; the rest waits for the next invocation")


def main(args: argparse.Namespace) -> int:
    """Measure the missing points and rewrite the sweep's report: 0, 2 for bad input, 130 after Ctrl-C."""
    import torch

    start, started = time.monotonic(), time.time()
    root = Path(args.sweep_dir)
    _, families, _ = load_sweep(root)
    probe = RecallProbe(seq_len=args.seq_len, vocab_size=args.vocab, steps=args.steps, lr=args.lr,
                        batch_size=args.batch, size=args.size, compile_mode=args.compile_mode)
    workers = args.workers or (16 if torch.cuda.is_available() else len(os.sched_getaffinity(0)))
    deadline = None if args.time_limit is None else start + 60 * args.time_limit
    env = environment()
    try:
        recall, trained, left = measure_recall(root, families, args.families.split(","), probe, args.pairs,
                                               args.seeds, workers, deadline, log=lambda line: print(line, flush=True))
    except KeyboardInterrupt:  # every finished point is in the record already
        print(f"\ninterrupted: run the same command to continue ({root / RECALL_FILE})", file=sys.stderr)
        return 130
    recall.setdefault("invocations", []).append(
        {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
         "wall_s": round(time.monotonic() - start, 1), "workers": workers, "trained": trained,
         "not_started": left, **env})
    write_json_atomic(root / RECALL_FILE, recall)
    if left:
        print(f"time limit: {left} probes not started; run the same command to continue")
    print(f"recall: {root / RECALL_FILE} ({len(recall['points'])} points)")
    print(f"report: {write_report(root)}")
    return 0
