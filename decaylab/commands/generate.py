"""``decaylab generate``: sample text from a saved model directory (weights + tokenizer)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a directory written by save_pretrained, holding tokenizer.json too")
    parser.add_argument("--prompt", default="The", help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 means greedy decoding")
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")


def main(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    import decaylab  # noqa: F401  (registers the Auto classes)

    path = Path(args.model)
    if not (path / "config.json").exists():
        raise SystemExit(f"generate: {path} has no config.json; pass a directory written by save_pretrained")
    if not (path / "tokenizer.json").exists():
        raise SystemExit(f"generate: {path} has no tokenizer.json next to the weights")
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(path).to(args.device).eval()
    torch.manual_seed(args.seed)
    ids = tokenizer(args.prompt, return_tensors="pt").input_ids.to(args.device)
    sample = args.temperature > 0
    out = model.generate(
        ids, max_new_tokens=args.max_new_tokens, do_sample=sample, top_k=args.top_k if sample else None,
        temperature=args.temperature if sample else None, pad_token_id=0,
    )
    print(tokenizer.decode(out[0], skip_special_tokens=True))
    return 0
