"""`mambaseq prepare`: memmap shards round trip, resume skipping finished shards, setting mismatches."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mambaseq.tasks.lm import prepare as prepare_module
from mambaseq.tasks.lm.documents import iter_documents
from mambaseq.tasks.lm.memmap import MANIFEST_NAME, open_prepared, read_manifest
from mambaseq.tasks.lm.packing import tokenize_documents
from mambaseq.tasks.lm.tokenizer import ByteTokenizer


def _write_corpus(folder, num_files=2, docs_per_file=23):
    rng = np.random.default_rng(0)
    paths = []
    for file_index in range(num_files):
        path = folder / f"part{file_index}.jsonl"
        with open(path, "w") as file:
            for doc in range(docs_per_file):
                words = " ".join(f"w{rng.integers(100)}" for _ in range(rng.integers(0, 30)))
                file.write(json.dumps({"content": f"doc {file_index}.{doc}: {words}"}) + "\n")
        paths.append(path)
    return paths


def _argv(paths, output, *extra):
    return [*map(str, paths), "--output", str(output), "--tokenizer", "bytes", "--text-field", "content",
            "--documents-per-shard", "10", *extra]


def test_round_trip_equals_in_memory_tokenization(tmp_path):
    paths = _write_corpus(tmp_path)
    manifest = prepare_module.main(_argv(paths, tmp_path / "out", "--workers", "0"))
    assert manifest.complete and len(manifest.shards) == 5  # 46 documents / 10 per shard
    assert [s.documents for s in manifest.shards] == [10, 10, 10, 10, 6]
    tokens, reread = open_prepared(tmp_path / "out")
    expected = tokenize_documents(iter_documents(paths, "content"), ByteTokenizer(), desc="reference")
    np.testing.assert_array_equal(tokens.read(0, len(tokens)), expected)
    assert reread.dtype == "uint16" and reread.max_token_id == int(expected.max())
    assert reread.eos_token_id == 256


def test_parallel_workers_write_identical_shards(tmp_path):
    paths = _write_corpus(tmp_path)
    prepare_module.main(_argv(paths, tmp_path / "serial", "--workers", "0"))
    prepare_module.main(_argv(paths, tmp_path / "parallel", "--workers", "2"))
    for shard in read_manifest(tmp_path / "serial").shards:
        assert (tmp_path / "serial" / shard.file).read_bytes() == (tmp_path / "parallel" / shard.file).read_bytes()


def test_resume_skips_finished_shards(tmp_path, monkeypatch):
    paths = _write_corpus(tmp_path)
    output = tmp_path / "out"
    calls = {"chunks": 0}
    original = prepare_module._encode_chunk

    def crash_after_two_shards(documents):
        calls["chunks"] += 1
        if len(read_manifest(output).shards if (output / MANIFEST_NAME).exists() else []) >= 2:
            raise KeyboardInterrupt("simulated interruption")
        return original(documents)

    monkeypatch.setattr(prepare_module, "_encode_chunk", crash_after_two_shards)
    with pytest.raises(KeyboardInterrupt):
        prepare_module.main(_argv(paths, output, "--workers", "0"))
    partial = read_manifest(output)
    assert not partial.complete and len(partial.shards) == 2
    finished = {s.file: (output / s.file).stat().st_mtime_ns for s in partial.shards}
    with pytest.raises(ValueError, match="did not finish"):
        open_prepared(output)

    encoded = []
    monkeypatch.setattr(prepare_module, "_encode_chunk", lambda docs: encoded.append(docs) or original(docs))
    manifest = prepare_module.main(_argv(paths, output, "--workers", "0"))
    assert manifest.complete and len(manifest.shards) == 5
    assert sum(len(docs) for docs in encoded) == 46 - 20  # the two finished shards were not tokenized again
    assert all((output / name).stat().st_mtime_ns == mtime for name, mtime in finished.items())
    tokens, _ = open_prepared(output)
    expected = tokenize_documents(iter_documents(paths, "content"), ByteTokenizer(), desc="reference")
    np.testing.assert_array_equal(tokens.read(0, len(tokens)), expected)


def test_changed_settings_are_rejected(tmp_path):
    paths = _write_corpus(tmp_path)
    prepare_module.main(_argv(paths, tmp_path / "out", "--workers", "0"))
    with pytest.raises(ValueError, match="documents_per_shard"):
        prepare_module.main(_argv(paths, tmp_path / "out", "--workers", "0", "--documents-per-shard", "7"))


def test_missing_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        prepare_module.main(_argv([tmp_path / "nope.jsonl"], tmp_path / "out"))


def test_empty_input_is_an_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="no documents"):
        prepare_module.main(_argv([empty], tmp_path / "out", "--workers", "0"))
