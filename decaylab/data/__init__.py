"""Data: the embedded corpus, tokenizers, token shards with a document-level split, and loaders.

    from decaylab.data import prepare_dataset, TokenDataset
    path = prepare_dataset("embedded", "runs/data/embedded-8k")      # idempotent
    train = TokenDataset.open(path, "train")
    inputs, targets = train.batch(step, batch_size, seq_len, seed=0, rank=r, world_size=w)
"""
from decaylab.data.corpus import load_corpus_documents, load_embedded_documents, load_large_documents
from decaylab.data.dataset import TokenDataset, unigram_perplexity
from decaylab.data.manifest import read_manifest, validate_dataset
from decaylab.data.prepare import prepare_dataset
from decaylab.data.sources import DocumentSource, open_source
from decaylab.data.tokenizer import EOT, load_tokenizer, train_bpe_tokenizer

__all__ = [
    "EOT",
    "DocumentSource",
    "TokenDataset",
    "load_corpus_documents",
    "load_embedded_documents",
    "load_large_documents",
    "load_tokenizer",
    "open_source",
    "prepare_dataset",
    "read_manifest",
    "train_bpe_tokenizer",
    "unigram_perplexity",
    "validate_dataset",
]
