"""GPU benchmark of the decay linear-attention operator: ours (Triton) vs flash-linear-attention
vs the PyTorch chunked backend, forward and forward+backward, plus the decode step.

    python benchmarks/bench_ops_gpu.py [--variants] [--backends ours,fla,chunk] [--shapes S1,S2]
                                       [--decays vector,scalar] [--json PATH]

One run measures its own ceilings (device copy bandwidth, bf16 matrix rate), then times every
case with CUDA events (median after warm-up) on fresh random inputs. Columns: median ms, ratio
to fla (fla time / ours: > 1 means faster than fla), TFLOP/s on the chunked algorithm's matrix
work (C = 64: 2C(K+V) + 4KV FLOP per token and head forward, 3× that forward+backward), and the
memory floor (bytes that must move ÷ measured copy bandwidth) as a fraction of the time.
``--variants`` also times other kernel configurations of ours (for choosing the rules).
fla is optional: install it (e.g. from carried wheels) to get its columns. Its first call of each
shape autotunes for a minute or more (not timed, but it counts against a device allowance): give a
full run at least 6 minutes. Every timing is printed as soon as it is measured (``# S1 vector fwd
ours: … ms``) and ``--json`` is rewritten after each case, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F

SHAPES = {"S1 (B16,T4096,H16,K=V=128)": (16, 4096, 16, 128, 128),
          "S2 (B32,T2048,H12,K=V=64)": (32, 2048, 12, 64, 64)}
DECODE_SHAPE = (64, 16, 128, 128)


def timed(fn, reps=20, warmup=3):
    """Median milliseconds of fn() over reps CUDA-event timings after warm-up."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def ceilings():
    """Device copy bandwidth (bytes read + written per second) and bf16 matmul FLOP/s."""
    src = torch.randn(2**29, device="cuda")  # 2 GiB
    dst = torch.empty_like(src)
    ms = timed(lambda: dst.copy_(src), reps=10)
    bw = 2 * src.numel() * 4 / (ms * 1e-3)
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    ms = timed(lambda: a @ b, reps=10)
    return bw, 2 * 8192**3 / (ms * 1e-3)


def draw(B, T, H, K, V, scalar, requires_grad=False):
    q = F.silu(torch.randn(B, T, H, K, device="cuda")).bfloat16()
    k = F.silu(torch.randn(B, T, H, K, device="cuda")).bfloat16()
    v = torch.randn(B, T, H, V, device="cuda").bfloat16()
    g = F.logsigmoid(torch.randn((B, T, H) if scalar else (B, T, H, K), device="cuda") + 3.0) / 4
    xs = [q, k, v, g]
    if requires_grad:
        xs = [x.requires_grad_() for x in xs]
    return xs, torch.randn_like(v)


def backends():
    from decaylab.ops.chunk import chunk_decay_linear_attention
    from decaylab.ops.triton import triton_decay_linear_attention

    out = {"ours": triton_decay_linear_attention, "chunk": chunk_decay_linear_attention}
    try:
        import fla  # noqa: F401

        from decaylab.ops.fla_adapter import fla_decay_linear_attention

        out["fla"] = fla_decay_linear_attention
    except ImportError:
        pass
    return out


def bytes_moved(B, T, H, K, V, scalar, backward):
    es, n = 2, B * T * H
    g_bytes = n * (1 if scalar else K) * 4
    fwd = n * (2 * K + 2 * V) * es + g_bytes  # read q, k, v, g; write o
    bwd = n * (2 * K + 2 * V) * es + g_bytes + n * (2 * K + V) * es + g_bytes  # read q,k,v,do,g; write dq,dk,dv,dg
    return fwd + (bwd if backward else 0)


def flops(B, T, H, K, V, backward, C=64):
    per = 2 * C * (K + V) + 4 * K * V
    return B * T * H * per * (3 if backward else 1)


def time_case(fn, shape, scalar, backward, scale):
    B, T, H, K, V = shape
    xs, do = draw(B, T, H, K, V, scalar, requires_grad=backward)
    if backward:
        def step():
            for x in xs:
                x.grad = None
            o, _ = fn(*xs, scale=scale)
            o.backward(do)
    else:
        def step():
            with torch.no_grad():
                fn(*xs, scale=scale)
    torch.cuda.synchronize()
    first = timed(step, reps=1, warmup=1)
    reps = int(max(5, min(20, 3000 / max(first, 1e-3))))
    return timed(step, reps=reps, warmup=2)


def compile_time_probe():
    """Seconds of the first forward+backward call (vector and scalar, S1's shape class) in a fresh
    process with an empty Triton cache: the cost of compiling our kernels."""
    code = (
        "import time, torch\n"
        "from decaylab.ops.triton import triton_decay_linear_attention as f\n"
        "for scalar in (False, True):\n"
        "    x = [torch.randn(1, 256, 2, 128, device='cuda', dtype=torch.bfloat16, requires_grad=True)\n"
        "         for _ in range(3)]\n"
        "    g = (-torch.rand((1, 256, 2) if scalar else (1, 256, 2, 128), device='cuda')).requires_grad_()\n"
        "    t = time.time(); o, _ = f(*x, g); o.sum().backward(); torch.cuda.synchronize()\n"
        "    print('scalar' if scalar else 'vector', round(time.time() - t, 1))\n"
    )
    env = dict(os.environ, TRITON_CACHE_DIR=tempfile.mkdtemp())
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    return res.stdout.strip().replace("\n", ", ") or res.stderr[-500:]


def _variant_cases():
    """Candidates timed by --variants: forward configurations with and without keeping the chunk
    states, and backward configurations (see decaylab/ops/triton/config.py)."""
    from decaylab.ops.triton.config import BackwardConfig, ForwardConfig, Tiles

    forward = [ForwardConfig(64, 128, 8), ForwardConfig(64, 128, 8, 2), ForwardConfig(64, 64, 4),
               ForwardConfig(64, 64, 4, 2)]
    backward = [BackwardConfig(64, Tiles(64, 64, 4, 2), Tiles(64, 128, 4, 2), Tiles(64, 64, 4, 2)),
                BackwardConfig(64, Tiles(64, 64), Tiles(64, 128), Tiles(64, 64)),
                BackwardConfig(64, Tiles(64, 64, 4, 2), Tiles(128, 64), Tiles(64, 64)),
                BackwardConfig(64, Tiles(64, 64, 4, 2), Tiles(128, 64, 4, 2), Tiles(64, 128, 4, 2)),
                BackwardConfig(64, Tiles(64, 64, 8, 2), Tiles(64, 128, 8, 2), Tiles(64, 64, 8, 2))]
    for label in SHAPES:
        for scalar in (False, True):
            for cfg in forward:
                for store in (False, True):
                    yield label, scalar, "fwd (states kept)" if store else "fwd", cfg
            for cfg in backward:
                yield label, scalar, "bwd", cfg


def _run_variant(shape, scalar, pass_, cfg, tiny):
    """One call of our kernels with this configuration. The backward takes the chunk states the
    default forward keeps (it recomputes them when its chunk differs). tiny=True compiles at a
    small shape with the same specialization (T, B·T·H multiples of 16) to fill the Triton cache."""
    from decaylab.ops.triton.chunk_bwd import chunk_backward
    from decaylab.ops.triton.chunk_fwd import chunk_forward

    B, T, H, K, V = (1, 64, 1, shape[3], shape[4]) if tiny else shape
    (q, k, v, g), do = draw(B, T, H, K, V, scalar)
    if pass_.startswith("fwd"):
        store = pass_ != "fwd"
        return lambda: chunk_forward(q, k, v, g, 1.0, None, False, None, cfg, store_states=store)
    _, _, states = chunk_forward(q, k, v, g, 1.0, None, False, None, store_states=True)
    return lambda: chunk_backward(q, k, v, g, do.bfloat16(), 1.0, None, None, False, None, cfg, states=states)


def _compile_variant(case):
    label, scalar, pass_, cfg = case
    try:
        _run_variant(SHAPES[label], scalar, pass_, cfg, tiny=True)()
        torch.cuda.synchronize()
        return "ok"
    except Exception as e:  # a configuration that does not fit is a finding, not a crash
        return f"fail: {type(e).__name__}"


def kernel_split(fn, reps=5):
    """Device milliseconds per call of fn() for each of our kernels (torch.profiler), as
    'name ms' pairs ordered by launch."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    split = {}
    for e in prof.events():
        if e.device_type.name == "CUDA":
            name = e.name.removeprefix("chunk_").removesuffix("_kernel") if e.name.startswith("chunk_") else "torch"
            split[name] = split.get(name, 0.0) + e.time_range.elapsed_us() / 1e3 / reps
    return " ".join(f"{k} {v:.3f}" for k, v in split.items())


def variants():
    """Time other configurations of our kernels (compiled first in parallel worker processes),
    with each kernel's share."""
    import concurrent.futures
    import multiprocessing

    cases = list(_variant_cases())
    with concurrent.futures.ProcessPoolExecutor(14, mp_context=multiprocessing.get_context("spawn")) as pool:
        status = list(pool.map(_compile_variant, cases))
    rows = []
    for case, st in zip(cases, status):
        label, scalar, pass_, cfg = case
        ms, split = st, ""
        if st == "ok":
            try:
                run = _run_variant(SHAPES[label], scalar, pass_, cfg, tiny=False)
                ms = timed(run, reps=10)
                split = kernel_split(run)
            except Exception as e:
                ms = f"fail: {type(e).__name__}"
        rows.append((label.split()[0], "scalar" if scalar else "vector", pass_, cfg, ms, split))
        torch.cuda.empty_cache()
    return rows


def _decode_runs(scalar):
    """Callables for one decode step by each backend, on fresh inputs."""
    from decaylab.ops.naive import recurrent_step
    from decaylab.ops.triton import triton_decode_step

    N, H, K, V = DECODE_SHAPE
    q, k = (torch.randn(N, H, K, device="cuda").bfloat16() for _ in range(2))
    v = torch.randn(N, H, V, device="cuda").bfloat16()
    g = -torch.rand((N, H) if scalar else (N, H, K), device="cuda") * 0.1
    state = torch.randn(N, H, K, V, device="cuda")
    runs = {"ours": lambda: triton_decode_step(q, k, v, g, state, 1.0),
            "torch": lambda: recurrent_step(q, k, v, g, state, 1.0)}
    try:
        from fla.ops.gla import fused_recurrent_gla
        from fla.ops.simple_gla import fused_recurrent_simple_gla
    except ImportError:
        return runs
    if scalar:
        runs["fla"] = lambda: fused_recurrent_simple_gla(q[:, None], k[:, None], v[:, None], g=g[:, None], scale=1.0,
                                                         initial_state=state, output_final_state=True)
    else:
        runs["fla"] = lambda: fused_recurrent_gla(q[:, None], k[:, None], v[:, None], gk=g[:, None], scale=1.0,
                                                  initial_state=state, output_final_state=True)
    return runs


def decode_rows(bw):
    N, H, K, V = DECODE_SHAPE
    floor_ms = (2 * N * H * K * V * 4) / bw * 1e3
    rows = []
    for scalar in (False, True):
        for name, run in _decode_runs(scalar).items():
            queued = timed(lambda run=run: [run() for _ in range(50)], reps=10, warmup=1) / 50
            rows.append(("scalar" if scalar else "vector", name, timed(run, reps=100, warmup=10), floor_ms, queued))
    return rows


def print_rows(r):
    fla_ms = r["times"].get("fla")
    for name, ms in r["times"].items():
        if isinstance(ms, str):
            print(f"| {r['shape']} | {r['kind']} | {r['pass_']} | {name} | {ms} | | | |")
            continue
        ratio = f"{fla_ms / ms:.2f}×" if isinstance(fla_ms, float) else "–"
        print(f"| {r['shape']} | {r['kind']} | {r['pass_']} | {name} | {ms:.3f} | {ratio} | "
              f"{r['flop'] / ms / 1e9:.0f} | {r['floor_ms'] / ms:.2f} (floor {r['floor_ms']:.3f} ms) |")


def kernel_resources():
    """Registers, spills and shared memory of every compiled variant of our chunk kernels."""
    from decaylab.ops.triton import chunk_bwd, chunk_fwd, state

    rows = []
    for kern in (chunk_fwd.chunk_fwd_kernel, state.chunk_state_kernel, chunk_bwd.chunk_bwd_dv_kernel,
                 chunk_bwd.chunk_bwd_dqk_kernel):
        for entry in getattr(kern, "device_caches", {}).values():
            cache = entry[0] if isinstance(entry, tuple) else entry
            for compiled in (cache.values() if isinstance(cache, dict) else []):
                md = compiled.metadata
                rows.append((kern.fn.__name__, md.num_warps, getattr(compiled, "n_regs", "?"),
                             getattr(compiled, "n_spills", "?"), md.shared))
    return rows


def versions():
    out = {"torch": torch.__version__}
    for dist in ("triton", "fla-core"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", action="store_true")
    ap.add_argument("--backends", default="ours,fla,chunk",
                    help="comma-separated, timed in this order (chunk, the PyTorch backend, is slow at S1)")
    ap.add_argument("--shapes", default=",".join(label.split()[0] for label in SHAPES), help="e.g. S1 or S1,S2")
    ap.add_argument("--decays", default="vector,scalar", help="vector, scalar or both (fla's first call of each "
                    "autotunes for minutes: one decay kind fits a shorter device allowance)")
    ap.add_argument("--json", help="also write the results as JSON here")
    args = ap.parse_args()
    unknown = set(args.decays.split(",")) - {"vector", "scalar"}
    if unknown:
        ap.error(f"--decays takes vector and/or scalar, not {', '.join(sorted(unknown))}")

    torch.manual_seed(0)
    print(f"# {torch.cuda.get_device_name()} · {versions()} · {datetime.date.today()}")
    print(f"# first call (compile, empty cache): {compile_time_probe()} s")
    bw, mm = ceilings()
    print(f"# ceilings: copy {bw / 1e12:.2f} TB/s, bf16 matmul {mm / 1e12:.0f} TFLOP/s")
    var = []
    if args.variants:
        print("\n| variant | decay | pass | configuration | ms | per kernel, ms |")
        print("|---|---|---|---|---|---|")
        var = variants()
        for label, kind, p, cfg, ms, split in var:
            print(f"| {label} | {kind} | {p} | {cfg} | {ms if isinstance(ms, str) else f'{ms:.3f}'} | {split} |")
    # One step between two events includes the host's launch time (the GPU idles meanwhile);
    # 50 queued steps per event pair show the device time whenever the GPU is the slower side.
    print("\n| decode (N64,H16,K=V=128) | backend | µs | floor/time | µs/step, 50 queued |")
    print("|---|---|---|---|---|")
    dec = decode_rows(bw)
    for kind, name, ms, floor, queued in dec:
        print(f"| {kind} | {name} | {ms * 1e3:.1f} | {floor / ms:.2f} (floor {floor * 1e3:.1f} µs) | {queued * 1e3:.1f} |")

    available = backends()
    missing = [b for b in args.backends.split(",") if b not in available]
    if missing:
        print(f"# not available, skipped: {', '.join(missing)}")
    impls = {b: available[b] for b in args.backends.split(",") if b in available}
    shapes = {label: shape for label, shape in SHAPES.items() if label.split()[0] in args.shapes.split(",")}
    results = []

    def save():
        if args.json:
            with open(args.json + ".tmp", "w") as f:
                json.dump(dict(results=results, decode=dec, copy_bw=bw, matmul=mm,
                               variants=[(a, b, p, dataclasses.asdict(c), d, e) for a, b, p, c, d, e in var]), f, indent=1, default=str)
            os.replace(args.json + ".tmp", args.json)

    save()
    decays = [kind == "scalar" for kind in args.decays.split(",")]
    for label, shape in shapes.items():
        K = shape[3]
        for scalar in decays:
            for backward in (False, True):
                r = dict(shape=label, kind="scalar" if scalar else "vector", pass_="fwd+bwd" if backward else "fwd",
                         times={}, floor_ms=bytes_moved(*shape, scalar, backward) / bw * 1e3,
                         flop=flops(*shape, backward))
                results.append(r)
                for name, fn in impls.items():
                    try:
                        r["times"][name] = time_case(fn, shape, scalar, backward, scale=K**-0.5)
                    except Exception as e:  # record and go on: one failing backend must not end the run
                        r["times"][name] = f"{type(e).__name__}: {str(e).splitlines()[0][:60]}"
                    torch.cuda.empty_cache()
                    ms = r["times"][name]
                    print(f"# {label.split()[0]} {r['kind']} {r['pass_']} {name}: "
                          f"{ms if isinstance(ms, str) else f'{ms:.3f} ms'}", flush=True)
                    save()
    print("\n| shape | decay | pass | backend | ms | vs fla | TFLOP/s | floor/time |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print_rows(r)
    print("\n| kernel | warps | registers/thread | spilled bytes | shared bytes |")
    print("|---|---|---|---|---|")
    try:
        for row in kernel_resources():
            print("| " + " | ".join(map(str, row)) + " |")
    except Exception as e:  # Triton's kernel cache is internal and changes between versions
        print(f"(kernel resources unavailable: {type(e).__name__})")


if __name__ == "__main__":
    main()
