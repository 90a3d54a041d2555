"""``decaylab generate``: sample text from a trained model (a run, a checkpoint or a saved model).

Several ``--prompt`` are decoded as one left-padded batch; decoding stops at end-of-text (the
tokenizer's eos token) or after ``--max-new-tokens``; ``--stream`` prints the tokens of a single
prompt as they are generated.
"""

from __future__ import annotations

import argparse

from decaylab.cli_args import non_negative_float, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a run directory (its latest checkpoint is used), a checkpoint, or a "
                                      "directory written by save_pretrained")
    parser.add_argument("--prompt", action="append", help="text to continue; repeat for a batch (default: 'The')")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer.json, a prepared dataset directory or a Hugging Face name (default: the "
                             "model's own tokenizer.json, else the tokenizer of the data it was trained on)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=40)
    parser.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 means greedy decoding")
    parser.add_argument("--top-k", type=positive_int, default=50)
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling: keep the top tokens of this mass")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages repeated tokens")
    parser.add_argument("--stream", action="store_true", help="print tokens as they come (one prompt only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")


def main(args: argparse.Namespace) -> int:
    import torch
    from transformers import TextStreamer

    from decaylab.evaluate.loading import load_model, load_model_tokenizer
    from decaylab.model.folder import folder_tokenizer

    prompts = args.prompt or ["The"]
    if args.stream and len(prompts) > 1:
        raise ValueError("--stream prints one sequence; pass a single --prompt")
    tokenizer = folder_tokenizer(load_model_tokenizer(args.model, args.tokenizer))  # pads on the left
    for prompt in prompts:
        if not tokenizer(prompt).input_ids:
            raise ValueError(f"--prompt {prompt!r} has no tokens; give some text to continue")
    batch = tokenizer(prompts, return_tensors="pt", padding=True).to(args.device)
    model = load_model(args.model, args.device).eval()
    torch.manual_seed(args.seed)
    sample = args.temperature > 0
    streamer = TextStreamer(tokenizer, skip_special_tokens=True) if args.stream else None
    out = model.generate(
        **batch, max_new_tokens=args.max_new_tokens, do_sample=sample,
        top_k=args.top_k if sample else None, top_p=args.top_p if sample else None,
        temperature=args.temperature if sample else None, repetition_penalty=args.repetition_penalty,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, streamer=streamer,
    )
    if not args.stream:
        for text in tokenizer.batch_decode(out, skip_special_tokens=True):
            print(text)
    return 0
