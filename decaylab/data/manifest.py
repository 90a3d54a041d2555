"""The manifest of a prepared dataset, and its validation: the format every other data module reads.

A dataset directory holds

* ``train.bin``, ``val.bin`` — flat token ids (``uint16`` when the vocabulary
  fits, else ``uint32``); every document is preceded by the end-of-text id, so
  the stream reads ``EOT doc₁ EOT doc₂ …``;
* the tokenizer file that produced them (``manifest["tokenizer"]["file"]``);
* ``manifest.json`` — format version, settings, source, vocabulary size, dtype,
  token and document counts per split, sha256 and xxh3-128 of every file (the
  latter checked in full the first time a process opens the dataset).

Also here: reading any versioned decaylab manifest (of a corpus or of a dataset) with errors that
say what to do, and the checksums. :mod:`decaylab.data.prepare` writes datasets.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import xxhash

FORMAT = "decaylab-tokens"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"  # of a dataset and of a corpus
SPLITS = ("train", "val")
#: The manifest key of the full-file checksum checked on first use (xxh3-128: memory speed).
CHECKSUM = "xxh3_128"
TOKEN_CHECK_BLOCK = 1 << 24  # tokens per block of the vocabulary check

_verified: set[tuple] = set()  # shards (path, size, mtime, inode) this process has checked in full


def shard_dtype(vocab_size: int) -> np.dtype:
    """The dtype of the token shards of a vocabulary of ``vocab_size`` ids."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def rebuild_hint(directory: Path) -> str:
    """What to do about a damaged dataset directory."""
    return f"delete {directory} and prepare it again (`decaylab.data.prepare_dataset`), which rebuilds it from its source"


def read_manifest(directory: str | Path) -> dict:
    """The manifest of the dataset in ``directory`` (format and version checked, files not)."""
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    missing = (f"{path} is missing: {directory} is not a prepared decaylab dataset; "
               "create it with `decaylab.data.prepare_dataset`")
    return read_versioned_manifest(path, FORMAT, FORMAT_VERSION, what=str(path), missing=missing,
                                   hint=rebuild_hint(directory))


def validate_dataset(directory: str | Path, *, verify: str = "once") -> dict:
    """Check a dataset directory against its manifest and return the manifest.

    ``verify``: ``"once"`` (default) checks every byte of each shard (its
    xxh3-128; its sha256 for a manifest written before xxh3) and that every
    token id is below the vocabulary size, the first time this process sees
    the shard as it is on disk; ``"full"`` does so every time; ``"none"``
    checks only sizes. The tokenizer file is always hashed in full. Raises
    FileNotFoundError for a missing file and ValueError for a size, checksum,
    token id, dtype or count mismatch or an empty split, naming the file (and
    the offset of a bad token id) and what to do.
    """
    if verify not in ("once", "full", "none"):
        raise ValueError(f"verify must be 'once', 'full' or 'none', got {verify!r}")
    directory = Path(directory)
    manifest = read_manifest(directory)
    hint = rebuild_hint(directory)
    itemsize = np.dtype(manifest["dtype"]).itemsize
    if np.dtype(manifest["dtype"]) != shard_dtype(manifest["vocab_size"]):
        raise ValueError(f"{directory / MANIFEST_FILE}: dtype {manifest['dtype']} does not fit vocab size {manifest['vocab_size']}; {hint}")
    for name, record in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; {hint}")
        if name == manifest["tokenizer"]["file"]:
            if sha256_file(path) != record["sha256"]:
                raise ValueError(
                    f"{path} does not match the tokenizer the shards were made with (sha256 differs from the manifest); "
                    f"restore that tokenizer or {hint}"
                )
            continue
        size = path.stat().st_size
        if size != record["bytes"]:
            raise ValueError(f"{path} is {size} bytes, the manifest says {record['bytes']} (truncated or replaced?); {hint}")
        if verify == "full" or (verify == "once" and not verified_in_this_process(path)):
            key = CHECKSUM if CHECKSUM in record else "sha256"
            if (xxh3_file(path) if key == CHECKSUM else sha256_file(path)) != record[key]:
                raise ValueError(f"{path} is corrupt: its {key} checksum does not match the manifest; {hint}")
            check_token_ids(path, manifest["dtype"], manifest["vocab_size"], hint)
            remember_verified(path)
    for split in SPLITS:
        info = manifest["splits"][split]
        if info["tokens"] == 0:
            raise ValueError(f"{directory / info['file']}: the {split} split is empty; {hint}")
        if info["tokens"] * itemsize != manifest["files"][info["file"]]["bytes"]:
            raise ValueError(f"{directory / info['file']}: {info['tokens']} tokens of {manifest['dtype']} do not fill its size; {hint}")
    return manifest


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


def _file_digest(path: Path, hasher) -> str:
    """The hex digest of every byte of ``path`` through ``hasher`` (read in 16 MiB blocks)."""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            hasher.update(chunk)
    return hasher.hexdigest()


def sha256_file(path: Path) -> str:
    """The sha256 (hex) of every byte of ``path``."""
    return _file_digest(path, hashlib.sha256())


def xxh3_file(path: Path) -> str:
    """The xxh3-128 checksum (hex) of every byte of ``path``."""
    return _file_digest(path, xxhash.xxh3_128())


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
