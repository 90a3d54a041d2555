"""``decaylab sweep``: train and evaluate an experiment family (or all four) of the paper, then report.

Re-running the same command resumes: finished runs are skipped, interrupted ones continue from
their latest checkpoint. The presets and scales are described in :mod:`decaylab.sweep.presets`;
``--size`` is a deprecated alias of ``--scale``.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
from pathlib import Path

from decaylab.cli_args import positive_float, positive_int
from decaylab.sweep import presets
from decaylab.sweep.report import extra_seeds_for_close_calls, write_report
from decaylab.sweep.rundir import (
    LOG_FILE,
    SWEEP_FILE,
    SweepError,
    expand,
    init_sweep,
    merge_extra_seeds,
    read_json,
    record_invocation,
    run_dir,
    run_state,
)
from decaylab.sweep.runner import environment, prepare_data, run_sweep, runs_per_gpu, worker_slots

DESCRIPTION = """\
Run the paper's experiment families: (a) decay parameterization, (b) parameter sharing,
(c) scalar vs vector decay, (d) positional encoding, each with a softmax Transformer reference.
Designs shared by several families train once. Re-run the same command to resume: finished
runs are skipped, interrupted ones continue from their last checkpoint. At the end the report
(Markdown, CSV, PNG) is written to OUT/report/ and its path printed.

presets:
""" + "\n".join(f"  {p.name:<6} {p.description} (scale {p.scale}, seeds {','.join(map(str, p.seeds))})"
                for p in presets.PRESETS.values())


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers such as 0,1,2; got {text!r}")
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    return seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``sweep`` options to ``parser``."""
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--preset", default="quick", choices=sorted(presets.PRESETS),
                        help="designs, scale and seeds (default: quick)")
    parser.add_argument("--families", default=None, metavar="a,b,c,d",
                        help="only these families (default: all four)")
    parser.add_argument("--scale", default=None, choices=list(presets.SCALES),
                        help="model size and training budget (default: the preset's)")
    parser.add_argument("--size", default=None, choices=list(presets.SCALES), help="deprecated alias of --scale")
    parser.add_argument("--seeds", type=_seeds, default=None, metavar="0,1,...", help="default: the preset's")
    parser.add_argument("--steps", type=positive_int, default=None, help="training steps per run (default: the scale's)")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="runs in parallel (default: one per GPU, else up to 4 CPU processes sharing the cores; "
                             "more workers than GPUs share the GPUs)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="where the prepared dataset is cached (default: the scale's, under runs/data/)")
    parser.add_argument("--only", default=None, metavar="GLOB",
                        help="run only the run ids matching this pattern, e.g. 'gla-*' (the report covers all)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="sweep directory (default: runs/sweeps/<preset>-<scale>, e.g. runs/sweeps/quick-quick)")
    parser.add_argument("--time-limit", type=positive_float, default=None, metavar="MINUTES",
                        help="start no run that would not end within this many minutes of the start, judged by "
                             "the longest run of its kind finished so far (a design's first run in this "
                             "invocation or a later one, with recall probes or without; the first ones always "
                             "start); the rest waits for the next invocation")
    parser.add_argument("--close-calls", action="store_true",
                        help="first add the seeds the verdict rule asks for on the runs finished so far (5 for a "
                             "design in a close call); later invocations run them too")
    parser.add_argument("--list", action="store_true", help="list the runs and their state, then exit")


def _command_line(args: argparse.Namespace, root: Path) -> str:
    """The ``decaylab sweep`` command that repeats this invocation."""
    options = {"--preset": args.preset, "--families": args.families, "--scale": args.scale,
               "--seeds": ",".join(map(str, args.seeds)) if args.seeds else None, "--steps": args.steps,
               "--workers": args.workers, "--data-dir": args.data_dir, "--only": args.only,
               "--time-limit": args.time_limit, "--close-calls": "" if args.close_calls else None, "--out": root}
    return " ".join(["decaylab sweep"] + [f"{k} {v}".rstrip() for k, v in options.items() if v is not None])


def main(args: argparse.Namespace) -> int:
    """Run ``decaylab sweep``: 0 when no run failed (runs deferred by ``--time-limit`` wait for the
    next invocation), 1 when some failed, 2 for bad options, 130 after Ctrl-C."""
    start, started = time.perf_counter(), time.time()
    if args.size is not None:
        if args.scale is not None and args.scale != args.size:
            print(f"decaylab sweep: error: --size {args.size} (a deprecated alias of --scale) contradicts "
                  f"--scale {args.scale}; give --scale only", file=sys.stderr)
            return 2
        print(f"decaylab sweep: warning: --size is deprecated; use --scale {args.size}", file=sys.stderr)
        args.scale = args.size
    try:
        families, scale, seeds = presets.resolve(
            args.preset, args.families.split(",") if args.families else None, args.scale, args.seeds)
        if args.steps is not None:
            scale = presets.with_train(scale, steps=args.steps, warmup_steps=args.steps // 10,
                                       ckpt_every=min(scale.train["ckpt_every"], args.steps))
        expand(families, seeds)  # names every invalid design
    except ValueError as err:
        print(f"decaylab sweep: error: {err}", file=sys.stderr)
        return 2
    root = Path(args.out or f"runs/sweeps/{args.preset}-{scale.name}")
    try:
        record = read_json(root / SWEEP_FILE)
        extra = (record or {}).get("extra_seeds", {})
        added = extra_seeds_for_close_calls(root, seeds, extra) if args.close_calls and record is not None else {}
    except (SweepError, ValueError) as err:
        print(f"decaylab sweep: error: {root / SWEEP_FILE} cannot be read ({err}); use another --out", file=sys.stderr)
        return 2
    extra = merge_extra_seeds(extra, added)
    if args.close_calls:
        print(f"close calls: {', '.join(f'{k} seeds {m}' for k, m in added.items()) or 'none'}", flush=True)
    runs = expand(families, seeds, extra)
    selected = [r for r in runs if args.only is None or fnmatch.fnmatch(r.run_id, args.only)]
    if args.list:
        for run in selected:
            print(f"{run.run_id:<45} {run_state(run_dir(root, run.run_id)):<9} families {','.join(run.families)}")
        return 0
    data = dict(scale.data, **({"dir": args.data_dir} if args.data_dir else {}))
    print(f"preparing the dataset ({data['source']}, vocabulary {data['vocab_size']}) in {data['dir']} ...", flush=True)
    data = prepare_data(data)
    print(f"dataset ready: unigram perplexity {data['unigram_ppl']:.1f}", flush=True)
    try:
        init_sweep(root, args.preset, families, scale, seeds, data, extra)
    except SweepError as err:
        print(f"decaylab sweep: error: {err}", file=sys.stderr)
        return 2
    env = environment()  # of the code that runs, before anything can change it
    try:
        deadline = None if args.time_limit is None else time.monotonic() + 60 * args.time_limit - (
            time.perf_counter() - start)  # the limit counts from the start of the command
        outcomes = run_sweep(root, selected, scale, data, workers=args.workers,
                             log=lambda line: print(line, flush=True), deadline=deadline)
    except KeyboardInterrupt:  # a second Ctrl-C while the runs in flight were stopping
        print(f"\ninterrupted: run the same command to resume ({root})", file=sys.stderr)
        return 130
    counts = {s: sum(o.status == s for o in outcomes) for s in ("skipped", "done", "failed", "interrupted", "deferred")}
    seconds = time.perf_counter() - start
    record_invocation(root, {"command": _command_line(args, root), "wall_s": round(seconds, 1), **counts,
                             "runs_done": [o.run_id for o in outcomes if o.status == "done"],
                             "runs_per_gpu": runs_per_gpu(worker_slots(args.workers)),
                             "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
                             **env})
    if counts["interrupted"]:
        print(f"\ninterrupted: {counts['done']} runs finished in {seconds:.0f} s; run the same command to resume "
              f"({root})", file=sys.stderr)
        return 130
    report = write_report(root)
    failed = [o for o in outcomes if o.status == "failed"]
    if counts["deferred"]:
        print(f"time limit: {counts['deferred']} runs not started; run the same command to continue")
    print(f"{len(outcomes)} runs ({counts['skipped']} skipped, {counts['done']} run, {counts['failed']} failed) "
          f"in {seconds:.0f} s")
    for o in failed:
        print(f"  failed: {o.run_id}: {o.message} (log: {run_dir(root, o.run_id) / LOG_FILE})")
    print(f"report: {report}")
    return 1 if failed else 0
