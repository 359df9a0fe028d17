"""Dtype promotion shared by the model code."""
from __future__ import annotations

import torch


def at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` in fp32, or as is when it is already fp64: numerically sensitive math (norms, A = -exp(A_log),
    softplus of dt) runs in fp32 under bf16/fp16 without losing the precision of fp64 reference runs."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()
