"""Packed sequences tokenized on the fly from a streaming Hugging Face dataset, resumable to the exact token.

The position is `(dataset state before document k, token offset in document k)` of the next sequence's first token,
so a checkpoint restores the stream without replaying it. The stream continues across Lightning epochs (an epoch is
`epoch_sequences` sequences) and restarts at its end (`passes` counts how often). Runs in the main process
(`num_workers=0`), where the state is exact; for large runs `mambaseq prepare` + memmap is faster.
"""
from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from mambaseq.tasks.lm.documents import HFSource, iter_hf_documents
from mambaseq.tasks.lm.tokenizer import TextTokenizer


class StreamingPackedDataset(IterableDataset):
    """Yields `{"input_ids": (L,), "labels": (L,)}` int64 from documents of `source`'s `split`, EOS after each."""

    def __init__(self, source: HFSource, split: str, *, text_field: str, tokenizer: TextTokenizer, seq_len: int,
                 epoch_sequences: int, restart_each_epoch: bool = False, rank: int = 0, world_size: int = 1) -> None:
        if epoch_sequences <= 0:
            raise ValueError(f"StreamingPackedDataset: epoch_sequences={epoch_sequences}, expected > 0")
        self.source, self.split, self.text_field = source, split, text_field
        self.tokenizer, self.seq_len = tokenizer, seq_len
        self.epoch_sequences = epoch_sequences
        self.restart_each_epoch = restart_each_epoch
        self.rank, self.world_size = rank, world_size
        self.position: dict[str, Any] = {"dataset_state": None, "token_offset": 0, "passes": 0}

    def __len__(self) -> int:
        return self.epoch_sequences

    def _open(self) -> Any:
        dataset = self.source.load(self.split)
        if self.world_size > 1:
            from datasets.distributed import split_dataset_by_node

            dataset = split_dataset_by_node(dataset, rank=self.rank, world_size=self.world_size)
        return dataset

    def _documents(self) -> Iterator[tuple[dict | None, np.ndarray]]:
        """(dataset state before the document, its tokens + EOS), forever, from the saved position."""
        state = self.position["dataset_state"]
        while True:
            dataset = self._open()
            if state is not None:
                dataset.load_state_dict(state)
            texts = iter_hf_documents(dataset, self.text_field, f"{self.source.path}[{self.split}]")
            produced = False
            while True:
                state_before = dataset.state_dict()
                text = next(texts, None)
                if text is None:
                    break
                produced = True
                tokens = self.tokenizer.encode_batch([text])[0] + [self.tokenizer.eos_token_id]
                yield state_before, np.asarray(tokens, dtype=np.int64)
            if not produced and state is None:
                raise ValueError(f"{self.source.path}[{self.split}] holds no documents")
            state = None
            self.position["passes"] += 1

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.restart_each_epoch:
            self.position = {"dataset_state": None, "token_offset": 0, "passes": 0}
        documents = self._documents()
        window: deque[tuple[dict | None, np.ndarray]] = deque()
        offset = self.position["token_offset"]  # of the next sequence's first token, in window[0]
        available = 0
        for _ in range(self.epoch_sequences):
            while available - offset < self.seq_len + 1:
                state, tokens = next(documents)
                window.append((state, tokens))
                available += len(tokens)
            sequence = torch.from_numpy(_gather(window, offset, self.seq_len + 1))
            offset += self.seq_len
            while offset >= len(window[0][1]):
                offset -= len(window[0][1])
                available -= len(window[0][1])
                window.popleft()
            self.position = {"dataset_state": copy.deepcopy(window[0][0]), "token_offset": offset,
                             "passes": self.position["passes"]}
            yield {"input_ids": sequence[:-1], "labels": sequence[1:]}


def _gather(window: deque[tuple[dict | None, np.ndarray]], offset: int, length: int) -> np.ndarray:
    """`length` tokens from `offset` of the documents in `window`, read in order."""
    pieces = []
    for _, tokens in window:
        piece = tokens[offset:offset + length]
        pieces.append(piece)
        length -= len(piece)
        offset = max(0, offset - len(tokens))
        if length == 0:
            break
    return np.concatenate(pieces)


class StreamingDataLoader(DataLoader):
    """DataLoader over a `StreamingPackedDataset` (main process only) whose `state_dict` is the stream position."""

    def __init__(self, dataset: StreamingPackedDataset, batch_size: int, **kwargs: Any) -> None:
        if kwargs.get("num_workers", 0):
            raise ValueError("streaming Hugging Face data needs num_workers=0 (the stream position is tracked in "
                             "the main process); use `mambaseq prepare` shards for parallel loading")
        super().__init__(dataset, batch_size=batch_size, drop_last=True, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.dataset.position)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.position = copy.deepcopy(state)
