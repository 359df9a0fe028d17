"""Row operations of the chunked LM-head cross-entropy (`mambaseq.losses`) on a `(rows, V)` block of logits: the
per-row logsumexp and the logits gradient. On CUDA fp32/fp16/bf16 blocks (outside torch.compile) they are the
Triton row kernels of `triton/cross_entropy.py`, which read the block once in its own dtype; elsewhere PyTorch ops
on an fp32 (fp64) copy."""
from __future__ import annotations

from collections.abc import Callable

import torch

from ._common import compute_dtype
from .dispatch import _cuda_dtype_problem, _optional

_TRITON_MODULE = "mambaseq.kernels.triton.cross_entropy"  # imported lazily: Triton is optional


def _triton_kernel(name: str, logits: torch.Tensor) -> Callable | None:
    """The Triton row kernel `name` when it can take `logits`, else None."""
    if not logits.is_cuda or _cuda_dtype_problem(logits) or torch.compiler.is_compiling():
        return None
    return _optional(_TRITON_MODULE, name)[0]


def row_logsumexp(logits: torch.Tensor) -> torch.Tensor:
    """logits (c, V) -> (c,) logsumexp in fp32 (fp64 for fp64 logits)."""
    kernel = _triton_kernel("logsumexp_rows_triton", logits)
    if kernel is not None:
        return kernel(logits)
    return torch.logsumexp(logits.to(compute_dtype(logits)), dim=-1)


def logits_gradient(logits: torch.Tensor, logsumexp: torch.Tensor, targets: torch.Tensor,
                    row_scale: torch.Tensor) -> torch.Tensor:
    """d loss / d logits = (softmax - onehot(target)) * row_scale, computed in fp32 (fp64), returned in the logits'
    dtype; may overwrite `logits`. logits (c, V); logsumexp, row_scale (c,); targets (c,) int64."""
    kernel = _triton_kernel("softmax_grad_rows_triton_", logits)
    if kernel is not None:
        return kernel(logits, logsumexp, targets, row_scale)
    grad = logits.to(compute_dtype(logits)).sub_(logsumexp[:, None]).exp_()
    grad[torch.arange(grad.shape[0], device=grad.device), targets] -= 1.0
    return grad.mul_(row_scale[:, None]).to(logits.dtype)
