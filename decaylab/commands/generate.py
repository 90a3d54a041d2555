"""``decaylab generate``: sample text from a trained model (a run, a checkpoint or a saved model)."""

from __future__ import annotations

import argparse

from decaylab.cli_args import non_negative_float, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a run directory (its latest checkpoint is used), a checkpoint, or a "
                                      "directory written by save_pretrained")
    parser.add_argument("--prompt", default="The", help="text to continue")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer.json, a prepared dataset directory or a Hugging Face name (default: the "
                             "model's own tokenizer.json, else the tokenizer of the data it was trained on)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=40)
    parser.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 means greedy decoding")
    parser.add_argument("--top-k", type=positive_int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")


def main(args: argparse.Namespace) -> int:
    import torch

    from decaylab.evaluate.loading import load_model, load_model_tokenizer

    tokenizer = load_model_tokenizer(args.model, args.tokenizer)
    ids = tokenizer(args.prompt, return_tensors="pt").input_ids.to(args.device)
    if ids.shape[1] == 0:
        raise ValueError(f"--prompt {args.prompt!r} has no tokens; give some text to continue")
    model = load_model(args.model, args.device).eval()
    torch.manual_seed(args.seed)
    sample = args.temperature > 0
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new_tokens, do_sample=sample,
        top_k=args.top_k if sample else None, temperature=args.temperature if sample else None,
        pad_token_id=tokenizer.eos_token_id,
    )
    print(tokenizer.decode(out[0], skip_special_tokens=True))
    return 0
