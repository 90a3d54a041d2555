"""Prepare a tokenized dataset: read the source, split by document, train or load the tokenizer,
write the token shards and the manifest (:mod:`decaylab.data.manifest`) into a temporary sibling
directory, and rename it into place under a lock.

The split is by document and deterministic: a document is in validation when
``sha256(seed, text)`` (as a number in [0, 1)) is below ``val_fraction``, or,
when ``val_fraction`` is an int k, when it is among the k smallest. Keying on
the text puts duplicates on the same side; exact duplicates are dropped anyway.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from decaylab.data.corpus import EMBEDDED_DIR, LARGE_DIR
from decaylab.data.dataset import unigram_perplexity
from decaylab.data.manifest import (
    CHECKSUM,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_FILE,
    SPLITS,
    read_manifest,
    sha256_file,
    shard_dtype,
    validate_dataset,
    xxh3_file,
)
from decaylab.data.sources import open_source
from decaylab.data.tokenizer import TOKENIZER_FILE, encode_batch, load_tokenizer, tokenizer_vocab_size, train_bpe_tokenizer
from decaylab.lock import exclusive_lock

log = logging.getLogger(__name__)

CHARS_PER_TOKEN_BOUND = 8  # with max_tokens, read at most this many characters per token (BPE averages ~4 on English)
TOKENIZER_TRAIN_CHARS = 200_000_000  # a trained BPE sees at most this many characters of training text
ENCODE_BATCH_CHARS = 4_000_000
DEFAULT_ROOT = LARGE_DIR.parent / "datasets"


def prepare_dataset(
    source: str | Path = "embedded",
    out_dir: str | Path | None = None,
    *,
    tokenizer: str | Path | None = None,
    vocab_size: int = 8192,
    val_fraction: float | int = 0.02,
    seed: int = 0,
    text_field: str = "text",
    max_docs: int | None = None,
    max_tokens: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Tokenize ``source`` into a dataset directory and return its path.

    Args:
        source: ``"embedded"``, ``"large"``, a local file/directory or
            ``"hf:<dataset>[:<config>][:<split>]"`` (see ``decaylab.data.sources``).
        out_dir: target directory; default ``~/.cache/decaylab/datasets/<hash of settings>``.
        tokenizer: ``None`` trains a byte-level BPE of ``vocab_size`` on the
            training documents; otherwise a tokenizer.json path, a prepared
            dataset directory (reuse its tokenizer) or a Hugging Face tokenizer
            name/directory (``vocab_size`` is then ignored).
        val_fraction: fraction of documents in validation (float in (0, 1)),
            or a number of documents (int ≥ 1). At least one document goes to
            each split.
        seed: seeds the split.
        max_docs: read at most this many non-empty documents from the source.
        max_tokens: cap on training tokens (the last document is cut); the
            source is read only up to ``8 × max_tokens`` characters.
        overwrite: replace an existing dataset at ``out_dir`` prepared with
            other settings (otherwise that is an error).

    Idempotent: when ``out_dir`` already holds a valid dataset prepared with the
    same settings (source fingerprint included) it is returned untouched. Where the
    source is missing (a prepared dataset carried to a machine without its corpus),
    a dataset in ``out_dir`` with the same settings but the source's fingerprint is
    returned after its files are verified, with a warning. The
    dataset is written to a temporary sibling directory and renamed into place,
    so a crash never leaves a half-written dataset; concurrent callers
    (e.g. every rank of a distributed job) serialize on a lock file.
    """
    if isinstance(val_fraction, bool) or not (
        (isinstance(val_fraction, int) and val_fraction >= 1) or (isinstance(val_fraction, float) and 0 < val_fraction < 1)
    ):
        raise ValueError(f"val_fraction must be a float in (0, 1) or a document count ≥ 1, got {val_fraction!r}")
    for name, value in (("max_docs", max_docs), ("max_tokens", max_tokens)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be ≥ 1 or None, got {value}")
    tok = None if tokenizer is None else load_tokenizer(tokenizer)
    settings = {
        "format_version": FORMAT_VERSION,
        "tokenizer": {"train_bpe_vocab_size": vocab_size} if tok is None else {"sha256": _tokenizer_sha(tok)},
        "val_fraction": val_fraction,
        "seed": seed,
        "text_field": text_field,
        "max_docs": max_docs,
        "max_tokens": max_tokens,
    }
    try:
        src = open_source(source, text_field=text_field)
    except FileNotFoundError as missing:
        if out_dir is None or not _prepared_with(Path(out_dir), settings):
            raise
        validate_dataset(out_dir)
        log.warning("%s; using the dataset prepared in %s with the same settings (files verified; whether it was "
                    "prepared from that source cannot be checked here)", missing, out_dir)
        return Path(out_dir)
    settings["source"] = src.fingerprint
    if out_dir is None:
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        out_dir = DEFAULT_ROOT / f"{Path(str(source)).name.replace(':', '_') or 'data'}-{digest}"
    out_dir = Path(out_dir)
    if out_dir.resolve().is_relative_to(EMBEDDED_DIR):
        raise ValueError(f"{out_dir} is inside the committed corpus directory {EMBEDDED_DIR}, which prepare never "
                         "writes; choose another out_dir")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out_dir.parent / f".{out_dir.name}.lock", wait=True):
        if _reusable(out_dir, settings, overwrite):
            return out_dir
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
        try:
            name = "byte-level BPE trained on the training split" if tok is None else str(tokenizer)
            manifest = _build(src, tmp, tok, name, settings, progress)
            _replace_dir(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("prepared %s: %s", out_dir, {s: manifest["splits"][s]["tokens"] for s in SPLITS})
    return out_dir


def _tokenizer_sha(tok) -> str:
    return hashlib.sha256(tok.backend_tokenizer.to_str().encode()).hexdigest()


def _prepared_with(out_dir: Path, settings: dict) -> bool:
    """Whether ``out_dir`` holds a dataset manifest whose settings, but the source's fingerprint, are ``settings``."""
    try:
        existing = dict(read_manifest(out_dir).get("settings", {}))
    except (FileNotFoundError, ValueError):
        return False
    existing.pop("source", None)
    return existing == settings


def _reusable(out_dir: Path, settings: dict, overwrite: bool) -> bool:
    """True when ``out_dir`` holds a valid dataset with these settings. False when it may be (re)built:
    it is missing, empty, or a dataset decaylab wrote and can read, holding nothing else, that is
    corrupt or (with ``overwrite``) was prepared with other settings. Raises otherwise."""
    if not out_dir.exists():
        return False
    if not (out_dir / MANIFEST_FILE).is_file():
        if any(out_dir.iterdir()):
            raise FileExistsError(f"{out_dir} exists and is not a decaylab dataset; choose another out_dir or empty it")
        return False
    try:
        existing = read_manifest(out_dir)
    except ValueError as e:
        raise FileExistsError(f"{out_dir} is not a dataset decaylab can read ({e}), so it is never replaced; "
                              "choose another out_dir, or move the directory away yourself") from None
    if existing.get("settings") != settings:
        if not overwrite:
            old = existing.get("settings", {})
            changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise FileExistsError(
                f"{out_dir} holds a dataset prepared with other settings (differing: {', '.join(changed)}); "
                "choose another out_dir or pass overwrite=True"
            )
        _check_only_ours(out_dir, existing)
        return False
    try:
        validate_dataset(out_dir)
    except (ValueError, FileNotFoundError) as e:
        _check_only_ours(out_dir, existing)
        log.warning("rebuilding %s: %s", out_dir, e)
        return False
    return True


def _check_only_ours(out_dir: Path, manifest: dict) -> None:
    """Raise unless every entry of ``out_dir`` is a file its ``manifest`` lists (or the manifest itself)."""
    foreign = sorted({p.name for p in out_dir.iterdir()} - {MANIFEST_FILE, *manifest.get("files", {})})
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise FileExistsError(f"{out_dir} holds files decaylab did not write ({shown}), so it is never replaced; "
                              "move them away or choose another out_dir")


def _replace_dir(new: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old)
    else:
        os.rename(new, target)


def _split_keys(text: str, seed: int) -> tuple[bytes, float]:
    digest = hashlib.sha256(f"{seed}\0".encode() + text.encode("utf-8")).digest()
    return digest[:16], int.from_bytes(digest[:8], "big") / 2.0**64


def _collect(src, path: Path, settings: dict, progress: bool) -> tuple[np.ndarray, dict]:
    """Pass 1: read the source once, drop empty and duplicate documents, cache texts as JSON lines."""
    seen, keys, stats = set(), [], {"documents_read": 0, "empty_dropped": 0, "duplicates_dropped": 0}
    char_budget = None if settings["max_tokens"] is None else CHARS_PER_TOKEN_BOUND * settings["max_tokens"]
    chars = 0
    with open(path, "w", encoding="utf-8") as out, tqdm(desc="reading documents", unit=" docs", disable=not progress) as bar:
        for doc in src:
            stats["documents_read"] += 1
            text = doc["text"]
            if text is None or not str(text).strip():
                stats["empty_dropped"] += 1
                continue
            if not isinstance(text, str):
                raise ValueError(f"document {doc['id']!r} of {src.description}: text is {type(text).__name__}, not str")
            digest, key = _split_keys(text, settings["seed"])
            if digest in seen:
                stats["duplicates_dropped"] += 1
                continue
            seen.add(digest)
            keys.append(key)
            out.write(json.dumps(text, ensure_ascii=False) + "\n")
            bar.update()
            chars += len(text)
            if len(keys) == settings["max_docs"] or (char_budget is not None and chars >= char_budget):
                break
    return np.asarray(keys, dtype=np.float64), stats


def _val_mask(keys: np.ndarray, val_fraction: float | int, description: str) -> np.ndarray:
    n = len(keys)
    if n < 2:
        raise ValueError(f"{description} yielded {n} non-empty document(s); a train/validation split needs at least 2")
    if isinstance(val_fraction, int):
        if val_fraction >= n:
            raise ValueError(f"val_fraction={val_fraction} documents leaves no training document out of {n}")
        mask = np.zeros(n, dtype=bool)
        mask[np.argsort(keys, kind="stable")[:val_fraction]] = True
        return mask
    mask = keys < val_fraction
    if not mask.any():
        mask[np.argmin(keys)] = True
    if mask.all():
        mask[np.argmax(keys)] = False
    return mask


def _texts(path: Path, mask: np.ndarray | None = None) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if mask is None or mask[i]:
                yield json.loads(line)


def _batches(path: Path) -> Iterator[list[str]]:
    batch, chars = [], 0
    for text in _texts(path):
        batch.append(text)
        chars += len(text)
        if chars >= ENCODE_BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _bounded(texts: Iterator[str], max_chars: int) -> Iterator[str]:
    total = 0
    for text in texts:
        if total >= max_chars:
            return
        total += len(text)
        yield text


def _build(src, tmp: Path, tok, tokenizer_name: str, settings: dict, progress: bool) -> dict:
    docs_path = tmp / "documents.jsonl"
    keys, stats = _collect(src, docs_path, settings, progress)
    if len(keys) == 0:
        raise ValueError(f"{src.description} yielded no non-empty documents ({stats['documents_read']} read); nothing to prepare")
    is_val = _val_mask(keys, settings["val_fraction"], src.description)
    if tok is None:
        tok = train_bpe_tokenizer(
            _bounded(_texts(docs_path, ~is_val), TOKENIZER_TRAIN_CHARS),
            settings["tokenizer"]["train_bpe_vocab_size"],
            length=int((~is_val).sum()),
            show_progress=progress,
        )
    vocab_size = tokenizer_vocab_size(tok)
    eot_id = tok.eos_token_id
    dtype = shard_dtype(vocab_size)
    tok.backend_tokenizer.save(str(tmp / TOKENIZER_FILE))

    counts = {s: {"tokens": 0, "documents": 0} for s in SPLITS}
    max_train = settings["max_tokens"]
    max_id = 0
    files = {s: open(tmp / f"{s}.bin", "wb") for s in SPLITS}
    try:
        index = 0
        with tqdm(total=len(keys), desc="tokenizing", unit=" docs", disable=not progress) as bar:
            for batch in _batches(docs_path):
                for ids in encode_batch(tok, batch):
                    split = "val" if is_val[index] else "train"
                    index += 1
                    arr = np.asarray([eot_id, *ids], dtype=np.int64)
                    if split == "train" and max_train is not None:
                        arr = arr[: max_train - counts["train"]["tokens"]]
                    if arr.size == 0:
                        continue
                    max_id = max(max_id, int(arr.max()))
                    if max_id >= vocab_size:
                        raise ValueError(f"tokenizer produced id {max_id} ≥ its vocabulary size {vocab_size}")
                    files[split].write(arr.astype(dtype).tobytes())
                    counts[split]["tokens"] += arr.size
                    counts[split]["documents"] += 1
                bar.update(len(batch))
    finally:
        for f in files.values():
            f.close()
    docs_path.unlink()
    for split in SPLITS:
        if counts[split]["tokens"] == 0:
            raise ValueError(f"{src.description}: the {split} split has no tokens")

    train = np.memmap(tmp / "train.bin", dtype=dtype, mode="r")
    val = np.memmap(tmp / "val.bin", dtype=dtype, mode="r")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "settings": settings,
        "source": src.description,
        "seed": settings["seed"],
        "val_fraction": settings["val_fraction"],
        "tokenizer": {
            "file": TOKENIZER_FILE,
            "sha256": sha256_file(tmp / TOKENIZER_FILE),
            "name": tokenizer_name,
            "vocab_size": vocab_size,
            "eot_token": tok.eos_token,
            "eot_id": eot_id,
        },
        "vocab_size": vocab_size,
        "dtype": dtype.name,
        "layout": "each document preceded by eot_id",
        "max_token_id": max_id,
        "splits": {s: {"file": f"{s}.bin", **counts[s]} for s in SPLITS},
        "unigram_perplexity": unigram_perplexity(train, val, vocab_size),
        **stats,
        "files": {
            name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name), CHECKSUM: xxh3_file(tmp / name)}
            for name in (TOKENIZER_FILE, "train.bin", "val.bin")
        },
    }
    del train, val
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
