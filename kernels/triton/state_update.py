"""Triton single decoding steps of the Mamba-1 scan and of SSD: one kernel reads the state tile once, updates it in
place and writes the gated output, where the PyTorch step (`kernels/state_update.py`, same signatures) is a dozen
small kernels.

Both layouts run as the head layout `state: (batch, nheads, headdim, d_state)` with B/C shared by groups of heads:
Mamba-1 with `G` B/C groups (1 when B is `(batch, d_state)`) is `G` heads of `d_inner / G` channels, and its
per-channel `A: (d_inner, d_state)` and `dt` are per (head, channel); Mamba-2's per-head `A`, `dt`, `dt_bias` (and
`D`) are broadcast over the head dimension as stride-0 views. Programs: (channel blocks, batch, heads).
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

SOFTPLUS_LINEAR_ABOVE = tl.constexpr(20.0)  # softplus(x) == x in fp32 beyond this; constexpr: read in the kernel
TILE_ELEMENTS = 512  # state elements per program: d_inner 4096 x d_state 16 at batch 1 is 128 programs


@triton.jit
def state_update_kernel(
    state_ptr, x_ptr, dt_ptr, dt_bias_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, out_ptr,
    headdim, d_state, heads_per_group, dt_low, dt_high,
    stride_state_b, stride_state_h, stride_state_p, stride_state_n,
    stride_x_b, stride_x_h, stride_x_p,
    stride_dt_b, stride_dt_h, stride_dt_p,
    stride_dt_bias_h, stride_dt_bias_p,
    stride_A_h, stride_A_p, stride_A_n,
    stride_B_b, stride_B_g, stride_B_n,
    stride_C_b, stride_C_g, stride_C_n,
    stride_D_h, stride_D_p,
    stride_z_b, stride_z_h, stride_z_p,
    stride_out_b, stride_out_h, stride_out_p,
    HAS_DT_BIAS: tl.constexpr, DT_SOFTPLUS: tl.constexpr, HAS_DT_LIMIT: tl.constexpr, HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    block, batch, head = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    group = head // heads_per_group
    channels = block * BLOCK_P + tl.arange(0, BLOCK_P)
    states = tl.arange(0, BLOCK_N)
    channel_mask = channels < headdim
    tile_mask = channel_mask[:, None] & (states[None, :] < d_state)

    x = tl.load(x_ptr + batch * stride_x_b + head * stride_x_h + channels * stride_x_p, mask=channel_mask,
                other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + batch * stride_dt_b + head * stride_dt_h + channels * stride_dt_p, mask=channel_mask,
                 other=0.0).to(tl.float32)
    if HAS_DT_BIAS:
        dt += tl.load(dt_bias_ptr + head * stride_dt_bias_h + channels * stride_dt_bias_p, mask=channel_mask,
                      other=0.0).to(tl.float32)
    if DT_SOFTPLUS:
        dt = tl.where(dt <= SOFTPLUS_LINEAR_ABOVE, tl.log(1.0 + tl.exp(dt)), dt)
    if HAS_DT_LIMIT:
        dt = tl.minimum(tl.maximum(dt, dt_low), dt_high)
    A = tl.load(A_ptr + head * stride_A_h + channels[:, None] * stride_A_p + states[None, :] * stride_A_n,
                mask=tile_mask, other=0.0).to(tl.float32)
    B = tl.load(B_ptr + batch * stride_B_b + group * stride_B_g + states * stride_B_n, mask=states < d_state,
                other=0.0).to(tl.float32)
    C = tl.load(C_ptr + batch * stride_C_b + group * stride_C_g + states * stride_C_n, mask=states < d_state,
                other=0.0).to(tl.float32)

    state_ptrs = (state_ptr + batch * stride_state_b + head * stride_state_h + channels[:, None] * stride_state_p
                  + states[None, :] * stride_state_n)
    state = tl.load(state_ptrs, mask=tile_mask, other=0.0).to(tl.float32)
    state = tl.exp(A * dt[:, None]) * state + (dt * x)[:, None] * B[None, :]
    tl.store(state_ptrs, state.to(state_ptr.dtype.element_ty), mask=tile_mask)

    y = tl.sum(state * C[None, :], axis=1)
    if HAS_D:
        y += x * tl.load(D_ptr + head * stride_D_h + channels * stride_D_p, mask=channel_mask, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + batch * stride_z_b + head * stride_z_h + channels * stride_z_p, mask=channel_mask,
                    other=0.0).to(tl.float32)
        y *= z * tl.sigmoid(z)
    tl.store(out_ptr + batch * stride_out_b + head * stride_out_h + channels * stride_out_p,
             y.to(out_ptr.dtype.element_ty), mask=channel_mask)


def _strides(tensor: torch.Tensor | None, ndim: int) -> tuple[int, ...]:
    return tuple(tensor.stride()) if tensor is not None else (0,) * ndim


def _launch(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus: bool, dt_limit: tuple[float, float]) -> torch.Tensor:
    """Head layout: state (b, h, p, n); x, dt, z: (b, h, p); A: (h, p, n); B, C: (b, g, n); D, dt_bias: (h, p)."""
    batch, nheads, headdim, d_state = state.shape
    ngroups = B.shape[1]
    if nheads % ngroups:
        raise ValueError(f"state update: {nheads} heads cannot be split evenly over {ngroups} B/C groups")
    out = torch.empty(batch, nheads, headdim, device=x.device, dtype=x.dtype)
    block_n = triton.next_power_of_2(d_state)
    block_p = max(2, min(triton.next_power_of_2(headdim), TILE_ELEMENTS // block_n))
    has_limit = dt_limit[0] != 0.0 or not math.isinf(dt_limit[1])
    grid = (triton.cdiv(headdim, block_p), batch, nheads)
    state_update_kernel[grid](
        state, x, dt, dt_bias, A, B, C, D, z, out,
        headdim, d_state, nheads // ngroups, float(dt_limit[0]), float(min(dt_limit[1], 3.0e38)),
        *state.stride(), *x.stride(), *dt.stride(), *_strides(dt_bias, 2), *A.stride(), *B.stride(), *C.stride(),
        *_strides(D, 2), *_strides(z, 3), *out.stride(),
        HAS_DT_BIAS=dt_bias is not None, DT_SOFTPLUS=dt_softplus, HAS_DT_LIMIT=has_limit, HAS_D=D is not None,
        HAS_Z=z is not None, BLOCK_P=block_p, BLOCK_N=block_n, num_warps=4,
    )
    return out


def selective_state_update_triton(
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
    """One Mamba-1 step; contract of `state_update.selective_state_update` (state: (batch, d_inner, d_state) updated
    in place; B, C: (batch, d_state) or (batch, groups, d_state)). Returns y: (batch, d_inner) in x's dtype."""
    d_inner = x.shape[1]
    B, C = (B.unsqueeze(1), C.unsqueeze(1)) if B.dim() == 2 else (B, C)
    groups = B.shape[1]
    if d_inner % groups:
        raise ValueError(f"selective_state_update_triton: d_inner={d_inner} cannot be split over {groups} groups")
    heads = (groups, d_inner // groups)
    out = _launch(state.unflatten(1, heads), x.unflatten(1, heads), dt.unflatten(1, heads), A.unflatten(0, heads),
                  B, C, None if D is None else D.unflatten(0, heads), None if z is None else z.unflatten(1, heads),
                  None if dt_bias is None else dt_bias.unflatten(0, heads), dt_softplus, (0.0, math.inf))
    return out.flatten(1)


def ssd_state_update_triton(
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
    """One SSD step; contract of `state_update.ssd_state_update` (state: (batch, nheads, headdim, d_state) updated in
    place). Returns y: (batch, nheads, headdim) in x's dtype."""
    _, nheads, headdim, d_state = state.shape
    if D is not None and D.dim() == 1:
        D = D[:, None].expand(nheads, headdim)
    dt_bias = None if dt_bias is None else dt_bias[:, None].expand(nheads, headdim)
    return _launch(state, x, dt[..., None].expand(*dt.shape, headdim), A[:, None, None].expand(nheads, headdim, d_state),
                   B, C, D, z, dt_bias, dt_softplus, dt_limit)
