"""Document sources: where the text of ``prepare_dataset`` comes from.

``open_source(spec)`` accepts

* ``"embedded"`` — the committed default corpus (``decaylab/data/embedded``);
* ``"large"`` — the optional corpus built by ``scripts/build_corpus.py --large``;
* a corpus directory written by ``scripts/build_corpus.py --out DIR``;
* a local file or a directory (searched recursively, files in sorted order) of
  ``.txt``, ``.jsonl`` and ``.parquet`` files (``.txt.gz`` and ``.jsonl.gz`` too):

  - ``.txt``: the whole file is one document, unless it contains separator
    lines — lines that are exactly ``<|endoftext|>`` — which split it into
    several documents;
  - ``.jsonl``: one JSON object per line, the text in field ``text_field``;
  - ``.parquet``: one row per document, the text in column ``text_field``;

* ``"hf:<dataset>[:<config>][:<split>]"`` — a Hugging Face ``datasets`` dataset,
  streamed (``streaming=True``), e.g. ``hf:HuggingFaceFW/fineweb-edu:sample-10BT:train``.
  With a single field after the name it is the config, unless it is ``train``,
  ``validation`` or ``test``; the split defaults to ``train``.

Every source yields ``{"id": str, "text": str}`` dicts.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from decaylab.data.corpus import (
    CORPUS_FORMAT,
    EMBEDDED_DIR,
    EMBEDDED_HINT,
    LARGE_DIR,
    LARGE_HINT,
    load_corpus_documents,
    read_corpus_manifest,
)
from decaylab.data.manifest import MANIFEST_FILE
from decaylab.data.tokenizer import EOT

SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".jsonl.gz", ".parquet")
SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True)
class DocumentSource:
    """An iterable of ``{"id", "text"}`` documents with a description and a fingerprint.

    ``fingerprint`` identifies the content cheaply (corpus checksum, file sizes
    and modification times, or the dataset name); ``prepare_dataset`` compares
    it to decide whether an existing dataset can be reused.
    """

    description: str
    fingerprint: dict
    documents: Callable[[], Iterator[dict]]

    def __iter__(self) -> Iterator[dict]:
        return self.documents()


def open_source(spec: str | Path, *, text_field: str = "text") -> DocumentSource:
    """Resolve a source spec (see the module docstring) without reading it yet."""
    if isinstance(spec, str) and spec == "embedded":
        return _corpus_source("embedded corpus", EMBEDDED_DIR, EMBEDDED_HINT)
    if isinstance(spec, str) and spec == "large":
        return _corpus_source("large corpus", LARGE_DIR, LARGE_HINT)
    if isinstance(spec, str) and spec.startswith("hf:"):
        return _hf_source(spec, text_field)
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(
            f"data source {str(spec)!r} is neither 'embedded', 'large', 'hf:<dataset>[:<config>][:<split>]' nor an existing path"
        )
    if path.is_dir() and _is_corpus_dir(path):
        return _corpus_source(f"corpus {path.resolve()}", path, "rebuild it with `python scripts/build_corpus.py --out DIR`")
    files = _local_files(path)
    fingerprint = {"files": [[str(f.relative_to(path) if path.is_dir() else f.name), f.stat().st_size, f.stat().st_mtime_ns] for f in files]}
    return DocumentSource(f"local {path.resolve()}", fingerprint, lambda: _local_documents(path, files, text_field))


def _is_corpus_dir(path: Path) -> bool:
    try:
        return json.loads((path / MANIFEST_FILE).read_text()).get("format") == CORPUS_FORMAT
    except (OSError, ValueError):
        return False


def _corpus_source(description: str, directory: Path, hint: str) -> DocumentSource:
    manifest = read_corpus_manifest(directory, hint=hint)

    def documents() -> Iterator[dict]:
        for doc in load_corpus_documents(directory, hint=hint):
            yield {"id": doc["id"], "text": doc["text"]}

    return DocumentSource(description, {"corpus_sha256": manifest["sha256"]}, documents)


def _local_files(path: Path) -> list[Path]:
    if path.is_file():
        if not path.name.endswith(SUFFIXES):
            raise ValueError(f"unsupported file {path}: expected one of {', '.join(SUFFIXES)}")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
    if not files:
        raise ValueError(f"directory {path} holds no {', '.join(SUFFIXES)} files")
    return files


def _local_documents(root: Path, files: list[Path], text_field: str) -> Iterator[dict]:
    for f in files:
        name = str(f.relative_to(root)) if root.is_dir() else f.name
        if f.name.endswith((".txt", ".txt.gz")):
            yield from _txt_documents(f, name)
        elif f.name.endswith((".jsonl", ".jsonl.gz")):
            yield from _jsonl_documents(f, name, text_field)
        else:
            yield from _parquet_documents(f, name, text_field)


def _require(module: str, purpose: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{purpose} needs `{module.split('.')[0]}`: pip install 'decaylab[data]'") from None


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 text file (gzipped when it ends in .gz); one that is not UTF-8 is named in the error."""
    with _open_text(path) as f:
        try:
            yield from f
        except UnicodeDecodeError as e:
            raise ValueError(f"{path} is not UTF-8 text ({e.reason}: byte {e.object[e.start:e.start + 1]!r}); "
                             "convert it to UTF-8, e.g. iconv -f latin1 -t utf-8") from None


def _txt_documents(path: Path, name: str) -> Iterator[dict]:
    parts, lines = [], []
    for line in _lines(path):
        if line.rstrip("\r\n") == EOT:
            parts.append("".join(lines))
            lines = []
        else:
            lines.append(line)
    parts.append("".join(lines))
    for i, text in enumerate(parts):
        yield {"id": name if len(parts) == 1 else f"{name}#{i}", "text": text}


def _jsonl_documents(path: Path, name: str, text_field: str) -> Iterator[dict]:
    for lineno, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {lineno}: invalid JSON ({e})") from None
        if not isinstance(obj, dict) or text_field not in obj:
            keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(f"{path}, line {lineno}: no field {text_field!r} (found {keys}); pass text_field=")
        yield {"id": f"{name}:{lineno}", "text": obj[text_field]}


def _parquet_documents(path: Path, name: str, text_field: str) -> Iterator[dict]:
    pq = _require("pyarrow.parquet", f"reading {path}")
    pf = pq.ParquetFile(path)
    if text_field not in pf.schema_arrow.names:
        raise ValueError(f"{path}: no column {text_field!r} (found {pf.schema_arrow.names}); pass text_field=")
    row = 0
    for batch in pf.iter_batches(columns=[text_field], batch_size=1024):
        for text in batch.column(0).to_pylist():
            yield {"id": f"{name}:{row}", "text": text}
            row += 1


def parse_hf_spec(spec: str) -> tuple[str, str | None, str]:
    """``"hf:name[:config][:split]"`` → ``(name, config, split)``."""
    fields = spec[3:].split(":")
    if not fields[0] or len(fields) > 3:
        raise ValueError(f"bad Hugging Face source {spec!r}: expected 'hf:<dataset>[:<config>][:<split>]'")
    name, rest = fields[0], fields[1:]
    if len(rest) == 2:
        return name, rest[0] or None, rest[1] or "train"
    if len(rest) == 1 and rest[0] in SPLIT_NAMES:
        return name, None, rest[0]
    return name, (rest[0] or None) if rest else None, "train"


def _hf_source(spec: str, text_field: str) -> DocumentSource:
    name, config, split = parse_hf_spec(spec)

    def documents() -> Iterator[dict]:
        datasets = _require("datasets", f"streaming {spec}")
        stream = datasets.load_dataset(name, config, split=split, streaming=True)
        for i, example in enumerate(stream):
            if text_field not in example:
                raise ValueError(f"{spec}: example {i} has no field {text_field!r} (found {sorted(example)}); pass text_field=")
            yield {"id": str(example.get("id", f"{spec}#{i}")), "text": example[text_field]}

    return DocumentSource(f"hf {name} config={config} split={split}", {"hf": [name, config, split]}, documents)
