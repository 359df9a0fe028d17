"""Induction heads (Mamba paper, section 4.1.2 and appendix E.1).

A sequence of random symbols holds one special *trigger* token at a random position, followed by a random *answer*
symbol; the sequence ends with the trigger again and the model must predict the answer at the last position.
The paper trains 2-layer, d_model 64 models at length 2^8 with vocab 16 and tests lengths 2^6 ... 2^20.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE_INDEX = -100


@dataclass(frozen=True)
class InductionHeads:
    """Generator of induction-heads batches.

    Token ids: symbols `0 ... vocab_size - 2`, trigger `vocab_size - 1`. Only the last position carries a target.
    """

    vocab_size: int = 16

    def __post_init__(self) -> None:
        if self.vocab_size < 3:
            raise ValueError(f"InductionHeads.vocab_size={self.vocab_size}: expected >= 3 (two symbols + trigger)")

    @property
    def trigger_token(self) -> int:
        return self.vocab_size - 1

    @property
    def num_symbols(self) -> int:
        return self.vocab_size - 1

    @property
    def chance_accuracy(self) -> float:
        return 1.0 / self.num_symbols

    def generate(
        self, batch_size: int, seq_len: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns `(inputs, targets)`, both `(batch_size, seq_len)` int64; targets are `IGNORE_INDEX` except
        at the last position, which holds the answer (the symbol after the first trigger)."""
        if seq_len < 4:
            raise ValueError(f"InductionHeads: seq_len={seq_len}, expected >= 4 (trigger, answer, ..., trigger)")
        inputs = torch.randint(0, self.num_symbols, (batch_size, seq_len), generator=generator)
        # The first trigger sits in [0, seq_len - 3] so that its answer is a symbol, never the final trigger.
        trigger_position = torch.randint(0, seq_len - 2, (batch_size,), generator=generator)
        rows = torch.arange(batch_size)
        inputs[rows, trigger_position] = self.trigger_token
        inputs[:, -1] = self.trigger_token
        targets = torch.full_like(inputs, IGNORE_INDEX)
        targets[:, -1] = inputs[rows, trigger_position + 1]
        return inputs, targets
