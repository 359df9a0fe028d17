"""Backend selection for the single decoding steps: the PyTorch steps of `state_update.py` / `causal_conv1d.py`,
mamba-ssm's Triton `selective_state_update` and causal-conv1d's CUDA `causal_conv1d_update`, or our Triton state
update and conv step (`triton/state_update.py`, `triton/conv_update.py`). A kernel is one launch where the PyTorch
step is a handful to a dozen small ones, which is what a decoding step at batch 1 spends its time on.

Backends: "cuda" (the mamba-ssm / causal-conv1d kernel, or an error), "triton" (our Triton kernels on CUDA tensors,
or an error), "auto" (on CUDA: "cuda" when importable and the call is supported, else "triton"; PyTorch on CPU and
inside `torch.compile`, where inductor fuses the PyTorch step and an external kernel would break the graph);
"reference" and "chunked" run PyTorch.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch

from .causal_conv1d import causal_conv1d_update as causal_conv1d_update_torch
from .dispatch import _check_backend, _optional, _require
from .mamba1_step import add_norm_in_proj_conv as add_norm_in_proj_conv_torch
from .mamba1_step import dt_and_A
from .mamba1_step import mamba1_state_step_out_proj as mamba1_state_step_out_proj_torch
from .state_update import selective_state_update as selective_state_update_torch
from .state_update import ssd_state_update as ssd_state_update_torch

_CUDA_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_TRITON_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
_STATE_UPDATE = ("mamba_ssm.ops.triton.selective_state_update", "selective_state_update")
_CONV_UPDATE = ("causal_conv1d", "causal_conv1d_update")
_TRITON_MODULE = "mambaseq.kernels.triton.state_update"  # imported lazily: Triton is optional
_TRITON_CONV_MODULE = "mambaseq.kernels.triton.conv_update"
_TRITON_FRONT_MODULE = "mambaseq.kernels.triton.norm_in_proj_conv"
_TRITON_BACK_MODULE = "mambaseq.kernels.triton.state_step_out_proj"


def _use_cuda(backend: str, kernel: tuple[str, str], tensor: torch.Tensor, unsupported: str) -> bool:
    """Whether to run the CUDA kernel; backend="cuda" raises when it cannot take the call."""
    _check_backend(backend)
    if backend == "cuda":
        if not tensor.is_cuda:
            unsupported = unsupported or f"tensors on {tensor.device}, expected CUDA"
        if unsupported:
            raise ValueError(f"kernel backend='cuda' cannot run this decoding step: {unsupported}")
        return True
    if torch.compiler.is_compiling():
        return False
    return backend == "auto" and tensor.is_cuda and not unsupported and _optional(*kernel)[0] is not None


def _triton_step(name: str, backend: str, x: torch.Tensor, state: torch.Tensor, module: str = _TRITON_MODULE,
                 unsupported: str = "") -> Callable | None:
    """Our Triton step kernel `module.name` if it should run (after `_use_cuda` said no), else None;
    backend="triton" raises when it cannot (`unsupported`: why this call cannot, beyond device and dtypes)."""
    dtypes_ok = x.dtype in _CUDA_DTYPES and state.dtype in _CUDA_DTYPES
    if backend == "triton":
        if not (x.is_cuda or _TRITON_INTERPRET) or not dtypes_ok or unsupported:
            raise ValueError(f"kernel backend='triton' cannot run this decoding step: tensors on {x.device} with "
                             f"dtypes x={x.dtype}, state={state.dtype} (expected CUDA, one of {_CUDA_DTYPES})"
                             + (f"; {unsupported}" if unsupported else ""))
        return _require(module, name, backend)
    if backend == "auto" and x.is_cuda and dtypes_ok and not unsupported and not torch.compiler.is_compiling():
        return _optional(module, name)[0]
    return None


def _state_update_problem(state: torch.Tensor, x: torch.Tensor, dt_bias: torch.Tensor | None) -> str:
    if x.dtype not in _CUDA_DTYPES or state.dtype not in _CUDA_DTYPES:
        return f"dtypes x={x.dtype}, state={state.dtype} (supported: {_CUDA_DTYPES})"
    if dt_bias is None:
        return "mamba_ssm selective_state_update needs dt_bias"
    return ""


def selective_state_update(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """One Mamba-1 step on the chosen backend; contract of `state_update.selective_state_update` (state updated in
    place, y: (batch, d_inner) in x's dtype). The CUDA kernel takes B, C: (batch, d_state) only."""
    unsupported = _state_update_problem(state, x, dt_bias) or ("" if B.dim() == 2 else "grouped B/C")
    if not _use_cuda(backend, _STATE_UPDATE, x, unsupported):
        step = _triton_step("selective_state_update_triton", backend, x, state) or selective_state_update_torch
        return step(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    kernel = _require(*_STATE_UPDATE, "cuda")
    return kernel(state, x, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, dt_softplus=dt_softplus)


def ssd_state_update(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, math.inf),
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """One SSD step on the chosen backend; contract of `state_update.ssd_state_update`. The CUDA kernel gets the
    per-head dt, A, dt_bias (and D) broadcast over `headdim` as stride-0 views, its "tied head dim" fast path."""
    unsupported = _state_update_problem(state, x, dt_bias)
    if dt_limit[0] != 0.0 or not math.isinf(dt_limit[1]):
        unsupported = unsupported or f"dt_limit={dt_limit}"
    if not _use_cuda(backend, _STATE_UPDATE, x, unsupported):
        step = _triton_step("ssd_state_update_triton", backend, x, state) or ssd_state_update_torch
        return step(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, dt_limit)
    kernel = _require(*_STATE_UPDATE, "cuda")
    _, nheads, headdim, d_state = state.shape
    if D is not None and D.dim() == 1:
        D = D[:, None].expand(nheads, headdim)
    return kernel(state, x, dt[..., None].expand(*dt.shape, headdim), A[:, None, None].expand(nheads, headdim, d_state),
                  B, C, D=D, z=z, dt_bias=dt_bias[:, None].expand(nheads, headdim), dt_softplus=dt_softplus)


def causal_conv1d_update(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """One causal-conv step on the chosen backend; contract of `causal_conv1d.causal_conv1d_update` (conv_state
    shifted in place). The CUDA kernel needs conv_state in x's dtype, bias in the weight's, and width 2-4."""
    width = weight.shape[-1]
    unsupported = ""
    if x.dtype not in _CUDA_DTYPES or conv_state.dtype != x.dtype:
        unsupported = f"dtypes x={x.dtype}, conv_state={conv_state.dtype} (expected equal, one of {_CUDA_DTYPES})"
    elif bias is not None and bias.dtype != weight.dtype:
        unsupported = f"bias dtype {bias.dtype} != weight dtype {weight.dtype}"
    elif not 2 <= width <= 4:
        unsupported = f"width {width} (supported: 2-4)"
    if not _use_cuda(backend, _CONV_UPDATE, x, unsupported):
        step = _triton_step("causal_conv1d_update_triton", backend, x, conv_state, _TRITON_CONV_MODULE,
                            f"width {width} (the Triton step needs >= 2)" if width < 2 else "")
        return (step or causal_conv1d_update_torch)(x, conv_state, weight, bias, activation)
    kernel = _require(*_CONV_UPDATE, "cuda")
    return kernel(x, conv_state, weight, bias, activation)


def mamba1_state_step(
    state: torch.Tensor,
    x: torch.Tensor,
    dt_low: torch.Tensor,
    dt_proj_weight: torch.Tensor,
    A_log: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """One Mamba-1 step from the mixer's parameters; contract of `mamba1_step.mamba1_state_step`. "auto" on CUDA and
    "triton": our kernel with the dt projection and `A = -exp(A_log)` inside (one launch for four); otherwise dt and
    A in PyTorch, then `selective_state_update` on the same backend (mamba-ssm's kernel for "cuda")."""
    step = None if backend == "cuda" else _triton_step("mamba1_state_step_triton", backend, x, state)
    if step is not None:
        return step(state, x, dt_low, dt_proj_weight, A_log, B, C, D, z, dt_bias)
    dt, A = dt_and_A(dt_low, dt_proj_weight, A_log)
    return selective_state_update(state, x, dt, A, B, C, D, z, dt_bias, True, backend=backend)


def add_norm_in_proj_conv(
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
    *,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The front of a Mamba-1 step (residual add + RMSNorm + in_proj + SiLU conv step, optionally summing x_proj);
    contract of `mamba1_step.add_norm_in_proj_conv`. "auto" on CUDA and "triton": one Triton kernel; otherwise
    (CPU, inside torch.compile, "cuda", which has no such kernel) the PyTorch twin."""
    _check_backend(backend)
    kernel = _triton_step("add_norm_in_proj_conv_triton", backend, hidden, conv_state, _TRITON_FRONT_MODULE)
    return (kernel or add_norm_in_proj_conv_torch)(hidden, residual, norm_weight, eps, residual_dtype, proj_weight,
                                                   proj_bias, conv_state, conv_weight, conv_bias, x_proj_weight,
                                                   x_proj_sums)


def mamba1_state_step_out_proj(
    state: torch.Tensor,
    xz: torch.Tensor,
    x_proj_sums: torch.Tensor,
    arrivals: torch.Tensor,
    dt_proj_weight: torch.Tensor,
    dt_bias: torch.Tensor | None,
    A_log: torch.Tensor,
    D: torch.Tensor | None,
    out_proj_weight: torch.Tensor,
    out_proj_bias: torch.Tensor | None,
    residual: torch.Tensor,
    *,
    backend: str = "auto",
) -> None:
    """The back of a Mamba-1 step (state step from the summed x_proj, out_proj added into the fp32 residual stream);
    contract of `mamba1_step.mamba1_state_step_out_proj`. "auto" on CUDA and "triton": one Triton kernel (fp32
    atomics: the last bits of the sum vary from run to run); otherwise the PyTorch twin."""
    _check_backend(backend)
    kernel = _triton_step("mamba1_state_step_out_proj_triton", backend, xz, state, _TRITON_BACK_MODULE)
    (kernel or mamba1_state_step_out_proj_torch)(state, xz, x_proj_sums, arrivals, dt_proj_weight, dt_bias, A_log, D,
                                                 out_proj_weight, out_proj_bias, residual)
