"""Accuracy and loss at the target positions of synthetic tasks (all other positions carry `IGNORE_INDEX`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mambaseq.precision import at_least_fp32
from mambaseq.tasks.synthetic.induction_heads import IGNORE_INDEX


def target_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over target positions; `logits: (batch, seqlen, vocab)`, `labels: (batch, seqlen)`."""
    return F.cross_entropy(at_least_fp32(logits).flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


@dataclass
class TargetAccuracy:
    """Running counts: per-target accuracy and whole-sequence accuracy (every target of a sequence right)."""

    correct: int = 0
    total: int = 0
    sequences_correct: int = 0
    sequences: int = 0

    def update(self, predictions: torch.Tensor, labels: torch.Tensor) -> None:
        """Adds a batch of predicted token ids `predictions: (batch, seqlen)` (logits' argmax) and `labels`."""
        is_target = labels != IGNORE_INDEX
        hits = (predictions == labels) & is_target
        self.correct += int(hits.sum())
        self.total += int(is_target.sum())
        self.sequences_correct += int((hits == is_target).all(dim=1).sum())
        self.sequences += labels.shape[0]

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    @property
    def sequence_accuracy(self) -> float:
        return self.sequences_correct / self.sequences if self.sequences else float("nan")
