"""Tokenizers: a deterministic byte-level BPE trained on the corpus, or any Hugging Face tokenizer.

Every tokenizer decaylab uses is a ``transformers.PreTrainedTokenizerFast`` whose
``eos_token`` separates documents in the token stream. Trained tokenizers use
``<|endoftext|>`` (id 0) for that and round-trip text exactly:
``decode(encode(text)) == text``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from decaylab.data.manifest import FORMAT as DATASET_FORMAT, MANIFEST_FILE

EOT = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"  # its name in a prepared dataset and in a model folder


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int = 8192, *, length: int | None = None, show_progress: bool = False
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE (GPT-2 pre-tokenization, no normalization) on ``texts``.

    Deterministic: the same texts in the same order and ``vocab_size`` give a
    byte-identical ``tokenizer.json``. ``vocab_size`` counts the 256 byte
    tokens and ``<|endoftext|>``; ``length`` (number of texts) only drives the
    progress display.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 257:
        raise ValueError(f"vocab_size must be at least 257 (256 bytes + {EOT}), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    tok.train_from_iterator(texts, trainer, length=length)
    return _wrap(tok)


def _wrap(backend, eos_token: str = EOT) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=eos_token, clean_up_tokenization_spaces=False)


def tokenizer_from_file(path: str | Path, eos_token: str = EOT) -> PreTrainedTokenizerFast:
    """A ``tokenizer.json`` file as a fast tokenizer whose ``eos_token`` is ``eos_token``."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_file(str(path))
    if backend.token_to_id(eos_token) is None:
        raise ValueError(f"tokenizer {path} has no {eos_token} token; load it by name or by a directory with its tokenizer_config.json")
    return _wrap(backend, eos_token)


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer: a ``tokenizer.json`` file, a prepared dataset directory
    (its tokenizer), or any Hugging Face tokenizer name/directory through
    ``AutoTokenizer`` (never with ``trust_remote_code``).

    The result is a fast tokenizer with an end-of-sequence token, which
    decaylab uses as the document separator.
    """
    path = Path(name_or_path)
    if path.is_file():
        return tokenizer_from_file(path)
    if (path / MANIFEST_FILE).is_file() and (path / TOKENIZER_FILE).is_file():
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        if manifest.get("format") == DATASET_FORMAT:
            return tokenizer_from_file(path / TOKENIZER_FILE, manifest["tokenizer"]["eot_token"])
    tok = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=False)
    if not tok.is_fast:
        raise ValueError(f"tokenizer {name_or_path!r} has no fast (Rust) implementation; decaylab needs a tokenizer.json-backed tokenizer")
    if tok.eos_token_id is None:
        raise ValueError(f"tokenizer {name_or_path!r} has no eos token; decaylab needs one to separate documents")
    return tok


def tokenizer_vocab_size(tok: PreTrainedTokenizerFast) -> int:
    """Number of ids the tokenizer can emit (base vocabulary plus added tokens)."""
    return max(len(tok), tok.vocab_size)


def encode_batch(tok: PreTrainedTokenizerFast, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without any special tokens added."""
    return [e.ids for e in tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]
