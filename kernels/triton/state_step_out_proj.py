"""The back of a Mamba-1 decoding step in one Triton kernel: the SSM state step (dt through dt_proj from the summed
x_proj, `A = -exp(A_log)`, D, SiLU(z) gate) and out_proj, added straight into the fp32 residual stream. Unfused,
this is a cuBLAS GEMV for x_proj (with its split-K reduction kernel), the state-step kernel and a cuBLAS GEMV for
out_proj: four to five launches, where this kernel plus the front (`norm_in_proj_conv`, which sums x_proj as it
writes the conv output) make two per layer.

Programs: (blocks of `block_c` channels, blocks of `out_per_program` out_proj features, batch rows); the tiling is
a `BackTiling`. A program first loads its (out_per_program, block_c) slice of out_proj's weight, which needs
nothing from the step, so that load is in flight while the program steps its channels' states. It then multiplies
the slice by its `y` and adds that share of `out_proj(y)` into the residual stream with fp32 atomics: split-K
without a reduction kernel. Output blocks give the GPU enough programs (and bytes in flight) to stream the weight:
one program per channel block, walking all of d_model, measured 48-68 us a layer where the four-launch step takes
39 (H100, BENCHMARKS.md). The programs of a channel block all compute its new states; the last of them to finish
(an arrival counter per channel block) stores them, after the others have read the old ones. The last of a row's
programs to finish (a counter per row) zeroes its x_proj sums for the next step.

Rounding follows the unfused step: the x_proj sums, dt_proj's output and y are rounded to the activations' dtype
(as the Linear outputs and the state step's output are stored); the out_proj product is added in fp32 where the
unfused block rounds it to the activations' dtype first. The atomics make the order of that sum, so its last bits,
vary from run to run. The PyTorch twin is `mambaseq.kernels.mamba1_step.mamba1_state_step_out_proj`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import triton
import triton.language as tl

from .state_update import step_softplus
from .tiling import KernelTiling

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class BackTiling(KernelTiling):
    """Launch parameters: `block_c` channels and `out_per_program` out_proj features per program (powers of 2),
    `num_warps`; text `"BLOCK_C,OUT_PER_PROGRAM,WARPS"`, e.g. `"64,256,4"`."""

    FIELDS: ClassVar[str] = "BLOCK_C,OUT_PER_PROGRAM,WARPS"
    block_c: int
    out_per_program: int
    num_warps: int


# fastest of a sweep at batch 1, d_model 2048, d_inner 4096 fp16 on H100 (scripts/bench_decode_step.py):
# 11.5 us a call (32,512,8: 11.8)
DEFAULT_BACK_TILING = BackTiling(block_c=64, out_per_program=512, num_warps=8)


@triton.jit
def state_step_out_proj_kernel(
    state_ptr, xz_ptr, sums_ptr, arrivals_ptr, dt_weight_ptr, dt_bias_ptr, A_log_ptr, D_ptr, out_weight_ptr,
    out_bias_ptr, residual_ptr,
    d_inner, dt_rank, d_state, sums_width,
    stride_state_b, stride_state_c, stride_state_n, stride_xz_b, stride_sums_b, stride_dt_weight_c,
    stride_dt_weight_r, stride_A_c, stride_A_n, stride_out_o, stride_out_c, stride_residual_b, stride_arrivals_b,
    HAS_DT_BIAS: tl.constexpr, HAS_D: tl.constexpr, HAS_OUT_BIAS: tl.constexpr, BLOCK_C: tl.constexpr,
    D_MODEL: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr,
    OUT_PER_PROGRAM: tl.constexpr,
):
    channel_block, out_block, row = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    dtype = xz_ptr.dtype.element_ty
    channels = channel_block * BLOCK_C + tl.arange(0, BLOCK_C)
    channel_mask = channels < d_inner
    states = tl.arange(0, BLOCK_N)
    state_mask = states < d_state
    ranks = tl.arange(0, BLOCK_R)
    rank_mask = ranks < dt_rank
    outputs = out_block * OUT_PER_PROGRAM + tl.arange(0, OUT_PER_PROGRAM)
    output_mask = outputs < D_MODEL

    # out_proj's slice first: it is most of the bytes, and nothing it needs waits on the state step
    out_weight = tl.load(out_weight_ptr + outputs[:, None] * stride_out_o + channels[None, :] * stride_out_c,
                         mask=output_mask[:, None] & channel_mask[None, :], other=0.0)
    if HAS_OUT_BIAS:
        out_bias = tl.load(out_bias_ptr + outputs, mask=output_mask & (channel_block == 0), other=0.0)
    sums = sums_ptr + row * stride_sums_b  # x_proj(x) of this row: [dt_low | B | C], fp32
    dt_low = tl.load(sums + ranks, mask=rank_mask, other=0.0).to(dtype).to(tl.float32)
    B = tl.load(sums + dt_rank + states, mask=state_mask, other=0.0).to(dtype).to(tl.float32)
    C = tl.load(sums + dt_rank + d_state + states, mask=state_mask, other=0.0).to(dtype).to(tl.float32)
    x = tl.load(xz_ptr + row * stride_xz_b + channels, mask=channel_mask, other=0.0).to(tl.float32)
    z = tl.load(xz_ptr + row * stride_xz_b + d_inner + channels, mask=channel_mask, other=0.0).to(tl.float32)

    dt_weight = tl.load(dt_weight_ptr + channels[:, None] * stride_dt_weight_c + ranks[None, :] * stride_dt_weight_r,
                        mask=channel_mask[:, None] & rank_mask[None, :], other=0.0).to(tl.float32)
    dt = tl.sum(dt_weight * dt_low[None, :], axis=1).to(dtype).to(tl.float32)
    if HAS_DT_BIAS:
        dt += tl.load(dt_bias_ptr + channels, mask=channel_mask, other=0.0).to(tl.float32)
    dt = step_softplus(dt)
    tile_mask = channel_mask[:, None] & state_mask[None, :]
    A = -tl.exp(tl.load(A_log_ptr + channels[:, None] * stride_A_c + states[None, :] * stride_A_n, mask=tile_mask,
                        other=0.0).to(tl.float32))
    state_ptrs = (state_ptr + row * stride_state_b + channels[:, None] * stride_state_c
                  + states[None, :] * stride_state_n)
    state = tl.load(state_ptrs, mask=tile_mask, other=0.0).to(tl.float32)
    state = tl.exp(A * dt[:, None]) * state + (dt * x)[:, None] * B[None, :]  # stored at the end

    y = tl.sum(state * C[None, :], axis=1)
    if HAS_D:
        y += x * tl.load(D_ptr + channels, mask=channel_mask, other=0.0).to(tl.float32)
    y *= z * tl.sigmoid(z)
    y = tl.where(channel_mask, y.to(dtype).to(tl.float32), 0.0)  # the state step's output, as stored unfused

    share = tl.sum(out_weight.to(tl.float32) * y[None, :], axis=1)  # (OUT_PER_PROGRAM,)
    if HAS_OUT_BIAS:
        share += out_bias.to(tl.float32)
    tl.atomic_add(residual_ptr + row * stride_residual_b + outputs, share, mask=output_mask, sem="relaxed")

    # counters: the last program of this channel block to arrive has the others' reads of its states behind it, so
    # it stores them (all computed the same new states); the last of the row's programs zeroes its x_proj sums
    tl.debug_barrier()
    arrivals = arrivals_ptr + row * stride_arrivals_b
    arrived = tl.atomic_add(arrivals + 1 + channel_block, 1, sem="acq_rel")
    if arrived == tl.num_programs(1) - 1:
        tl.store(state_ptrs, state.to(state_ptr.dtype.element_ty), mask=tile_mask)
        tl.store(arrivals + 1 + channel_block, 0)
    tl.debug_barrier()
    arrived = tl.atomic_add(arrivals, 1, sem="acq_rel")
    if arrived == tl.num_programs(0) * tl.num_programs(1) - 1:
        columns = tl.arange(0, BLOCK_S)
        tl.store(sums + columns, tl.zeros((BLOCK_S,), tl.float32), mask=columns < sums_width)
        tl.store(arrivals, 0)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"mamba1_state_step_out_proj_triton: {message}")


def mamba1_state_step_out_proj_triton(
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
    tiling: BackTiling | None = None,
) -> None:
    """Contract of `mambaseq.kernels.mamba1_step.mamba1_state_step_out_proj`: state: (batch, d_inner, d_state)
    updated in place; xz: (batch, 2 * d_inner) from the front; x_proj_sums: (batch, dt_rank + 2 * d_state) fp32,
    zeroed here after use; `arrivals: (batch, counters)` int32, zero between calls, with counters >= 1 + d_inner /
    block_c (1 + d_inner fits every tiling); dt_proj_weight: (d_inner, dt_rank);
    A_log: (d_inner, d_state); out_proj_weight: (d_model, d_inner); residual: (batch, d_model) fp32, to which
    `out_proj(y)` is added in place. fp32/fp16/bf16 activations and weights. `tiling`: DEFAULT_BACK_TILING."""
    batch, d_inner, d_state = state.shape
    d_model, dt_rank = out_proj_weight.shape[0], dt_proj_weight.shape[1]
    sums_width = dt_rank + 2 * d_state
    _check(xz.shape == (batch, 2 * d_inner) and xz.stride(-1) == 1 and xz.dtype in SUPPORTED_DTYPES,
           f"xz {tuple(xz.shape)} {xz.dtype}: expected ({batch}, {2 * d_inner}) with unit stride, one of "
           f"{SUPPORTED_DTYPES}")
    _check(x_proj_sums.shape == (batch, sums_width) and x_proj_sums.dtype == torch.float32
           and x_proj_sums.stride(-1) == 1,
           f"x_proj_sums {tuple(x_proj_sums.shape)} {x_proj_sums.dtype}: expected ({batch}, {sums_width}) float32")
    tiling = tiling or DEFAULT_BACK_TILING
    channel_blocks = triton.cdiv(d_inner, tiling.block_c)
    _check(arrivals.dim() == 2 and arrivals.shape[0] == batch and arrivals.shape[1] > channel_blocks
           and arrivals.dtype == torch.int32 and arrivals.stride(1) == 1,
           f"arrivals {tuple(arrivals.shape)} {arrivals.dtype}: expected ({batch}, >= {1 + channel_blocks}) int32")
    _check(out_proj_weight.shape == (d_model, d_inner) and residual.shape == (batch, d_model)
           and residual.dtype == torch.float32 and residual.stride(-1) == 1,
           f"out_proj weight {tuple(out_proj_weight.shape)} and residual {tuple(residual.shape)} "
           f"{residual.dtype}: expected (d_model, {d_inner}) and ({batch}, d_model) float32")
    _check(all(t is None or t.stride(-1) == 1 for t in (dt_bias, D)), "dt_bias and D need unit stride")
    grid = (channel_blocks, triton.cdiv(d_model, tiling.out_per_program), batch)
    state_step_out_proj_kernel[grid](
        state, xz, x_proj_sums, arrivals, dt_proj_weight, dt_bias, A_log, D, out_proj_weight, out_proj_bias,
        residual, d_inner, dt_rank, d_state, sums_width,
        *state.stride(), xz.stride(0), x_proj_sums.stride(0), *dt_proj_weight.stride(), *A_log.stride(),
        *out_proj_weight.stride(), residual.stride(0), arrivals.stride(0),
        HAS_DT_BIAS=dt_bias is not None, HAS_D=D is not None, HAS_OUT_BIAS=out_proj_bias is not None,
        D_MODEL=d_model, BLOCK_C=tiling.block_c, BLOCK_N=triton.next_power_of_2(d_state),
        BLOCK_R=triton.next_power_of_2(dt_rank),
        BLOCK_S=triton.next_power_of_2(sums_width), OUT_PER_PROGRAM=tiling.out_per_program,
        num_warps=tiling.num_warps,
    )
