"""Selective copying (Mamba paper, section 3.1 / figure 2 and appendix E.1).

`num_memorize` data tokens are scattered at random positions among noise tokens; then come `num_memorize` marker
tokens, and at each marker the model must output the next data token, in their original order. The random spacing
is what defeats time-invariant (convolutional) models: they must select by content, not by position.
Paper setting: length 4096, vocab 16 (including the noise token), 16 data tokens, 2 layers, d_model 64.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mambaseq.tasks.synthetic.induction_heads import IGNORE_INDEX


@dataclass(frozen=True)
class SelectiveCopying:
    """Generator of selective-copying batches.

    Token ids: noise `0`, data symbols `1 ... vocab_size - 2`, marker `vocab_size - 1`.
    A sequence of `seq_len` tokens = `seq_len - num_memorize` noise/data positions followed by `num_memorize` markers.
    """

    vocab_size: int = 16
    num_memorize: int = 16

    def __post_init__(self) -> None:
        if self.vocab_size < 4:
            raise ValueError(f"SelectiveCopying.vocab_size={self.vocab_size}: expected >= 4 (noise, 2 symbols, marker)")
        if self.num_memorize < 1:
            raise ValueError(f"SelectiveCopying.num_memorize={self.num_memorize}: expected >= 1")

    @property
    def noise_token(self) -> int:
        return 0

    @property
    def marker_token(self) -> int:
        return self.vocab_size - 1

    @property
    def num_symbols(self) -> int:
        return self.vocab_size - 2

    @property
    def chance_accuracy(self) -> float:
        return 1.0 / self.num_symbols

    def generate(
        self, batch_size: int, seq_len: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns `(inputs, targets)`, both `(batch_size, seq_len)` int64; targets are `IGNORE_INDEX` except at
        the `num_memorize` marker positions, which hold the data tokens in order of appearance."""
        content_len = seq_len - self.num_memorize
        if content_len < self.num_memorize:
            raise ValueError(
                f"SelectiveCopying: seq_len={seq_len} too short for num_memorize={self.num_memorize} "
                f"(expected seq_len >= {2 * self.num_memorize})"
            )
        data = torch.randint(1, self.vocab_size - 1, (batch_size, self.num_memorize), generator=generator)
        random_order = torch.rand(batch_size, content_len, generator=generator).argsort(dim=1)
        positions = random_order[:, : self.num_memorize].sort(dim=1).values
        inputs = torch.full((batch_size, seq_len), self.noise_token, dtype=torch.long)
        inputs.scatter_(1, positions, data)
        inputs[:, content_len:] = self.marker_token
        targets = torch.full_like(inputs, IGNORE_INDEX)
        targets[:, content_len:] = data
        return inputs, targets
