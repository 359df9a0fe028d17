"""Multi-head causal self-attention for hybrid Mamba/attention stacks, with mamba-ssm `MHA` parameter names
(`in_proj` = [q | k | v (| mlp)], optional depthwise `conv1d` over qkv, `out_proj`). Supports GQA, RoPE and a KV
cache for decoding; attention itself is `scaled_dot_product_attention`."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mambaseq.config import AttentionConfig
from mambaseq.inference import AttentionLayerCache
from mambaseq.kernels import causal_conv1d, causal_conv1d_update
from mambaseq.mixers.rotary import apply_rotary, rotary_cos_sin

INITIAL_KV_CAPACITY = 256


class CausalSelfAttention(nn.Module):
    """hidden: (b, L, d_model) -> (b, L, d_model). `mlp_dim > 0` adds mamba-ssm's parallel gated MLP branch."""

    def __init__(self, d_model: int, config: AttentionConfig, kernel_backend: str = "auto") -> None:
        super().__init__()
        self.config = config
        self.kernel_backend = kernel_backend
        self.num_heads = config.num_heads
        self.num_heads_kv = config.kv_heads
        self.head_dim = config.resolved_head_dim(d_model)
        self.qkv_dim = self.head_dim * (self.num_heads + 2 * self.num_heads_kv)
        self.mlp_dim = math.ceil(config.mlp_dim / 256) * 256
        self.in_proj = nn.Linear(d_model, self.qkv_dim + self.mlp_dim, bias=config.qkv_proj_bias)
        if config.d_conv > 0:
            self.conv1d = nn.Conv1d(self.qkv_dim, self.qkv_dim, kernel_size=config.d_conv, groups=self.qkv_dim,
                                    padding=config.d_conv - 1)
        self.out_proj = nn.Linear(self.head_dim * self.num_heads + self.mlp_dim // 2, d_model,
                                  bias=config.out_proj_bias)

    def allocate_cache(self, batch: int, dtype: torch.dtype, device: torch.device | str) -> AttentionLayerCache:
        shape = (batch, self.num_heads_kv, INITIAL_KV_CAPACITY, self.head_dim)
        conv_state = None
        if self.config.d_conv > 0:
            conv_state = torch.zeros(batch, self.qkv_dim, self.config.d_conv - 1, dtype=dtype, device=device)
        return AttentionLayerCache(key=torch.zeros(shape, dtype=dtype, device=device),
                                   value=torch.zeros(shape, dtype=dtype, device=device), conv_state=conv_state)

    def forward(self, hidden: torch.Tensor, cache: AttentionLayerCache | None = None) -> torch.Tensor:
        """Attend over `hidden: (b, L, d_model)` and, with `cache`, over the cached keys/values before it; the new
        keys/values are appended to the cache."""
        batch, seqlen, _ = hidden.shape
        qkv, mlp_out = self._project(hidden)
        if self.config.d_conv > 0:
            qkv = self._conv(qkv, cache)
        offset = cache.length if cache is not None else 0
        q, k, v = qkv.split([self.num_heads * self.head_dim, self.num_heads_kv * self.head_dim,
                             self.num_heads_kv * self.head_dim], dim=-1)
        q = q.view(batch, seqlen, self.num_heads, self.head_dim)
        k = k.view(batch, seqlen, self.num_heads_kv, self.head_dim)
        v = v.view(batch, seqlen, self.num_heads_kv, self.head_dim)
        if self.config.rotary_emb_dim > 0:
            positions = torch.arange(offset, offset + seqlen, device=hidden.device)
            cos, sin = rotary_cos_sin(positions, self.config.rotary_emb_dim, self.config.rotary_emb_base)
            q = apply_rotary(q, cos, sin, self.config.rotary_emb_interleaved)
            k = apply_rotary(k, cos, sin, self.config.rotary_emb_interleaved)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (b, heads, L, head_dim)
        if cache is not None:
            k, v = cache.append(k, v)
        context = self._attend(q, k, v, offset)
        context = context.transpose(1, 2).reshape(batch, seqlen, self.num_heads * self.head_dim)
        if mlp_out is not None:
            context = torch.cat([context, mlp_out], dim=-1)
        return self.out_proj(context)

    def step(self, hidden: torch.Tensor, cache: AttentionLayerCache) -> torch.Tensor:
        """One decoding step: `hidden: (b, 1, d_model) -> (b, 1, d_model)`, attending over the whole KV cache."""
        return self.forward(hidden, cache)

    def _project(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        projected = self.in_proj(hidden)
        if self.mlp_dim == 0:
            return projected, None
        qkv, mlp = projected.split([self.qkv_dim, self.mlp_dim], dim=-1)
        up, gate = mlp.chunk(2, dim=-1)
        return qkv, up * F.silu(gate)

    def _conv(self, qkv: torch.Tensor, cache: AttentionLayerCache | None) -> torch.Tensor:
        """Depthwise causal conv (no activation) over qkv: (b, L, qkv_dim), continuing from the cached conv state."""
        weight = self.conv1d.weight.squeeze(1)
        if cache is not None and qkv.shape[1] == 1:
            return causal_conv1d_update(qkv[:, 0], cache.conv_state, weight, self.conv1d.bias, None,
                                        backend=self.kernel_backend).unsqueeze(1)
        if cache is None:
            return causal_conv1d(qkv.transpose(1, 2), weight, self.conv1d.bias, backend=self.kernel_backend
                                 ).transpose(1, 2)
        out, conv_state = causal_conv1d(qkv.transpose(1, 2), weight, self.conv1d.bias,
                                        initial_state=cache.conv_state, return_final_state=True,
                                        backend=self.kernel_backend)
        cache.conv_state.copy_(conv_state)
        return out.transpose(1, 2)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offset: int) -> torch.Tensor:
        """q: (b, heads, L, d) against k, v: (b, heads_kv, offset + L, d); query i sits at position offset + i."""
        if self.num_heads_kv != self.num_heads:
            repeats = self.num_heads // self.num_heads_kv
            k, v = k.repeat_interleave(repeats, dim=1), v.repeat_interleave(repeats, dim=1)
        scale = self.config.softmax_scale
        seqlen = q.shape[2]
        if not self.config.causal or seqlen == 1:
            return F.scaled_dot_product_attention(q, k, v, scale=scale)
        if offset == 0:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        query_pos = torch.arange(offset, offset + seqlen, device=q.device)[:, None]
        key_pos = torch.arange(k.shape[2], device=q.device)[None, :]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_pos <= query_pos, scale=scale)
