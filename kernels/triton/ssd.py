"""`ssd_triton`: Mamba-2 SSD without a compiled extension.

Forward and backward are hand-written Triton kernels (`ssd_fwd.py`, `ssd_bwd.py`, JIT-compiled at first use); the
backward recomputes the forward's chunk products and states, and only the step sizes (softplus, bias, limit) and
the increments dt*A (whose within-chunk cumulative sums are the log decays) go through PyTorch autograd. Where the Triton kernels cannot run (CPU tensors
outside Triton's interpreter, fp64, or inside an outer `torch.compile` graph) the whole call is the PyTorch
decomposition `ssd_blocks`, compiled by `torch.compile` where it can be (nothing is built at install time).
"""
from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable

import torch

from .._common import step_sizes
from .ssd_blocks import chunk_step_sizes, ssd_blocks
from .ssd_bwd_launch import gate_backward, ssd_backward
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
    backward returns a gradient for every tensor input: Triton kernels for the chunked products, PyTorch autograd
    through the step sizes and the increments dt*A."""

    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, z, dt_bias, initial_state, dt_softplus, chunk_size, dt_limit):
        options = dict(dt_softplus=dt_softplus, chunk_size=chunk_size, dt_limit=dt_limit)
        dt_chunks, increments = _chunk_increments(dt, A, dt_bias, **options)
        dt_k, cum, B_k, C_k, D_k, initial_k = _kernel_operands(x, dt_chunks, increments, B, C, D, initial_state)
        y, final_state, ungated = ssd_forward(x, dt_k, cum, B_k, C_k, D_k, z, initial_k,
                                              store_ungated=z is not None and ctx.needs_input_grad[6])
        ctx.set_materialize_grads(False)  # an unused output (often the final state) gets no zero gradient
        ctx.save_for_backward(x, dt, A, B, C, D, z, dt_bias, initial_state, ungated)
        ctx.options = options
        return y, final_state

    @staticmethod
    def backward(ctx, dy, dfinal_state):
        x, dt, A, B, C, D, z, dt_bias, initial_state, ungated = ctx.saved_tensors
        needs = ctx.needs_input_grad
        with torch.enable_grad():
            dt, A, dt_bias = (None if t is None else t.detach().requires_grad_(need)
                              for t, need in ((dt, needs[1]), (A, needs[2]), (dt_bias, needs[7])))
            dt_chunks, increments = _chunk_increments(dt, A, dt_bias, **ctx.options)
        dy = torch.zeros_like(x) if dy is None else dy
        dz = None
        if z is not None:
            dy, dz = gate_backward(dy, z, ungated if needs[6] else None, x.dtype)
        dt_k, cum, B_k, C_k, D_k, initial_k = _kernel_operands(x, dt_chunks, increments, B, C, D, initial_state)
        grads = ssd_backward(x, dt_k, cum, B_k, C_k, D_k, dy.to(x.dtype),
                             None if dfinal_state is None else dfinal_state.float().contiguous(), initial_k)
        step_leaves = [t for t in (dt, A, dt_bias) if t is not None and t.requires_grad]
        pairs = [(out, grad) for out, grad in ((dt_chunks, grads.ddt), (increments, grads.dincrements))
                 if out.requires_grad]
        step_grads = iter(torch.autograd.grad([out for out, _ in pairs], step_leaves, [grad for _, grad in pairs])
                          if step_leaves else ())
        ddt, dA, ddt_bias = (next(step_grads) if need and t is not None else None
                             for t, need in ((dt, needs[1]), (A, needs[2]), (dt_bias, needs[7])))
        dD = None
        if D is not None and needs[5]:
            dD = (grads.dD.sum(-1) if D.dim() == 1 else grads.dD).to(D.dtype)
        dinitial = None if initial_state is None else grads.dinitial_state.to(initial_state.dtype)
        return (grads.dx, ddt, dA, grads.dB.to(B.dtype), grads.dC.to(C.dtype), dD, dz, ddt_bias, dinitial,
                None, None, None)


def _chunk_increments(dt: torch.Tensor, A: torch.Tensor, dt_bias: torch.Tensor | None, dt_softplus: bool,
                      chunk_size: int, dt_limit: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw dt (batch, L, nheads) -> processed step sizes and the increments dt*A whose within-chunk cumulative sums
    are the log decays, both (batch, nheads, n_chunks, chunk_size) fp32, zero-padded to whole chunks."""
    dt = chunk_step_sizes(step_sizes(dt, dt_bias, dt_softplus, torch.float32, (dt.shape[2],), dt_limit), chunk_size)
    return dt, dt * A.float()[:, None, None]


def _kernel_operands(x: torch.Tensor, dt_chunks: torch.Tensor, increments: torch.Tensor, B: torch.Tensor,
                     C: torch.Tensor, D: torch.Tensor | None, initial_state: torch.Tensor | None) -> tuple:
    """The layouts `ssd_forward` / `ssd_backward` take, detached: (dt, cum) fp32 contiguous (cum the within-chunk
    cumulative sums of the increments), B and C in x's dtype, D as (nheads, headdim) fp32 contiguous or None, the
    initial state fp32 contiguous or None."""
    nheads, headdim = x.shape[2], x.shape[3]
    D = None if D is None else D.detach().float().reshape(nheads, -1).expand(nheads, headdim).contiguous()
    initial_state = None if initial_state is None else initial_state.detach().float().contiguous()
    return (dt_chunks.detach().contiguous(), increments.detach().cumsum(-1).contiguous(), B.detach().to(x.dtype),
            C.detach().to(x.dtype), D, initial_state)


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
