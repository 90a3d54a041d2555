"""Execute a sweep: train and evaluate its runs in parallel worker processes, skipping finished ones.

The sweep directory and its files are described in :mod:`decaylab.sweep.rundir`.

A run is executed by :func:`work`: it trains (``decaylab.train.train``, which resumes from the
latest checkpoint and returns at once when ``final.json`` exists), then evaluates what
``eval.json`` does not hold yet. Re-running it is therefore always safe, and re-running the sweep
resumes an interrupted run where its last checkpoint left it. A run whose ``final.json`` and
complete ``eval.json`` exist is skipped. :func:`work` holds an exclusive lock on its run
directory, so a run left training by a killed sweep is waited for rather than trained twice.

Parallelism: ``workers`` long-lived worker processes (``python -m decaylab.sweep.runner``), each
taking one run at a time. On a host with GPUs each worker sees one GPU (``CUDA_VISIBLE_DEVICES``;
one worker per GPU by default, more share them round-robin); on a CPU each gets
``cpus // workers`` threads. A failed run is recorded in its ``failed.json``
and the others go on; a worker that dies is replaced.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from decaylab.decay import DecaySpec
from decaylab.lock import LOCK_FILE, exclusive_lock
from decaylab.sweep.evaluation import evaluate_run, trains_probes
from decaylab.sweep.presets import Scale
from decaylab.sweep.rundir import (
    EVAL_FILE,
    FAILED_FILE,
    LOG_FILE,
    RUN_FILE,
    Run,
    read_json,
    run_dir,
    run_spec,
    run_state,
    write_json_atomic,
)
from decaylab.train.config import build_config
from decaylab.train.loop import train
from decaylab.train.rundir import FINAL_FILE

# --------------------------------------------------------------------------- the machine and the dataset


def environment() -> dict:
    """Versions and hardware of this machine, recorded with every sweep invocation."""
    import platform

    import torch

    import decaylab

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    commit = source_commit(Path(decaylab.__file__).parent)
    return {"host": platform.node(), "python": platform.python_version(), "torch": torch.__version__,
            "decaylab": getattr(decaylab, "__version__", "unknown"), **({"commit": commit} if commit else {}),
            "hardware": f"{len(gpus)} × {gpus[0]}" if gpus else f"CPU, {len(os.sched_getaffinity(0))} cores"}


def source_commit(package: Path) -> str | None:
    """The git commit of the checkout ``package`` lives in (short hash, ``+changes`` when its files
    differ from it), or None outside a git checkout (an installed release)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    head = git("rev-parse", "--short", "HEAD")
    if head is None:
        return None
    return head + ("+changes" if git("status", "--porcelain", "--", ".") else "")


def prepare_data(data: dict, progress: bool = True) -> dict:
    """Prepare (or find, cached) the sweep's dataset; return the data spec with an absolute ``dir``,
    the dataset's unigram perplexity and the sha256 of its files (``checksums``, from its manifest)."""
    from decaylab.data import TokenDataset, prepare_dataset

    spec = {**data, "dir": str(Path(data["dir"]).resolve())}
    path = Path(spec["dir"])
    if spec.get("source") is not None:
        path = prepare_dataset(spec["source"], path, vocab_size=spec["vocab_size"], seed=spec["seed"],
                               progress=progress)
    val = TokenDataset.open(path, "val")
    return {**spec, "dir": str(path), "unigram_ppl": val.unigram_perplexity(),
            "checksums": {name: entry["sha256"] for name, entry in sorted(val.manifest["files"].items())}}


# --------------------------------------------------------------------------- execution


@dataclass
class Outcome:
    """What the runner did with one run: ``skipped``, ``done``, ``failed``, ``interrupted`` or
    ``deferred`` (not started: it would not have ended before the time limit)."""

    run_id: str
    status: str
    seconds: float = 0.0
    message: str = ""


def worker_slots(workers: int | None) -> list[dict[str, str]]:
    """One environment per parallel worker. On a GPU host: one worker per GPU by default; with more
    workers than GPUs they share the GPUs round-robin (small models leave a large GPU mostly idle).
    On a CPU: up to 4 workers by default, sharing the cores evenly."""
    import torch

    gpus = torch.cuda.device_count()
    if gpus:
        return [{"CUDA_VISIBLE_DEVICES": str(i % gpus)} for i in range(max(1, workers or gpus))]
    cpus = len(os.sched_getaffinity(0))
    n = max(1, workers or min(cpus, 4))
    threads = str(max(1, cpus // n))
    return [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "CUDA_VISIBLE_DEVICES": ""} for _ in range(n)]


def runs_per_gpu(envs: list[dict[str, str]]) -> int:
    """How many of the workers with environments ``envs`` share one GPU at most (0: none has a GPU).
    Runs trained on a shared GPU measure the sharing, not the design: the report leaves their
    throughput out of the design tables."""
    gpus = [env["CUDA_VISIBLE_DEVICES"] for env in envs if env.get("CUDA_VISIBLE_DEVICES")]
    return max((gpus.count(g) for g in gpus), default=0)


class Worker:
    """One long-lived worker process (``python -m decaylab.sweep.runner`` with ``env``) that runs
    the run directories it is sent one at a time; restarted if it dies. Importing torch and
    transformers takes seconds, so a process per run would cost more than a quick run trains."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.proc: subprocess.Popen | None = None

    def run(self, run_dir: Path) -> int:
        """Run one run directory; the exit status of its work (0 = success, negative = the worker died)."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, "-m", "decaylab.sweep.runner"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, env={**os.environ, **self.env}, text=True)
        try:
            self.proc.stdin.write(f"{run_dir}\n")
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline()
        except BrokenPipeError:
            answer = ""
        if answer.strip():
            return int(answer)
        rc = self.close()
        return rc if rc < 0 else -abs(rc or 1)

    def close(self) -> int:
        """End the worker process (closing its input ends its loop) and its pipes; its exit status."""
        if self.proc is None:
            return 0
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except BrokenPipeError:
                pass
        rc = self.proc.wait()
        self.proc = None
        return rc


def run_sweep(root: Path, runs: list[Run], scale: Scale, data: dict, workers: int | None = None,
              log: Callable[[str], None] = print, deadline: float | None = None) -> list[Outcome]:
    """Train and evaluate every run of ``runs`` under ``root/runs`` that is not complete.

    ``data`` is the prepared data spec (see :func:`prepare_data`). Returns one outcome per run,
    in the order of ``runs``; a failed run does not stop the others. With a ``deadline``
    (a :func:`time.monotonic` value) a run starts only if it would end in time should it last as
    long as the longest run of its kind finished so far in this call (the first runs always start).
    A kind is (whether the design has finished a run in this call already, whether the run trains
    recall probes): a design's first run also compiles, and the probes cost as much as training
    (2-4x a later seed in all); before a run of some kind has finished, the longest run of any kind
    counts. Of one design's runs those without probes start first (with a recall curve, every
    seed but one): near the deadline a later design's cheap runs still fit where its probed run
    does not, and that one waits for the next invocation. A run cut during its
    evaluation loses it once its directory is carried without checkpoints. The others end
    ``deferred``: not started, left for the next invocation."""
    todo, outcomes, probed = [], {}, {}
    for run in runs:
        path = run_dir(root, run.run_id)
        spec = run_spec(run, scale, data)
        probed[run.run_id] = trains_probes(spec["evaluation"], run.seed)
        old = read_json(path / RUN_FILE)
        if old is not None and old != spec:
            outcomes[run.run_id] = Outcome(run.run_id, "failed", message=(
                f"{path / RUN_FILE} describes another run than this sweep would make; "
                "move the run directory away or use another --out"))
            continue
        if old is not None and run_state(path) == "complete":
            outcomes[run.run_id] = Outcome(run.run_id, "skipped", message="finished earlier")
            continue
        path.mkdir(parents=True, exist_ok=True)
        if old is None:
            write_json_atomic(path / RUN_FILE, spec)
        todo.append((run, path.resolve()))
    design_order = {d: i for i, d in enumerate(dict.fromkeys(run.design for run, _ in todo))}
    todo.sort(key=lambda item: (design_order[item[0].design], probed[item[0].run_id]))  # stable: seeds keep their order
    pool: queue.Queue = queue.Queue()
    envs = worker_slots(workers)[:max(len(todo), 1)]
    for env in envs:
        pool.put(Worker(env))
    skipped = sum(o.status == "skipped" for o in outcomes.values())
    log(f"sweep {root}: {len(runs)} runs, {skipped} finished earlier (skipped), {len(todo)} to run "
        f"on {len(envs)} worker(s)")
    counter = {"done": 0}
    lock = threading.Lock()
    stopping = threading.Event()  # set on Ctrl-C: runs in flight then end "interrupted", not "failed"
    durations: dict[tuple[bool, bool], list[float]] = {}  # of the runs done in this call, by kind
    finished_designs: set[DecaySpec | None] = set()  # warm: a run of the design has finished in this call

    def expected_seconds(kind: tuple[bool, bool]) -> float:
        with lock:
            return max(durations.get(kind) or [s for d in durations.values() for s in d], default=0.0)

    def execute(item: tuple[Run, Path]) -> Outcome:
        worker = pool.get()
        try:
            with lock:
                kind = (item[0].design in finished_designs, probed[item[0].run_id])
            if deadline is not None and time.monotonic() + expected_seconds(kind) > deadline:
                return Outcome(item[0].run_id, "deferred", message="would not end before the time limit")
            outcome = _execute(*item, worker, stopping)
        finally:
            pool.put(worker)
        with lock:
            if outcome.status == "done":
                durations.setdefault(kind, []).append(outcome.seconds)
                finished_designs.add(item[0].design)
            counter["done"] += 1
            log(f"[{counter['done']}/{len(todo)}] {outcome.run_id}: {outcome.status} in {outcome.seconds:.0f} s"
                + (f" ({outcome.message})" if outcome.message else ""))
        return outcome

    try:
        with ThreadPoolExecutor(max_workers=len(envs)) as threads:
            futures = [threads.submit(execute, item) for item in todo]
            try:
                for future in futures:
                    future.result()
            except KeyboardInterrupt:  # the workers got the same Ctrl-C; collect what each run reached
                stopping.set()
                threads.shutdown(cancel_futures=True)
            for (run, _), future in zip(todo, futures):
                outcomes[run.run_id] = Outcome(run.run_id, "interrupted") if future.cancelled() else future.result()
    finally:
        while not pool.empty():
            pool.get().close()
    return [outcomes[run.run_id] for run in runs]


def _execute(run: Run, run_dir: Path, worker: Worker, stopping: threading.Event) -> Outcome:
    """Run one run on ``worker`` and record a failure in ``failed.json`` (unless the sweep is
    ``stopping``: a run ended by Ctrl-C resumes on the next invocation, it did not fail)."""
    start = time.perf_counter()
    with open(run_dir / LOG_FILE, "a") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} worker environment {worker.env}\n")
    rc = worker.run(run_dir)
    seconds = time.perf_counter() - start
    if rc == 0:
        (run_dir / FAILED_FILE).unlink(missing_ok=True)
        final = read_json(run_dir / FINAL_FILE) or {}
        errors = [k for k, v in (read_json(run_dir / EVAL_FILE) or {}).items() if isinstance(v, dict) and "error" in v]
        message = f"val ppl {final['val_ppl']:.1f}" if final.get("val_ppl") is not None else ""
        if errors:
            message += f"; evaluation errors in {', '.join(errors)} (see {EVAL_FILE})"
        return Outcome(run.run_id, "done", seconds, message)
    if rc == -signal.SIGINT or stopping.is_set():
        return Outcome(run.run_id, "interrupted", seconds)
    tail = (run_dir / LOG_FILE).read_text().splitlines()[-20:]
    if rc < 0:
        tail.append(f"the worker process died (exit status {rc})")
    write_json_atomic(run_dir / FAILED_FILE, {"exit_status": rc, "log_tail": tail, "time": time.time()})
    last = next((line for line in reversed(tail) if line.strip()), "")
    return Outcome(run.run_id, "failed", seconds, f"exit status {rc}: {last.strip()[:200]}")


def work(run_dir: Path) -> None:
    """Train the run in ``run_dir`` (or resume it), then evaluate it. A trained run is only evaluated:
    its checkpoints, which training would check its config against, may be gone (a sweep directory
    carried without them)."""
    spec = read_json(run_dir / RUN_FILE)
    with exclusive_lock(run_dir / LOCK_FILE, wait=True):  # a run left running by a killed sweep finishes first
        if run_state(run_dir) != "trained":
            train(build_config({**spec["train"], "run_dir": str(run_dir)}))
        evaluate_run(run_dir, spec)


def serve() -> None:
    """The worker loop: for each run directory read from stdin, :func:`work` on it with its output
    appended to its ``worker.log``, then answer its exit status (0 or 1) on stdout.

    Before a run of another design than the last one, torch.compile's graphs are dropped
    (``torch._dynamo.reset``): its recompile limit (8) counts every model configuration compiled in
    the process, the model's forward as the probes', and past it every later run would train
    eager without a word; seeds of one design in a row keep (and reuse) their graphs.

    ``echo RUN_DIR | python -m decaylab.sweep.runner`` runs a single run by hand."""
    import gc
    import logging
    import resource
    import traceback

    import torch
    import torch._dynamo

    def cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    answers = os.fdopen(os.dup(1), "w")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    startup = cpu_seconds()
    last_design = None
    for line in sys.stdin:
        run_dir = Path(line.strip())
        design = (read_json(run_dir / RUN_FILE) or {}).get("design")
        if design != last_design:
            torch._dynamo.reset()
            last_design = design
        with open(run_dir / LOG_FILE, "a") as out:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            if startup:
                print(f"worker process started ({startup:.1f} CPU seconds of imports)")
                startup = 0.0
            wall, cpu = time.perf_counter(), cpu_seconds()
            try:
                work(run_dir)
                rc = 0
            except Exception:  # noqa: BLE001  (any failure is the run's, recorded in its log)
                traceback.print_exc()
                rc = 1
            print(f"run {'finished' if rc == 0 else 'failed'}: {time.perf_counter() - wall:.1f} s wall, "
                  f"{cpu_seconds() - cpu:.1f} CPU seconds")
            sys.stdout.flush()
            sys.stderr.flush()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        answers.write(f"{rc}\n")
        answers.flush()


if __name__ == "__main__":
    serve()
