"""Likelihood metrics of quantized audio: bits per sample ("bits per byte" for 8-bit codes) and the unigram
baseline (entropy of the code histogram), which any model that uses context must beat."""
from __future__ import annotations

import math

import torch

NATS_PER_BIT = math.log(2)


def nats_to_bits(nats: torch.Tensor | float) -> torch.Tensor | float:
    """Cross-entropy in nats per sample -> bits per sample (= bits per byte for 8-bit codes)."""
    return nats / NATS_PER_BIT


def code_histogram(codes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts of each code in `codes` (any shape, integer): (num_classes,) float64."""
    return torch.bincount(codes.reshape(-1).long(), minlength=num_classes).double()


def unigram_entropy_bits(counts: torch.Tensor) -> float:
    """Entropy in bits of the distribution given by histogram `counts: (num_classes,)`."""
    probs = counts[counts > 0] / counts.sum()
    return float(-(probs * probs.log2()).sum())


def unigram_cross_entropy_bits(train_counts: torch.Tensor, eval_counts: torch.Tensor, smoothing: float = 1.0) -> float:
    """Bits per sample of the evaluation codes under the train histogram (add-`smoothing` counts), the honest
    held-out unigram baseline."""
    probs = (train_counts + smoothing) / (train_counts + smoothing).sum()
    return float(-(eval_counts * probs.log2()).sum() / eval_counts.sum())
