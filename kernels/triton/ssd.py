"""`ssd_triton`: Mamba-2 SSD without a compiled extension.

Forward: hand-written Triton kernels (`ssd_fwd.py`, JIT-compiled at first use). Backward: autograd through the
GPU-shaped PyTorch decomposition `ssd_blocks`, recomputed from the saved inputs and compiled by `torch.compile`
(Inductor turns its elementwise work into Triton kernels at the first call of each shape; nothing is built at
install time). Where the Triton kernels cannot run (CPU tensors outside Triton's interpreter, fp64, or inside an
outer `torch.compile` graph) the whole call is that PyTorch decomposition.
"""
from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable

import torch

from .._common import step_sizes
from .ssd_blocks import chunk_decays, ssd_blocks
from .ssd_launch import ssd_forward


@functools.cache
def _compiled_ssd() -> Callable:
    """`ssd_blocks` under `torch.compile` (one graph per shape), or eager where dynamo is unsupported."""
    if not torch._dynamo.is_dynamo_supported():
        return ssd_blocks
    return torch.compile(ssd_blocks, dynamic=False)


_COMPILE_FAILURES: list[str] = []  # set once torch.compile failed here: from then on `ssd_blocks` runs eagerly


def _note_compile_failure(error: Exception) -> None:
    """Remember (and warn once) that compiling `ssd_blocks` failed: training goes on, eagerly and slower."""
    first_line = str(error).splitlines()[0] if str(error) else ""
    _COMPILE_FAILURES.append(f"{type(error).__name__}: {first_line}")
    warnings.warn(f"ssd_triton: torch.compile of ssd_blocks failed ({_COMPILE_FAILURES[0]}); running it eagerly "
                  "from now on", RuntimeWarning, stacklevel=3)


def _pytorch_ssd(*args) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """`ssd_blocks(*args)`, compiled unless inside an outer `torch.compile` graph (inlined there) or after a
    compilation failure."""
    if torch.compiler.is_compiling() or _COMPILE_FAILURES:
        return ssd_blocks(*args)
    try:
        return _compiled_ssd()(*args)
    except torch._dynamo.exc.TorchDynamoException as error:
        _note_compile_failure(error)
        return ssd_blocks(*args)


def _triton_runs(x: torch.Tensor) -> bool:
    on_device = x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"
    return on_device and x.dtype != torch.float64 and not torch.compiler.is_compiling()


class SSDFunction(torch.autograd.Function):
    """forward(x, dt, A, B, C, D, z, dt_bias, initial_state, dt_softplus, chunk_size, dt_limit) -> (y, final_state);
    backward returns a gradient for every tensor input (recomputing the forward with `ssd_blocks`)."""

    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, z, dt_bias, initial_state, dt_softplus, chunk_size, dt_limit):
        batch, seqlen, nheads, headdim = x.shape
        dt_processed = step_sizes(dt, dt_bias, dt_softplus, torch.float32, (nheads,), dt_limit)
        dt_chunks, cum = chunk_decays(dt_processed, A.float(), chunk_size)
        D_per_channel = None if D is None else D.float().reshape(nheads, -1).expand(nheads, headdim).contiguous()
        y, final_state = ssd_forward(
            x, dt_chunks.contiguous(), cum.contiguous(), B.to(x.dtype), C.to(x.dtype), D_per_channel, z,
            None if initial_state is None else initial_state.float().contiguous())
        ctx.set_materialize_grads(False)  # an unused output (often the final state) gets no zero gradient
        ctx.save_for_backward(x, dt, A, B, C, D, z, dt_bias, initial_state)
        ctx.options = dict(dt_softplus=dt_softplus, chunk_size=chunk_size, dt_limit=dt_limit)
        return y, final_state

    @staticmethod
    def backward(ctx, dy, dfinal_state):
        if ctx.saved_tensors[0].is_cuda and not _COMPILE_FAILURES:  # the interpreter (CPU) recomputes eagerly
            try:
                return _recomputed_gradients(ctx, _compiled_ssd(), dy, dfinal_state)
            except torch._dynamo.exc.TorchDynamoException as error:
                _note_compile_failure(error)
        return _recomputed_gradients(ctx, ssd_blocks, dy, dfinal_state)


def _recomputed_gradients(ctx, recompute: Callable, dy: torch.Tensor | None, dfinal_state: torch.Tensor | None
                          ) -> tuple[torch.Tensor | None, ...]:
    """SSDFunction's input gradients: `recompute` (an `ssd_blocks`) run again under autograd from the saved inputs."""
    inputs = ctx.saved_tensors
    with torch.enable_grad():
        leaves = [None if tensor is None else tensor.detach().requires_grad_(needs)
                  for tensor, needs in zip(inputs, ctx.needs_input_grad)]
        x, dt, A, B, C, D, z, dt_bias, initial_state = leaves
        outputs = recompute(x, dt, A, B, C, D, z, dt_bias, ctx.options["dt_softplus"], initial_state, True,
                            ctx.options["chunk_size"], ctx.options["dt_limit"])
        pairs = [(out, grad) for out, grad in zip(outputs, (dy, dfinal_state)) if grad is not None]
        wanted = [leaf for leaf, needs in zip(leaves, ctx.needs_input_grad) if needs and leaf is not None]
        grads = iter(torch.autograd.grad([out for out, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True)
                     if pairs and wanted else ())
    per_input = [next(grads) if needs and leaf is not None else None
                 for leaf, needs in zip(leaves, ctx.needs_input_grad)]
    return (*per_input, None, None, None)


def ssd_triton(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
    *,
    chunk_size: int = 256,
    dt_limit: tuple[float, float] = (0.0, math.inf),
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """SSD on Triton; contract of `ssd_chunked` (x, z: (batch, L, nheads, headdim) fp32/fp16/bf16; dt: (batch, L,
    nheads); A, dt_bias: (nheads,); B, C: (batch, L, ngroups, d_state); D: (nheads,) or (nheads, headdim);
    initial_state: (batch, nheads, headdim, d_state)). Returns y (dtype of x), plus the final state (fp32) when
    `return_final_state`. Differentiable in every tensor."""
    if chunk_size < 1:
        raise ValueError(f"ssd_triton: chunk_size={chunk_size}, expected >= 1")
    nheads, ngroups = x.shape[2], B.shape[2]
    if nheads % ngroups != 0:
        raise ValueError(f"ssd_triton: {nheads} heads cannot be split evenly over {ngroups} groups of B/C")
    args = (x, dt, A, B, C, D, z, dt_bias, dt_softplus, initial_state, return_final_state, chunk_size, dt_limit)
    if not _triton_runs(x):
        return _pytorch_ssd(*args)
    y, final_state = SSDFunction.apply(x, dt, A, B, C, D, z, dt_bias, initial_state, dt_softplus, chunk_size,
                                       dt_limit)
    return (y, final_state) if return_final_state else y
