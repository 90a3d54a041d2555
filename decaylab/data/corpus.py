"""Text corpora stored as xz-compressed JSON lines, verified against a manifest.

A corpus directory holds ``corpus.jsonl.xz`` (one document per line:
``{"id": str, "source": str, "text": str}``) and ``manifest.json`` (its sha256,
size, counts and the record of every source). ``scripts/build_corpus.py``
writes them; the embedded corpus is committed under ``decaylab/data/embedded`` so that
the default experiments need no network at all.
"""
from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
from pathlib import Path

from decaylab.atomic import write_bytes_atomic, write_text_atomic
from decaylab.data.manifest import MANIFEST_FILE, read_versioned_manifest

CORPUS_FILE = "corpus.jsonl.xz"
CORPUS_FORMAT = "decaylab-corpus"
CORPUS_FORMAT_VERSION = 1

EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"  # package data: ships in the wheel
LARGE_DIR = Path(os.environ.get("DECAYLAB_CACHE", Path.home() / ".cache" / "decaylab")) / "corpus-large"

EMBEDDED_HINT = "restore it with `git checkout -- decaylab/data/embedded` (or reinstall decaylab) or rebuild it with `python scripts/build_corpus.py`"
LARGE_HINT = "build it with `python scripts/build_corpus.py --large`"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_corpus(documents: list[dict], out_dir: str | Path, sources: list[dict]) -> dict:
    """Write ``documents`` and their manifest into ``out_dir``; returns the manifest.

    The output is a pure function of the inputs (sorted JSON keys, fixed xz
    preset), so rebuilding from the same pinned sources gives identical bytes.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = [d["id"] for d in documents]
    if len(set(ids)) != len(ids):
        raise ValueError("corpus document ids must be unique")
    lines = "".join(
        json.dumps({"id": d["id"], "source": d["source"], "text": d["text"]}, ensure_ascii=False, sort_keys=True) + "\n"
        for d in documents
    ).encode("utf-8")
    blob = lzma.compress(lines, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=9)
    manifest = {
        "format": CORPUS_FORMAT,
        "format_version": CORPUS_FORMAT_VERSION,
        "file": CORPUS_FILE,
        "sha256": sha256_bytes(blob),
        "bytes": len(blob),
        "uncompressed_bytes": len(lines),
        "documents": len(documents),
        "characters": sum(len(d["text"]) for d in documents),
        "sources": sources,
    }
    write_bytes_atomic(out_dir / CORPUS_FILE, blob)
    write_text_atomic(out_dir / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_corpus_manifest(corpus_dir: str | Path, *, hint: str = "rebuild it with `python scripts/build_corpus.py`") -> dict:
    path = Path(corpus_dir) / MANIFEST_FILE
    return read_versioned_manifest(
        path, CORPUS_FORMAT, CORPUS_FORMAT_VERSION, what=f"corpus manifest {path}",
        missing=f"corpus manifest {path} is missing; {hint}", hint=hint,
    )


def load_corpus_documents(corpus_dir: str | Path, *, hint: str = "rebuild it with `python scripts/build_corpus.py`") -> list[dict]:
    """Read a corpus directory, verifying the compressed file's sha256 first.

    Returns a list of ``{"id", "source", "text"}`` dicts in corpus order.
    Raises FileNotFoundError (missing file) or ValueError (checksum mismatch,
    corrupt xz stream, bad JSON line, count mismatch) naming the file.
    """
    corpus_dir = Path(corpus_dir)
    manifest = read_corpus_manifest(corpus_dir, hint=hint)
    path = corpus_dir / manifest["file"]
    if not path.is_file():
        raise FileNotFoundError(f"corpus file {path} is missing; {hint}")
    blob = path.read_bytes()
    digest = sha256_bytes(blob)
    if digest != manifest["sha256"]:
        raise ValueError(
            f"corpus file {path} is corrupt: sha256 {digest[:16]}… does not match the manifest's "
            f"{manifest['sha256'][:16]}…; {hint}"
        )
    try:
        text = lzma.decompress(blob).decode("utf-8")
    except (lzma.LZMAError, UnicodeDecodeError) as e:
        raise ValueError(f"corpus file {path} cannot be decompressed ({e}); {hint}") from None
    documents = []
    for lineno, line in enumerate(io.StringIO(text), 1):
        try:
            documents.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"corpus file {path}, line {lineno}: invalid JSON ({e}); {hint}") from None
    if len(documents) != manifest["documents"]:
        raise ValueError(f"corpus file {path} holds {len(documents)} documents, manifest says {manifest['documents']}; {hint}")
    return documents


def load_embedded_documents() -> list[dict]:
    """The committed default corpus (public-domain English; see decaylab/data/embedded/SOURCES.md).

    Returns a list of ``{"id", "source", "text"}`` dicts, checksum-verified.
    """
    return load_corpus_documents(EMBEDDED_DIR, hint=EMBEDDED_HINT)


def load_large_documents(corpus_dir: str | Path | None = None) -> list[dict]:
    """The optional larger corpus built by ``python scripts/build_corpus.py --large``.

    Looks in ``corpus_dir`` or, by default, ``$DECAYLAB_CACHE/corpus-large``
    (``~/.cache/decaylab/corpus-large``).
    """
    return load_corpus_documents(LARGE_DIR if corpus_dir is None else corpus_dir, hint=LARGE_HINT)
