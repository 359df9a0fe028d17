"""Packing documents into fixed-length sequences with EOS between documents."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mambaseq.tasks.lm.packing import (PackedSequenceDataset, TokenArray, append_eos, tokenize_documents,
                                       unigram_entropy)
from mambaseq.tasks.lm.tokenizer import ByteTokenizer


def test_append_eos_puts_eos_after_every_document():
    packed = append_eos([[5, 6], [], [7]], eos_token_id=0, dtype=np.dtype(np.uint16))
    assert packed.tolist() == [5, 6, 0, 0, 7, 0]
    assert packed.dtype == np.uint16


def test_tokenize_documents_with_bytes():
    tokens = tokenize_documents(["ab", "c"], ByteTokenizer(), desc="test")
    assert tokens.tolist() == [97, 98, 256, 99, 256]


def test_packed_sequences_are_shifted_windows_over_the_stream():
    stream = np.arange(23, dtype=np.uint16)
    dataset = PackedSequenceDataset(TokenArray([stream]), seq_len=5)
    assert len(dataset) == (23 - 1) // 5
    for index in range(len(dataset)):
        item = dataset[index]
        expected = torch.arange(index * 5, index * 5 + 6)
        assert torch.equal(item["input_ids"], expected[:-1])
        assert torch.equal(item["labels"], expected[1:])
        assert item["input_ids"].dtype == torch.int64
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_token_array_reads_across_parts_like_one_array():
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 1000, size=n).astype(np.uint16) for n in (7, 1, 0, 13, 4)]
    whole = np.concatenate(parts).astype(np.int64)
    array = TokenArray(parts)
    assert len(array) == len(whole)
    for start in range(len(whole)):
        for stop in range(start, len(whole) + 1, 3):
            np.testing.assert_array_equal(array.read(start, stop), whole[start:stop])
    np.testing.assert_array_equal(array.counts(1000, 3, 20), np.bincount(whole[3:20], minlength=1000))


def test_packed_documents_keep_eos_between_documents_inside_sequences():
    tokenizer = ByteTokenizer()
    stream = tokenize_documents(["hello", "world", "again"], tokenizer, desc="test")
    dataset = PackedSequenceDataset(TokenArray([stream]), seq_len=8)
    flat = torch.cat([dataset[0]["input_ids"], dataset[1]["input_ids"]]).tolist()
    eos_positions = [i for i, token in enumerate(flat) if token == tokenizer.eos_token_id]
    assert eos_positions == [5, 11]
    assert bytes(flat[:5]) == b"hello" and bytes(flat[6:11]) == b"world"


def test_unigram_entropy_matches_definition():
    counts = np.array([3, 1, 0, 4])
    p = np.array([3, 1, 4]) / 8
    assert unigram_entropy(counts) == pytest.approx(float(-(p * np.log(p)).sum()))
    assert unigram_entropy(np.array([0, 10])) == 0.0
    assert unigram_entropy(np.ones(16)) == pytest.approx(math.log(16))
    with pytest.raises(ValueError):
        unigram_entropy(np.zeros(3))
