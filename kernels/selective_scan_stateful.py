"""A Mamba-1 scan with initial state and differentiable final state, on a kernel that has neither.

mamba-ssm's `selective_scan_fn` always starts from zeros and ignores the gradient of the last state it returns.
Both are supplied with extra positions around the sequence: a prefix of `d_state` steps whose one-hot B writes
`initial_state` into the state (inputs pre-scaled so that the prefix's own decay is undone), and a suffix of
`d_state` steps with zero step size and one-hot C, whose outputs are the final state's components, so the kernel's
backward carries their gradient. The cost is `2 * d_state` extra positions and fp32 inputs.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def selective_scan_from_zero_state_kernel(
    scan_fn: Callable,
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """`selective_scan_reference(..., initial_state, return_final_state=True)` computed by `scan_fn`, a kernel with
    `selective_scan_fn`'s signature. Inputs are cast to fp32 (fp64 kept) so the state is not rounded on the way.

    u, delta, z: (batch, d_inner, L); A: (d_inner, d_state); B, C: (batch, d_state, L); D, delta_bias: (d_inner,);
    initial_state: (batch, d_inner, d_state) or None. Returns y (dtype of u) and the final state (fp32/fp64).
    """
    if B.dim() != 3 or C.dim() != 3:
        raise ValueError(f"selective_scan_from_zero_state_kernel: B, C must be (batch, d_state, L), got "
                         f"{tuple(B.shape)}, {tuple(C.shape)}")
    dtype = torch.promote_types(u.dtype, torch.float32)
    batch, d_inner, seqlen = u.shape
    d_state = A.shape[1]
    A = A.to(dtype)
    step = delta.to(dtype) if delta_bias is None else delta.to(dtype) + delta_bias.to(dtype)[:, None]
    step = F.softplus(step) if delta_softplus else step
    identity = torch.eye(d_state, dtype=dtype, device=u.device).expand(batch, d_state, d_state)
    zeros_state = u.new_zeros(batch, d_state, d_state, dtype=dtype)
    zeros_channels = u.new_zeros(batch, d_inner, d_state, dtype=dtype)
    parts_u, parts_step, parts_B, parts_C = [u.to(dtype)], [step], [B.to(dtype)], [C.to(dtype)]
    prefix = 0
    if initial_state is not None:
        # Prefix step k writes component k, which then decays over the d_state - 1 - k later prefix steps;
        # the step size keeps |A| * step * d_state <= 1, so the undoing factor stays small.
        prefix_step = 1.0 / (A.detach().abs().amax(dim=1).clamp_min(1e-6) * d_state)  # (d_inner,)
        later_steps = torch.arange(d_state - 1, -1, -1, dtype=dtype, device=u.device)  # (d_state,)
        undo_decay = torch.exp(-A * prefix_step[:, None] * later_steps)  # (d_inner, d_state)
        parts_u.insert(0, initial_state.to(dtype) * undo_decay / prefix_step[:, None])
        parts_step.insert(0, prefix_step[None, :, None].expand(batch, d_inner, d_state))
        parts_B.insert(0, identity)
        parts_C.insert(0, zeros_state)
        prefix = d_state
    parts_u.append(zeros_channels)
    parts_step.append(zeros_channels)
    parts_B.append(zeros_state)
    parts_C.append(identity)
    y, last_state = scan_fn(torch.cat(parts_u, dim=-1), torch.cat(parts_step, dim=-1), A,
                            torch.cat(parts_B, dim=-1).contiguous(), torch.cat(parts_C, dim=-1).contiguous(),
                            None if D is None else D.to(dtype), None, None, False, return_last_state=True)
    readout = y[..., prefix + seqlen :]  # (batch, d_inner, d_state): the final state, with its gradient path
    final_state = last_state.to(dtype).detach() + (readout - readout.detach())
    y = y[..., prefix : prefix + seqlen]
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(u.dtype), final_state
