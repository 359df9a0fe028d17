"""Token streams for the sweep: a genome (DNA, character ids) or a text corpus (any LM tokenizer).

Defaults are the bundled data: `bundled:helicobacter_pylori` (200 kbp) for DNA, the KJV Bible for text.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mambaseq.tasks.scaling.config import DataConfig
from mambaseq.tasks.scaling.windows import TokenStream

DEFAULT_GENOME = "bundled:helicobacter_pylori"


def _bundled_corpus() -> Path:
    import mambaseq

    return Path(mambaseq.__file__).resolve().parent / "assets" / "data" / "lm" / "kjv_bible.jsonl.gz"


def dna_tokens(path: str | None) -> tuple[np.ndarray, int]:
    """All records of a FASTA file concatenated, as DNA token ids; and the vocabulary size."""
    from mambaseq.tasks.dna.bundled import resolve_fasta
    from mambaseq.tasks.dna.genome import Genome
    from mambaseq.tasks.dna.tokenizer import VOCAB_SIZE

    genome = Genome(resolve_fasta(path or DEFAULT_GENOME))
    records = [genome.fetch(name, 0, genome.lengths[name]) for name in genome.names]
    return np.concatenate(records), VOCAB_SIZE


def text_tokens(path: str | None, tokenizer_spec: str) -> tuple[np.ndarray, int]:
    """The documents of a text/JSONL file tokenized and joined with EOS; and the tokenizer's vocabulary size."""
    from mambaseq.tasks.lm.documents import iter_file_documents
    from mambaseq.tasks.lm.packing import tokenize_documents
    from mambaseq.tasks.lm.tokenizer import load_text_tokenizer

    corpus = Path(path) if path else _bundled_corpus()
    if not corpus.is_file():
        raise FileNotFoundError(f"scaling data.path: {corpus} does not exist")
    tokenizer = load_text_tokenizer(tokenizer_spec)
    tokens = tokenize_documents(iter_file_documents(corpus), tokenizer, desc=f"tokenizing {corpus.name}")
    return tokens, tokenizer.vocab_size


def load_token_stream(config: DataConfig) -> TokenStream:
    """The configured source as one stream, the last `val_fraction` held out for validation."""
    if config.source == "dna":
        tokens, vocab_size = dna_tokens(config.path)
    else:
        tokens, vocab_size = text_tokens(config.path, config.tokenizer)
    return TokenStream.split(torch.from_numpy(tokens.astype(np.int64)), vocab_size, config.val_fraction,
                             f"data source {config.source!r} ({config.path or 'bundled'})")
