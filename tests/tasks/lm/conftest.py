"""Fixtures of the LM task tests: small random corpora and a tiny model (bytes tokenizer: vocab 257, no files)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mambaseq.config import BackboneConfig, LMConfig

WORDS = ("the", "lord", "said", "unto", "moses", "and", "of", "in", "light", "day", "waters", "earth")


def _write_corpus(path, num_docs: int = 60, seed: int = 0, field: str = "text"):
    rng = np.random.default_rng(seed)
    with open(path, "w") as file:
        for index in range(num_docs):
            words = " ".join(rng.choice(WORDS, size=rng.integers(5, 40)))
            file.write(json.dumps({field: f"{index}: {words}."}) + "\n")
    return path


@pytest.fixture
def make_corpus(tmp_path):
    """`make_corpus(name, num_docs=60, seed=0, field="text")` writes a jsonl file of short random documents."""
    return lambda name="corpus.jsonl", **kwargs: _write_corpus(tmp_path / name, **kwargs)


@pytest.fixture
def corpus(make_corpus):
    return make_corpus()


@pytest.fixture
def tiny_lm():
    return LMConfig(backbone=BackboneConfig(d_model=32, n_layer=2), vocab_size=257)
