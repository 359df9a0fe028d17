"""Triton row kernels of the chunked LM-head cross-entropy (`mambaseq.losses`): the per-row logsumexp of a block of
logits (forward) and, in place over the recomputed logits, the gradient `(softmax - onehot(target)) * row_scale`
(backward). Each reads the `(rows, V)` block once in its own dtype and keeps fp32 inside, where the PyTorch path
upcasts the block to fp32 and passes over it five times.

Programs: one per row, walking the vocabulary in `BLOCK_V` tiles (online max / rescaled sum in the forward). The
vocabulary size is a compile-time constant (one compilation per head size; the loop bounds are then static, which
is also what Triton's CPU interpreter needs).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BLOCK_V = 2048


@triton.jit
def logsumexp_rows_kernel(logits_ptr, lse_ptr, stride_row, N_COLS: tl.constexpr, BLOCK_V: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    row_ptr = logits_ptr + row * stride_row
    cols = tl.arange(0, BLOCK_V)
    running_max = tl.full([BLOCK_V], float("-inf"), tl.float32)
    running_sum = tl.zeros([BLOCK_V], tl.float32)  # per lane: sum of exp(x - running_max)
    for start in range(0, N_COLS, BLOCK_V):
        x = tl.load(row_ptr + start + cols, mask=start + cols < N_COLS, other=float("-inf")).to(tl.float32)
        new_max = tl.maximum(running_max, x)
        rescale = tl.where(running_max == float("-inf"), 0.0, tl.exp(running_max - new_max))
        running_sum = running_sum * rescale + tl.where(x == float("-inf"), 0.0, tl.exp(x - new_max))
        running_max = new_max
    row_max = tl.max(running_max, axis=0)
    lane_scale = tl.where(running_max == float("-inf"), 0.0, tl.exp(running_max - row_max))
    tl.store(lse_ptr + row, row_max + tl.log(tl.sum(running_sum * lane_scale, axis=0)))


@triton.jit
def softmax_grad_rows_kernel(logits_ptr, lse_ptr, targets_ptr, row_scale_ptr, stride_row, N_COLS: tl.constexpr,
                             BLOCK_V: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    row_ptr = logits_ptr + row * stride_row
    lse = tl.load(lse_ptr + row)
    target = tl.load(targets_ptr + row)
    scale = tl.load(row_scale_ptr + row)
    cols = tl.arange(0, BLOCK_V)
    for start in range(0, N_COLS, BLOCK_V):
        mask = start + cols < N_COLS
        x = tl.load(row_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
        grad = tl.exp(x - lse) - tl.where(start + cols == target, 1.0, 0.0)
        tl.store(row_ptr + start + cols, (grad * scale).to(logits_ptr.dtype.element_ty), mask=mask)


def _check(logits: torch.Tensor) -> None:
    if logits.dim() != 2 or logits.stride(-1) != 1:
        raise ValueError(f"cross-entropy kernels: logits must be (rows, V) with unit stride along V, got shape "
                         f"{tuple(logits.shape)} strides {logits.stride()}")
    if logits.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"cross-entropy kernels: logits dtype {logits.dtype}, supported {SUPPORTED_DTYPES}")


def logsumexp_rows_triton(logits: torch.Tensor) -> torch.Tensor:
    """logits (rows, V) fp32/fp16/bf16 -> (rows,) fp32 `logsumexp` over V."""
    _check(logits)
    lse = torch.empty(logits.shape[0], device=logits.device, dtype=torch.float32)
    if logits.shape[0]:
        logsumexp_rows_kernel[(logits.shape[0],)](logits, lse, logits.stride(0), N_COLS=logits.shape[1],
                                                  BLOCK_V=BLOCK_V, num_warps=8)
    return lse


def softmax_grad_rows_triton_(logits: torch.Tensor, lse: torch.Tensor, targets: torch.Tensor,
                              row_scale: torch.Tensor) -> torch.Tensor:
    """In place: logits (rows, V) <- `(exp(logits - lse) - onehot(targets)) * row_scale` per row, computed in fp32
    and stored in the logits' dtype; lse, row_scale (rows,) fp32, targets (rows,) int64 in [0, V). Returns logits."""
    _check(logits)
    if logits.shape[0]:
        softmax_grad_rows_kernel[(logits.shape[0],)](
            logits, lse.float().contiguous(), targets.contiguous(), row_scale.float().contiguous(), logits.stride(0),
            N_COLS=logits.shape[1], BLOCK_V=BLOCK_V, num_warps=8)
    return logits
