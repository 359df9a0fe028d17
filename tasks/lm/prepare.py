"""`mambaseq prepare`: tokenize documents into uint16 memmap shards (format in `memmap.py`), in parallel, resumably.

    mambaseq prepare data/*.jsonl.gz --output data/pile-train --workers 8
    mambaseq prepare --hf-dataset monology/pile-uncopyrighted --hf-split train --output data/pile-train

Documents are cut into shards of `--documents-per-shard`; finished shards are recorded in the manifest and skipped
(without tokenizing) when the same command runs again. Changing any setting of an existing folder is an error.
"""
from __future__ import annotations

import argparse
import multiprocessing
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mambaseq.tasks.lm.documents import DOCUMENT_SUFFIXES, HFSource, expand_paths, iter_documents, iter_hf_documents
from mambaseq.tasks.lm.memmap import (Manifest, ShardRecord, atomic_write_bytes, read_manifest, shard_name,
                                      write_manifest, MANIFEST_NAME)
from mambaseq.tasks.lm.packing import append_eos, token_dtype
from mambaseq.tasks.lm.tokenizer import TextTokenizer, load_text_tokenizer

CHUNK_DOCUMENTS = 256
_worker_tokenizer: TextTokenizer | None = None


def _init_worker(tokenizer_spec: str) -> None:
    global _worker_tokenizer
    _worker_tokenizer = load_text_tokenizer(tokenizer_spec)


def _encode_chunk(documents: list[str]) -> np.ndarray:
    tokenizer = _worker_tokenizer
    assert tokenizer is not None, "worker used before _init_worker"
    return append_eos(tokenizer.encode_batch(documents), tokenizer.eos_token_id, token_dtype(tokenizer.vocab_size))


def _chunks(documents: Iterator[str], documents_per_shard: int, skip_shards: int) -> Iterator[tuple[int, list[str]]]:
    """(shard index, up to CHUNK_DOCUMENTS documents) with chunks never crossing a shard boundary; the documents
    of the first `skip_shards` shards are read and dropped."""
    for _ in range(skip_shards):
        if len(list(islice(documents, documents_per_shard))) < documents_per_shard:
            raise ValueError("the inputs hold fewer documents than the shards already recorded in the manifest")
    shard = skip_shards
    while True:
        shard_documents = islice(documents, documents_per_shard)
        produced = False
        while chunk := list(islice(shard_documents, CHUNK_DOCUMENTS)):
            produced = True
            yield shard, chunk
        if not produced:
            return
        shard += 1


def _ordered_map(executor: Executor | None, items: Iterator[tuple[int, list[str]]], in_flight: int
                 ) -> Iterator[tuple[int, int, np.ndarray]]:
    """(shard, number of documents, tokens) per chunk in input order, with at most `in_flight` chunks pending."""
    if executor is None:
        for shard, chunk in items:
            yield shard, len(chunk), _encode_chunk(chunk)
        return
    pending: deque[tuple[int, int, Future]] = deque()
    for shard, chunk in items:
        pending.append((shard, len(chunk), executor.submit(_encode_chunk, chunk)))
        if len(pending) >= in_flight:
            shard_done, count, future = pending.popleft()
            yield shard_done, count, future.result()
    while pending:
        shard_done, count, future = pending.popleft()
        yield shard_done, count, future.result()


class ShardWriter:
    """Collects the chunks of one shard and writes it (atomically) plus the updated manifest."""

    def __init__(self, folder: Path, manifest: Manifest) -> None:
        self.folder, self.manifest = folder, manifest
        self.index: int | None = None
        self.parts: list[np.ndarray] = []
        self.documents = 0

    def add(self, shard: int, documents: int, tokens: np.ndarray) -> None:
        if shard != self.index:
            self.flush()
            self.index = shard
        self.parts.append(tokens)
        self.documents += documents

    def flush(self) -> None:
        if self.index is None:
            return
        tokens = np.concatenate(self.parts)
        name = shard_name(self.index)
        atomic_write_bytes(self.folder / name, tokens.astype(np.dtype(self.manifest.dtype).newbyteorder("<")).tobytes())
        first = sum(shard.documents for shard in self.manifest.shards)
        self.manifest.shards.append(ShardRecord(name, first, self.documents, len(tokens), int(tokens.max())))
        write_manifest(self.folder, self.manifest)
        self.index, self.parts, self.documents = None, [], 0


def prepare(*, output: Path, documents: Iterator[str], sources: list[str], tokenizer_spec: str, text_field: str,
            documents_per_shard: int, workers: int) -> Manifest:
    """Tokenize `documents` into shards under `output`, resuming after the shards its manifest lists."""
    tokenizer = load_text_tokenizer(tokenizer_spec)
    requested = Manifest(tokenizer=tokenizer_spec, vocab_size=tokenizer.vocab_size,
                         eos_token_id=tokenizer.eos_token_id, dtype=token_dtype(tokenizer.vocab_size).name,
                         sources=sources, text_field=text_field, documents_per_shard=documents_per_shard)
    output.mkdir(parents=True, exist_ok=True)
    manifest = requested
    if (output / MANIFEST_NAME).exists():
        manifest = read_manifest(output)
        if differences := manifest.mismatches(requested):
            details = ", ".join(f"{key}: folder has {old!r}, command asks {new!r}"
                                for key, (old, new) in differences.items())
            raise ValueError(f"{output}: already prepared with other settings ({details}); use a new --output")
        if manifest.complete:
            print(f"{output}: complete ({len(manifest.shards)} shards, {manifest.total_tokens:,} tokens), nothing to do")
            return manifest
    skip = len(manifest.shards)
    done_documents = sum(shard.documents for shard in manifest.shards)
    writer = ShardWriter(output, manifest)
    executor = None
    if workers > 0:
        executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker, initargs=(tokenizer_spec,))
    else:
        _init_worker(tokenizer_spec)
    try:
        with tqdm(desc=f"tokenizing → {output}", unit="doc", initial=done_documents) as progress:
            if skip:
                progress.write(f"resuming: skipping {skip} finished shard(s) ({done_documents:,} documents)")
            for shard, count, tokens in _ordered_map(executor, _chunks(documents, documents_per_shard, skip),
                                                     in_flight=4 * max(1, workers)):
                writer.add(shard, count, tokens)
                progress.update(count)
                progress.set_postfix(shards=len(manifest.shards), tokens=f"{manifest.total_tokens:,}")
        writer.flush()
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    if not manifest.shards:
        raise ValueError(f"no documents found in {sources}")
    manifest.complete = True
    write_manifest(output, manifest)
    print(f"{output}: {len(manifest.shards)} shards, {manifest.total_tokens:,} tokens (max id {manifest.max_token_id})")
    return manifest


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mambaseq prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="*", help=f"local files or globs ({', '.join(DOCUMENT_SUFFIXES)})")
    parser.add_argument("--output", required=True, type=Path, help="folder for shards + manifest.json")
    parser.add_argument("--tokenizer", default="gpt-neox-20b",
                        help='"gpt-neox-20b" (bundled), "bytes", a tokenizer.json or folder, or a hub id')
    parser.add_argument("--text-field", default="text", help="JSON/parquet/dataset field holding the text")
    parser.add_argument("--documents-per-shard", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=max(1, multiprocessing.cpu_count() - 1),
                        help="tokenizer processes (0 = in this process)")
    parser.add_argument("--hf-dataset", help="Hugging Face dataset name or builder (instead of local inputs)")
    parser.add_argument("--hf-name", help="dataset configuration name")
    parser.add_argument("--hf-split", default="train")
    parser.add_argument("--hf-data-files", nargs="*", help="data_files for a builder such as json/parquet")
    return parser


def main(argv: list[str] | None = None) -> Manifest:
    args = _parser().parse_args(argv)
    if bool(args.inputs) == bool(args.hf_dataset):
        raise SystemExit("mambaseq prepare: give local input files or --hf-dataset (exactly one of them)")
    if args.documents_per_shard <= 0 or args.workers < 0:
        raise SystemExit("mambaseq prepare: --documents-per-shard must be > 0 and --workers >= 0")
    if args.hf_dataset:
        data_files = {args.hf_split: args.hf_data_files} if args.hf_data_files else None
        source = HFSource(path=args.hf_dataset, name=args.hf_name, data_files=data_files, streaming=True)
        documents = iter_hf_documents(source.load(args.hf_split), args.text_field, args.hf_dataset)
        sources = [f"hf:{args.hf_dataset}:{args.hf_name or ''}:{args.hf_split}:{args.hf_data_files or ''}"]
    else:
        paths = expand_paths(args.inputs, allowed_suffixes=DOCUMENT_SUFFIXES, what="mambaseq prepare")
        documents = iter_documents(paths, args.text_field)
        sources = [str(path.resolve()) for path in paths]
    return prepare(output=args.output, documents=documents, sources=sources, tokenizer_spec=args.tokenizer,
                   text_field=args.text_field, documents_per_shard=args.documents_per_shard, workers=args.workers)
