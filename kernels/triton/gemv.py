"""A Triton GEMV for the projections of a decoding step at small batch: `out = x @ weight^T (+ bias)`.

At batch 1 a projection only streams its weight, and cuBLAS runs the mixer's x_proj (d_inner -> dt_rank + 2 n)
and out_proj (d_inner -> d_model) as a split-K kernel plus a reduction kernel. This kernel gives each program whole
rows of the weight (no reduction pass), and it is a Triton kernel, so it can join the decoding step's chain of
programmatically dependent launches (`pdl.py`): its weight slice is prefetched into L2 while the previous kernel
runs.

Programs: (blocks of `block_n` output features, blocks of up to `MAX_ROWS` batch rows); the tiling is a
`GemvTiling`. Products and sums in fp32, the output rounded once to x's dtype (as cuBLAS does for F.linear).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .pdl import prefetch_lines, prefetch_rows_l2, use_pdl, wait_for_previous_kernel

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_ROWS = 4  # batch rows per program (its product tile is rows x BLOCK_N x BLOCK_K fp32)


@dataclass(frozen=True)
class GemvTiling:
    """Launch parameters: `block_n` output features per program, `block_k` input features per step of the product
    (powers of 2), `num_warps`, `num_stages`."""

    block_n: int
    block_k: int
    num_warps: int
    num_stages: int

    @classmethod
    def parse(cls, text: str) -> "GemvTiling":
        """`"BLOCK_N,BLOCK_K,WARPS,STAGES"`, e.g. `"4,512,4,3"`."""
        fields = text.split(",")
        if len(fields) != 4 or not all(f.isdigit() and int(f) > 0 for f in fields):
            raise ValueError(f"GEMV tiling {text!r}: expected four positive integers BLOCK_N,BLOCK_K,WARPS,STAGES")
        return cls(*(int(f) for f in fields))

    def __str__(self) -> str:
        return f"{self.block_n},{self.block_k},{self.num_warps},{self.num_stages}"


DEFAULT_GEMV_TILING = GemvTiling(block_n=4, block_k=512, num_warps=4, num_stages=3)


@triton.jit
def gemv_kernel(
    x_ptr, weight_ptr, bias_ptr, out_ptr, batch, n_out, stride_x_b, stride_weight_n, stride_out_b,
    K: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    USE_PDL: tl.constexpr, LINE: tl.constexpr, LINES: tl.constexpr,
):
    feature_block, row_block = tl.program_id(0), tl.program_id(1)
    rows = (row_block * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    row_mask = rows < batch
    outputs = feature_block * BLOCK_N + tl.arange(0, BLOCK_N)
    output_mask = outputs < n_out
    weight_rows = weight_ptr + outputs.to(tl.int64) * stride_weight_n  # (BLOCK_N,) row starts
    if USE_PDL:  # the weight slice is constant: fetch it while the previous kernel runs
        prefetch_rows_l2(weight_ptr, outputs, output_mask, stride_weight_n, K, LINE, LINES)
        wait_for_previous_kernel()

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        features = k0 + tl.arange(0, BLOCK_K)
        feature_mask = features < K
        x = tl.load(x_ptr + rows[:, None] * stride_x_b + features[None, :],
                    mask=row_mask[:, None] & feature_mask[None, :], other=0.0).to(tl.float32)
        weight = tl.load(weight_rows[:, None] + features[None, :], mask=output_mask[:, None] & feature_mask[None, :],
                         other=0.0).to(tl.float32)  # (BLOCK_N, BLOCK_K)
        acc += tl.sum(x[:, None, :] * weight[None, :, :], axis=2)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + outputs, mask=output_mask, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + rows[:, None] * stride_out_b + outputs[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=row_mask[:, None] & output_mask[None, :])


def gemv_problem(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> str:
    """Why `gemv_triton` cannot take these inputs ("" if it can)."""
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        return f"shapes x {tuple(x.shape)}, weight {tuple(weight.shape)}: expected (batch, K) and (N, K)"
    if bias is not None and bias.shape != (weight.shape[0],):
        return f"bias shape {tuple(bias.shape)}, expected ({weight.shape[0]},)"
    bad = {name: t.dtype for name, t in (("x", x), ("weight", weight), ("bias", bias))
           if t is not None and t.dtype not in SUPPORTED_DTYPES}
    if bad:
        return f"unsupported dtypes {bad} (supported: {SUPPORTED_DTYPES})"
    if x.stride(1) != 1 or weight.stride(1) != 1:
        return "x and weight need unit stride along K"
    return ""


def gemv_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                tiling: GemvTiling | None = None) -> torch.Tensor:
    """`x @ weight^T (+ bias)`: x (batch, K), weight (N, K), bias (N,) -> (batch, N) in x's dtype; fp32 sums.
    `tiling`: DEFAULT_GEMV_TILING."""
    problem = gemv_problem(x, weight, bias)
    if problem:
        raise ValueError(f"gemv_triton: {problem}")
    batch, k = x.shape
    n_out = weight.shape[0]
    out = torch.empty(batch, n_out, device=x.device, dtype=x.dtype)
    tiling = tiling or DEFAULT_GEMV_TILING
    block_m = min(triton.next_power_of_2(batch), MAX_ROWS)
    pdl = use_pdl(x)  # gemv_problem ensured the unit stride that prefetch_rows_l2 assumes
    line, lines = prefetch_lines(weight, k)
    grid = (triton.cdiv(n_out, tiling.block_n), triton.cdiv(batch, block_m))
    gemv_kernel[grid](
        x, weight, bias, out, batch, n_out, x.stride(0), weight.stride(0), out.stride(0),
        K=k, HAS_BIAS=bias is not None, BLOCK_M=block_m, BLOCK_N=tiling.block_n, BLOCK_K=tiling.block_k,
        USE_PDL=pdl, LINE=line, LINES=lines, num_warps=tiling.num_warps, num_stages=tiling.num_stages,
        launch_pdl=pdl,
    )
    return out
