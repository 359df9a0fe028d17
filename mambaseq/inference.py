"""Decoding state: per-layer conv + SSM states (Mamba) or a growing KV cache (attention), plus the token offset.

A Mamba layer's state has a fixed size whatever the context length; that is what makes recurrent decoding O(1)
per token. Caches are filled by a parallel forward over the prompt and then advanced one token at a time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class FusedStepBuffers:
    """Scratch of a Mamba-1 decoding step split into two kernels (`kernels.add_norm_in_proj_conv` summing x_proj,
    `kernels.mamba1_state_step_out_proj` adding out_proj into the residual stream); zero between steps.

    x_proj_sums: (batch, dt_rank + 2 * d_state) fp32; arrivals: (batch, 1 + d_inner) int32, the back kernel's
    arrival counters; zero_output: (batch, 1, d_model) zeros, the mixer's output once out_proj is in the residual
    stream.
    """

    x_proj_sums: torch.Tensor
    arrivals: torch.Tensor
    zero_output: torch.Tensor

    def reset(self) -> None:
        for buffer in (self.x_proj_sums, self.arrivals, self.zero_output):
            buffer.zero_()


@dataclass
class SSMLayerCache:
    """State of one Mamba layer.

    conv_state: (batch, conv_channels, d_conv - 1), the last inputs of the depthwise causal conv.
    ssm_state: (batch, d_inner, d_state) for Mamba-1, (batch, nheads, headdim, d_state) for Mamba-2; fp32.
    fused_step: Mamba-1's scratch for the two-kernel decoding step, or None.
    """

    conv_state: torch.Tensor
    ssm_state: torch.Tensor
    fused_step: FusedStepBuffers | None = None

    def reset(self) -> None:
        self.conv_state.zero_()
        self.ssm_state.zero_()
        if self.fused_step is not None:
            self.fused_step.reset()


@dataclass
class AttentionLayerCache:
    """KV cache of one attention layer; capacity grows by doubling as tokens are appended.

    key, value: (batch, num_heads_kv, capacity, head_dim), valid up to `length`.
    conv_state: (batch, qkv_channels, d_conv - 1) when the layer has a short conv on qkv, else None.
    """

    key: torch.Tensor
    value: torch.Tensor
    length: int = 0
    conv_state: torch.Tensor | None = None

    def append(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store `key, value: (batch, num_heads_kv, new, head_dim)`; return all keys and values so far."""
        end = self.length + key.shape[2]
        if end > self.key.shape[2]:
            capacity = max(end, 2 * self.key.shape[2])
            self.key = _grow(self.key, capacity)
            self.value = _grow(self.value, capacity)
        self.key[:, :, self.length:end] = key
        self.value[:, :, self.length:end] = value
        self.length = end
        return self.key[:, :, :end], self.value[:, :, :end]

    def reset(self) -> None:
        self.length = 0
        if self.conv_state is not None:
            self.conv_state.zero_()


def _grow(buffer: torch.Tensor, capacity: int) -> torch.Tensor:
    grown = buffer.new_zeros(*buffer.shape[:2], capacity, buffer.shape[3])
    grown[:, :, : buffer.shape[2]] = buffer
    return grown


LayerCache = SSMLayerCache | AttentionLayerCache


@dataclass
class InferenceCache:
    """All layers' decoding state; `seqlen_offset` counts the tokens already consumed."""

    layers: list[LayerCache] = field(default_factory=list)
    seqlen_offset: int = 0

    def reset(self) -> None:
        """Forget all consumed tokens, keeping the allocated buffers."""
        for layer in self.layers:
            layer.reset()
        self.seqlen_offset = 0
