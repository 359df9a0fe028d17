"""Output heads on top of a backbone's `(b, L, d_model)` features: language modeling, classification, regression."""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Pooling = Literal["mean", "last", "first", "max", "none"]


class LMHead(nn.Module):
    """Vocabulary projection `(b, L, d_model) -> (b, L, vocab)`, no bias; shares the embedding matrix when tied."""

    def __init__(self, d_model: int, vocab_size: int, tied_embedding: nn.Embedding | None = None) -> None:
        super().__init__()
        if tied_embedding is not None:
            if tied_embedding.weight.shape != (vocab_size, d_model):
                raise ValueError(f"LMHead: tied embedding has shape {tuple(tied_embedding.weight.shape)}, "
                                 f"expected {(vocab_size, d_model)}")
            self.weight = tied_embedding.weight
        else:
            self.weight = nn.Parameter(torch.empty(vocab_size, d_model))
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's default, as mamba-ssm's lm_head

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden.to(self.weight.dtype), self.weight)


def pool_sequence(hidden: torch.Tensor, mask: torch.Tensor | None, pooling: Pooling) -> torch.Tensor:
    """Pool `hidden: (b, L, d)` over valid positions (`mask: (b, L)` bool, right-padded; None = all valid) to
    (b, d); "none" keeps (b, L, d)."""
    if pooling == "none":
        return hidden
    if mask is None:
        mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
    mask = mask.bool()
    if pooling == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
    if pooling == "max":
        return hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
    if pooling == "first":
        return hidden[:, 0]
    if pooling == "last":
        last_index = (mask.long().sum(1) - 1).clamp(min=0)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last_index]
    raise ValueError(f"pooling={pooling!r} is unknown: expected one of mean, last, first, max, none")


class ClassificationHead(nn.Module):
    """Pooled features → dropout → linear: `(b, L, d_model) -> (b, num_classes)` (or `(b, L, num_classes)` with
    pooling "none", for per-position labels)."""

    def __init__(self, d_model: int, num_classes: int, pooling: Pooling = "mean", dropout: float = 0.0) -> None:
        super().__init__()
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(d_model, num_classes)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(self.dropout(pool_sequence(hidden, mask, self.pooling)))


class RegressionHead(nn.Module):
    """Pooled features → linear: `(b, L, d_model) -> (b, num_outputs)` (or `(b, L, num_outputs)` with pooling
    "none", e.g. per-base DNA tracks)."""

    def __init__(self, d_model: int, num_outputs: int = 1, pooling: Pooling = "mean") -> None:
        super().__init__()
        self.pooling = pooling
        self.proj = nn.Linear(d_model, num_outputs)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(pool_sequence(hidden, mask, self.pooling))
