"""A Mamba-1 decoding step in the pieces that the Triton step fuses (PyTorch twins, and the fallback of
`step_dispatch`): the front (residual add + RMSNorm + in_proj + conv step, optionally summing x_proj), the state
step with the mixer's own parameters (low-rank dt through dt_proj, `A = -exp(A_log)`), and the back (state step
from the summed x_proj, then out_proj added into the residual stream). Composed from the other PyTorch steps."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import compute_dtype
from .causal_conv1d import causal_conv1d_update
from .state_update import selective_state_update


def add_norm_in_proj_conv(
    hidden: torch.Tensor,
    residual: torch.Tensor | None,
    norm_weight: torch.Tensor,
    eps: float,
    residual_dtype: torch.dtype,
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor | None,
    conv_state: torch.Tensor,
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor | None,
    x_proj_weight: torch.Tensor | None = None,
    x_proj_sums: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`residual_out = hidden (+ residual)` (stored in `residual_dtype`), `normed = RMSNorm(residual_out)` in the
    weight's dtype, `[x, z] = in_proj(normed)`, then one SiLU causal-conv step on x (conv_state shifted in place).
    hidden, residual: (batch, d_model); proj_weight: (2 * d_inner, d_model); conv_state: (batch, d_inner,
    width - 1); conv_weight: (d_inner, width). Returns `(xz: (batch, 2 * d_inner) in hidden's dtype, residual_out)`.
    With `x_proj_weight: (width_x, d_inner)`, also adds `x_proj(x)` (in x's dtype, as the unfused Linear) into
    `x_proj_sums: (batch, width_x)` (fp32, fp64 for an fp64 reference) for `mamba1_state_step_out_proj`."""
    stream = (hidden if residual is None else residual + hidden).to(residual_dtype)
    dtype = compute_dtype(hidden)
    stream_compute = stream.to(dtype)
    normed = stream_compute * torch.rsqrt(stream_compute.pow(2).mean(-1, keepdim=True) + eps) * norm_weight.to(dtype)
    x, z = F.linear(normed.to(proj_weight.dtype), proj_weight, proj_bias).to(hidden.dtype).chunk(2, dim=-1)
    x = causal_conv1d_update(x, conv_state, conv_weight, conv_bias, "silu")
    if x_proj_sums is not None:
        x_proj_sums += F.linear(x, x_proj_weight.to(x.dtype)).to(x_proj_sums.dtype)
    return torch.cat([x, z], dim=-1), stream


def mamba1_state_step(
    state: torch.Tensor,
    x: torch.Tensor,
    dt_low: torch.Tensor,
    dt_proj_weight: torch.Tensor,
    A_log: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """`selective_state_update` with `dt = softplus(dt_low @ dt_proj_weight^T + dt_bias)` (the product in dt_low's
    dtype, as the mixer's Linear) and `A = -exp(A_log)`. dt_low: (batch, dt_rank); dt_proj_weight: (d_inner,
    dt_rank); A_log: (d_inner, d_state); the rest as `selective_state_update`. Returns y: (batch, d_inner)."""
    dt, A = dt_and_A(dt_low, dt_proj_weight, A_log)
    return selective_state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus=True)


def dt_and_A(dt_low: torch.Tensor, dt_proj_weight: torch.Tensor, A_log: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """`selective_state_update`'s dt (before bias and softplus) and A from the mixer's parameters: `low_rank_dt`,
    (batch, d_inner); `A = -exp(A_log)` in fp32 (fp64), (d_inner, d_state)."""
    return low_rank_dt(dt_low, dt_proj_weight), -torch.exp(A_log.to(compute_dtype(A_log)))


def low_rank_dt(dt_low: torch.Tensor, dt_proj_weight: torch.Tensor) -> torch.Tensor:
    """`dt = dt_low @ dt_proj_weight^T` in dt_low's dtype, as the mixer's Linear: dt_low (batch, dt_rank),
    dt_proj_weight (d_inner, dt_rank) -> (batch, d_inner), before bias and softplus."""
    return dt_low @ dt_proj_weight.to(dt_low.dtype).t()


def mamba1_state_step_out_proj(
    state: torch.Tensor,
    xz: torch.Tensor,
    x_proj_sums: torch.Tensor,
    arrivals: torch.Tensor,
    dt_proj_weight: torch.Tensor,
    dt_bias: torch.Tensor | None,
    A_log: torch.Tensor,
    D: torch.Tensor | None,
    out_proj_weight: torch.Tensor,
    out_proj_bias: torch.Tensor | None,
    residual: torch.Tensor,
) -> None:
    """The back of a step: `[dt_low, B, C] = x_proj_sums` (rounded to xz's dtype, as x_proj's output), the state
    step on `[x, z] = xz`, then `residual += out_proj(y)` (the product in y's dtype, as the unfused Linear, where
    the Triton kernel adds fp32 sums); x_proj_sums is zeroed for the next step. state: (batch, d_inner, d_state)
    updated in place; xz: (batch, 2 * d_inner); x_proj_sums: (batch, dt_rank + 2 * d_state); `arrivals` holds the
    Triton kernel's counters (untouched here); out_proj_weight: (d_model, d_inner); residual: (batch, d_model),
    updated in place."""
    d_state = state.shape[-1]
    x, z = xz.chunk(2, dim=-1)
    dt_low, B, C = x_proj_sums.to(xz.dtype).split([dt_proj_weight.shape[1], d_state, d_state], dim=-1)
    y = mamba1_state_step(state, x, dt_low, dt_proj_weight, A_log, B, C, D, z, dt_bias)
    bias = None if out_proj_bias is None else out_proj_bias.to(y.dtype)
    residual += F.linear(y, out_proj_weight.to(y.dtype), bias).to(residual.dtype)
    x_proj_sums.zero_()
