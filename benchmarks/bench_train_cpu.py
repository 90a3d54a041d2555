"""End-to-end CPU training throughput of the tiny and small presets on the embedded corpus.

Runs ``decaylab.train`` for a few optimizer steps per preset (fresh run directories under a
temporary folder) and prints the training tokens/s that the run itself reports in final.json
(time spent in training steps only; data preparation and evaluation excluded).

Usage: python benchmarks/bench_train_cpu.py [--steps 20] [--decay sd-0.99]
"""

from __future__ import annotations

import argparse
import platform
import tempfile

import torch

from decaylab.train import load_config, train

SHAPES = {"tiny": dict(seq_len=128, micro_batch_size=16), "small": dict(seq_len=256, micro_batch_size=16)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--decay", default="sd-0.99")
    parser.add_argument("--granularity", default="vector")
    parser.add_argument("--data-dir", default="runs/data/embedded-8k")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}; "
          f"decay {args.decay} ({args.granularity}), fp32, AdamW, {args.steps} steps")
    with tempfile.TemporaryDirectory() as tmp:
        for size, shape in SHAPES.items():
            cfg = load_config(None, [
                f"run_dir={tmp}/{size}", f"model.size={size}", f"model.overrides.decay={args.decay}",
                f"model.overrides.decay_granularity={args.granularity}", f"data.dir={args.data_dir}",
                f"seq_len={shape['seq_len']}", f"micro_batch_size={shape['micro_batch_size']}",
                f"steps={args.steps}", "warmup_steps=2", f"eval_every={args.steps}", "eval_batches=1",
                "final_eval_batches=1", f"ckpt_every={args.steps}", "progress=false", "tensorboard=false",
            ])
            final = train(cfg)
            print(f"{size:<6} {final['params']:>12,} params  batch {shape['micro_batch_size']} x {shape['seq_len']}  "
                  f"{final['tokens_per_s']:>10,.0f} tokens/s")


if __name__ == "__main__":
    main()
