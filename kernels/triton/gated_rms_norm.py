"""Mamba-2's gated RMSNorm in one Triton kernel per direction (the PyTorch twin is `mambaseq.norm.GatedRMSNorm`).

A row of `d` channels is normalized in groups of `group_size`. With the gate first (Mamba-2's default),
`g = x silu(z)` and `out = g rstd weight`; with the norm first, `g = x` and `out = g rstd weight silu(z)`, where
`rstd = 1 / sqrt(mean(g^2 over the group) + eps)`, all in fp32. A program takes `BLOCK_ROWS` rows of one group;
x and z may be strided views (z is a slice of `in_proj`'s output). Saved for the backward: x, z and `rstd` per
(row, group). The backward recomputes `g` and writes d x, d z and per-program fp32 partial sums of d weight, which
PyTorch adds up.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .add_rms_norm import SUPPORTED_DTYPES, backward_programs, row_tile, row_tiling, row_view
from .scan_math import sigmoid

MAX_GROUP = 16384


@triton.jit
def gated_rms_norm_fwd_kernel(
    x_ptr, z_ptr, weight_ptr, out_ptr, rstd_ptr, n_rows, group_size, eps, stride_x, stride_z, stride_out,
    HAS_Z: tl.constexpr, NORM_BEFORE_GATE: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_G: tl.constexpr,
):
    """Grid (row tiles, groups). rstd: (n_rows, groups) fp32."""
    group = tl.program_id(1)
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    row2 = rows.to(tl.int64)[:, None]
    offsets = tl.arange(0, BLOCK_G)[None, :]
    cols = group * group_size + offsets
    col_mask = offsets < group_size
    mask = (row2 < n_rows) & col_mask
    g = tl.load(x_ptr + row2 * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + row2 * stride_z + cols, mask=mask, other=0.0).to(tl.float32)
        gate = z * sigmoid(z)
        if not NORM_BEFORE_GATE:
            g *= gate
    rstd = 1.0 / tl.sqrt(tl.sum(g * g, axis=1) / group_size + eps)
    tl.store(rstd_ptr + rows * tl.num_programs(1) + group, rstd, mask=rows < n_rows)
    out = g * rstd[:, None] * tl.load(weight_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)
    if HAS_Z and NORM_BEFORE_GATE:
        out *= gate
    tl.store(out_ptr + row2 * stride_out + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["rows_per_program"])
def gated_rms_norm_bwd_kernel(
    x_ptr, z_ptr, weight_ptr, rstd_ptr, grad_out_ptr, grad_x_ptr, grad_z_ptr, grad_weight_partial_ptr,
    n_rows, group_size, rows_per_program, stride_x, stride_z, stride_grad_out, stride_grad_x, stride_grad_z,
    HAS_Z: tl.constexpr, NORM_BEFORE_GATE: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_G: tl.constexpr,
):
    """Grid (programs, groups): a program walks `rows_per_program` rows of one group. With n = g rstd and
    dn = d out weight (times silu(z) with the norm first): d g = rstd (dn - n mean(dn n)); d weight partial sums
    (programs, d) of d out n (times silu(z) with the norm first)."""
    group = tl.program_id(1)
    n_groups = tl.num_programs(1)
    first_row = tl.program_id(0) * rows_per_program
    end_row = tl.minimum(first_row + rows_per_program, n_rows)
    offsets = tl.arange(0, BLOCK_G)[None, :]
    cols = group * group_size + offsets
    col_mask = offsets < group_size
    weight = tl.load(weight_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)
    grad_weight = tl.zeros((BLOCK_ROWS, BLOCK_G), tl.float32)
    for start in range(first_row, end_row, BLOCK_ROWS):
        rows, row_mask, row2, mask = row_tile(start, end_row, col_mask, BLOCK_ROWS)
        x = tl.load(x_ptr + row2 * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(rstd_ptr + rows * n_groups + group, mask=row_mask, other=0.0)[:, None]
        grad_out = tl.load(grad_out_ptr + row2 * stride_grad_out + cols, mask=mask, other=0.0).to(tl.float32)
        g = x
        grad_n = grad_out * weight
        if HAS_Z:
            z = tl.load(z_ptr + row2 * stride_z + cols, mask=mask, other=0.0).to(tl.float32)
            z_sigmoid = sigmoid(z)
            gate = z * z_sigmoid
            gate_slope = z_sigmoid * (1.0 + z * (1.0 - z_sigmoid))
            if NORM_BEFORE_GATE:
                grad_n *= gate
            else:
                g = x * gate
        n = g * rstd
        grad_g = (grad_n - n * (tl.sum(grad_n * n, axis=1) / group_size)[:, None]) * rstd
        if HAS_Z:
            if NORM_BEFORE_GATE:
                grad_weight += grad_out * n * gate
                grad_z = grad_out * n * weight * gate_slope
                grad_x = grad_g
            else:
                grad_weight += grad_out * n
                grad_z = grad_g * x * gate_slope
                grad_x = grad_g * gate
            tl.store(grad_z_ptr + row2 * stride_grad_z + cols, grad_z.to(grad_z_ptr.dtype.element_ty), mask=mask)
        else:
            grad_weight += grad_out * n
            grad_x = grad_g
        tl.store(grad_x_ptr + row2 * stride_grad_x + cols, grad_x.to(grad_x_ptr.dtype.element_ty), mask=mask)
    tl.store(grad_weight_partial_ptr + tl.program_id(0) * n_groups * group_size + cols,
             tl.sum(grad_weight, axis=0)[None, :], mask=col_mask)


class GatedRMSNormFunction(torch.autograd.Function):
    """forward(x, z | None, weight, group_size, eps, norm_before_gate) -> out (x's dtype)."""

    @staticmethod
    def forward(ctx, x, z, weight, group_size, eps, norm_before_gate):
        shape, d = x.shape, x.shape[-1]
        x_rows = row_view(x)
        z_rows = None if z is None else row_view(z)
        n_rows, n_groups = x_rows.shape[0], d // group_size
        out = torch.empty(x_rows.shape, device=x.device, dtype=x.dtype)
        rstd = torch.empty(n_rows, n_groups, device=x.device, dtype=torch.float32)
        block_g, block_rows, num_warps = row_tiling(group_size)
        gate_rows = x_rows if z_rows is None else z_rows
        gated_rms_norm_fwd_kernel[(triton.cdiv(n_rows, block_rows), n_groups)](
            x_rows, gate_rows, weight, out, rstd, n_rows, group_size, eps,
            x_rows.stride(0), gate_rows.stride(0), out.stride(0),
            HAS_Z=z is not None, NORM_BEFORE_GATE=norm_before_gate, BLOCK_ROWS=block_rows, BLOCK_G=block_g,
            num_warps=num_warps)
        ctx.save_for_backward(x_rows, z_rows, weight, rstd)
        ctx.meta = dict(shape=shape, group_size=group_size, norm_before_gate=norm_before_gate)
        return out.view(shape)

    @staticmethod
    def backward(ctx, grad_out):
        x_rows, z_rows, weight, rstd = ctx.saved_tensors
        meta = ctx.meta
        (n_rows, d), n_groups = x_rows.shape, rstd.shape[1]
        grad_out = row_view(grad_out)
        grad_x = torch.empty(x_rows.shape, device=x_rows.device, dtype=x_rows.dtype)
        grad_z = None if z_rows is None else torch.empty(z_rows.shape, device=z_rows.device, dtype=z_rows.dtype)
        block_g, block_rows, num_warps = row_tiling(meta["group_size"])
        programs, rows_per_program = backward_programs(n_rows, block_rows, x_rows.device)
        grad_weight_partial = torch.empty(programs, d, device=x_rows.device, dtype=torch.float32)
        gate_rows = x_rows if z_rows is None else z_rows
        gated_rms_norm_bwd_kernel[(programs, n_groups)](
            x_rows, gate_rows, weight, rstd, grad_out, grad_x, grad_x if grad_z is None else grad_z,
            grad_weight_partial, n_rows, meta["group_size"], rows_per_program,
            x_rows.stride(0), gate_rows.stride(0), grad_out.stride(0), grad_x.stride(0),
            grad_x.stride(0) if grad_z is None else grad_z.stride(0),
            HAS_Z=z_rows is not None, NORM_BEFORE_GATE=meta["norm_before_gate"], BLOCK_ROWS=block_rows,
            BLOCK_G=block_g, num_warps=num_warps)
        grad_z = None if grad_z is None else grad_z.view(meta["shape"])
        return (grad_x.view(meta["shape"]), grad_z, grad_weight_partial.sum(0).to(weight.dtype), None, None, None)


def gated_rms_norm_triton(x: torch.Tensor, z: torch.Tensor | None, weight: torch.Tensor, group_size: int,
                          eps: float, norm_before_gate: bool = False) -> torch.Tensor:
    """x, z: (..., d) fp32/fp16/bf16 (z may differ in dtype; rows may be strided), weight: (d,), `group_size`
    dividing d -> (..., d) in x's dtype, differentiable in x, z and weight."""
    d = x.shape[-1]
    for name, tensor in {"x": x, "z": z, "weight": weight}.items():
        if tensor is not None and tensor.dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"gated_rms_norm_triton: {name} has dtype {tensor.dtype}, expected one of "
                             f"{SUPPORTED_DTYPES}")
    if z is not None and z.shape != x.shape:
        raise ValueError(f"gated_rms_norm_triton: z shape {tuple(z.shape)} != x shape {tuple(x.shape)}")
    if weight.shape != (d,):
        raise ValueError(f"gated_rms_norm_triton: weight shape {tuple(weight.shape)}, expected ({d},)")
    if d % group_size or triton.next_power_of_2(group_size) > MAX_GROUP:
        raise ValueError(f"gated_rms_norm_triton: group_size={group_size} must divide d={d} and be at most "
                         f"{MAX_GROUP}")
    return GatedRMSNormFunction.apply(x, z, weight, group_size, eps, norm_before_gate)
