"""Data layer: embedded corpus, tokenizer, split, shards, validation and the batching contract."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from decaylab.data import (
    EOT,
    TokenDataset,
    load_corpus_documents,
    load_embedded_documents,
    load_tokenizer,
    open_source,
    prepare_dataset,
    train_bpe_tokenizer,
)
from decaylab.data.corpus import EMBEDDED_DIR

VOCAB = 512


@pytest.fixture(scope="module")
def corpus():
    return load_embedded_documents()


@pytest.fixture(scope="module")
def small_jsonl(corpus, tmp_path_factory):
    """~40 short real documents (Moby-Dick chapters and a few speeches) plus one exact duplicate."""
    docs = [d for d in corpus if d["source"] == "moby-dick"][:36] + [d for d in corpus if d["source"] == "sotu"][:4]
    docs.append({"id": "copy-of-first", "text": docs[0]["text"]})
    path = tmp_path_factory.mktemp("src") / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": d["id"], "text": d["text"]}) + "\n" for d in docs))
    return path


@pytest.fixture(scope="module")
def dataset(small_jsonl, tmp_path_factory):
    return prepare_dataset(small_jsonl, tmp_path_factory.mktemp("ds") / "small", vocab_size=VOCAB, val_fraction=0.1, progress=False)


def test_a_carried_dataset_is_used_where_its_corpus_is_missing(corpus, tmp_path, caplog):
    """A prepared dataset on a machine without its source corpus (a sweep carried to an offline GPU):
    prepare_dataset and the training run's open_datasets use it (files verified, a warning) when its
    settings but the source's are the call's; otherwise, or when a file is corrupt, they raise."""
    from decaylab.data.corpus import write_corpus
    from decaylab.train.build import open_datasets

    source = tmp_path / "corpus"
    write_corpus([d for d in corpus if d["source"] == "moby-dick"][:30], source, [{"name": "moby-dick"}])
    out = prepare_dataset(source, tmp_path / "ds", vocab_size=VOCAB, progress=False)
    shutil.rmtree(source)
    with caplog.at_level("WARNING", logger="decaylab.data.prepare"):
        assert prepare_dataset(source, out, vocab_size=VOCAB, progress=False) == out
    assert "cannot be checked" in caplog.text and str(out) in caplog.text
    train, val = open_datasets({"source": str(source), "dir": str(out), "vocab_size": VOCAB, "seed": 0}, False)
    assert (train.directory, val.directory, val.split) == (out, out, "val")
    with pytest.raises(FileNotFoundError):
        prepare_dataset(source, out, vocab_size=2 * VOCAB, progress=False)
    with open(out / "val.bin", "r+b") as f:
        f.write(b"\xff\xff")
    with pytest.raises(ValueError):
        prepare_dataset(source, out, vocab_size=VOCAB, progress=False)


def split_documents(ds: TokenDataset) -> list[str]:
    """Decode a split back into its documents (every document is preceded by EOT)."""
    tokens = np.asarray(ds.tokens)
    starts = np.flatnonzero(tokens == ds.eot_id)
    ends = [*starts[1:], len(tokens)]
    return [ds.tokenizer.decode(tokens[s + 1 : e].tolist()) for s, e in zip(starts, ends)]


def test_embedded_corpus_is_real_verified_text(corpus, tmp_path):
    assert len(corpus) > 400 and len({d["id"] for d in corpus}) == len(corpus)
    assert {d["source"] for d in corpus} == {"sotu", "moby-dick", "shakespeare", "milton"}
    assert sum(len(d["text"]) for d in corpus) > 15_000_000
    assert "Call me Ishmael" in next(d["text"] for d in corpus if d["id"] == "moby-dick/chapter_1")
    copy = tmp_path / "embedded"
    shutil.copytree(EMBEDDED_DIR, copy)
    blob = bytearray((copy / "corpus.jsonl.xz").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (copy / "corpus.jsonl.xz").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"corpus\.jsonl\.xz is corrupt"):
        load_corpus_documents(copy)


def test_tokenizer_is_deterministic_and_round_trips(corpus):
    texts = [d["text"] for d in corpus[233:263]]
    a, b = (train_bpe_tokenizer(texts, VOCAB) for _ in range(2))
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    assert len(a) == VOCAB and a.convert_tokens_to_ids(EOT) == a.eos_token_id
    for text in [corpus[300]["text"], "  two  spaces,\ttab\n\nünïcödé — “quoted” 1790 ", EOT + " literal"]:
        assert a.decode(a(text, add_special_tokens=False)["input_ids"]) == text


def test_split_has_no_leakage_and_is_deterministic(dataset, small_jsonl, tmp_path):
    train, val = TokenDataset.open(dataset, "train"), TokenDataset.open(dataset, "val")
    train_docs, val_docs = split_documents(train), split_documents(val)
    assert len(train_docs) == train.num_documents and len(val_docs) == val.num_documents >= 1
    assert not set(train_docs) & set(val_docs)
    source = {json.loads(line)["text"] for line in small_jsonl.read_text().splitlines()}
    assert set(train_docs) | set(val_docs) == source  # every document once; the duplicate dropped
    assert train.manifest["duplicates_dropped"] == 1

    again = prepare_dataset(small_jsonl, tmp_path / "again", vocab_size=VOCAB, val_fraction=0.1, progress=False)
    for name in ("tokenizer.json", "train.bin", "val.bin", "manifest.json"):
        assert (again / name).read_bytes() == (dataset / name).read_bytes(), name
    other = prepare_dataset(small_jsonl, tmp_path / "seed1", vocab_size=VOCAB, val_fraction=3, seed=1, progress=False)
    other_val = split_documents(TokenDataset.open(other, "val"))
    assert len(other_val) == 3 and set(other_val) != set(val_docs)


def test_prepare_is_idempotent_and_refuses_other_settings(dataset, small_jsonl):
    stamp = (dataset / "train.bin").stat().st_mtime_ns
    assert prepare_dataset(small_jsonl, dataset, vocab_size=VOCAB, val_fraction=0.1, progress=False) == dataset
    assert (dataset / "train.bin").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="val_fraction"):
        prepare_dataset(small_jsonl, dataset, vocab_size=VOCAB, val_fraction=0.2, progress=False)


def test_batch_contract(dataset):
    ds = TokenDataset.open(dataset, "train")
    seq_len, tokens = 32, torch.from_numpy(np.asarray(ds.tokens, dtype=np.int64))
    x, y = ds.batch(5, 8, seq_len, seed=3)
    assert x.shape == y.shape == (8, seq_len) and x.dtype == torch.long
    x2, y2 = ds.batch(5, 8, seq_len, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    ranks = [ds.batch(5, 4, seq_len, seed=3, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.cat([r[0] for r in ranks]), x) and torch.equal(torch.cat([r[1] for r in ranks]), y)
    assert not torch.equal(ds.batch(5, 8, seq_len, seed=4)[0], x)
    # every row is a window at a multiple of seq_len, and targets are the next tokens of the stream
    n = ds.num_windows(seq_len)
    windows = tokens[: n * seq_len].view(n, seq_len)
    for row_x, row_y in zip(x, y):
        (start,) = torch.nonzero((windows == row_x).all(1)).flatten()[:1].tolist()
        assert torch.equal(row_y, tokens[start * seq_len + 1 : (start + 1) * seq_len + 1])
    # one epoch visits every window exactly once, the next epoch in another order
    long = ds.num_tokens // 20
    n = ds.num_windows(long)
    epochs = [[tuple(ds.batch(s, 1, long)[0][0].tolist()) for s in range(e * n, (e + 1) * n)] for e in range(2)]
    every = [tuple(w) for w in tokens[: n * long].view(n, long).tolist()]
    assert sorted(epochs[0]) == sorted(epochs[1]) == sorted(every) and epochs[0] != epochs[1]


def test_iter_eval_reads_the_split_in_order(dataset):
    ds = TokenDataset.open(dataset, "val")
    seq_len, n = 16, ds.num_windows(16)
    batches = list(ds.iter_eval(seq_len, 5))
    inputs = torch.cat([b[0] for b in batches])
    targets = torch.cat([b[1] for b in batches])
    stream = torch.from_numpy(np.asarray(ds.tokens, dtype=np.int64))
    assert len(batches) == math.ceil(n / 5)
    assert torch.equal(inputs.flatten(), stream[: n * seq_len])
    assert torch.equal(targets.flatten(), stream[1 : n * seq_len + 1])
    assert len(list(ds.iter_eval(seq_len, 5, max_batches=2))) == 2


def test_unigram_perplexity_matches_direct_computation(dataset):
    ds = TokenDataset.open(dataset, "val")
    train = np.asarray(TokenDataset.open(dataset, "train").tokens)
    val = np.asarray(ds.tokens)
    counts = np.array([np.sum(train == t) for t in range(ds.vocab_size)], dtype=np.float64)
    p = (counts + 1) / (train.size + ds.vocab_size)
    expected = math.exp(-np.mean(np.log(p[val])))
    assert ds.unigram_perplexity() == pytest.approx(expected, rel=1e-9)
    assert ds.manifest["unigram_perplexity"] == pytest.approx(expected, rel=1e-9)


def copy_dataset(dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    return copy


def test_corrupt_truncated_or_missing_shards_fail_clearly(dataset, tmp_path):
    copy = copy_dataset(dataset, tmp_path)
    blob = bytearray((copy / "train.bin").read_bytes())
    blob[len(blob) // 3] ^= 0x01
    (copy / "train.bin").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"train\.bin is corrupt.*prepare it again"):
        TokenDataset.open(copy, "val")
    (copy / "train.bin").write_bytes(bytes(blob[:-2]))
    with pytest.raises(ValueError, match=r"train\.bin is \d+ bytes"):
        TokenDataset.open(copy, "train")
    shutil.copy(dataset / "train.bin", copy / "train.bin")
    (copy / "val.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"val\.bin is missing"):
        TokenDataset.open(copy, "train")
    with pytest.raises(FileNotFoundError, match="not a prepared decaylab dataset"):
        TokenDataset.open(tmp_path, "train")


def test_tokenizer_that_does_not_match_the_shards_fails_clearly(dataset, corpus, tmp_path):
    copy = copy_dataset(dataset, tmp_path)
    other = train_bpe_tokenizer([d["text"] for d in corpus[300:305]], VOCAB)
    other.backend_tokenizer.save(str(copy / "tokenizer.json"))
    with pytest.raises(ValueError, match=r"tokenizer\.json does not match the tokenizer the shards were made with"):
        TokenDataset.open(copy, "train")


def test_empty_input_fails_clearly(tmp_path):
    src = tmp_path / "empty"
    src.mkdir()
    (src / "a.txt").write_text("  \n\n")
    (src / "b.jsonl").write_text(json.dumps({"text": ""}) + "\n")
    with pytest.raises(ValueError, match="no non-empty documents"):
        prepare_dataset(src, tmp_path / "out", vocab_size=VOCAB, progress=False)
    assert not (tmp_path / "out").exists()
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        open_source(tmp_path / "nothing")


def test_local_txt_jsonl_parquet_and_hf_sources(corpus, tmp_path):
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    texts = [d["text"] for d in corpus if d["source"] == "moby-dick"][:12]
    src = tmp_path / "mixed"
    (src / "txt").mkdir(parents=True)
    (src / "txt" / "one.txt").write_text(texts[0])
    (src / "txt" / "two.txt").write_text(f"{texts[1]}\n{EOT}\n{texts[2]}")
    (src / "part.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in texts[3:7]))
    pq.write_table(pa.table({"body": texts[7:12]}), src / "part.parquet")
    (src / "txt" / "three.txt").write_text(json.dumps({"body": "x"}))  # .txt: read verbatim, not parsed
    docs = list(open_source(src, text_field="body"))
    assert [d["text"] for d in docs] == [*texts[3:7], *texts[7:12], texts[0], '{"body": "x"}', texts[1] + "\n", texts[2]]
    with pytest.raises(ValueError, match=r"no field 'text'.*body"):
        list(open_source(src / "part.jsonl"))

    out = prepare_dataset(src, tmp_path / "ds", vocab_size=300, val_fraction=2, text_field="body", max_tokens=5000, progress=False)
    train = TokenDataset.open(out, "train")
    assert train.num_tokens == 5000 and TokenDataset.open(out, "val").num_documents == 2
    assert train.vocab_size == 300 and train.tokens.dtype == np.uint16

    pytest.importorskip("datasets")
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    (hf_dir / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:3]))
    assert [d["text"] for d in open_source(f"hf:{hf_dir}")] == texts[:3]


def test_existing_tokenizer_by_file_or_dataset(dataset, small_jsonl, tmp_path):
    for i, tokenizer in enumerate([dataset / "tokenizer.json", dataset]):
        out = prepare_dataset(small_jsonl, tmp_path / f"ds{i}", tokenizer=tokenizer, val_fraction=0.1, progress=False)
        for split in ("train", "val"):
            assert (out / f"{split}.bin").read_bytes() == (dataset / f"{split}.bin").read_bytes()
        tok = load_tokenizer(tokenizer)
        assert tok.decode(tok("Call me Ishmael.", add_special_tokens=False)["input_ids"]) == "Call me Ishmael."


def test_embedded_source_with_a_document_cap(tmp_path):
    out = prepare_dataset("embedded", tmp_path / "e", vocab_size=VOCAB, val_fraction=2, max_docs=8, progress=False)
    train, val = TokenDataset.open(out, "train"), TokenDataset.open(out, "val")
    assert (train.num_documents, val.num_documents) == (6, 2)
    assert train.manifest["source"] == "embedded corpus" and train.tokens.dtype == np.uint16
    assert train.unigram_perplexity() > 50  # real text under a 512-token unigram model
