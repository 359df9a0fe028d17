"""Depthwise causal 1-D convolution (Mamba's short conv) over a sequence, and its one-step decoding update."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import compute_dtype

ACTIVATIONS = (None, "silu", "swish")


def _check_activation(activation: str | None) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"causal conv activation={activation!r}; expected one of {ACTIVATIONS}")


def _activate(out: torch.Tensor, activation: str | None) -> torch.Tensor:
    return out if activation is None else F.silu(out)


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """out[t] = act(bias + sum_k weight[:, k] * x[t - width + 1 + k]), inputs before t=0 taken from `initial_state`
    (zeros without it).

    x: (batch, channels, L); weight: (channels, width); bias: (channels,);
    initial_state: (batch, channels, width - 1), the inputs that precede x. Computes in fp32 (fp64 for fp64 x).
    Returns out (dtype of x), plus the final state = the last width - 1 inputs (dtype of x).
    """
    _check_activation(activation)
    batch, channels, seqlen = x.shape
    width = weight.shape[-1]
    if weight.shape != (channels, width):
        raise ValueError(f"causal_conv1d: weight shape {tuple(weight.shape)}, expected ({channels}, width)")
    dtype = compute_dtype(x)
    history = (initial_state.to(dtype) if initial_state is not None
               else x.new_zeros(batch, channels, width - 1, dtype=dtype))
    padded = torch.cat([history, x.to(dtype)], dim=-1)  # (batch, channels, width - 1 + L)
    weight = weight.to(dtype)
    out = padded[..., :seqlen] * weight[:, :1]
    for k in range(1, width):
        out = out + padded[..., k:k + seqlen] * weight[:, k:k + 1]
    if bias is not None:
        out = out + bias.to(dtype)[:, None]
    out = _activate(out, activation).to(x.dtype)
    if not return_final_state:
        return out
    return out, padded[..., padded.shape[-1] - (width - 1):].to(x.dtype)


def causal_conv1d_update(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
) -> torch.Tensor:
    """One decoding step. x: (batch, channels); conv_state: (batch, channels, width - 1), shifted left in place
    with x appended; weight: (channels, width). Returns out: (batch, channels) in x's dtype."""
    _check_activation(activation)
    dtype = compute_dtype(x)
    window = torch.cat([conv_state.to(dtype), x.to(dtype).unsqueeze(-1)], dim=-1)  # (batch, channels, width)
    out = (window * weight.to(dtype)).sum(-1)
    if bias is not None:
        out = out + bias.to(dtype)
    conv_state.copy_(window[..., 1:])
    return _activate(out, activation).to(x.dtype)
