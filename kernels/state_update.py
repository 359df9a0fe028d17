"""Single decoding steps of the Mamba-1 scan and of SSD; the recurrent state is updated in place."""
from __future__ import annotations

import math

import torch

from ._common import compute_dtype, repeat_groups, silu_gate, ssd_skip, step_input_matrix, step_sizes


def selective_state_update(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
) -> torch.Tensor:
    """One Mamba-1 step. state: (batch, d_inner, d_state), updated in place; x, dt, z: (batch, d_inner);
    A: (d_inner, d_state); B, C: (batch, d_state) or (batch, groups, d_state); D, dt_bias: (d_inner,).
    Returns y: (batch, d_inner) in x's dtype."""
    dtype = compute_dtype(x)
    d_inner = x.shape[1]
    dt = step_sizes(dt, dt_bias, dt_softplus, dtype, (-1,))
    x_compute = x.to(dtype)
    B = step_input_matrix(B, d_inner, dtype, "B")
    C = step_input_matrix(C, d_inner, dtype, "C")
    new_state = torch.exp(dt[..., None] * A.to(dtype)) * state.to(dtype) + (dt * x_compute)[..., None] * B
    state.copy_(new_state)
    y = (new_state * C).sum(-1)
    if D is not None:
        y = y + D.to(dtype) * x_compute
    return silu_gate(y, z).to(x.dtype)


def ssd_state_update(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, math.inf),
) -> torch.Tensor:
    """One SSD (Mamba-2) step. state: (batch, nheads, headdim, d_state), updated in place;
    x, z: (batch, nheads, headdim); dt: (batch, nheads); A, dt_bias: (nheads,); B, C: (batch, ngroups, d_state);
    D: (nheads,) or (nheads, headdim). Returns y: (batch, nheads, headdim) in x's dtype."""
    dtype = compute_dtype(x)
    nheads = x.shape[1]
    dt = step_sizes(dt, dt_bias, dt_softplus, dtype, (nheads,), dt_limit)  # (batch, nheads)
    x_compute = x.to(dtype)
    B = repeat_groups(B.to(dtype), 1, nheads, "B")  # (batch, nheads, d_state)
    C = repeat_groups(C.to(dtype), 1, nheads, "C")
    decay = torch.exp(dt * A.to(dtype))[..., None, None]
    new_state = decay * state.to(dtype) + (dt[..., None] * x_compute)[..., None] * B[:, :, None, :]
    state.copy_(new_state)
    y = torch.einsum("bhpn,bhn->bhp", new_state, C)
    if D is not None:
        y = y + ssd_skip(x_compute, D)
    return silu_gate(y, z).to(x.dtype)
