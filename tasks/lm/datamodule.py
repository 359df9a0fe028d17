"""`LMDataModule`: packed next-token sequences from local files, `mambaseq prepare` folders, or Hugging Face datasets.

Sources per split (`train`, `val`, `test`) are lists of paths: document files (`.txt[.gz]`, `.jsonl[.gz]`,
`.parquet`; tokenized in memory at setup) and/or folders written by `mambaseq prepare` (memory-mapped). Alternatively
`hf` names a Hugging Face dataset (streamed and tokenized on the fly, or loaded and tokenized in memory).
Without `val`/`test`, `holdout_fraction` of the training documents (seeded) are held out for each of them.
Training order is a seeded permutation per epoch, saved in checkpoints for exact resume.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import DataLoader

from mambaseq.tasks.data import ResumableDataLoader
from mambaseq.tasks.lm.documents import (DOCUMENT_SUFFIXES, HFSource, expand_paths, iter_documents,
                                         iter_hf_documents)
from mambaseq.tasks.lm.memmap import MANIFEST_NAME, open_prepared
from mambaseq.tasks.lm.packing import PackedSequenceDataset, TokenArray, tokenize_documents, unigram_entropy
from mambaseq.tasks.lm.streaming import StreamingDataLoader, StreamingPackedDataset
from mambaseq.tasks.lm.tokenizer import TextTokenizer, load_text_tokenizer

SPLITS = ("train", "val", "test")
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ()}


class LMDataModule(pl.LightningDataModule):
    """Packed causal-LM batches `{"input_ids": (batch_size, seq_len), "labels": (batch_size, seq_len)}` int64.

    eval_max_sequences caps validation/test (and is the validation length of streaming data);
    streaming_epoch_sequences is the length of one training epoch over a stream.
    """

    def __init__(
        self,
        train: list[str] | None = None,
        val: list[str] | None = None,
        test: list[str] | None = None,
        hf: HFSource | None = None,
        text_field: str = "text",
        tokenizer: str = "gpt-neox-20b",
        seq_len: int = 2048,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 1234,
        holdout_fraction: float = 0.0,
        eval_max_sequences: int | None = None,
        streaming_epoch_sequences: int = 100_000,
    ) -> None:
        super().__init__()
        if hf is not None and (train or val or test):
            raise ValueError("LMDataModule: give either `hf` or local `train`/`val`/`test` paths, not both")
        if hf is None and not (train or val or test):
            raise ValueError("LMDataModule: no data; set `train` (and `val`/`test`) paths or `hf`")
        if not 0 <= holdout_fraction < 0.5:
            raise ValueError(f"LMDataModule.holdout_fraction={holdout_fraction}: expected in [0, 0.5)")
        self.paths = {"train": train, "val": val, "test": test}
        self.hf = hf
        self.text_field, self.tokenizer_spec = text_field, tokenizer
        self.seq_len, self.batch_size = seq_len, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.seed = num_workers, seed
        self.holdout_fraction = holdout_fraction
        self.eval_max_sequences = eval_max_sequences
        self.streaming_epoch_sequences = streaming_epoch_sequences
        self.tokens: dict[str, TokenArray] = {}
        self.datasets: dict[str, Any] = {}
        self.max_token_id: int | None = None
        self._max_token_ids: list[int] = []  # per loaded token stream (from the manifest for prepared folders)
        self._tokenizer: TextTokenizer | None = None

    # ------------------------------------------------------------------------------------------------------ setup
    @property
    def tokenizer(self) -> TextTokenizer:
        if self._tokenizer is None:
            self._tokenizer = load_text_tokenizer(self.tokenizer_spec)
        return self._tokenizer

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def setup(self, stage: str) -> None:
        for split in STAGE_SPLITS[stage]:
            if split in self.datasets:
                continue
            if self.hf is not None and self.hf.streaming:
                self._setup_stream(split)
            else:
                self._setup_tokens(split)

    def _setup_stream(self, split: str) -> None:
        hf_split = self.hf.split(split)
        if hf_split is None:
            raise ValueError(f"LMDataModule: hf.{split}_split is None, but the {split} split is needed")
        if split != "train" and self.eval_max_sequences is None:
            raise ValueError("LMDataModule: streaming validation/test needs eval_max_sequences (their length)")
        rank, world_size = self._rank_world()
        length = self.streaming_epoch_sequences if split == "train" else self.eval_max_sequences
        self.datasets[split] = StreamingPackedDataset(
            self.hf, hf_split, text_field=self.text_field, tokenizer=self.tokenizer, seq_len=self.seq_len,
            epoch_sequences=length, restart_each_epoch=split != "train", rank=rank, world_size=world_size)
        self.max_token_id = self.tokenizer.vocab_size - 1

    def _setup_tokens(self, split: str) -> None:
        if not self.tokens:
            self.tokens = self._load_token_arrays()
        if split not in self.tokens:
            raise ValueError(f"LMDataModule: no {split} data; set `{split}` paths"
                             + (" or holdout_fraction" if split != "train" else ""))
        tokens = self.tokens[split]
        limit = None if split == "train" else self.eval_max_sequences
        dataset = PackedSequenceDataset(tokens, self.seq_len, max_sequences=limit)
        if len(dataset) == 0:
            raise ValueError(f"LMDataModule: the {split} split has {len(tokens)} tokens, fewer than one sequence of "
                             f"seq_len + 1 = {self.seq_len + 1}")
        self.datasets[split] = dataset
        self.max_token_id = max(self._max_token_ids)

    def _load_token_arrays(self) -> dict[str, TokenArray]:
        """Token streams of every configured split (document holdout from train when val/test are not given)."""
        if self.hf is not None:
            documents = {split: list(iter_hf_documents(self.hf.load(name), self.text_field, f"{self.hf.path}[{name}]"))
                         for split in SPLITS if (name := self.hf.split(split)) is not None}
            prepared: dict[str, list[TokenArray]] = {}
        else:
            documents, prepared = {}, {}
            for split, patterns in self.paths.items():
                if patterns:
                    documents[split], prepared[split] = self._read_local(split, patterns)
        if self.holdout_fraction > 0:
            self._hold_out(documents)
        arrays = {}
        for split in SPLITS:
            if split not in documents and split not in prepared:
                continue
            parts = [part for array in prepared.get(split, []) for part in array.parts]
            if documents.get(split):
                parts.append(tokenize_documents(documents[split], self.tokenizer, desc=f"tokenizing {split}"))
                self._max_token_ids.append(int(parts[-1].max()))
            if not parts:
                raise ValueError(f"LMDataModule: the {split} split holds no documents "
                                 f"({self.paths.get(split) or 'held out from train'})")
            arrays[split] = TokenArray(parts)
        return arrays

    def _read_local(self, split: str, patterns: list[str]) -> tuple[list[str], list[TokenArray]]:
        paths = expand_paths(list(patterns), allowed_suffixes=DOCUMENT_SUFFIXES, what=f"LMDataModule.{split}")
        folders = [p for p in paths if p.is_dir()]
        not_prepared = [str(p) for p in folders if not (p / MANIFEST_NAME).is_file()]
        if not_prepared:
            raise FileNotFoundError(f"LMDataModule.{split}: folder(s) {not_prepared} hold no {MANIFEST_NAME}; "
                                    "expected folders written by `mambaseq prepare` or document files")
        prepared = [self._open_prepared(p, split) for p in folders]
        documents = list(iter_documents([p for p in paths if p.is_file()], self.text_field))
        return documents, prepared

    def _open_prepared(self, folder: Path, split: str) -> TokenArray:
        tokens, manifest = open_prepared(folder)
        if manifest.tokenizer != self.tokenizer_spec:
            raise ValueError(f"LMDataModule.{split}: {folder} was prepared with tokenizer {manifest.tokenizer!r}, "
                             f"but data.tokenizer is {self.tokenizer_spec!r}")
        self._max_token_ids.append(manifest.max_token_id)
        return tokens

    def _hold_out(self, documents: dict[str, list[str]]) -> None:
        """Move a seeded `holdout_fraction` of the training documents to val and/or test, when those are unset."""
        missing = [split for split in ("val", "test") if split not in documents]
        if not missing or not documents.get("train"):
            return
        draws = np.random.default_rng(self.seed).random(len(documents["train"]))
        bucket = np.full(len(draws), -1)
        for index, split in enumerate(missing):
            bucket[(draws >= index * self.holdout_fraction) & (draws < (index + 1) * self.holdout_fraction)] = index
        train = documents["train"]
        for index, split in enumerate(missing):
            documents[split] = [doc for doc, b in zip(train, bucket) if b == index]
        documents["train"] = [doc for doc, b in zip(train, bucket) if b == -1]

    # ---------------------------------------------------------------------------------------------------- loaders
    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = self.datasets.get(split)
        if dataset is None:
            raise RuntimeError(f"LMDataModule: the {split} split was not set up")
        batch_size = self.batch_size if train else self.eval_batch_size
        if isinstance(dataset, StreamingPackedDataset):
            return StreamingDataLoader(dataset, batch_size, num_workers=self.num_workers)
        rank, world_size = self._rank_world()
        return ResumableDataLoader(dataset, batch_size, shuffle=train, seed=self.seed, rank=rank,
                                   world_size=world_size, drop_last=train, num_workers=self.num_workers,
                                   persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    # ---------------------------------------------------------------------------------------------------- baseline
    def unigram_entropy(self, split: str = "val") -> float | None:
        """Entropy (nats/token) of the label tokens of `split`: the loss of the best context-free predictor.
        None for streamed data."""
        dataset = self.datasets.get(split)
        if not isinstance(dataset, PackedSequenceDataset):
            return None
        start, stop = dataset.target_span()
        vocab = self.max_token_id + 1
        return unigram_entropy(dataset.tokens.counts(vocab, start, stop))
