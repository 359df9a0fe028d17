"""Rotary position embedding (RoPE) on the first `rotary_dim` channels of each head, as flash-attn's
`RotaryEmbedding` used by mamba-ssm's MHA: half-split (GPT-NeoX) layout by default, or interleaved pairs."""
from __future__ import annotations

import torch


def rotary_cos_sin(positions: torch.Tensor, rotary_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: (len(positions), rotary_dim / 2) in fp32 for integer `positions: (L,)`."""
    inv_freq = 1.0 / (base ** (torch.arange(0, rotary_dim, 2, dtype=torch.float32, device=positions.device)
                               / rotary_dim))
    angles = positions.float()[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool = False) -> torch.Tensor:
    """Rotate `x: (b, L, heads, head_dim)` by position; `cos, sin: (L, rotary_dim / 2)`. Channels past `rotary_dim`
    pass through unchanged."""
    rotary_dim = 2 * cos.shape[-1]
    compute_dtype = torch.promote_types(x.dtype, torch.float32)
    rotated, passthrough = x[..., :rotary_dim].to(compute_dtype), x[..., rotary_dim:]
    cos, sin = cos[None, :, None, :].to(compute_dtype), sin[None, :, None, :].to(compute_dtype)
    if interleaved:
        even, odd = rotated[..., 0::2], rotated[..., 1::2]
        rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)
    else:
        first, second = rotated.chunk(2, dim=-1)
        rotated = torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)
    return torch.cat([rotated.to(x.dtype), passthrough], dim=-1)
