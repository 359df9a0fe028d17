"""On-disk format of `mambaseq prepare`: a folder of raw token shards plus `manifest.json`.

Shard `shard_{i:05d}.bin` holds documents `[i*documents_per_shard, (i+1)*documents_per_shard)` of the inputs,
each followed by EOS, as raw little-endian `dtype` (uint16 for GPT-NeoX). The manifest lists finished shards,
so an interrupted `prepare` skips them when run again. Both are written atomically (temp file + `os.replace`).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mambaseq.tasks.lm.packing import TokenArray

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class ShardRecord:
    file: str
    first_document: int
    documents: int
    tokens: int
    max_token_id: int


@dataclass
class Manifest:
    """Settings that define the shards (checked on resume) and the shards finished so far."""

    tokenizer: str
    vocab_size: int
    eos_token_id: int
    dtype: str
    sources: list[str]
    text_field: str
    documents_per_shard: int
    shards: list[ShardRecord] = field(default_factory=list)
    complete: bool = False
    format_version: int = FORMAT_VERSION

    SETTINGS = ("tokenizer", "vocab_size", "eos_token_id", "dtype", "sources", "text_field", "documents_per_shard")

    @property
    def total_tokens(self) -> int:
        return sum(shard.tokens for shard in self.shards)

    @property
    def max_token_id(self) -> int:
        return max((shard.max_token_id for shard in self.shards), default=-1)

    def mismatches(self, other: Manifest) -> dict[str, tuple[Any, Any]]:
        """Settings that differ from `other`: {name: (self's, other's)}."""
        return {name: (getattr(self, name), getattr(other, name)) for name in self.SETTINGS
                if getattr(self, name) != getattr(other, name)}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        data = dict(data)
        data["shards"] = [ShardRecord(**shard) for shard in data.get("shards", [])]
        return cls(**data)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_manifest(folder: Path, manifest: Manifest) -> None:
    atomic_write_bytes(folder / MANIFEST_NAME, json.dumps(manifest.to_dict(), indent=1).encode())


def read_manifest(folder: str | os.PathLike) -> Manifest:
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {MANIFEST_NAME}; expected a folder written by `mambaseq prepare`")
    manifest = Manifest.from_dict(json.loads(path.read_text()))
    if manifest.format_version != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version={manifest.format_version}, expected {FORMAT_VERSION}")
    return manifest


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.bin"


def open_prepared(folder: str | os.PathLike) -> tuple[TokenArray, Manifest]:
    """Memory-map every shard of a finished `prepare` folder as one token stream."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if not manifest.complete:
        raise ValueError(f"{folder}: `mambaseq prepare` did not finish ({len(manifest.shards)} shard(s) so far); "
                         "run the same command again to complete it")
    dtype = np.dtype(manifest.dtype)
    parts = []
    for shard in manifest.shards:
        path = folder / shard.file
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: shard {shard.file} listed in {MANIFEST_NAME} is missing")
        expected = shard.tokens * dtype.itemsize
        if path.stat().st_size != expected:
            raise ValueError(f"{path}: {path.stat().st_size} bytes, expected {expected} ({shard.tokens} tokens)")
        if shard.tokens:
            parts.append(np.memmap(path, dtype=dtype, mode="r", shape=(shard.tokens,)))
    return TokenArray(parts), manifest
