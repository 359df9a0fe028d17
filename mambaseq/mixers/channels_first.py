"""Linear maps over the channel axis of channels-first activations `(b, channels, L)`.

The Mamba-1 scan and conv kernels read `(b, d_inner, L)` tensors with unit stride along L. Projecting with
`F.linear` on `(b, L, d)` and transposing leaves channel-last memory, which the kernels then copy; a batched GEMM
`W @ x[b]` writes the channels-first layout directly, and its backward hands back channels-first gradients.
"""
from __future__ import annotations

import torch


def _compute_weight(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`weight` in the autocast dtype when autocast is on for `x`'s device (cast before broadcasting over the batch,
    so the cast copies one matrix, not one per sequence)."""
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return weight.to(torch.get_autocast_dtype(device_type))
    return weight


def channels_first_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`weight @ x[i] (+ bias)` for each sequence: x (b, in, L) with any strides, weight (out, in), bias (out,)
    -> (b, out, L), contiguous."""
    weight = _compute_weight(weight, x)
    out = torch.bmm(weight.expand(x.shape[0], *weight.shape), x.to(weight.dtype))
    if bias is not None:
        out = out + bias.to(out.dtype)[:, None]
    return out


def channels_first_to_last_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
                                  ) -> torch.Tensor:
    """`x[i]^T @ weight^T (+ bias)` for each sequence: x (b, in, L) with any strides, weight (out, in), bias (out,)
    -> (b, L, out), contiguous: the layout the next block's norm reads. For inference: its backward would hand the
    scan a gradient with unit stride along channels, not L."""
    weight = _compute_weight(weight, x)
    out = torch.bmm(x.to(weight.dtype).transpose(1, 2), weight.t().expand(x.shape[0], *weight.t().shape))
    if bias is not None:
        out = out + bias.to(out.dtype)
    return out
