"""The front of a Mamba-1 decoding step in one Triton kernel: residual add + RMSNorm of the block, the mixer's
in_proj, and the depthwise causal-conv step + SiLU on its x half. Unfused, these are three launches with two
round trips through global memory (the fused norm, a cuBLAS GEMV, the conv step). At batch 1 (d_model 2048,
d_inner 4096 fp16, weights from HBM, H100) it takes 16.2 us a call, x_proj's sums included. From batch 2 on, cuBLAS
streams the weight once for all rows, where this kernel's programs each hold one row, so the mixer uses it for
batch 1 only.

Programs: (blocks of `BLOCK_N` in_proj output features, batch rows); the tiling is a `FrontTiling`. The product is
a broadcast multiply-sum: a GEMV streams the weight once, and tl.dot's 16-row minimum would spend registers on empty
rows (a tl.dot variant measured 37-60 us per call on H200; BENCHMARKS.md). Each program computes its row's residual
stream `hidden (+ residual)` itself (`d_model` long: cheap next to its `BLOCK_N x d_model` slice of the weight) in
the same pass over d_model as the product: it multiplies `stream * norm_weight` by its weight slice and accumulates
the mean square beside it, then scales by the RMS (`in_proj(stream * rstd * g) = rstd * in_proj(stream * g)`), so
no pass over the stream delays the weight loads. That pass is unrolled and keeps elementwise accumulators, reduced
once after it, with no store inside: every weight load of the program is in flight at once. (A rolled loop that
reduced each step went through shared memory and barriers between steps, so its loads waited one round trip per
step.) With `BLOCK_K` covering d_model over all warps (e.g. 1024 with 4 warps), the stream's layout is the
weight's, and the pass needs no layout conversion. An output feature below `d_inner` is a conv channel: the program owns that channel's conv-state
rows, so it shifts them in place and writes the conv output; a feature at or above `d_inner` is the gate z, written
as projected. Feature block 0 also writes the new residual stream, in a second pass over it after the product. Given x_proj's weight, a program of conv
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


@dataclass(frozen=True)
class FrontTiling(KernelTiling):
    """Launch parameters: `block_n` in_proj output features per program, `block_k` d_model features per step of
    the product (powers of 2), `num_warps`; text `"BLOCK_N,BLOCK_K,WARPS"`, e.g. `"8,512,4"`."""

    FIELDS: ClassVar[str] = "BLOCK_N,BLOCK_K,WARPS"
    block_n: int
    block_k: int
    num_warps: int


# fastest of sweeps at batch 1, d_model 2048, d_inner 4096 fp16 on H100 (scripts/bench_decode_step.py): summing
# x_proj, 8 warps (16.2 us a call vs 17.9 with 4); without x_proj, 4 warps (14.9 us vs 19.1 with 8)
DEFAULT_FRONT_TILING = FrontTiling(block_n=8, block_k=1024, num_warps=8)
DEFAULT_FRONT_TILING_WITHOUT_X_PROJ = FrontTiling(block_n=8, block_k=1024, num_warps=4)


@triton.jit
def _residual_stream(hidden_ptr, residual_ptr, features, feature_mask, residual_dtype: tl.constexpr,
                     HAS_RESIDUAL: tl.constexpr):
    """(BLOCK_K,) fp32 slice of one row's `hidden (+ residual)`, rounded to the residual stream's dtype."""
    stream = tl.load(hidden_ptr + features, mask=feature_mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        stream += tl.load(residual_ptr + features, mask=feature_mask, other=0.0).to(tl.float32)
    return stream.to(residual_dtype).to(tl.float32)


@triton.jit
def add_norm_in_proj_conv_kernel(
    hidden_ptr, residual_ptr, norm_weight_ptr, proj_weight_ptr, proj_bias_ptr,
    conv_state_ptr, conv_weight_ptr, conv_bias_ptr, xz_ptr, residual_out_ptr, x_proj_weight_ptr, x_proj_sums_ptr,
    d_inner, x_proj_width, eps,
    stride_hidden_b, stride_residual_b, stride_residual_out_b, stride_proj_n, stride_proj_k,
    stride_state_b, stride_state_c, stride_state_k, stride_conv_c, stride_conv_k, stride_xz_b,
    stride_x_proj_r, stride_x_proj_c, stride_sums_b,
    HAS_RESIDUAL: tl.constexpr, HAS_X_PROJ: tl.constexpr, HAS_PROJ_BIAS: tl.constexpr, HAS_CONV_BIAS: tl.constexpr,
    D_MODEL: tl.constexpr, WIDTH: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    BLOCK_W: tl.constexpr, BLOCK_R: tl.constexpr,
):
    feature_block, row = tl.program_id(0), tl.program_id(1).to(tl.int64)
    hidden_ptr += row * stride_hidden_b
    if HAS_RESIDUAL:
        residual_ptr += row * stride_residual_b
    outputs = feature_block * BLOCK_N + tl.arange(0, BLOCK_N)
    output_mask = outputs < 2 * d_inner
    residual_dtype = residual_out_ptr.dtype.element_ty

    # loads that do not depend on the product go first, so their latency hides behind the weight stream
    taps = tl.arange(0, BLOCK_W)
    is_channel = output_mask & (outputs < d_inner)
    state_ptrs = (conv_state_ptr + row * stride_state_b + outputs[:, None] * stride_state_c
                  + taps[None, :] * stride_state_k)
    in_state = is_channel[:, None] & (taps < WIDTH - 1)[None, :]
    # window[c, k] = state[c, k] for k < WIDTH - 1; the new input goes in at k = WIDTH - 1 below
    window = tl.load(state_ptrs, mask=in_state, other=0.0).to(tl.float32)
    shifted = tl.load(state_ptrs + stride_state_k, mask=is_channel[:, None] & (taps + 1 < WIDTH - 1)[None, :],
                      other=0.0)
    conv_weight = tl.load(conv_weight_ptr + outputs[:, None] * stride_conv_c + taps[None, :] * stride_conv_k,
                          mask=is_channel[:, None] & (taps < WIDTH)[None, :], other=0.0).to(tl.float32)
    if HAS_CONV_BIAS:
        conv_bias = tl.load(conv_bias_ptr + outputs, mask=is_channel, other=0.0).to(tl.float32)
    if HAS_PROJ_BIAS:
        proj_bias = tl.load(proj_bias_ptr + outputs, mask=output_mask, other=0.0).to(tl.float32)
    if HAS_X_PROJ:  # this program's columns of x_proj (none for a program of gate features)
        ranks = tl.arange(0, BLOCK_R)
        rank_mask = ranks < x_proj_width
        x_proj = tl.load(x_proj_weight_ptr + ranks[:, None] * stride_x_proj_r + outputs[None, :] * stride_x_proj_c,
                         mask=rank_mask[:, None] & is_channel[None, :], other=0.0).to(tl.float32)

    # one pass over d_model: in_proj(stream * rstd * g) = rstd * in_proj(stream * g), so the product needs no
    # separate pass for the mean square first. Unrolled, with elementwise accumulators reduced once after it and no
    # store inside, so all of the program's weight loads can be in flight at once.
    sum_sq = tl.zeros((BLOCK_K,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for k0 in tl.static_range(0, D_MODEL, BLOCK_K):
        features = k0 + tl.arange(0, BLOCK_K)
        feature_mask = features < D_MODEL
        stream = _residual_stream(hidden_ptr, residual_ptr, features, feature_mask, residual_dtype, HAS_RESIDUAL)
        sum_sq += stream * stream
        norm_weight = tl.load(norm_weight_ptr + features, mask=feature_mask, other=0.0).to(tl.float32)
        weight = tl.load(proj_weight_ptr + outputs[:, None] * stride_proj_n + features[None, :] * stride_proj_k,
                         mask=output_mask[:, None] & feature_mask[None, :], other=0.0)  # (BLOCK_N, BLOCK_K)
        acc += weight.to(tl.float32) * (stream * norm_weight)[None, :]
    rstd = 1.0 / tl.sqrt(tl.sum(sum_sq, axis=0) / D_MODEL + eps)
    projected = tl.sum(acc, axis=1) * rstd
    if HAS_PROJ_BIAS:
        projected += proj_bias
    projected = projected.to(xz_ptr.dtype.element_ty)  # in_proj output as the unfused path stores it

    if feature_block == 0:  # the new residual stream, re-read from L2 by this one program
        for k0 in tl.static_range(0, D_MODEL, BLOCK_K):
            features = k0 + tl.arange(0, BLOCK_K)
            feature_mask = features < D_MODEL
            stream = _residual_stream(hidden_ptr, residual_ptr, features, feature_mask, residual_dtype, HAS_RESIDUAL)
            tl.store(residual_out_ptr + row * stride_residual_out_b + features, stream.to(residual_dtype),
                     mask=feature_mask)

    # conv step on the x half (SiLU after it); z passes through as projected
    window = tl.where((taps == WIDTH - 1)[None, :], projected.to(tl.float32)[:, None], window)
    shifted = tl.where((taps + 1 == WIDTH - 1)[None, :], projected[:, None].to(shifted.dtype), shifted)
    conv = tl.sum(window * conv_weight, axis=1)
    if HAS_CONV_BIAS:
        conv += conv_bias
    conv = conv * tl.sigmoid(conv)
    out = tl.where(is_channel, conv, projected.to(tl.float32)).to(xz_ptr.dtype.element_ty)
    tl.store(xz_ptr + row * stride_xz_b + outputs, out, mask=output_mask)
    if HAS_X_PROJ:
        if feature_block * BLOCK_N < d_inner:  # this program's share of x_proj(x), over its conv channels
            x = tl.where(is_channel, out.to(tl.float32), 0.0)
            partial = tl.sum(x_proj * x[None, :], axis=1)  # (BLOCK_R,)
            tl.atomic_add(x_proj_sums_ptr + row * stride_sums_b + ranks, partial, mask=rank_mask, sem="relaxed")
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
    share). fp32/fp16/bf16. `tiling`: DEFAULT_FRONT_TILING (DEFAULT_FRONT_TILING_WITHOUT_X_PROJ without x_proj)."""
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
    has_x_proj = x_proj_sums is not None
    tiling = tiling or (DEFAULT_FRONT_TILING if has_x_proj else DEFAULT_FRONT_TILING_WITHOUT_X_PROJ)
    grid = (triton.cdiv(2 * d_inner, tiling.block_n), batch)
    x_proj_width = x_proj_weight.shape[0] if has_x_proj else 1
    add_norm_in_proj_conv_kernel[grid](
        hidden, residual, norm_weight, proj_weight, proj_bias, conv_state, conv_weight, conv_bias, xz, residual_out,
        x_proj_weight, x_proj_sums, d_inner, x_proj_width, float(eps),
        hidden.stride(0), 0 if residual is None else residual.stride(0), residual_out.stride(0), *proj_weight.stride(),
        *conv_state.stride(), *conv_weight.stride(), xz.stride(0),
        *(x_proj_weight.stride() if has_x_proj else (0, 0)), x_proj_sums.stride(0) if has_x_proj else 0,
        HAS_RESIDUAL=residual is not None, HAS_X_PROJ=has_x_proj, HAS_PROJ_BIAS=proj_bias is not None,
        HAS_CONV_BIAS=conv_bias is not None,
        D_MODEL=d_model, WIDTH=width, BLOCK_N=tiling.block_n, BLOCK_K=tiling.block_k,
        BLOCK_W=triton.next_power_of_2(width), BLOCK_R=triton.next_power_of_2(x_proj_width),
        num_warps=tiling.num_warps,
    )
    return xz, residual_out
