"""TokenDataset: a validated, memory-mapped token split with deterministic, resumable batching.

Training contract (``batch``): the split is cut into ``n = (num_tokens - 1) // seq_len``
non-overlapping windows of ``seq_len + 1`` tokens starting at multiples of
``seq_len``. Epoch ``e`` visits them in the order of a permutation seeded by
``(seed, e)``. Step ``s`` takes global positions ``s·G … s·G + G - 1`` of that
endless sequence of epochs, ``G = batch_size · world_size``, and rank ``r`` takes
positions ``r·batch_size …`` of those. The batch is thus a pure function of
``(seed, step)`` and the global batch size: resuming at step ``s`` needs no
other state, and one process with batch 8 sees exactly the union of two ranks
with batch 4.
"""
from __future__ import annotations

import math
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from decaylab.data.manifest import SPLITS, rebuild_hint, validate_dataset
from decaylab.data.tokenizer import tokenizer_from_file, tokenizer_vocab_size

COUNT_CHUNK = 1 << 24


def unigram_perplexity(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """exp of the mean negative log-probability of ``val`` under add-one-smoothed unigram counts of ``train``.

    ``p(t) = (count_train(t) + 1) / (len(train) + vocab_size)``.
    """
    counts = np.zeros(vocab_size, dtype=np.int64)
    for i in range(0, len(train), COUNT_CHUNK):
        counts += np.bincount(train[i : i + COUNT_CHUNK], minlength=vocab_size)
    log_p = np.log(counts + 1.0) - math.log(len(train) + vocab_size)
    val_counts = np.zeros(vocab_size, dtype=np.int64)
    for i in range(0, len(val), COUNT_CHUNK):
        val_counts += np.bincount(val[i : i + COUNT_CHUNK], minlength=vocab_size)
    return float(math.exp(-float(val_counts @ log_p) / len(val)))


@lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch]))).permutation(n)


class TokenDataset:
    """One split (``"train"`` or ``"val"``) of a prepared dataset, memory-mapped.

    Open with ``TokenDataset.open(dataset_dir, split)``; ``tokens`` is the flat
    ``np.memmap`` of ids, ``len(ds) == ds.num_tokens``.
    """

    def __init__(self, directory: Path, split: str, manifest: dict):
        self.directory = directory
        self.split = split
        self.manifest = manifest
        info = manifest["splits"][split]
        self.tokens = np.memmap(directory / info["file"], dtype=np.dtype(manifest["dtype"]), mode="r")
        self.num_documents: int = info["documents"]

    @classmethod
    def open(cls, dataset_dir: str | Path, split: str = "train", *, verify: str = "once") -> "TokenDataset":
        """Validate ``dataset_dir`` (see ``validate_dataset``: ``verify="once"`` checks every byte and
        token id of each shard the first time this process opens it) and memory-map ``split``.

        Raises FileNotFoundError / ValueError naming the offending file and what to do.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        directory = Path(dataset_dir)
        return cls(directory, split, validate_dataset(directory, verify=verify))

    def __len__(self) -> int:
        return self.num_tokens

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    @property
    def vocab_size(self) -> int:
        return self.manifest["vocab_size"]

    @property
    def eot_id(self) -> int:
        return self.manifest["tokenizer"]["eot_id"]

    @cached_property
    def tokenizer(self) -> PreTrainedTokenizerFast:
        """The tokenizer the shards were made with (loaded on first use, checked against the manifest)."""
        info = self.manifest["tokenizer"]
        path = self.directory / info["file"]
        tok = tokenizer_from_file(path, info["eot_token"])
        if tokenizer_vocab_size(tok) != self.vocab_size or tok.eos_token_id != self.eot_id:
            raise ValueError(
                f"{path} has vocab size {tokenizer_vocab_size(tok)} and eot id {tok.eos_token_id}, "
                f"the shards were made with {self.vocab_size} and {self.eot_id}; {rebuild_hint(self.directory)}"
            )
        return tok

    def num_windows(self, seq_len: int) -> int:
        """Number of non-overlapping training windows of ``seq_len + 1`` tokens (one epoch)."""
        return (self.num_tokens - 1) // seq_len

    def _check_windows(self, seq_len: int) -> int:
        if seq_len < 1:
            raise ValueError(f"seq_len must be ≥ 1, got {seq_len}")
        n = self.num_windows(seq_len)
        if n < 1:
            raise ValueError(
                f"the {self.split} split of {self.directory} has {self.num_tokens} tokens, fewer than seq_len + 1 = {seq_len + 1}"
            )
        return n

    def _windows(self, starts: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.stack([self.tokens[s : s + seq_len + 1] for s in starts]).astype(np.int64)
        x = torch.from_numpy(rows)
        return x[:, :-1].contiguous(), x[:, 1:].contiguous()

    def batch(
        self, step: int, batch_size: int, seq_len: int, *, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training batch of ``step`` for ``rank`` (see the module docstring for the contract).

        Returns ``(inputs, targets)``, both int64 ``[batch_size, seq_len]``;
        ``targets[i, t] == inputs[i, t + 1]`` in the token stream.
        """
        if step < 0 or batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need step ≥ 0, batch_size ≥ 1, 0 ≤ rank < world_size; got {step=}, {batch_size=}, {rank=}, {world_size=}")
        n = self._check_windows(seq_len)
        positions = step * batch_size * world_size + rank * batch_size + np.arange(batch_size)
        epochs, index = np.divmod(positions, n)
        windows = np.array([_permutation(n, seed, int(e))[i] for e, i in zip(epochs, index)])
        return self._windows(windows * seq_len, seq_len)

    def iter_eval(self, seq_len: int, batch_size: int, max_batches: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Non-overlapping windows in order from the start of the split, ``batch_size`` at a time
        (the last batch may be smaller); stops after ``max_batches`` if given.

        Yields ``(inputs, targets)``, int64 ``[≤ batch_size, seq_len]``.
        """
        n = self._check_windows(seq_len)
        for b, first in enumerate(range(0, n, batch_size)):
            if max_batches is not None and b >= max_batches:
                return
            yield self._windows(np.arange(first, min(first + batch_size, n)) * seq_len, seq_len)

    def unigram_perplexity(self) -> float:
        """Perplexity of the validation tokens under train unigram counts with add-one smoothing
        (the same number whichever split this object is)."""
        other = {s: TokenDataset(self.directory, s, self.manifest).tokens for s in SPLITS if s != self.split}
        splits = {self.split: self.tokens, **other}
        return unigram_perplexity(splits["train"], splits["val"], self.vocab_size)
