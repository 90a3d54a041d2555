"""Issue 14, data: every byte and token id of a shard checked on first use, prepare never deletes what
decaylab did not write, undecodable input named, and a manifest reader that fails only with clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decaylab.data import TokenDataset, prepare_dataset
from decaylab.data.corpus import EMBEDDED_DIR
from decaylab.data.manifest import MANIFEST_FILE, read_versioned_manifest, sha256_file, xxh3_file
from tests.test_train import dataset_dir, write_corpus  # noqa: F401  (dataset_dir is a fixture)


def _rewrite_shard(directory, tokens: np.ndarray) -> None:
    """Replace train.bin with ``tokens`` and make the manifest describe it (as prepare would have)."""
    path = directory / "train.bin"
    path.write_bytes(tokens.tobytes())
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    manifest["files"]["train.bin"].update(bytes=path.stat().st_size, sha256=sha256_file(path), xxh3_128=xxh3_file(path))
    manifest["splits"]["train"]["tokens"] = len(tokens)
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_zeroed_middle_block_of_a_large_shard_is_caught_on_first_use(dataset_dir, tmp_path):
    copy = shutil.copytree(dataset_dir, tmp_path / "copy")
    vocab = json.loads((copy / MANIFEST_FILE).read_text())["vocab_size"]
    tokens = np.random.default_rng(0).integers(1, vocab, size=3 << 20, dtype=np.uint16)  # a 6 MiB shard
    _rewrite_shard(copy, tokens)
    assert len(TokenDataset.open(copy, "train")) == len(tokens)
    blob = bytearray((copy / "train.bin").read_bytes())
    blob[2 << 20 : 4 << 20] = bytes(2 << 20)  # 2 MiB of zeros in the middle; first and last MiB intact
    (copy / "train.bin").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"train\.bin is corrupt: its xxh3_128 checksum does not match"):
        TokenDataset.open(copy, "train")


def test_token_ids_outside_the_vocabulary_are_named_with_file_and_offset(dataset_dir, tmp_path):
    copy = shutil.copytree(dataset_dir, tmp_path / "copy")
    vocab = json.loads((copy / MANIFEST_FILE).read_text())["vocab_size"]
    tokens = np.ones(5000, dtype=np.uint16)
    tokens[1234] = vocab + 7
    _rewrite_shard(copy, tokens)
    with pytest.raises(ValueError, match=rf"train\.bin: token id {vocab + 7} at byte offset 2468 \(token 1234\) "
                                         rf"is outside the vocabulary of {vocab} ids"):
        TokenDataset.open(copy, "val")


def test_overwrite_never_deletes_a_file_decaylab_did_not_write(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", n_docs=30)
    out = prepare_dataset(corpus, tmp_path / "ds", vocab_size=300, progress=False)
    before = (out / "train.bin").read_bytes()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds files decaylab did not write \(notes\.txt\)"):
        prepare_dataset(corpus, out, vocab_size=320, overwrite=True, progress=False)
    assert (out / "notes.txt").read_text() == "mine" and (out / "train.bin").read_bytes() == before

    (out / "notes.txt").unlink()
    (out / MANIFEST_FILE).write_text("{}")  # a manifest decaylab cannot read: never replaced
    with pytest.raises(FileExistsError, match=r"is not a dataset decaylab can read .* never replaced"):
        prepare_dataset(corpus, out, vocab_size=320, overwrite=True, progress=False)
    assert (out / "train.bin").read_bytes() == before


def test_the_committed_corpus_directory_is_never_a_target(tmp_path):
    listing = sorted(p.name for p in EMBEDDED_DIR.iterdir())
    with pytest.raises(ValueError, match="inside the committed corpus directory"):
        prepare_dataset("embedded", EMBEDDED_DIR, overwrite=True, progress=False)
    assert sorted(p.name for p in EMBEDDED_DIR.iterdir()) == listing


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 au lait\n".encode("latin-1") * 10)
    with pytest.raises(ValueError, match=rf"{path} is not UTF-8 text .*iconv"):
        prepare_dataset(path, tmp_path / "ds", vocab_size=300, progress=False)


MANIFEST_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


@settings(max_examples=80, deadline=None, database=None)
@given(st.binary(max_size=64) | MANIFEST_VALUES.map(lambda v: json.dumps(v).encode())
       | st.dictionaries(st.sampled_from(["format", "format_version", "files"]),
                         st.sampled_from(["decaylab-tokens", 1, 2, None, "x"])).map(lambda v: json.dumps(v).encode()))
def test_manifest_reader_returns_the_format_or_raises_a_clear_value_error(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("m") / "manifest.json"
    path.write_bytes(raw)
    try:
        manifest = read_versioned_manifest(path, "decaylab-tokens", 1, what=str(path), missing="missing", hint="HINT")
    except ValueError as e:
        assert str(e).endswith("HINT") and str(path) in str(e)
        return
    assert isinstance(manifest, dict) and manifest["format"] == "decaylab-tokens" and manifest["format_version"] == 1


def test_sweep_report_survives_a_corrupt_eval_json_and_names_the_run(tmp_path):
    from decaylab.sweep import presets
    from decaylab.sweep.report import write_report
    from decaylab.sweep.rundir import init_sweep, load_sweep, run_state

    families, scale, seeds = presets.resolve("quick", ["d"])
    init_sweep(tmp_path, "quick", families, scale, seeds,
               {"source": None, "dir": str(tmp_path / "data"), "vocab_size": 2048, "seed": 0, "unigram_ppl": 500.0})
    good, bad = (r.run_id for r in load_sweep(tmp_path)[2][:2])
    for run_id, evaluation in ((good, '{"complete": true}'), (bad, '{"complete": tr')):
        run_dir = tmp_path / "runs" / run_id
        run_dir.mkdir(parents=True)
        (run_dir / "final.json").write_text(json.dumps({"val_loss": 5.0, "val_ppl": 148.4, "steps": 1}))
        (run_dir / "eval.json").write_text(evaluation)
    assert run_state(tmp_path / "runs" / bad) == "failed"
    report = write_report(tmp_path).read_text()
    assert f"Failed: `{bad}`: eval.json is corrupt" in report and "1 trained, 1 failed" in report
