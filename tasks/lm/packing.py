"""Token streams packed into fixed-length training sequences.

Documents are concatenated with EOS after each one (`doc1 EOS doc2 EOS ...`); sequence `i` of length `L` covers
tokens `[i*L, i*L + L + 1)` of the stream, so inputs are its first `L` tokens and labels its last `L`.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from mambaseq.tasks.lm.tokenizer import TextTokenizer


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (GPT-NeoX's 50277 does), else int32."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.int32)


def batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def append_eos(token_lists: list[list[int]], eos_token_id: int, dtype: np.dtype) -> np.ndarray:
    """Concatenate documents, each followed by `eos_token_id`: (sum(len + 1),) array of `dtype`."""
    total = sum(len(tokens) + 1 for tokens in token_lists)
    out = np.empty(total, dtype=dtype)
    position = 0
    for tokens in token_lists:
        out[position:position + len(tokens)] = tokens
        out[position + len(tokens)] = eos_token_id
        position += len(tokens) + 1
    return out


def tokenize_documents(documents: Iterable[str], tokenizer: TextTokenizer, *, desc: str,
                       batch_documents: int = 256) -> np.ndarray:
    """Tokenize and concatenate documents with EOS after each (progress shown per document)."""
    dtype = token_dtype(tokenizer.vocab_size)
    chunks = []
    with tqdm(desc=desc, unit="doc") as progress:
        for batch in batched(documents, batch_documents):
            chunks.append(append_eos(tokenizer.encode_batch(batch), tokenizer.eos_token_id, dtype))
            progress.update(len(batch))
    return np.concatenate(chunks) if chunks else np.empty(0, dtype=dtype)


class TokenArray:
    """Several 1-D token arrays (e.g. memmap shards) read as one stream."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        self.parts = [part for part in parts if len(part)]
        self.offsets = np.cumsum([0] + [len(part) for part in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens `[start, stop)` as int64."""
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"TokenArray.read({start}, {stop}) outside [0, {len(self)}]")
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        pieces, position = [], start
        part_index = first
        while position < stop:
            part_start = int(self.offsets[part_index])
            part = self.parts[part_index]
            take = min(stop, part_start + len(part)) - position
            pieces.append(np.asarray(part[position - part_start:position - part_start + take], dtype=np.int64))
            position += take
            part_index += 1
        return np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)

    def counts(self, vocab_size: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Occurrences of each id in `[start, stop)`: (vocab_size,) int64."""
        stop = len(self) if stop is None else stop
        counts = np.zeros(vocab_size, dtype=np.int64)
        step = 1 << 24
        for position in range(start, stop, step):
            counts += np.bincount(self.read(position, min(stop, position + step)), minlength=vocab_size)[:vocab_size]
        return counts


class PackedSequenceDataset(Dataset):
    """Fixed-length sequences cut from a token stream; item: `{"input_ids": (L,), "labels": (L,)}` int64."""

    def __init__(self, tokens: TokenArray, seq_len: int, max_sequences: int | None = None) -> None:
        if seq_len <= 0:
            raise ValueError(f"seq_len={seq_len}: expected a positive integer")
        self.tokens = tokens
        self.seq_len = seq_len
        available = max(0, (len(tokens) - 1) // seq_len)
        self.num_sequences = available if max_sequences is None else min(available, max_sequences)

    def __len__(self) -> int:
        return self.num_sequences

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.num_sequences:
            raise IndexError(f"sequence {index} outside [0, {self.num_sequences})")
        window = torch.from_numpy(self.tokens.read(index * self.seq_len, (index + 1) * self.seq_len + 1))
        return {"input_ids": window[:-1], "labels": window[1:]}

    def target_span(self) -> tuple[int, int]:
        """Stream positions `[start, stop)` of all labels of this dataset."""
        return 1, self.num_sequences * self.seq_len + 1


def unigram_entropy(counts: np.ndarray) -> float:
    """Entropy (nats) of the empirical token distribution: the loss of the best context-free predictor."""
    total = counts.sum()
    if total == 0:
        raise ValueError("unigram_entropy: no tokens")
    probabilities = counts[counts > 0] / total
    return float(-(probabilities * np.log(probabilities)).sum())
