"""Sequence mixers: Mamba-1 (selective scan), Mamba-2 (SSD) and causal self-attention for hybrids.

All share `forward(hidden, cache=None)`, `step(hidden, cache)` and `allocate_cache(batch, dtype, device)`.
"""
from __future__ import annotations

from torch import nn

from mambaseq.config import AttentionConfig, Mamba1Config, Mamba2Config, MixerConfig
from mambaseq.mixers.attention import CausalSelfAttention
from mambaseq.mixers.mamba1 import Mamba1Mixer
from mambaseq.mixers.mamba2 import Mamba2Mixer

__all__ = ["CausalSelfAttention", "Mamba1Mixer", "Mamba2Mixer", "build_mixer"]


def build_mixer(d_model: int, config: MixerConfig, kernel_backend: str = "auto", norm_eps: float = 1e-5) -> nn.Module:
    """The mixer module for a mixer config."""
    if isinstance(config, Mamba1Config):
        return Mamba1Mixer(d_model, config, kernel_backend)
    if isinstance(config, Mamba2Config):
        return Mamba2Mixer(d_model, config, kernel_backend, norm_eps)
    if isinstance(config, AttentionConfig):
        return CausalSelfAttention(d_model, config, kernel_backend)
    raise TypeError(f"build_mixer: unsupported mixer config {type(config).__name__}")
