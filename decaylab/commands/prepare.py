"""``decaylab prepare``: tokenize a corpus into shards (train/val split, tokenizer, manifest)."""

from __future__ import annotations

import argparse

from decaylab.cli_args import bounded, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", default="embedded",
                        help="'embedded', 'large' (build it first: python scripts/build_corpus.py --large), "
                             "a .txt/.jsonl/.parquet file or directory, or hf:<dataset>[:<config>][:<split>]")
    parser.add_argument("--out", default=None, help="dataset directory (default: under ~/.cache/decaylab/datasets)")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer.json, a prepared dataset dir, or a Hugging Face tokenizer name; "
                             "default: train a byte-level BPE")
    parser.add_argument("--vocab-size", type=positive_int, default=8192)
    parser.add_argument("--val-fraction", type=bounded(float, 0, 1, strict=True), default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text-field", default="text", help="field holding the text in JSONL/parquet/HF rows")
    parser.add_argument("--max-docs", type=positive_int, default=None)
    parser.add_argument("--max-tokens", type=positive_int, default=None, help="cap on training tokens")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset built with other settings")


def main(args: argparse.Namespace) -> int:
    from decaylab.data import TokenDataset, prepare_dataset

    path = prepare_dataset(
        args.source, args.out, tokenizer=args.tokenizer, vocab_size=args.vocab_size,
        val_fraction=args.val_fraction, seed=args.seed, text_field=args.text_field,
        max_docs=args.max_docs, max_tokens=args.max_tokens, overwrite=args.overwrite,
    )
    train, val = TokenDataset.open(path, "train"), TokenDataset.open(path, "val")
    print(f"dataset: {path}")
    print(f"train {train.num_tokens:,} tokens ({train.num_documents} documents), "
          f"val {val.num_tokens:,} tokens ({val.num_documents} documents), vocab {train.vocab_size}")
    return 0
