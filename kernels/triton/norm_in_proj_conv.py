"""The front of a Mamba-1 decoding step in one Triton kernel: residual add + RMSNorm of the block, the mixer's
in_proj, and the depthwise causal-conv step + SiLU on its x half. Unfused, these are three launches with two
round trips through global memory (the fused norm, a cuBLAS GEMV, the conv step). Measured per call at d_model 2048,
d_inner 4096 fp16 (H200, weights from HBM): 15.8 us fused vs 16.4 us unfused at batch 1, but 23.6 vs 16.2 us at
batch 2 (cuBLAS streams the weight at 3.1 TB/s, this kernel at 2.1), so the mixer uses it for batch 1 only.

Programs: (blocks of `BLOCK_N` in_proj output features, blocks of up to `MAX_ROWS` batch rows); the tiling is a
`FrontTiling`. The product is a broadcast multiply-sum: a GEMV streams the weight once, and tl.dot's 16-row minimum
would spend registers on empty rows (a tl.dot variant measured 37-60 us per call on H200, this one 16 us at batch 1;
BENCHMARKS.md). Each program computes the residual stream `hidden (+ residual)` of its rows itself (they are
`d_model` long: cheap next to its `BLOCK_N x d_model` slice of the weight) in the same pass over d_model as the
product: it multiplies `stream * norm_weight` by its weight slice and accumulates the mean square beside it, then
scales by the RMS (`in_proj(stream * rstd * g) = rstd * in_proj(stream * g)`), so no pass over the stream delays
the weight loads. An output feature below `d_inner` is a conv channel: the program owns that channel's conv-state
rows, so it shifts them in place and writes the conv output; a feature at or above `d_inner` is the gate z, written
as projected. Feature block 0 also writes the new residual stream. Given x_proj's weight, a program of conv
channels also adds its channels' share of `x_proj(x)` into fp32 sums with atomics, for the fused back of the step
(`state_step_out_proj`), which saves x_proj's own GEMV launches.

Rounding: the residual stream in its stored dtype (as unfused), `stream * norm_weight` and the products in fp32
(the unfused path rounds the normed input to the weight's dtype), the in_proj output in the activations' dtype
before the conv.
The PyTorch twin is `mambaseq.kernels.mamba1_step.add_norm_in_proj_conv`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import triton
import triton.language as tl

from .tiling import KernelTiling

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_ROWS = 4  # batch rows per program (its product tile is rows x BLOCK_N x BLOCK_K fp32)


@dataclass(frozen=True)
class FrontTiling(KernelTiling):
    """Launch parameters: `block_n` in_proj output features per program, `block_k` d_model features per step of
    the product (powers of 2), `num_warps`, `num_stages`; text `"BLOCK_N,BLOCK_K,WARPS,STAGES"`, e.g. `"8,512,4,3"`."""

    FIELDS: ClassVar[str] = "BLOCK_N,BLOCK_K,WARPS,STAGES"
    block_n: int
    block_k: int
    num_warps: int
    num_stages: int


# fastest of a sweep at batch 1, d_model 2048, d_inner 4096 fp16 on H200 (scripts/bench_decode_front.py)
DEFAULT_FRONT_TILING = FrontTiling(block_n=8, block_k=512, num_warps=4, num_stages=3)


@triton.jit
def _residual_stream(hidden_ptr, residual_ptr, rows, row_mask, features, feature_mask, stride_hidden_b,
                     stride_residual_b, residual_dtype: tl.constexpr, HAS_RESIDUAL: tl.constexpr):
    """(BLOCK_M, BLOCK_K) fp32 tile of `hidden (+ residual)`, rounded to the residual stream's dtype."""
    mask = row_mask[:, None] & feature_mask[None, :]
    stream = tl.load(hidden_ptr + rows[:, None] * stride_hidden_b + features[None, :], mask=mask,
                     other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        stream += tl.load(residual_ptr + rows[:, None] * stride_residual_b + features[None, :], mask=mask,
                          other=0.0).to(tl.float32)
    return stream.to(residual_dtype).to(tl.float32)


@triton.jit
def add_norm_in_proj_conv_kernel(
    hidden_ptr, residual_ptr, norm_weight_ptr, proj_weight_ptr, proj_bias_ptr,
    conv_state_ptr, conv_weight_ptr, conv_bias_ptr, xz_ptr, residual_out_ptr, x_proj_weight_ptr, x_proj_sums_ptr,
    batch, d_inner, x_proj_width, eps,
    stride_hidden_b, stride_residual_b, stride_residual_out_b, stride_proj_n, stride_proj_k,
    stride_state_b, stride_state_c, stride_state_k, stride_conv_c, stride_conv_k, stride_xz_b,
    stride_x_proj_r, stride_x_proj_c, stride_sums_b,
    HAS_RESIDUAL: tl.constexpr, HAS_X_PROJ: tl.constexpr, HAS_PROJ_BIAS: tl.constexpr, HAS_CONV_BIAS: tl.constexpr,
    D_MODEL: tl.constexpr, WIDTH: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    BLOCK_W: tl.constexpr, BLOCK_R: tl.constexpr,
):
    feature_block, row_block = tl.program_id(0), tl.program_id(1)
    rows = (row_block * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    row_mask = rows < batch
    outputs = feature_block * BLOCK_N + tl.arange(0, BLOCK_N)
    output_mask = outputs < 2 * d_inner
    residual_dtype = residual_out_ptr.dtype.element_ty
    stores_residual = feature_block == 0

    # one pass over d_model: in_proj(stream * rstd * g) = rstd * in_proj(stream * g), so the product needs no
    # separate pass for the mean square first
    sum_sq = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, D_MODEL, BLOCK_K):
        features = k0 + tl.arange(0, BLOCK_K)
        feature_mask = features < D_MODEL
        stream = _residual_stream(hidden_ptr, residual_ptr, rows, row_mask, features, feature_mask,
                                  stride_hidden_b, stride_residual_b, residual_dtype, HAS_RESIDUAL)
        sum_sq += tl.sum(stream * stream, axis=1)
        tl.store(residual_out_ptr + rows[:, None] * stride_residual_out_b + features[None, :],
                 stream.to(residual_dtype), mask=row_mask[:, None] & feature_mask[None, :] & stores_residual)
        norm_weight = tl.load(norm_weight_ptr + features, mask=feature_mask, other=0.0).to(tl.float32)
        scaled = stream * norm_weight[None, :]
        weight = tl.load(proj_weight_ptr + outputs[:, None] * stride_proj_n + features[None, :] * stride_proj_k,
                         mask=output_mask[:, None] & feature_mask[None, :], other=0.0)  # (BLOCK_N, BLOCK_K)
        acc += tl.sum(scaled[:, None, :] * weight.to(tl.float32)[None, :, :], axis=2)
    acc *= (1.0 / tl.sqrt(sum_sq / D_MODEL + eps))[:, None]
    if HAS_PROJ_BIAS:
        acc += tl.load(proj_bias_ptr + outputs, mask=output_mask, other=0.0).to(tl.float32)[None, :]
    projected = acc.to(xz_ptr.dtype.element_ty)  # in_proj output as the unfused path stores it

    # conv step on the x half: window[m, c, k] = state[m, c, k] for k < WIDTH - 1, the new input at k = WIDTH - 1
    taps = tl.arange(0, BLOCK_W)
    is_channel = output_mask & (outputs < d_inner)
    channel_mask = row_mask[:, None] & is_channel[None, :]
    state_ptrs = (conv_state_ptr + rows[:, None, None] * stride_state_b + outputs[None, :, None] * stride_state_c
                  + taps[None, None, :] * stride_state_k)
    in_state = channel_mask[:, :, None] & (taps < WIDTH - 1)[None, None, :]
    window = tl.load(state_ptrs, mask=in_state, other=0.0).to(tl.float32)
    window = tl.where((taps == WIDTH - 1)[None, None, :], projected.to(tl.float32)[:, :, None], window)
    shifted = tl.load(state_ptrs + stride_state_k, mask=channel_mask[:, :, None] & (taps + 1 < WIDTH - 1)[None, None, :],
                      other=0.0)
    shifted = tl.where((taps + 1 == WIDTH - 1)[None, None, :], projected[:, :, None].to(shifted.dtype), shifted)
    conv_weight = tl.load(conv_weight_ptr + outputs[:, None] * stride_conv_c + taps[None, :] * stride_conv_k,
                          mask=is_channel[:, None] & (taps < WIDTH)[None, :], other=0.0).to(tl.float32)
    conv = tl.sum(window * conv_weight[None, :, :], axis=2)
    if HAS_CONV_BIAS:
        conv += tl.load(conv_bias_ptr + outputs, mask=is_channel, other=0.0).to(tl.float32)[None, :]
    conv = conv * tl.sigmoid(conv)
    out = tl.where(is_channel[None, :], conv, projected.to(tl.float32))
    tl.store(xz_ptr + rows[:, None] * stride_xz_b + outputs[None, :], out.to(xz_ptr.dtype.element_ty),
             mask=row_mask[:, None] & output_mask[None, :])
    if HAS_X_PROJ:
        if feature_block * BLOCK_N < d_inner:  # this program's share of x_proj(x), over its conv channels
            x = tl.where(channel_mask, out.to(xz_ptr.dtype.element_ty).to(tl.float32), 0.0)
            ranks = tl.arange(0, BLOCK_R)
            rank_mask = ranks < x_proj_width
            x_proj = tl.load(x_proj_weight_ptr + ranks[:, None] * stride_x_proj_r + outputs[None, :] * stride_x_proj_c,
                             mask=rank_mask[:, None] & is_channel[None, :], other=0.0).to(tl.float32)
            partial = tl.sum(x[:, None, :] * x_proj[None, :, :], axis=2)  # (BLOCK_M, BLOCK_R)
            tl.atomic_add(x_proj_sums_ptr + rows[:, None] * stride_sums_b + ranks[None, :], partial,
                          mask=row_mask[:, None] & rank_mask[None, :], sem="relaxed")
    tl.debug_barrier()  # every load of this program's conv-state rows happens before any of its stores
    tl.store(state_ptrs, shifted.to(conv_state_ptr.dtype.element_ty), mask=in_state)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"add_norm_in_proj_conv_triton: {message}")


def add_norm_in_proj_conv_triton(
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
    tiling: FrontTiling | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Contract of `mambaseq.kernels.mamba1_step.add_norm_in_proj_conv`: hidden, residual: (batch, d_model);
    proj_weight: (2 * d_inner, d_model); conv_state: (batch, d_inner, width - 1), shifted in place; conv_weight:
    (d_inner, width). Returns `xz: (batch, 2 * d_inner)` in hidden's dtype (x half: SiLU(conv), z half: gate) and
    `residual_out: (batch, d_model)` in `residual_dtype`. With `x_proj_weight: (width_x, d_inner)`, the conv
    output's projection is added into `x_proj_sums: (batch, width_x)` fp32 (atomically, each program its channels'
    share). fp32/fp16/bf16. `tiling`: DEFAULT_FRONT_TILING."""
    batch, d_model = hidden.shape
    d_inner, width = conv_weight.shape
    _check(proj_weight.shape == (2 * d_inner, d_model),
           f"in_proj weight shape {tuple(proj_weight.shape)}, expected ({2 * d_inner}, {d_model})")
    _check(conv_state.shape == (batch, d_inner, width - 1) and width >= 2,
           f"conv_state shape {tuple(conv_state.shape)}, expected ({batch}, {d_inner}, {width - 1}) with width >= 2")
    _check(residual is None or residual.shape == hidden.shape,
           f"residual shape {None if residual is None else tuple(residual.shape)} != hidden {tuple(hidden.shape)}")
    tensors = dict(hidden=hidden, residual=residual, norm_weight=norm_weight, proj_weight=proj_weight,
                   conv_state=conv_state, conv_weight=conv_weight)
    bad = {name: t.dtype for name, t in tensors.items() if t is not None and t.dtype not in SUPPORTED_DTYPES}
    _check(not bad and residual_dtype in SUPPORTED_DTYPES,
           f"unsupported dtypes {bad or {'residual_dtype': residual_dtype}} (supported: {SUPPORTED_DTYPES})")
    _check(all(t.stride(-1) == 1 for t in (hidden, residual, norm_weight) if t is not None),
           "hidden, residual and norm_weight need unit stride along d_model")
    _check((x_proj_weight is None) == (x_proj_sums is None), "pass both x_proj_weight and x_proj_sums, or neither")
    if x_proj_sums is not None:
        _check(x_proj_weight.shape[1] == d_inner and x_proj_sums.shape == (batch, x_proj_weight.shape[0])
               and x_proj_sums.dtype == torch.float32 and x_proj_sums.stride(-1) == 1,
               f"x_proj_weight {tuple(x_proj_weight.shape)} and x_proj_sums {tuple(x_proj_sums.shape)} "
               f"{x_proj_sums.dtype}: expected (width, {d_inner}) and contiguous ({batch}, width) float32")
    xz = torch.empty(batch, 2 * d_inner, device=hidden.device, dtype=hidden.dtype)
    residual_out = torch.empty(batch, d_model, device=hidden.device, dtype=residual_dtype)
    tiling = tiling or DEFAULT_FRONT_TILING
    block_m = min(triton.next_power_of_2(batch), MAX_ROWS)
    grid = (triton.cdiv(2 * d_inner, tiling.block_n), triton.cdiv(batch, block_m))
    has_x_proj = x_proj_sums is not None
    x_proj_width = x_proj_weight.shape[0] if has_x_proj else 1
    add_norm_in_proj_conv_kernel[grid](
        hidden, residual, norm_weight, proj_weight, proj_bias, conv_state, conv_weight, conv_bias, xz, residual_out,
        x_proj_weight, x_proj_sums, batch, d_inner, x_proj_width, float(eps),
        hidden.stride(0), 0 if residual is None else residual.stride(0), residual_out.stride(0), *proj_weight.stride(),
        *conv_state.stride(), *conv_weight.stride(), xz.stride(0),
        *(x_proj_weight.stride() if has_x_proj else (0, 0)), x_proj_sums.stride(0) if has_x_proj else 0,
        HAS_RESIDUAL=residual is not None, HAS_X_PROJ=has_x_proj, HAS_PROJ_BIAS=proj_bias is not None,
        HAS_CONV_BIAS=conv_bias is not None,
        D_MODEL=d_model, WIDTH=width, BLOCK_M=block_m, BLOCK_N=tiling.block_n, BLOCK_K=tiling.block_k,
        BLOCK_W=triton.next_power_of_2(width), BLOCK_R=triton.next_power_of_2(x_proj_width),
        num_warps=tiling.num_warps, num_stages=tiling.num_stages,
    )
    return xz, residual_out
