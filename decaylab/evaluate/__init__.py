"""Evaluation: validation perplexity, length extrapolation, associative recall (MQAR), lm-eval adapter.

The lm-evaluation-harness adapter lives in :mod:`decaylab.evaluate.lm_eval_adapter` and is
imported only on demand (lm-eval is an optional dependency).
"""

from decaylab.evaluate.extrapolation import extrapolation_table, plot_extrapolation
from decaylab.evaluate.loading import (
    load_model,
    load_model_tokenizer,
    resolve_model_dir,
    training_seq_len,
)
from decaylab.evaluate.perplexity import evaluate_perplexity, token_nll
from decaylab.evaluate.recall import (
    MQARTask,
    RecallProbe,
    evaluate_mqar,
    generate_mqar,
    small_config_like,
    train_and_eval_mqar,
)

__all__ = [
    "MQARTask",
    "RecallProbe",
    "evaluate_mqar",
    "evaluate_perplexity",
    "extrapolation_table",
    "generate_mqar",
    "load_model",
    "load_model_tokenizer",
    "plot_extrapolation",
    "resolve_model_dir",
    "small_config_like",
    "token_nll",
    "train_and_eval_mqar",
    "training_seq_len",
]
