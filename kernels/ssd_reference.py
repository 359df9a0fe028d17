"""Mamba-2 SSD as a plain sequential recurrence: the ground truth for the chunked (block-decomposed) SSD."""
from __future__ import annotations

import math

import torch

from ._common import compute_dtype, repeat_groups, silu_gate, ssd_skip, step_sizes


def ssd_reference(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
    dt_limit: tuple[float, float] = (0.0, math.inf),
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Sequential SSD (mamba-ssm `mamba_chunk_scan_combined` semantics).

    x, z: (batch, L, nheads, headdim); dt: (batch, L, nheads); A, dt_bias: (nheads,);
    B, C: (batch, L, ngroups, d_state); D: (nheads,) or (nheads, headdim);
    initial_state: (batch, nheads, headdim, d_state).
    dt = clamp(softplus(dt + dt_bias), *dt_limit);  state_t = exp(dt_t A) state_{t-1} + dt_t x_t B_t^T;
    y_t = state_t C_t + D x_t;  y *= silu(z). Returns y (dtype of x), plus the final state (compute dtype).
    """
    dtype = compute_dtype(x)
    batch, seqlen, nheads, headdim = x.shape
    dt = step_sizes(dt, dt_bias, dt_softplus, dtype, (nheads,), dt_limit)  # (batch, L, nheads)
    A = A.to(dtype)
    B = repeat_groups(B.to(dtype), 2, nheads, "B")  # (batch, L, nheads, d_state)
    C = repeat_groups(C.to(dtype), 2, nheads, "C")
    x_compute = x.to(dtype)
    state = (initial_state.to(dtype) if initial_state is not None
             else x.new_zeros(batch, nheads, headdim, B.shape[-1], dtype=dtype))
    outputs = []
    for t in range(seqlen):
        decay = torch.exp(dt[:, t] * A)[..., None, None]  # (batch, nheads, 1, 1)
        drive = (dt[:, t, :, None] * x_compute[:, t])[..., None] * B[:, t, :, None, :]
        state = decay * state + drive
        outputs.append(torch.einsum("bhpn,bhn->bhp", state, C[:, t]))
    y = torch.stack(outputs, dim=1) if outputs else x_compute.new_zeros(batch, 0, nheads, headdim)
    if D is not None:
        y = y + ssd_skip(x_compute, D)
    y = silu_gate(y, z).to(x.dtype)
    return (y, state) if return_final_state else y
