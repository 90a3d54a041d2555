"""Self-describing model folders: what plain transformers needs to load, tokenize and generate.

A decaylab model folder (``save_pretrained`` output, every training checkpoint, ``decaylab export``) holds

    model.safetensors, config.json       weights and config, with bos/eos/pad_token_id and, for the decay
                                         linear-attention model, an ``auto_map`` naming the file below
    generation_config.json               the same token ids, for generate()
    modeling_decaylab.py                 two lines importing decaylab's classes: the code itself is the
                                         decaylab package, which must be installed (``pip install decaylab``)
    tokenizer.json, tokenizer_config.json  a PreTrainedTokenizerFast whose bos, eos and pad token is end-of-text

so ``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)``, ``AutoTokenizer.from_pretrained(folder)``
and ``pipeline("text-generation", model=folder)`` work in a process that never imports decaylab. The
softmax reference is a plain LLaMA folder and needs no code.
"""

from __future__ import annotations

import copy
from pathlib import Path

from transformers import GenerationConfig, PretrainedConfig, PreTrainedTokenizerFast

from decaylab.atomic import write_text_atomic

REMOTE_CODE_FILE = "modeling_decaylab.py"
AUTO_MAP = {
    "AutoConfig": "modeling_decaylab.DecayLinearConfig",
    "AutoModel": "modeling_decaylab.DecayLinearModel",
    "AutoModelForCausalLM": "modeling_decaylab.DecayLinearForCausalLM",
}
REMOTE_CODE = '''"""A decaylab model for transformers (trust_remote_code=True). The code is the decaylab package,
which must be installed: pip install decaylab."""

from decaylab.model import DecayLinearConfig, DecayLinearForCausalLM, DecayLinearModel  # noqa: F401
'''


def write_remote_code(folder: str | Path) -> None:
    """Write :data:`REMOTE_CODE_FILE`, the module the config's ``auto_map`` names."""
    write_text_atomic(Path(folder) / REMOTE_CODE_FILE, REMOTE_CODE)


def folder_tokenizer(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """A copy of ``tokenizer`` whose bos and pad token is its eos (end-of-text) token, padding on the
    left (decoder-only generation)."""
    tok = copy.deepcopy(tokenizer)
    tok.bos_token = tok.bos_token or tok.eos_token
    tok.pad_token = tok.pad_token or tok.eos_token
    tok.padding_side = tok.init_kwargs["padding_side"] = "left"  # init_kwargs: what save_pretrained writes
    return tok


def with_token_ids(config: PretrainedConfig, tokenizer: PreTrainedTokenizerFast) -> PretrainedConfig:
    """A copy of ``config`` with bos/eos/pad_token_id of :func:`folder_tokenizer` (``tokenizer``)."""
    tok = folder_tokenizer(tokenizer)
    config = copy.deepcopy(config)
    config.bos_token_id, config.eos_token_id, config.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    return config


def write_model_files(folder: str | Path, config: PretrainedConfig, tokenizer: PreTrainedTokenizerFast | None) -> None:
    """Everything of a model folder except the weights: config.json, generation_config.json, the
    remote-code file (decay linear-attention configs) and, with a ``tokenizer``, its files; the token
    ids come from the tokenizer."""
    folder = Path(folder)
    if tokenizer is not None:
        config = with_token_ids(config, tokenizer)
        folder_tokenizer(tokenizer).save_pretrained(folder)
    config.save_pretrained(folder)
    GenerationConfig.from_model_config(config).save_pretrained(folder)
    if getattr(config, "auto_map", None) == AUTO_MAP:
        write_remote_code(folder)
