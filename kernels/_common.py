"""Shared argument handling for the PyTorch kernels: compute dtype, step sizes, group broadcasting, gating."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """fp64 inputs are computed in fp64 (references, gradcheck); everything else in fp32."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def residual_stream_dtype(hidden: torch.Tensor, residual: torch.Tensor | None, residual_in_fp32: bool
                          ) -> torch.dtype:
    """Dtype of the residual stream `hidden (+ residual)`: their promoted dtype, at least fp32 when
    `residual_in_fp32` (mamba-ssm's block rule)."""
    dtype = hidden.dtype if residual is None else torch.promote_types(hidden.dtype, residual.dtype)
    return torch.promote_types(dtype, torch.float32) if residual_in_fp32 else dtype


def step_sizes(
    dt: torch.Tensor,
    bias: torch.Tensor | None,
    softplus: bool,
    dtype: torch.dtype,
    bias_shape: tuple[int, ...],
    limit: tuple[float, float] = (0.0, math.inf),
) -> torch.Tensor:
    """dt (any layout) -> softplus(dt + bias) (optional), clamped to `limit` when it is not the default (0, inf).

    `bias_shape` is how the per-channel / per-head bias broadcasts against `dt`.
    """
    dt = dt.to(dtype)
    if bias is not None:
        dt = dt + bias.to(dtype).reshape(bias_shape)
    if softplus:
        dt = F.softplus(dt)
    low, high = limit
    if low != 0.0 or not math.isinf(high):
        dt = dt.clamp(min=low, max=high)
    return dt


def repeat_groups(tensor: torch.Tensor, dim: int, size: int, name: str) -> torch.Tensor:
    """Repeat each group along `dim` so that it covers `size` channels/heads split evenly over the groups."""
    groups = tensor.shape[dim]
    if size % groups != 0:
        raise ValueError(f"{name}: {size} channels/heads cannot be split evenly over {groups} groups "
                         f"(shape {tuple(tensor.shape)})")
    return tensor if groups == size else tensor.repeat_interleave(size // groups, dim=dim)


def scan_input_matrix(matrix: torch.Tensor, d_inner: int, dtype: torch.dtype, name: str) -> torch.Tensor:
    """Mamba-1 B or C: (batch, d_state, L) or (batch, groups, d_state, L) -> (batch, d_inner or 1, d_state, L)."""
    if matrix.dim() == 3:
        return matrix.to(dtype).unsqueeze(1)
    if matrix.dim() == 4:
        return repeat_groups(matrix.to(dtype), 1, d_inner, name)
    raise ValueError(f"{name}: expected (batch, d_state, seqlen) or (batch, groups, d_state, seqlen), "
                     f"got shape {tuple(matrix.shape)}")


def step_input_matrix(matrix: torch.Tensor, d_inner: int, dtype: torch.dtype, name: str) -> torch.Tensor:
    """Mamba-1 step B or C: (batch, d_state) or (batch, groups, d_state) -> (batch, d_inner or 1, d_state)."""
    if matrix.dim() == 2:
        return matrix.to(dtype).unsqueeze(1)
    if matrix.dim() == 3:
        return repeat_groups(matrix.to(dtype), 1, d_inner, name)
    raise ValueError(f"{name}: expected (batch, d_state) or (batch, groups, d_state), got shape {tuple(matrix.shape)}")


def silu_gate(y: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
    """y * silu(z) in y's dtype; identity without z."""
    return y if z is None else y * F.silu(z.to(y.dtype))


def ssd_skip(x: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """D * x for the head layout x: (..., nheads, headdim) with D: (nheads,) or (nheads, headdim)."""
    D = D.to(x.dtype)
    return x * (D.unsqueeze(-1) if D.dim() == 1 else D)
