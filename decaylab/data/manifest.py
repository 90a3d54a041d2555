"""Reading a versioned JSON manifest (of a corpus or of a prepared dataset) with errors that say what
to do, and checking every byte and every token id of the shards a dataset manifest describes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import xxhash

#: The manifest key of the full-file checksum checked on first use (xxh3-128: memory speed).
CHECKSUM = "xxh3_128"
TOKEN_CHECK_BLOCK = 1 << 24  # tokens per block of the vocabulary check

_verified: set[tuple] = set()  # shards (path, size, mtime, inode) this process has checked in full


def read_versioned_manifest(path: Path, fmt: str, version: int, *, what: str, missing: str, hint: str) -> dict:
    """The manifest at ``path``, checked to be ``fmt`` version ``version``.

    Raises FileNotFoundError(``missing``) when the file is absent, and ValueError naming ``what``
    (e.g. "corpus manifest <path>") and ending in ``hint`` when it is not JSON or not that format.
    """
    if not path.is_file():
        raise FileNotFoundError(missing)
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{what} is not valid JSON ({e}); {hint}") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{what} holds a JSON {type(manifest).__name__}, not an object; {hint}")
    if manifest.get("format") != fmt or manifest.get("format_version") != version:
        raise ValueError(
            f"{path} is not a {fmt} v{version} manifest "
            f"(format={manifest.get('format')!r}, version={manifest.get('format_version')!r}); {hint}"
        )
    return manifest


def xxh3_file(path: Path) -> str:
    """The xxh3-128 checksum (hex) of every byte of ``path``."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def _file_state(path: Path) -> tuple:
    st = os.stat(path)
    return str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino


def verified_in_this_process(path: Path) -> bool:
    """True when :func:`remember_verified` was called for ``path`` as it is now (same size, mtime, inode)."""
    return _file_state(path) in _verified


def remember_verified(path: Path) -> None:
    _verified.add(_file_state(path))


def check_token_ids(path: Path, dtype: str, vocab_size: int, hint: str) -> None:
    """Raise ValueError naming ``path`` and the byte offset of the first token id ≥ ``vocab_size``."""
    tokens = np.memmap(path, dtype=np.dtype(dtype), mode="r")
    for start in range(0, len(tokens), TOKEN_CHECK_BLOCK):
        block = tokens[start : start + TOKEN_CHECK_BLOCK]
        if int(block.max()) >= vocab_size:
            index = start + int(np.argmax(block >= vocab_size))
            raise ValueError(f"{path}: token id {int(tokens[index])} at byte offset {index * tokens.itemsize} "
                             f"(token {index}) is outside the vocabulary of {vocab_size} ids; {hint}")
