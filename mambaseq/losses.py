"""Memory-light language-model cross-entropy: LM head projection + softmax cross-entropy over row chunks.

The plain loss materialises `(b*L, V)` logits and, upcast, a second fp32 copy (b8 L2048 V50280: 3.3 GB fp32 plus
its gradient). Here only one `(chunk_size, V)` block of logits exists at a time: the forward keeps the per-row
logsumexp, the backward recomputes each chunk's softmax to form `grad_hidden` and to accumulate `grad_weight`.
The row-wise logsumexp and the logits gradient are `mambaseq.kernels.cross_entropy` (Triton row kernels on CUDA).
"""
from __future__ import annotations

import torch

from mambaseq.kernels.cross_entropy import logits_gradient, row_logsumexp
from mambaseq.precision import at_least_fp32

IGNORE_INDEX = -100
DEFAULT_CHUNK_SIZE = 4096


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of `hidden @ weight.T` against `targets`, in chunks of `chunk_size` rows.

    hidden: (N, d), weight: (V, d), same dtype; targets: (N,) int64, `ignore_index` rows contribute nothing.
    Returns the fp32 (fp64 for fp64 inputs) mean over the counted rows (NaN when there are none, as `F.cross_entropy`).
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int,
                ignore_index: int) -> torch.Tensor:
        valid = targets != ignore_index
        safe_targets = targets.masked_fill(~valid, 0)
        accumulate_dtype = at_least_fp32(hidden[:0]).dtype
        logsumexp = torch.empty(hidden.shape[0], device=hidden.device, dtype=accumulate_dtype)
        total = torch.zeros((), device=hidden.device, dtype=accumulate_dtype)
        for start in range(0, hidden.shape[0], chunk_size):
            rows = slice(start, start + chunk_size)
            logits = hidden[rows] @ weight.t()  # (c, V) in the inputs' dtype, as `F.linear`
            logsumexp[rows] = row_logsumexp(logits)
            target_logits = logits.gather(1, safe_targets[rows, None]).squeeze(1).to(accumulate_dtype)
            total += ((logsumexp[rows] - target_logits) * valid[rows]).sum()
        count = valid.sum()
        ctx.save_for_backward(hidden, weight, safe_targets, valid, logsumexp, count)
        ctx.chunk_size = chunk_size
        return total / count

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        hidden, weight, safe_targets, valid, logsumexp, count = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, device=weight.device, dtype=logsumexp.dtype) if need_weight else None
        scale = grad_loss.to(logsumexp.dtype) / count
        for start in range(0, hidden.shape[0], ctx.chunk_size):
            rows = slice(start, start + ctx.chunk_size)
            hidden_chunk = hidden[rows]
            grad_logits = logits_gradient(hidden_chunk @ weight.t(), logsumexp[rows], safe_targets[rows],
                                           scale * valid[rows])
            if need_hidden:
                grad_hidden[rows] = grad_logits @ weight
            if need_weight:
                grad_weight += grad_logits.t() @ hidden_chunk  # fp32 accumulation of the per-chunk products
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    vocab_size: int | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """`F.cross_entropy(F.linear(hidden, weight).float().flatten(0, -2), targets.flatten(), ignore_index)` without
    the full logits tensor.

    hidden: (..., d) final features; weight: (V_padded, d) LM head; targets: (...) int64 with `ignore_index` where no
    loss is taken. `vocab_size`: when given, head rows >= vocab_size (vocabulary padding) are left out of the
    softmax (and get zero gradient); None keeps all V_padded columns. The product runs in the autocast dtype when
    autocast is on, else in the weight's dtype (as `LMHead`); softmax and reductions are fp32.
    """
    if chunk_size <= 0:
        raise ValueError(f"linear_cross_entropy: chunk_size={chunk_size}, expected a positive number of rows")
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(f"linear_cross_entropy: hidden has shape {tuple(hidden.shape)} but targets "
                         f"{tuple(targets.shape)}; expected hidden (..., d) and targets (...)")
    if vocab_size is not None:
        if not 0 < vocab_size <= weight.shape[0]:
            raise ValueError(f"linear_cross_entropy: vocab_size={vocab_size}, expected 1..{weight.shape[0]} "
                             "(the head's rows)")
        weight = weight[:vocab_size]
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        compute_dtype = torch.get_autocast_dtype(device_type)
    else:
        compute_dtype = weight.dtype
    with torch.autocast(device_type, enabled=False):
        return ChunkedLinearCrossEntropy.apply(hidden.flatten(0, -2).to(compute_dtype), weight.to(compute_dtype),
                                               targets.flatten(), chunk_size, ignore_index)
