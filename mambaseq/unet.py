"""SaShiMi-style multi-scale U-Net of Mamba stacks for raw waveforms (Goel et al. 2022, Mamba's audio backbone).

Stage `s` runs at width `d_model * expand**s` and rate `1 / prod(pool[:s])`:

    x ─ down stack ─┬─ pool down (reshape p steps → linear) ─ inner stage ─ pool up (linear → p steps, shifted)
                    └──────────────────────────── skip ───────────────────────────────── + ─ up stack ─ y

Causality: a pooled step summarizes `p` fine steps, so its output may only reach fine positions of the *next*
block of `p`; the up-pooled sequence is shifted right by one block (the first block gets zeros). Output at t thus
depends on inputs at <= t only. Recurrent stepping keeps, per stage, the pending down-path outputs of the current
block and the up-pooled vectors of the current block; every `p` fine steps the inner stage takes one step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mambaseq.backbone import EMBEDDING_INIT_STD, MambaBackbone
from mambaseq.config import BackboneConfig, Mamba1Config, MixerConfig, mixer_config_from_dict
from mambaseq.heads import LMHead
from mambaseq.inference import InferenceCache


@dataclass
class UNetConfig:
    """U-Net LM over `vocab_size` classes. `n_layer` Mamba blocks per stage on the down and on the up path,
    `center_layers` (default `n_layer`) at the coarsest rate; `mlp_expand > 0` adds a gated MLP of width
    `mlp_expand * stage width` to every block (SaShiMi's alternating S4/FF layers); `gradient_checkpointing`
    recomputes each block in the backward pass (long windows)."""

    d_model: int = 64
    pool: list[int] = field(default_factory=lambda: [4, 4])
    expand: int = 2
    n_layer: int = 2
    center_layers: int | None = None
    mixer: MixerConfig = field(default_factory=Mamba1Config)
    mlp_expand: int = 0
    vocab_size: int = 256
    tie_embeddings: bool = False
    rms_norm: bool = True
    norm_eps: float = 1e-5
    residual_in_fp32: bool = True
    gradient_checkpointing: bool = False
    kernel_backend: str = "auto"

    def __post_init__(self) -> None:
        self.mixer = mixer_config_from_dict(self.mixer)
        self.pool = [int(p) for p in self.pool]
        if not self.pool or any(p < 1 for p in self.pool):
            raise ValueError(f"UNetConfig.pool={self.pool} is invalid: expected a non-empty list of factors >= 1")
        for name in ("d_model", "expand", "n_layer", "vocab_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"UNetConfig.{name}={getattr(self, name)} is invalid: expected a positive integer")
        if self.center_layers is not None and self.center_layers < 1:
            raise ValueError(f"UNetConfig.center_layers={self.center_layers} is invalid: expected >= 1 or None")
        for level in range(len(self.pool) + 1):
            self.stage_config(level, self.n_layer)

    @property
    def total_pool(self) -> int:
        """Fine steps per step of the coarsest stage."""
        total = 1
        for factor in self.pool:
            total *= factor
        return total

    def width(self, level: int) -> int:
        return self.d_model * self.expand**level

    def stage_config(self, level: int, n_layer: int) -> BackboneConfig:
        """Backbone config of one Mamba stack at stage `level`."""
        width = self.width(level)
        return BackboneConfig(d_model=width, n_layer=n_layer, mixer=self.mixer, d_intermediate=self.mlp_expand * width,
                              rms_norm=self.rms_norm, norm_eps=self.norm_eps, residual_in_fp32=self.residual_in_fp32,
                              gradient_checkpointing=self.gradient_checkpointing, kernel_backend=self.kernel_backend)

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["mixer"] = self.mixer.to_dict()
        data["pool"] = list(self.pool)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"UNetConfig: unknown key(s) {unknown}; expected keys from {sorted(cls.__dataclass_fields__)}")
        return cls(**data)


class DownPool(nn.Module):
    """Groups of `pool` consecutive steps → one step: `(b, n * pool, d) -> (b, n, d * expand)`."""

    def __init__(self, d_model: int, pool: int, expand: int) -> None:
        super().__init__()
        self.pool = pool
        self.linear = nn.Linear(d_model * pool, d_model * expand)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, channels = x.shape
        return self.linear(x.reshape(batch, length // self.pool, self.pool * channels))


class UpPool(nn.Module):
    """One coarse step → `pool` fine steps (unshifted): `(b, n, d_in) -> (b, n, pool, d_out)`."""

    def __init__(self, d_in: int, pool: int, d_out: int) -> None:
        super().__init__()
        self.pool = pool
        self.linear = nn.Linear(d_in, d_out * pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return self.linear(x).reshape(batch, length, self.pool, -1)


@dataclass
class UNetStageCache:
    """Recurrent state of one stage. `pending: (b, pool, width)` holds the down-path outputs of the current block
    (the first `filled` rows are valid); `upsampled: (b, pool, width)` the shifted up-pool output for that block."""

    down: InferenceCache
    up: InferenceCache
    inner: UNetStageCache | InferenceCache
    pending: torch.Tensor
    upsampled: torch.Tensor
    filled: int = 0


class UNetStage(nn.Module):
    """Stage `level` of the U-Net and, recursively, every coarser stage. `(b, L, width) -> (b, L, width)`."""

    def __init__(self, config: UNetConfig, level: int) -> None:
        super().__init__()
        self.pool_factor = config.pool[level]
        width, inner_width = config.width(level), config.width(level + 1)
        self.down = MambaBackbone(config.stage_config(level, config.n_layer))
        self.pool_down = DownPool(width, self.pool_factor, config.expand)
        if level + 1 < len(config.pool):
            self.inner: UNetStage | MambaBackbone = UNetStage(config, level + 1)
        else:
            self.inner = MambaBackbone(config.stage_config(level + 1, config.center_layers or config.n_layer))
        self.pool_up = UpPool(inner_width, self.pool_factor, width)
        self.up = MambaBackbone(config.stage_config(level, config.n_layer))
        self.width = width

    def allocate_cache(self, batch: int, dtype: torch.dtype, device: torch.device | str) -> UNetStageCache:
        buffer_shape = (batch, self.pool_factor, self.width)
        return UNetStageCache(
            down=self.down.allocate_cache(batch, dtype, device), up=self.up.allocate_cache(batch, dtype, device),
            inner=self.inner.allocate_cache(batch, dtype, device),
            pending=torch.zeros(buffer_shape, dtype=dtype, device=device),
            upsampled=torch.zeros(buffer_shape, dtype=dtype, device=device),
        )

    def forward(self, inputs_embeds: torch.Tensor, cache: UNetStageCache | None = None) -> torch.Tensor:
        """Parallel pass over `inputs_embeds: (b, L, width)`, any L. With `cache`, continues from its state
        (possibly mid-block) and leaves the state after the last position in it."""
        batch, length, _ = inputs_embeds.shape
        pool = self.pool_factor
        skip = self.down(inputs_embeds=inputs_embeds, cache=cache.down if cache else None)
        already_filled = cache.filled if cache else 0
        joined = torch.cat([cache.pending[:, :already_filled], skip], dim=1) if already_filled else skip
        complete_blocks = joined.shape[1] // pool
        if cache is None:
            previous = skip.new_zeros(batch, 1, pool, self.width)
        else:
            previous = cache.upsampled.unsqueeze(1)
        blocks = [previous]
        if complete_blocks:
            coarse = self.pool_down(joined[:, : complete_blocks * pool])
            coarse = self.inner(inputs_embeds=coarse, cache=cache.inner if cache else None)
            blocks.append(self.pool_up(coarse).to(skip.dtype))
        upsampled = torch.cat(blocks, dim=1)  # (b, complete_blocks + 1, pool, width): block j from coarse step j-1
        if cache is not None:
            leftover = joined.shape[1] - complete_blocks * pool
            cache.pending[:, :leftover] = joined[:, complete_blocks * pool:]
            cache.filled = leftover
            cache.upsampled = upsampled[:, -1].clone()
        shifted = upsampled.flatten(1, 2)[:, already_filled: already_filled + length]
        return self.up(inputs_embeds=shifted + skip, cache=cache.up if cache else None)

    def step(self, inputs_embeds: torch.Tensor, cache: UNetStageCache) -> torch.Tensor:
        """One fine step: `inputs_embeds: (b, 1, width) -> (b, 1, width)`; the inner stage steps once every
        `pool` calls, when the current block is complete."""
        skip = self.down.step(inputs_embeds=inputs_embeds, cache=cache.down)
        position = cache.filled
        output = self.up.step(inputs_embeds=cache.upsampled[:, position: position + 1] + skip, cache=cache.up)
        cache.pending[:, position] = skip[:, 0]
        cache.filled += 1
        if cache.filled == self.pool_factor:
            coarse = self.inner.step(inputs_embeds=self.pool_down(cache.pending), cache=cache.inner)
            cache.upsampled = self.pool_up(coarse)[:, 0].to(cache.pending.dtype)
            cache.filled = 0
        return output


class UNetLM(nn.Module):
    """Autoregressive model over quantized samples: embedding → U-Net → LM head.

    Same interface as `MambaLM`: `forward(input_ids (b, L), cache=None) -> logits (b, L, vocab)`,
    `step(input_ids (b, 1), cache) -> (b, 1, vocab)`, `allocate_cache(batch)`, so `mambaseq.generation` drives both.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.d_model)
        nn.init.normal_(self.embedding.weight, std=EMBEDDING_INIT_STD)
        self.unet = UNetStage(config, level=0)
        tied = self.embedding if config.tie_embeddings else None
        self.lm_head = LMHead(config.d_model, config.vocab_size, tied_embedding=tied)

    def allocate_cache(self, batch: int, dtype: torch.dtype | None = None,
                       device: torch.device | str | None = None) -> UNetStageCache:
        reference = self.embedding.weight
        return self.unet.allocate_cache(batch, dtype or reference.dtype, device or reference.device)

    def forward(self, input_ids: torch.Tensor, cache: UNetStageCache | None = None) -> torch.Tensor:
        return self.lm_head(self.unet(self.embedding(input_ids), cache))

    def step(self, input_ids: torch.Tensor, cache: UNetStageCache) -> torch.Tensor:
        if input_ids.shape[1] != 1:
            raise ValueError(f"UNetLM.step takes one sample per sequence, got shape {tuple(input_ids.shape)}")
        return self.lm_head(self.unet.step(self.embedding(input_ids), cache))
