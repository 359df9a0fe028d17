"""Input adapters: turn a modality's raw batch into the backbone's `(batch, seqlen, d_model)` embeddings.

- `TokenEmbedding`: integer tokens `(b, L)` -> `(b, L, d_model)` (text, DNA, quantized audio).
- `LinearProjection`: continuous features `(b, L, c)` -> `(b, L, d_model)`, one token per time step.
- `Patching`: continuous features `(b, L, c)` -> `(b, L / patch_len, d_model)`, one token per `patch_len` steps
  (shorter sequences for the backbone, as in PatchTST).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

AdapterKind = Literal["token", "linear", "patch"]


class TokenEmbedding(nn.Module):
    """`(b, L)` int64 token ids -> `(b, L, d_model)`, initialized N(0, 0.02) like the backbone's embedding."""

    def __init__(self, vocab_size: int, d_model: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2 or tokens.dtype.is_floating_point:
            raise ValueError(f"TokenEmbedding expects integer ids of shape (batch, seqlen), got "
                             f"{tuple(tokens.shape)} {tokens.dtype}")
        return self.embedding(tokens)


class LinearProjection(nn.Module):
    """`(b, L, in_features)` floats -> `(b, L, d_model)`: one linear map per time step."""

    def __init__(self, in_features: int, d_model: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.proj = nn.Linear(in_features, d_model)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _check_features(type(self).__name__, features, self.in_features)
        return self.proj(features)


class Patching(nn.Module):
    """`(b, L, in_features)` -> `(b, L / patch_len, d_model)`: each run of `patch_len` steps (all channels) is
    flattened and projected to one token. `L` must be a multiple of `patch_len`."""

    def __init__(self, patch_len: int, in_features: int, d_model: int) -> None:
        super().__init__()
        if patch_len <= 0:
            raise ValueError(f"Patching: patch_len={patch_len} must be positive")
        self.patch_len = patch_len
        self.in_features = in_features
        self.proj = nn.Linear(patch_len * in_features, d_model)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _check_features(type(self).__name__, features, self.in_features)
        batch, seqlen, channels = features.shape
        if seqlen % self.patch_len:
            raise ValueError(f"Patching: sequence length {seqlen} is not divisible by patch_len={self.patch_len}; "
                             f"use a length that is a multiple of {self.patch_len}")
        patches = features.reshape(batch, seqlen // self.patch_len, self.patch_len * channels)
        return self.proj(patches)


@dataclass
class AdapterConfig:
    """Which adapter a `ModalityTask` builds. `kind="token"` needs `vocab_size`; "linear" and "patch" need
    `in_features` (channels per step); "patch" uses `patch_len`."""

    kind: AdapterKind = "linear"
    vocab_size: int = 0
    in_features: int = 0
    patch_len: int = 1


def build_adapter(config: AdapterConfig, d_model: int) -> nn.Module:
    """The adapter named by `config.kind`, mapping raw inputs to `(b, L', d_model)`."""
    required = {"token": ("vocab_size",), "linear": ("in_features",), "patch": ("in_features", "patch_len")}
    if config.kind not in required:
        raise ValueError(f"adapter.kind={config.kind!r} is unknown: expected one of {sorted(required)}")
    for name in required[config.kind]:
        if getattr(config, name) <= 0:
            raise ValueError(f"adapter.{name}={getattr(config, name)} must be positive for adapter.kind="
                             f"{config.kind!r}")
    if config.kind == "token":
        return TokenEmbedding(config.vocab_size, d_model)
    if config.kind == "linear":
        return LinearProjection(config.in_features, d_model)
    return Patching(config.patch_len, config.in_features, d_model)


def _check_features(name: str, features: torch.Tensor, in_features: int) -> None:
    if features.dim() != 3 or features.shape[-1] != in_features:
        raise ValueError(f"{name} expects features of shape (batch, seqlen, {in_features}), got "
                         f"{tuple(features.shape)}")
