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

from ..mamba1_step import low_rank_dt

SOFTPLUS_LINEAR_ABOVE = tl.constexpr(20.0)  # softplus(x) == x in fp32 beyond this; constexpr: read in the kernel
TILE_ELEMENTS = 512  # state elements per program: d_inner 4096 x d_state 16 at batch 1 is 128 programs
# Mamba-1's dt projection runs inside the step kernel up to this batch; above it, each of the batch x d_inner /
# block programs would load its (block, dt_rank) slice of dt_proj's weight again, so dt is one cuBLAS GEMM first.
# 1.4B widths, fp16, H100, us per layer (scripts/bench_decode_step.py): in kernel 8.74 vs GEMM first 9.58 at batch
# 16, 24.43 vs 18.64 at batch 64 (mamba-ssm's step: 12.46 and 21.65)
DT_IN_KERNEL_MAX_BATCH = 16


@triton.jit
def step_softplus(dt):
    """softplus of the step kernels' dt in fp32 (linear above SOFTPLUS_LINEAR_ABOVE, where it equals x)."""
    return tl.where(dt <= SOFTPLUS_LINEAR_ABOVE, tl.log(1.0 + tl.exp(dt)), dt)


@triton.jit
def state_update_kernel(
    state_ptr, x_ptr, dt_ptr, dt_weight_ptr, dt_bias_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, out_ptr,
    headdim, d_state, heads_per_group, dt_rank, dt_low, dt_high,
    stride_state_b, stride_state_h, stride_state_p, stride_state_n,
    stride_x_b, stride_x_h, stride_x_p,
    stride_dt_b, stride_dt_h, stride_dt_p,
    stride_dt_weight_h, stride_dt_weight_p, stride_dt_weight_r,
    stride_dt_bias_h, stride_dt_bias_p,
    stride_A_h, stride_A_p, stride_A_n,
    stride_B_b, stride_B_g, stride_B_n,
    stride_C_b, stride_C_g, stride_C_n,
    stride_D_h, stride_D_p,
    stride_z_b, stride_z_h, stride_z_p,
    stride_out_b, stride_out_h, stride_out_p,
    HAS_DT_BIAS: tl.constexpr, DT_SOFTPLUS: tl.constexpr, HAS_DT_LIMIT: tl.constexpr, HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr, DT_LOW_RANK: tl.constexpr, A_IS_LOG: tl.constexpr, BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr,
):
    block, batch, head = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    group = head // heads_per_group
    channels = block * BLOCK_P + tl.arange(0, BLOCK_P)
    states = tl.arange(0, BLOCK_N)
    channel_mask = channels < headdim
    tile_mask = channel_mask[:, None] & (states[None, :] < d_state)

    x = tl.load(x_ptr + batch * stride_x_b + head * stride_x_h + channels * stride_x_p, mask=channel_mask,
                other=0.0).to(tl.float32)
    if DT_LOW_RANK:  # dt_ptr: (batch, dt_rank) with rank stride stride_dt_p; dt = dt_weight @ dt_low
        ranks = tl.arange(0, BLOCK_R)
        rank_mask = ranks < dt_rank
        dt_in = tl.load(dt_ptr + batch * stride_dt_b + ranks * stride_dt_p, mask=rank_mask, other=0.0)
        dt_weight = tl.load(dt_weight_ptr + head * stride_dt_weight_h + channels[:, None] * stride_dt_weight_p
                            + ranks[None, :] * stride_dt_weight_r, mask=channel_mask[:, None] & rank_mask[None, :],
                            other=0.0)
        dt = tl.sum(dt_weight.to(tl.float32) * dt_in.to(tl.float32)[None, :], axis=1)
        dt = dt.to(dt_ptr.dtype.element_ty).to(tl.float32)  # the projection's output dtype, as the unfused Linear
    else:
        dt = tl.load(dt_ptr + batch * stride_dt_b + head * stride_dt_h + channels * stride_dt_p, mask=channel_mask,
                     other=0.0).to(tl.float32)
    if HAS_DT_BIAS:
        dt += tl.load(dt_bias_ptr + head * stride_dt_bias_h + channels * stride_dt_bias_p, mask=channel_mask,
                      other=0.0).to(tl.float32)
    if DT_SOFTPLUS:
        dt = step_softplus(dt)
    if HAS_DT_LIMIT:
        dt = tl.minimum(tl.maximum(dt, dt_low), dt_high)
    A = tl.load(A_ptr + head * stride_A_h + channels[:, None] * stride_A_p + states[None, :] * stride_A_n,
                mask=tile_mask, other=0.0).to(tl.float32)
    if A_IS_LOG:
        A = -tl.exp(A)
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


def _launch(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus: bool, dt_limit: tuple[float, float],
            dt_weight: torch.Tensor | None = None, A_is_log: bool = False) -> torch.Tensor:
    """Head layout: state (b, h, p, n); x, dt, z: (b, h, p); A: (h, p, n); B, C: (b, g, n); D, dt_bias: (h, p).
    With `dt_weight: (h, p, dt_rank)`, dt is the low-rank `(b, dt_rank)` input of the dt projection; with
    `A_is_log`, A holds `log(-A)`."""
    batch, nheads, headdim, d_state = state.shape
    ngroups = B.shape[1]
    if nheads % ngroups:
        raise ValueError(f"state update: {nheads} heads cannot be split evenly over {ngroups} B/C groups")
    out = torch.empty(batch, nheads, headdim, device=x.device, dtype=x.dtype)
    block_n = triton.next_power_of_2(d_state)
    block_p = max(2, min(triton.next_power_of_2(headdim), TILE_ELEMENTS // block_n))
    has_limit = dt_limit[0] != 0.0 or not math.isinf(dt_limit[1])
    dt_rank = 1 if dt_weight is None else dt_weight.shape[-1]
    dt_strides = (dt.stride(0), 0, dt.stride(1)) if dt_weight is not None else dt.stride()
    grid = (triton.cdiv(headdim, block_p), batch, nheads)
    state_update_kernel[grid](
        state, x, dt, dt_weight, dt_bias, A, B, C, D, z, out,
        headdim, d_state, nheads // ngroups, dt_rank, float(dt_limit[0]), float(min(dt_limit[1], 3.0e38)),
        *state.stride(), *x.stride(), *dt_strides, *_strides(dt_weight, 3), *_strides(dt_bias, 2), *A.stride(),
        *B.stride(), *C.stride(), *_strides(D, 2), *_strides(z, 3), *out.stride(),
        HAS_DT_BIAS=dt_bias is not None, DT_SOFTPLUS=dt_softplus, HAS_DT_LIMIT=has_limit, HAS_D=D is not None,
        HAS_Z=z is not None, DT_LOW_RANK=dt_weight is not None, A_IS_LOG=A_is_log, BLOCK_P=block_p, BLOCK_N=block_n,
        BLOCK_R=triton.next_power_of_2(dt_rank), num_warps=4,
    )
    return out


def _grouped_step_inputs(x, B, C) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """B, C as (batch, groups, d_state) and the head split (groups, d_inner / groups) of Mamba-1's channels."""
    d_inner = x.shape[1]
    B, C = (B.unsqueeze(1), C.unsqueeze(1)) if B.dim() == 2 else (B, C)
    groups = B.shape[1]
    if d_inner % groups:
        raise ValueError(f"Mamba-1 state update: d_inner={d_inner} cannot be split over {groups} groups")
    return B, C, (groups, d_inner // groups)


def _heads(tensor: torch.Tensor | None, dim: int, heads: tuple[int, int]) -> torch.Tensor | None:
    return None if tensor is None else tensor.unflatten(dim, heads)


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
    B, C, heads = _grouped_step_inputs(x, B, C)
    out = _launch(state.unflatten(1, heads), x.unflatten(1, heads), dt.unflatten(1, heads), A.unflatten(0, heads),
                  B, C, _heads(D, 0, heads), _heads(z, 1, heads), _heads(dt_bias, 0, heads), dt_softplus,
                  (0.0, math.inf))
    return out.flatten(1)


def mamba1_state_step_triton(
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
    dt_in_kernel: bool | None = None,
) -> torch.Tensor:
    """One Mamba-1 step from the mixer's own parameters; contract of `mamba1_step.mamba1_state_step` (`A =
    -exp(A_log)` computed in the kernel, and with `dt_in_kernel` the dt projection too: three launches fewer per
    layer and token than the PyTorch composition; without, dt is a cuBLAS GEMM first). `dt_in_kernel` None: up to
    DT_IN_KERNEL_MAX_BATCH rows."""
    B, C, heads = _grouped_step_inputs(x, B, C)
    if dt_in_kernel is None:
        dt_in_kernel = x.shape[0] <= DT_IN_KERNEL_MAX_BATCH
    if not dt_in_kernel:
        dt, dt_weight = low_rank_dt(dt_low, dt_proj_weight).unflatten(1, heads), None
    else:
        dt, dt_weight = dt_low, dt_proj_weight.unflatten(0, heads)
    out = _launch(state.unflatten(1, heads), x.unflatten(1, heads), dt, A_log.unflatten(0, heads), B, C,
                  _heads(D, 0, heads), _heads(z, 1, heads), _heads(dt_bias, 0, heads), True, (0.0, math.inf),
                  dt_weight=dt_weight, A_is_log=True)
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
