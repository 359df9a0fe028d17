"""Fixed-length training and validation windows cut from one token stream, with deterministic seeds.

A window of `seq_len + 1` tokens gives `input_ids = window[:-1]` and `labels = window[1:]`. Training windows start at
random offsets of the training part; validation windows tile the held-out part from its start, so every context
length is evaluated on the same tokens (as far as its windows reach).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TokenStream:
    """`train: (num_train_tokens,)` and `val: (num_val_tokens,)` int64 token ids, `vocab_size` ids in all."""

    train: torch.Tensor
    val: torch.Tensor
    vocab_size: int

    @classmethod
    def split(cls, tokens: torch.Tensor, vocab_size: int, val_fraction: float, source: str) -> TokenStream:
        """Holds out the last `val_fraction` of `tokens` for validation."""
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"{source}: val_fraction={val_fraction}, expected a fraction in (0, 1)")
        tokens = tokens.to(torch.long)
        boundary = int(tokens.numel() * (1.0 - val_fraction))
        return cls(train=tokens[:boundary], val=tokens[boundary:], vocab_size=vocab_size)

    def check_length(self, seq_len: int, source: str) -> None:
        for part, tokens in (("train", self.train), ("val", self.val)):
            if tokens.numel() < seq_len + 1:
                raise ValueError(
                    f"{source}: the {part} part has {tokens.numel()} tokens, fewer than context length {seq_len} + 1;"
                    " use a larger corpus or shorter lengths"
                )


def train_batch(
    stream: TokenStream, batch_size: int, seq_len: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of the training part: `(input_ids, labels)`, each `(batch_size, seq_len)` int64."""
    starts = torch.randint(0, stream.train.numel() - seq_len, (batch_size,), generator=generator)
    windows = torch.stack([stream.train[start : start + seq_len + 1] for start in starts.tolist()])
    return windows[:, :-1], windows[:, 1:]


def val_batches(
    stream: TokenStream, batch_size: int, seq_len: int, max_tokens: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive, non-overlapping windows of the validation part, up to `max_tokens` predicted tokens in all
    (at least one window); grouped into batches of at most `batch_size`."""
    num_windows = max(1, min(max_tokens // seq_len, (stream.val.numel() - 1) // seq_len))
    windows = [stream.val[i * seq_len : i * seq_len + seq_len + 1] for i in range(num_windows)]
    batches = []
    for first in range(0, num_windows, batch_size):
        stacked = torch.stack(windows[first : first + batch_size])
        batches.append((stacked[:, :-1], stacked[:, 1:]))
    return batches
