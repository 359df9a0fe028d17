"""Residual add + RMSNorm in one Triton kernel per direction (mamba-ssm's fused "Add -> Norm" of the block).

Forward: a program takes `BLOCK_ROWS` rows of `d_model` channels: `residual_new = hidden (+ residual)`, stored in the
residual dtype, then `normed = residual_new * rstd * weight` with `rstd = 1 / sqrt(mean(residual_new^2) + eps)` in
fp32. Saved for the backward: `residual_new` and the per-row `rstd` (fp32).
Backward: a program walks a contiguous run of rows and writes
`d residual_new = rstd * (w * dy - x_hat * mean(x_hat * w * dy)) + d residual_new_out` (the gradient of both hidden
and residual), and one fp32 partial sum of `dy * x_hat` for the weight; PyTorch adds up the partial sums.
The PyTorch twin is `mambaseq.norm.add_rms_norm` with an `RMSNorm`.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._common import residual_stream_dtype

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
TILE_ELEMENTS = 4096  # rows per program = TILE_ELEMENTS // padded d_model: a (rows, d_model) register tile
MAX_BLOCK_D = 16384
PROGRAMS_PER_SM = 4  # backward programs, each summing its rows' weight gradient once


@triton.jit
def add_rms_norm_fwd_kernel(
    hidden_ptr, residual_ptr, weight_ptr, out_ptr, residual_out_ptr, rstd_ptr,
    n_rows, d_model, eps,
    stride_hidden, stride_residual, stride_out, stride_residual_out,
    HAS_RESIDUAL: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_D: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    row2 = rows.to(tl.int64)[:, None]                              # (BLOCK_ROWS, 1)
    cols = tl.arange(0, BLOCK_D)[None, :]                          # (1, BLOCK_D)
    col_mask = cols < d_model
    mask = (row2 < n_rows) & col_mask
    x = tl.load(hidden_ptr + row2 * stride_hidden + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        x += tl.load(residual_ptr + row2 * stride_residual + cols, mask=mask, other=0.0).to(tl.float32)
    # the norm reads the residual stream as stored (rounded to its dtype), as the PyTorch path does
    x = x.to(residual_out_ptr.dtype.element_ty)
    tl.store(residual_out_ptr + row2 * stride_residual_out + cols, x, mask=mask)
    x = x.to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / d_model + eps)    # (BLOCK_ROWS,)
    tl.store(rstd_ptr + rows, rstd, mask=rows < n_rows)
    weight = tl.load(weight_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)
    out = x * rstd[:, None] * weight
    tl.store(out_ptr + row2 * stride_out + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def row_tile(start, end_row, col_mask, BLOCK_ROWS: tl.constexpr):
    """Rows [start, start + BLOCK_ROWS) of a backward program's run, which ends at `end_row`: (rows, their mask, the
    rows as an int64 column, the tile mask with `col_mask`)."""
    rows = start + tl.arange(0, BLOCK_ROWS)
    row_mask = rows < end_row
    return rows, row_mask, rows.to(tl.int64)[:, None], row_mask[:, None] & col_mask


@triton.jit(do_not_specialize=["rows_per_program"])
def add_rms_norm_bwd_kernel(
    residual_out_ptr, weight_ptr, rstd_ptr, grad_out_ptr, grad_residual_out_ptr,
    grad_hidden_ptr, grad_residual_ptr, grad_weight_partial_ptr,
    n_rows, d_model, rows_per_program,
    stride_residual_out, stride_grad_out, stride_grad_residual_out, stride_grad_hidden, stride_grad_residual,
    HAS_GRAD_RESIDUAL_OUT: tl.constexpr, STORE_GRAD_RESIDUAL: tl.constexpr,
    BLOCK_ROWS: tl.constexpr, BLOCK_D: tl.constexpr,
):
    program = tl.program_id(0)
    first_row = program * rows_per_program
    end_row = tl.minimum(first_row + rows_per_program, n_rows)
    cols = tl.arange(0, BLOCK_D)[None, :]
    col_mask = cols < d_model
    weight = tl.load(weight_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)
    grad_weight = tl.zeros((BLOCK_ROWS, BLOCK_D), tl.float32)
    for start in range(first_row, end_row, BLOCK_ROWS):
        rows, row_mask, row2, mask = row_tile(start, end_row, col_mask, BLOCK_ROWS)
        x = tl.load(residual_out_ptr + row2 * stride_residual_out + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(rstd_ptr + rows, mask=row_mask, other=0.0)[:, None]
        grad_out = tl.load(grad_out_ptr + row2 * stride_grad_out + cols, mask=mask, other=0.0).to(tl.float32)
        x_hat = x * rstd
        grad_weight += grad_out * x_hat
        weighted = grad_out * weight
        grad_x = (weighted - x_hat * (tl.sum(x_hat * weighted, axis=1) / d_model)[:, None]) * rstd
        if HAS_GRAD_RESIDUAL_OUT:
            grad_x += tl.load(grad_residual_out_ptr + row2 * stride_grad_residual_out + cols, mask=mask,
                              other=0.0).to(tl.float32)
        tl.store(grad_hidden_ptr + row2 * stride_grad_hidden + cols,
                 grad_x.to(grad_hidden_ptr.dtype.element_ty), mask=mask)
        if STORE_GRAD_RESIDUAL:
            tl.store(grad_residual_ptr + row2 * stride_grad_residual + cols,
                     grad_x.to(grad_residual_ptr.dtype.element_ty), mask=mask)
    tl.store(grad_weight_partial_ptr + program * d_model + cols, tl.sum(grad_weight, axis=0)[None, :],
             mask=col_mask)


def row_tiling(width: int) -> tuple[int, int, int]:
    """(padded width, rows per tile, num_warps) of a row kernel's (rows, width) register tile of about
    TILE_ELEMENTS elements: the add + RMSNorm over d_model, the gated RMSNorm over a group."""
    block = triton.next_power_of_2(width)
    block_rows = max(1, TILE_ELEMENTS // block)
    return block, block_rows, min(16, max(1, block_rows * block // 512))


def _tiling(d_model: int) -> tuple[int, int, int]:
    """(BLOCK_D, BLOCK_ROWS, num_warps) for rows of `d_model` channels."""
    if triton.next_power_of_2(d_model) > MAX_BLOCK_D:
        raise ValueError(f"add_rms_norm_triton: d_model={d_model}, expected at most {MAX_BLOCK_D} channels "
                         "(one row is one register tile)")
    return row_tiling(d_model)


def row_view(tensor: torch.Tensor) -> torch.Tensor:
    """(..., d) -> (n_rows, d) with unit stride along d (a view when possible)."""
    rows = tensor.reshape(-1, tensor.shape[-1])
    return rows if rows.stride(-1) == 1 else rows.contiguous()


def backward_programs(n_rows: int, block_rows: int, device: torch.device) -> tuple[int, int]:
    """(programs, rows per program) for the backward: a few programs per SM, each a whole number of tiles."""
    budget = 4
    if device.type == "cuda":
        budget = PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count
    tiles = triton.cdiv(n_rows, block_rows)
    rows_per_program = triton.cdiv(tiles, min(tiles, budget)) * block_rows
    return triton.cdiv(n_rows, rows_per_program), rows_per_program


class AddRMSNormFunction(torch.autograd.Function):
    """forward(hidden, residual | None, weight, eps, residual_dtype, out_dtype) -> (normed, residual_new)."""

    @staticmethod
    def forward(ctx, hidden, residual, weight, eps, residual_dtype, out_dtype):
        shape, d_model = hidden.shape, hidden.shape[-1]
        hidden_rows = row_view(hidden)
        residual_rows = None if residual is None else row_view(residual)
        n_rows = hidden_rows.shape[0]
        out = torch.empty(hidden_rows.shape, device=hidden.device, dtype=out_dtype)
        residual_out = torch.empty(hidden_rows.shape, device=hidden.device, dtype=residual_dtype)
        rstd = torch.empty(n_rows, device=hidden.device, dtype=torch.float32)
        block_d, block_rows, num_warps = _tiling(d_model)
        source = residual_rows if residual_rows is not None else hidden_rows
        add_rms_norm_fwd_kernel[(triton.cdiv(n_rows, block_rows),)](
            hidden_rows, residual_rows, weight, out, residual_out, rstd, n_rows, d_model, eps,
            hidden_rows.stride(0), source.stride(0), out.stride(0), residual_out.stride(0),
            HAS_RESIDUAL=residual is not None, BLOCK_ROWS=block_rows, BLOCK_D=block_d, num_warps=num_warps)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(residual_out, weight, rstd)
        ctx.meta = dict(shape=shape, hidden_dtype=hidden.dtype,
                        residual_dtype=None if residual is None else residual.dtype)
        return out.view(shape), residual_out.view(shape)

    @staticmethod
    def backward(ctx, grad_out, grad_residual_out):
        residual_out, weight, rstd = ctx.saved_tensors
        meta = ctx.meta
        n_rows, d_model = residual_out.shape
        grad_out = torch.zeros_like(residual_out) if grad_out is None else row_view(grad_out)
        grad_residual_out = None if grad_residual_out is None else row_view(grad_residual_out)
        grad_hidden = torch.empty(residual_out.shape, device=residual_out.device, dtype=meta["hidden_dtype"])
        grad_residual = grad_hidden  # shared when the dtypes agree, as both inputs get the same gradient
        store_grad_residual = meta["residual_dtype"] not in (None, meta["hidden_dtype"])
        if store_grad_residual:
            grad_residual = torch.empty(residual_out.shape, device=residual_out.device, dtype=meta["residual_dtype"])
        block_d, block_rows, num_warps = _tiling(d_model)
        programs, rows_per_program = backward_programs(n_rows, block_rows, residual_out.device)
        grad_weight_partial = torch.empty(programs, d_model, device=residual_out.device, dtype=torch.float32)
        incoming = grad_residual_out if grad_residual_out is not None else grad_out
        add_rms_norm_bwd_kernel[(programs,)](
            residual_out, weight, rstd, grad_out, grad_residual_out, grad_hidden, grad_residual, grad_weight_partial,
            n_rows, d_model, rows_per_program,
            residual_out.stride(0), grad_out.stride(0), incoming.stride(0), grad_hidden.stride(0),
            grad_residual.stride(0),
            HAS_GRAD_RESIDUAL_OUT=grad_residual_out is not None, STORE_GRAD_RESIDUAL=store_grad_residual,
            BLOCK_ROWS=block_rows, BLOCK_D=block_d, num_warps=num_warps)
        grad_weight = grad_weight_partial.sum(0).to(weight.dtype)
        shape = meta["shape"]
        grad_residual = None if meta["residual_dtype"] is None else grad_residual.view(shape)
        return grad_hidden.view(shape), grad_residual, grad_weight, None, None, None


def add_rms_norm_triton(
    hidden: torch.Tensor,
    residual: torch.Tensor | None,
    weight: torch.Tensor,
    eps: float,
    residual_in_fp32: bool,
    out_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`residual_new = hidden (+ residual)`, `normed = rmsnorm(residual_new) * weight`; contract of
    `mambaseq.norm.add_rms_norm` with an `RMSNorm(weight, eps)`.

    hidden: (..., d_model); residual: same shape or None (first layer); weight: (d_model,); fp32/fp16/bf16 on CUDA
    (or CPU under TRITON_INTERPRET=1). Returns `(normed, residual_new)`: residual_new in the promoted dtype of
    hidden and residual (fp32 when `residual_in_fp32`), normed in `out_dtype` (default: weight's dtype, as the
    PyTorch path). The norm is taken of residual_new as stored, in fp32. Differentiable in hidden, residual, weight.
    """
    tensors = {"hidden": hidden, "residual": residual, "weight": weight}
    for name, tensor in tensors.items():
        if tensor is not None and tensor.dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"add_rms_norm_triton: {name} has dtype {tensor.dtype}, expected one of "
                             f"{SUPPORTED_DTYPES}")
    if residual is not None and residual.shape != hidden.shape:
        raise ValueError(f"add_rms_norm_triton: residual shape {tuple(residual.shape)} != hidden shape "
                         f"{tuple(hidden.shape)}")
    if weight.shape != hidden.shape[-1:]:
        raise ValueError(f"add_rms_norm_triton: weight shape {tuple(weight.shape)}, expected ({hidden.shape[-1]},)")
    residual_dtype = residual_stream_dtype(hidden, residual, residual_in_fp32)
    return AddRMSNormFunction.apply(hidden, residual, weight.contiguous(), float(eps), residual_dtype,
                                    out_dtype or weight.dtype)
