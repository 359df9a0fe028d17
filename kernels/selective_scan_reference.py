"""Mamba-1 selective scan as a plain sequential loop: the ground truth the fast kernels are tested against."""
from __future__ import annotations

import torch

from ._common import compute_dtype, scan_input_matrix, silu_gate, step_sizes


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Sequential selective scan (mamba-ssm semantics).

    u, delta, z: (batch, d_inner, L); A: (d_inner, d_state); B, C: (batch, d_state, L) or
    (batch, groups, d_state, L); D, delta_bias: (d_inner,); initial_state: (batch, d_inner, d_state).
    state_t = exp(delta_t A) state_{t-1} + delta_t B_t u_t;  y_t = C_t . state_t + D u_t;  y *= silu(z).
    Computes in fp32 (fp64 for fp64 `u`). Returns y (dtype of u), plus the final state (compute dtype).
    """
    dtype = compute_dtype(u)
    batch, d_inner, seqlen = u.shape
    delta = step_sizes(delta, delta_bias, delta_softplus, dtype, (-1, 1))
    A = A.to(dtype)
    B = scan_input_matrix(B, d_inner, dtype, "B")
    C = scan_input_matrix(C, d_inner, dtype, "C")
    u_compute = u.to(dtype)
    drive = delta * u_compute  # (batch, d_inner, L)
    state = (initial_state.to(dtype) if initial_state is not None
             else u.new_zeros(batch, d_inner, A.shape[1], dtype=dtype))
    outputs = []
    for t in range(seqlen):
        decay = torch.exp(delta[:, :, t, None] * A)  # (batch, d_inner, d_state)
        state = decay * state + drive[:, :, t, None] * B[..., t]
        outputs.append((state * C[..., t]).sum(-1))
    y = torch.stack(outputs, dim=-1) if outputs else u_compute.new_zeros(batch, d_inner, 0)
    if D is not None:
        y = y + D.to(dtype)[:, None] * u_compute
    y = silu_gate(y, z).to(u.dtype)
    return (y, state) if return_final_state else y
