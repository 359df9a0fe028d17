"""LMDataModule: local files, prepared folders, HF datasets (local builder files), holdout, errors, stream resume."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mambaseq.tasks.lm import prepare
from mambaseq.tasks.lm.datamodule import LMDataModule
from mambaseq.tasks.lm.documents import HFSource, iter_documents
from mambaseq.tasks.lm.packing import tokenize_documents
from mambaseq.tasks.lm.streaming import StreamingDataLoader, StreamingPackedDataset
from mambaseq.tasks.lm.tokenizer import ByteTokenizer


def _stream(loader):
    return torch.cat([batch["input_ids"].flatten() for batch in loader]).tolist()


def _documents(path):
    return [json.loads(line)["text"] for line in open(path)]


def test_formats_give_the_same_tokens(tmp_path, corpus):
    documents = _documents(corpus)
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as file:
        file.write(corpus.read_text())
    pq.write_table(pa.table({"text": documents}), tmp_path / "c.parquet")
    for index, document in enumerate(documents[:3]):
        (tmp_path / f"doc{index}.txt").write_text(document)
    expected = tokenize_documents(documents, ByteTokenizer(), desc="reference")
    for source in ("c.jsonl.gz", "c.parquet"):
        data = LMDataModule(train=[str(tmp_path / source)], val=[str(corpus)], tokenizer="bytes", seq_len=16,
                            batch_size=2)
        data.setup("fit")
        np.testing.assert_array_equal(data.tokens["train"].read(0, len(expected)), expected)
    texts = list(iter_documents(sorted(tmp_path.glob("doc*.txt"))))
    assert texts == documents[:3]


def test_holdout_is_seeded_and_disjoint(corpus):
    def splits(seed):
        data = LMDataModule(train=[str(corpus)], tokenizer="bytes", seq_len=16, batch_size=2, holdout_fraction=0.2,
                            seed=seed)
        data.setup("fit")
        data.setup("test")
        return {split: data.tokens[split].read(0, len(data.tokens[split])) for split in ("train", "val", "test")}

    first, again, other = splits(1), splits(1), splits(2)
    for split in first:
        np.testing.assert_array_equal(first[split], again[split])
    assert not np.array_equal(first["val"], other["val"])
    eos = ByteTokenizer().eos_token_id
    documents = {split: [tuple(doc) for doc in np.split(tokens, np.flatnonzero(tokens == eos) + 1) if len(doc)]
                 for split, tokens in first.items()}
    assert sum(len(docs) for docs in documents.values()) == 60
    assert not set(documents["val"]) & set(documents["train"])
    assert 4 <= len(documents["val"]) <= 20 and 4 <= len(documents["test"]) <= 20


def test_prepared_folder_matches_in_memory(tmp_path, corpus):
    prepare.main([str(corpus), "--output", str(tmp_path / "prepared"), "--tokenizer", "bytes", "--workers", "0",
                  "--documents-per-shard", "7"])
    memmap = LMDataModule(train=[str(tmp_path / "prepared")], val=[str(corpus)], tokenizer="bytes", seq_len=16,
                          batch_size=4, seed=0)
    memory = LMDataModule(train=[str(corpus)], val=[str(corpus)], tokenizer="bytes", seq_len=16, batch_size=4, seed=0)
    for data in (memmap, memory):
        data.setup("fit")
    assert _stream(memmap.train_dataloader()) == _stream(memory.train_dataloader())
    assert memmap.max_token_id == memory.max_token_id == 256
    assert memmap.unigram_entropy("val") == pytest.approx(memory.unigram_entropy("val"))

    wrong_tokenizer = LMDataModule(train=[str(tmp_path / "prepared")], tokenizer="gpt-neox-20b", seq_len=16)
    with pytest.raises(ValueError, match="prepared with tokenizer 'bytes'"):
        wrong_tokenizer.setup("fit")


def test_hf_builder_on_local_files_in_memory_and_streaming(tmp_path, make_corpus):
    train, val = make_corpus("train.jsonl", num_docs=40, seed=1), make_corpus("val.jsonl", num_docs=10, seed=2)
    files = {"train": str(train), "validation": str(val)}
    local = LMDataModule(train=[str(train)], val=[str(val)], tokenizer="bytes", seq_len=16, batch_size=4)
    in_memory = LMDataModule(hf=HFSource(path="json", data_files=files, streaming=False, test_split=None),
                             tokenizer="bytes", seq_len=16, batch_size=4)
    for data in (local, in_memory):
        data.setup("fit")
    assert _stream(local.val_dataloader()) == _stream(in_memory.val_dataloader())

    streamed = LMDataModule(hf=HFSource(path="json", data_files=files, test_split=None), tokenizer="bytes",
                            seq_len=16, batch_size=4, eval_max_sequences=8, streaming_epoch_sequences=12)
    streamed.setup("fit")
    expected = local.tokens["train"].read(0, 12 * 16)
    assert _stream(streamed.train_dataloader()) == expected.tolist()
    assert _stream(streamed.val_dataloader()) == local.tokens["val"].read(0, 8 * 16).tolist()
    assert _stream(streamed.val_dataloader()) == local.tokens["val"].read(0, 8 * 16).tolist()  # restarts
    assert streamed.max_token_id == 256


def test_streaming_position_resumes_exactly_and_wraps_around(make_corpus):
    path = make_corpus("train.jsonl", num_docs=4, seed=3)
    source = HFSource(path="json", data_files={"train": str(path)})

    def loader():
        dataset = StreamingPackedDataset(source, "train", text_field="text", tokenizer=ByteTokenizer(), seq_len=8,
                                         epoch_sequences=30)
        return StreamingDataLoader(dataset, batch_size=3)

    reference = loader()
    full = [batch["input_ids"] for _ in range(3) for batch in reference]  # 3 epochs: the corpus wraps around
    assert reference.dataset.position["passes"] >= 1

    interrupted = loader()
    iterator = iter(interrupted)
    head = [next(iterator)["input_ids"] for _ in range(4)]
    state = interrupted.state_dict()
    resumed = loader()
    resumed.load_state_dict(state)
    tail = [batch["input_ids"] for batch in resumed] + [batch["input_ids"] for _ in range(2) for batch in resumed]
    for step, (expected, got) in enumerate(zip(full, head + tail)):
        assert torch.equal(expected, got), f"batch {step}"
    with pytest.raises(ValueError, match="num_workers=0"):
        StreamingDataLoader(reference.dataset, batch_size=3, num_workers=2)


def test_missing_files_are_named(tmp_path, corpus):
    data = LMDataModule(train=[str(corpus), str(tmp_path / "missing.jsonl")], tokenizer="bytes")
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        data.setup("fit")
    with pytest.raises(FileNotFoundError, match=r"no-match-\*"):
        LMDataModule(train=[str(tmp_path / "no-match-*.jsonl")], tokenizer="bytes").setup("fit")
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        LMDataModule(train=[str(tmp_path / "folder")], tokenizer="bytes").setup("fit")


def test_empty_and_too_short_data_are_errors(tmp_path, corpus):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="train split holds no documents"):
        LMDataModule(train=[str(empty)], tokenizer="bytes").setup("fit")
    with pytest.raises(ValueError, match="fewer than one sequence"):
        LMDataModule(train=[str(corpus)], val=[str(corpus)], tokenizer="bytes", seq_len=100_000).setup("fit")
    with pytest.raises(ValueError, match="no val data"):
        LMDataModule(train=[str(corpus)], tokenizer="bytes").setup("fit")


def test_wrong_text_field_and_format_are_named(tmp_path, corpus):
    with pytest.raises(KeyError, match="'body'"):
        LMDataModule(train=[str(corpus)], text_field="body", tokenizer="bytes").setup("fit")
    other = tmp_path / "data.csv"
    other.write_text("a,b\n")
    with pytest.raises(ValueError, match="data.csv"):
        LMDataModule(train=[str(other)], tokenizer="bytes").setup("fit")
