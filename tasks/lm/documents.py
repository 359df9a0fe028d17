"""Documents (strings) from local files or Hugging Face datasets.

Local formats, by suffix: `.txt` / `.txt.gz` / `.md` (one document per file), `.jsonl` / `.jsonl.gz` / `.json.gz`
(one JSON object per line, text under `text_field`), `.parquet` (column `text_field`). Paths may be globs.
"""
from __future__ import annotations

import glob
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEXT_SUFFIXES = (".txt", ".txt.gz", ".md")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz")
PARQUET_SUFFIXES = (".parquet",)
DOCUMENT_SUFFIXES = TEXT_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES


@dataclass
class HFSource:
    """A Hugging Face dataset: a hub name (`monology/pile-uncopyrighted`) or a builder over local files
    (`path="json", data_files={"train": "a.jsonl"}`). Splits set to None are not used."""

    path: str
    name: str | None = None
    data_files: dict[str, str | list[str]] | None = None
    revision: str | None = None
    train_split: str = "train"
    val_split: str | None = "validation"
    test_split: str | None = "test"
    streaming: bool = True

    def split(self, stage: str) -> str | None:
        return {"train": self.train_split, "val": self.val_split, "test": self.test_split}[stage]

    def load(self, split: str) -> Any:
        """`datasets.load_dataset` of one split (an `IterableDataset` when streaming)."""
        import datasets

        return datasets.load_dataset(self.path, self.name, data_files=self.data_files, revision=self.revision,
                                     split=split, streaming=self.streaming)


def expand_paths(patterns: list[str], *, allowed_suffixes: tuple[str, ...], what: str) -> list[Path]:
    """Expand globs; raise naming every pattern that matches nothing and every file of an unknown format."""
    paths, missing = [], []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        matches = [m for m in matches if Path(m).exists()]
        if not matches:
            missing.append(pattern)
        paths.extend(Path(m) for m in matches)
    if missing:
        raise FileNotFoundError(f"{what}: no such file(s): {missing}")
    unknown = [str(p) for p in paths if p.is_file() and not str(p).endswith(allowed_suffixes)]
    if unknown:
        raise ValueError(f"{what}: unsupported file type {unknown}; expected suffixes {list(allowed_suffixes)}")
    return paths


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _field(record: Any, text_field: str, where: str) -> str:
    if not isinstance(record, dict) or text_field not in record:
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise KeyError(f"{where}: no text field {text_field!r} (found {keys}); set text_field")
    text = record[text_field]
    if not isinstance(text, str):
        raise TypeError(f"{where}: field {text_field!r} holds {type(text).__name__}, expected a string")
    return text


def iter_file_documents(path: Path, text_field: str = "text") -> Iterator[str]:
    """The documents of one local file, in order."""
    name = str(path)
    if name.endswith(TEXT_SUFFIXES):
        with _open_text(path) as file:
            yield file.read()
    elif name.endswith(JSONL_SUFFIXES):
        with _open_text(path) as file:
            for line_number, line in enumerate(file, 1):
                if line.strip():
                    yield _field(json.loads(line), text_field, f"{name}:{line_number}")
    elif name.endswith(PARQUET_SUFFIXES):
        import pyarrow.parquet as pq

        table = pq.ParquetFile(path)
        if text_field not in table.schema_arrow.names:
            raise KeyError(f"{name}: no column {text_field!r} (found {table.schema_arrow.names}); set text_field")
        for batch in table.iter_batches(columns=[text_field]):
            yield from batch.column(0).to_pylist()
    else:
        raise ValueError(f"{name}: unsupported file type; expected suffixes {list(DOCUMENT_SUFFIXES)}")


def iter_documents(paths: list[Path], text_field: str = "text") -> Iterator[str]:
    for path in paths:
        yield from iter_file_documents(path, text_field)


def iter_hf_documents(dataset: Any, text_field: str, where: str) -> Iterator[str]:
    """Texts of a (streaming) Hugging Face dataset's records."""
    for index, record in enumerate(dataset):
        yield _field(record, text_field, f"{where} record {index}")
