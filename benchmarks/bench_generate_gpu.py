"""Decoding with generate() on one GPU: decaylab's recurrent cache against the softmax reference's KV cache.

Default: the paper's 160M size, bf16 weights, random weights and prompts, greedy decoding of exactly
256 new tokens after prompts of 8 × 2048 and 4 × 16384 tokens. Per row, each of 3 repeats measures

    prefill   generate(max_new_tokens=1): one forward pass over the prompt (what logits_to_keep=1 keeps small)
    decode    (generate(max_new_tokens=N) − prefill) / (N − 1), in ms per step
    peak      torch.cuda.max_memory_allocated over the N-token generate

and the table gives min / median / max of the repeats (CUDA-synchronized wall clock). It also checks
that the model received one token per decode step (the cache was used), and says so when not.
Targets (issue 13): decaylab's decode time per step independent of the prompt length (within 10%),
≥3× faster per step than the softmax reference at 16k, peak memory below the reference's at 16k.

Usage: python benchmarks/bench_generate_gpu.py [--size 160m] [--shapes 8x2048,4x16384] [--new-tokens 256]
       [--repeats 3] [--archs decay_linear,softmax] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from decaylab.model import build_model, make_config


def timed_generate(model, prompt: torch.Tensor, new_tokens: int) -> tuple[float, int, list[int]]:
    """(seconds, peak bytes, input lengths the model saw) of a greedy generate of exactly ``new_tokens``."""
    widths = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: widths.append(kw["input_ids"].shape[1]), with_kwargs=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                   min_new_tokens=new_tokens, do_sample=False, pad_token_id=0, eos_token_id=None)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    hook.remove()
    return seconds, torch.cuda.max_memory_allocated(), widths


def measure(arch: str, batch: int, length: int, args) -> dict:
    torch.manual_seed(0)
    config = make_config(args.size, arch=arch, **({"backend": args.backend} if arch == "decay_linear" else {}))
    model = build_model(config).to("cuda", torch.bfloat16).eval()
    prompt = torch.randint(1, config.vocab_size, (batch, length), device="cuda")
    with torch.no_grad():
        timed_generate(model, prompt[:, :256], 4)  # warm-up (kernels, allocator)
        runs = []
        for _ in range(args.repeats):
            prefill, _, _ = timed_generate(model, prompt, 1)
            total, peak, widths = timed_generate(model, prompt, args.new_tokens)
            runs.append({"prefill_ms": 1e3 * prefill, "decode_ms_per_step": 1e3 * (total - prefill) / (args.new_tokens - 1),
                         "peak_gib": peak / 2**30, "one_token_per_step": widths[1:] == [1] * (args.new_tokens - 1)})
    del model
    torch.cuda.empty_cache()
    row = {"arch": arch, "batch": batch, "prompt": length, "new_tokens": args.new_tokens, "runs": runs}
    for key in ("prefill_ms", "decode_ms_per_step", "peak_gib"):
        values = sorted(r[key] for r in runs)
        row[key] = {"min": values[0], "median": statistics.median(values), "max": values[-1]}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="160m")
    parser.add_argument("--shapes", default="8x2048,4x16384", help="comma-separated BATCHxPROMPT")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--archs", default="decay_linear,softmax")
    parser.add_argument("--backend", default="auto", help="decaylab's operator backend")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.cuda.get_device_name()}")
    print("| model | batch × prompt | decode ms/step (min / median / max) | prefill ms (median) | peak GiB (median) | cache used |")
    print("|---|---|---|---|---|---|")
    rows = []
    for shape in args.shapes.split(","):
        batch, length = (int(v) for v in shape.split("x"))
        for arch in args.archs.split(","):
            try:
                row = measure(arch, batch, length, args)
            except torch.cuda.OutOfMemoryError as err:
                print(f"| {arch} | {batch} × {length} | out of memory: {str(err).splitlines()[0]} | | | |")
                continue
            rows.append(row)
            d = row["decode_ms_per_step"]
            used = "yes" if all(r["one_token_per_step"] for r in row["runs"]) else "NO (whole prefix re-fed)"
            print(f"| {arch} | {batch} × {length} | {d['min']:.2f} / {d['median']:.2f} / {d['max']:.2f} | "
                  f"{row['prefill_ms']['median']:.0f} | {row['peak_gib']['median']:.2f} | {used} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
