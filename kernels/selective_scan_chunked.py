"""Mamba-1 selective scan, parallel within chunks and sequential across them: the fast PyTorch (CPU) path.

Inside a chunk, with the cumulative step sum Delta_t = delta_1 + ... + delta_t (A is time-invariant):
    state_t = exp(A Delta_t) state_0 + sum_{s <= t} exp(A (Delta_t - Delta_s)) delta_s B_s u_s
            = exp(A r_t) [exp(A m) state_0 + cumsum_s(exp(-A r_s) delta_s B_s u_s)],   r = Delta - m,
where m is the midpoint of Delta's range in the chunk, so every exponent lies in [-half_range, +half_range]
(times |A|). A chunk whose |A| * half range exceeds a safe bound for the dtype is halved (recursively, down to
single steps, where the exponent is 0), so nothing overflows whatever the step sizes; the check is over all
channels, so very large step sizes anywhere make the scan slower, never inexact.
Without autograd, memory is O(batch * d_inner * d_state * chunk_size): the (.., d_state, L) states are never
materialized; under autograd the saved activations grow with L, as for any differentiable scan.
"""
from __future__ import annotations

import torch

from ._common import compute_dtype, scan_input_matrix, silu_gate, step_sizes

# Largest |exponent| allowed in a chunk. The backward pass of the division forms intermediates up to
# exp(2 * bound), which must stay finite in the compute dtype (fp32 overflows near exp(88), fp64 near exp(709)).
_EXPONENT_BOUND = {torch.float32: 40.0, torch.float64: 300.0}


def _scan_span(
    delta: torch.Tensor,
    drive: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    state: torch.Tensor,
    max_abs_A: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scan one span in parallel. delta, drive (= delta * u): (batch, d_inner, T); A: (d_inner, d_state);
    B, C: (batch, d_inner or 1, d_state, T); state: (batch, d_inner, d_state); max_abs_A: (d_inner, 1).
    Returns y: (batch, d_inner, T) and the state after the span."""
    length = delta.shape[-1]
    cumulative = delta.cumsum(dim=-1)  # (batch, d_inner, T)
    low, high = cumulative.detach().aminmax(dim=-1, keepdim=True)  # any centre m is exact: it cancels
    if length > 1:
        exponent_range = ((high - low) * 0.5 * max_abs_A).max()
        if exponent_range > _EXPONENT_BOUND[delta.dtype]:
            half = length // 2
            y_head, state = _scan_span(delta[..., :half], drive[..., :half], A, B[..., :half], C[..., :half],
                                       state, max_abs_A)
            y_tail, state = _scan_span(delta[..., half:], drive[..., half:], A, B[..., half:], C[..., half:],
                                       state, max_abs_A)
            return torch.cat([y_head, y_tail], dim=-1), state
    midpoint = (high + low) * 0.5  # (batch, d_inner, 1)
    growth = torch.exp(A[:, :, None] * (cumulative - midpoint)[:, :, None, :])  # (batch, d_inner, d_state, T)
    inputs = drive[:, :, None, :] * B / growth
    inputs[..., 0] += torch.exp(A * midpoint) * state  # the carried-in state joins the running sum
    states = growth * inputs.cumsum(dim=-1)  # (batch, d_inner, d_state, T)
    return (states * C).sum(dim=-2), states[..., -1]


def selective_scan_chunked(
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
    chunk_size: int = 64,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Chunked selective scan, same contract as `selective_scan_reference`: u, delta, z: (batch, d_inner, L);
    A: (d_inner, d_state); B, C: (batch, d_state, L) or (batch, groups, d_state, L); D, delta_bias: (d_inner,);
    initial_state: (batch, d_inner, d_state). Returns y (dtype of u), plus the final state (fp32, fp64 for fp64 u)."""
    if chunk_size < 1:
        raise ValueError(f"selective_scan_chunked: chunk_size={chunk_size}, expected >= 1")
    dtype = compute_dtype(u)
    batch, d_inner, seqlen = u.shape
    delta = step_sizes(delta, delta_bias, delta_softplus, dtype, (-1, 1))
    A = A.to(dtype)
    B = scan_input_matrix(B, d_inner, dtype, "B")
    C = scan_input_matrix(C, d_inner, dtype, "C")
    u_compute = u.to(dtype)
    drive = delta * u_compute
    max_abs_A = A.abs().amax(dim=-1, keepdim=True)
    state = (initial_state.to(dtype) if initial_state is not None
             else u.new_zeros(batch, d_inner, A.shape[1], dtype=dtype))
    outputs = []
    for start in range(0, seqlen, chunk_size):
        span = slice(start, start + chunk_size)
        y_chunk, state = _scan_span(delta[..., span], drive[..., span], A, B[..., span], C[..., span], state,
                                    max_abs_A)
        outputs.append(y_chunk)
    y = torch.cat(outputs, dim=-1) if outputs else u_compute.new_zeros(batch, d_inner, 0)
    if D is not None:
        y = y + D.to(dtype)[:, None] * u_compute
    y = silu_gate(y, z).to(u.dtype)
    return (y, state) if return_final_state else y
