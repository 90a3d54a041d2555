"""``decaylab eval``: perplexity, length extrapolation, associative recall, last-word cloze and lm-eval
tasks of one trained model, written as one JSON file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from decaylab.atomic import write_text_atomic
from decaylab.cli_args import non_negative_int, positive_float, positive_int
from decaylab.device import pick_device
from decaylab.evaluate.recall import RecallProbe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model directory (config.json + model.safetensors), checkpoint or run directory")
    parser.add_argument("--data", help="a prepared dataset directory (needed for perplexity and --extrapolate)")
    parser.add_argument("--split", default="val", choices=("train", "val"), help="dataset split to evaluate on")
    parser.add_argument("--seq-len", type=positive_int, help="evaluation window (default: the training seq_len of the checkpoint, else 256)")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--max-batches", type=positive_int, help="evaluate at most this many batches (default: the whole split)")
    parser.add_argument("--extrapolate", type=non_negative_int, default=0, metavar="FACTOR",
                        help="also report loss by position on windows of FACTOR × seq_len tokens (e.g. 4)")
    parser.add_argument("--recall", action="store_true",
                        help="MQAR: train a small model of this model's decay design on it (the defaults learn; "
                             "on a 2-core CPU 5 minutes for softmax, 16 for a vector decay), and probe this model "
                             "zero-shot")
    parser.add_argument("--recall-size", default="tiny", help="model preset of the MQAR-trained model")
    parser.add_argument("--recall-width", type=positive_int, help="hidden size of the MQAR-trained model (default: the preset's)")
    parser.add_argument("--recall-steps", type=positive_int, default=RecallProbe.steps)
    parser.add_argument("--recall-lr", type=positive_float, default=RecallProbe.lr)
    parser.add_argument("--recall-seq-len", type=positive_int, default=RecallProbe.seq_len)
    parser.add_argument("--recall-pairs", type=positive_int, default=RecallProbe.num_pairs)
    parser.add_argument("--recall-vocab", type=positive_int, default=RecallProbe.vocab_size,
                        help="task vocabulary of the MQAR-trained model")
    parser.add_argument("--cloze", type=positive_int, metavar="N",
                        help="also score a last-word cloze of N examples from --data's validation documents "
                             "(contexts of up to seq_len/2 tokens), through lm-eval")
    parser.add_argument("--lm-eval-tasks", nargs="+", metavar="TASK", help="lm-evaluation-harness task names")
    parser.add_argument("--lm-eval-include", help="a directory of extra lm-eval task YAMLs (e.g. local JSONL tasks)")
    parser.add_argument("--lm-eval-local-only", action="store_true",
                        help="index only the tasks in --lm-eval-include (skips indexing lm-eval's built-in tasks, ~25 s)")
    parser.add_argument("--lm-eval-limit", type=positive_int, help="at most this many examples per lm-eval task")
    parser.add_argument("--tokenizer", help="tokenizer for lm-eval (default: next to the model, else --data's)")
    parser.add_argument("--out", help="where to write the results JSON (default: MODEL/eval.json)")
    parser.add_argument("--plot", help="also write the extrapolation plot to this PNG")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    from decaylab.evaluate.extrapolation import extrapolation_table, plot_extrapolation
    from decaylab.evaluate.loading import (
        load_model,
        resolve_model_dir,
        training_seq_len,
    )
    from decaylab.evaluate.perplexity import evaluate_perplexity
    from decaylab.evaluate.recall import (
        MQARTask,
        evaluate_mqar,
        train_and_eval_mqar,
    )

    device = pick_device(args.device)
    progress = not args.no_progress
    for option in ("extrapolate", "cloze"):
        if getattr(args, option) and not args.data:
            raise ValueError(f"--{option} needs --data DATASET_DIR")
    if not (args.data or args.recall or args.lm_eval_tasks):
        raise ValueError("nothing to do; pass --data DATASET_DIR, --recall or --lm-eval-tasks")
    model_dir = resolve_model_dir(args.model)
    model = load_model(model_dir, device)
    seq_len = args.seq_len or training_seq_len(model_dir) or 256
    results: dict = {"model": str(model_dir), "seq_len": seq_len}

    if args.data:
        from decaylab.data import TokenDataset

        dataset = TokenDataset.open(args.data, args.split)
        results["data"] = {"dir": str(args.data), "split": args.split, "unigram_ppl": dataset.unigram_perplexity()}
        results["perplexity"] = evaluate_perplexity(model, dataset, seq_len, args.batch_size, args.max_batches, progress)
        print(f"perplexity {results['perplexity']['ppl']:.3f} (loss {results['perplexity']['loss']:.4f}, "
              f"{results['perplexity']['tokens']:,} tokens; unigram {results['data']['unigram_ppl']:.1f})")
        if args.extrapolate:
            table = extrapolation_table(model, dataset, seq_len, args.extrapolate, max(args.batch_size // args.extrapolate, 1),
                                        args.max_batches, progress=progress)
            results["extrapolation"] = table
            for b in table["buckets"]:
                print(f"  positions [{b['start']}, {b['end']}): ppl {b['ppl']:.3f}")
            if args.plot:
                plot_extrapolation({Path(args.model).name: table}, args.plot)

    if args.recall:
        probe = RecallProbe(seq_len=args.recall_seq_len, num_pairs=args.recall_pairs, vocab_size=args.recall_vocab,
                            steps=args.recall_steps, lr=args.recall_lr, size=args.recall_size,
                            hidden_size=args.recall_width)
        trained = train_and_eval_mqar(model.config, probe, seed=args.seed,
                                      device=device, progress=progress)
        zero_shot = evaluate_mqar(model, MQARTask(args.recall_seq_len, args.recall_pairs, model.config.vocab_size),
                                  seed=args.seed + 1)
        results["recall"] = {"trained": trained, "zero_shot": zero_shot}
        print(f"MQAR accuracy: trained {trained['accuracy']:.3f}, zero-shot {zero_shot['accuracy']:.3f} "
              f"(chance {trained['chance']:.3f} / {zero_shot['chance']:.4f})")

    if args.cloze:
        from decaylab.evaluate.cloze import context_budget, evaluate_cloze

        results["cloze"] = evaluate_cloze(model, args.data, args.cloze, context_tokens=context_budget(seq_len),
                                          seed=args.seed, batch_size=args.batch_size)
        print(f"cloze accuracy {results['cloze']['acc']:.3f}, target perplexity {results['cloze']['ppl']:.1f} "
              f"({results['cloze']['n']} examples)")

    if args.lm_eval_tasks:
        del model  # the adapter loads its own copy
        results["lm_eval"] = run_lm_eval(model_dir, args, device)

    out = Path(args.out) if args.out else Path(args.model) / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(results, indent=2, default=str) + "\n")
    print(f"results written to {out}")
    return 0


def run_lm_eval(model_dir: Path, args: argparse.Namespace, device: torch.device) -> dict:
    """lm-eval's per-task results for ``args.lm_eval_tasks`` on the model."""
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager

        import decaylab.evaluate.lm_eval_adapter  # noqa: F401  (registers "decaylab")
    except ImportError as err:
        raise ValueError(f"--lm-eval-tasks needs lm-evaluation-harness (pip install lm-eval): {err}") from err
    tokenizer = args.tokenizer or args.data
    model_args = {"pretrained": str(model_dir), "device": str(device), "batch_size": args.batch_size,
                  "progress": not args.no_progress, **({"tokenizer": str(tokenizer)} if tokenizer else {})}
    tasks = TaskManager(include_path=args.lm_eval_include, include_defaults=not args.lm_eval_local_only)
    output = lm_eval.simple_evaluate(
        model="decaylab", model_args=model_args, tasks=args.lm_eval_tasks, limit=args.lm_eval_limit,
        task_manager=tasks, log_samples=False, random_seed=args.seed,
    )
    return output["results"]
