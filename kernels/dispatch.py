"""Backend selection for the scans and the causal conv: PyTorch reference / chunked, Triton, or the CUDA kernels of
mamba-ssm and causal-conv1d. The optional packages are imported lazily, once; the outcome is cached."""
from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from functools import lru_cache

import torch

from .causal_conv1d import causal_conv1d as causal_conv1d_torch
from .selective_scan_chunked import selective_scan_chunked
from .selective_scan_reference import selective_scan_reference
from .selective_scan_stateful import selective_scan_from_zero_state_kernel
from .ssd_chunked import ssd_chunked
from .ssd_reference import ssd_reference

BACKENDS = ("auto", "reference", "chunked", "triton", "cuda")
_CUDA_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_CUDA_CONV_MAX_WIDTH = 4
# batch * d_inner from which "auto" runs a Mamba-1 scan that needs no gradient on the Triton kernels even when
# mamba-ssm is installed: its forward then beats mamba-ssm's (d4096 L2048, H100: b8 0.90 ms vs 1.20, b64 6.1 vs 9.2;
# loses at b1, 0.33 vs 0.23; BENCHMARKS.md)
TRITON_INFERENCE_MIN_CHANNELS = 32768


@lru_cache(maxsize=None)
def _optional(module: str, name: str) -> tuple[Callable | None, str]:
    """(function, "") if `module.name` imports, else (None, why not). Cached: each import is tried once."""
    try:
        return getattr(importlib.import_module(module), name), ""
    except Exception as error:  # noqa: BLE001 - a broken optional install (missing .so, CUDA mismatch) is "absent"
        return None, f"{type(error).__name__}: {error}"


def _require(module: str, name: str, backend: str) -> Callable:
    function, why = _optional(module, name)
    if function is None:
        raise RuntimeError(f"kernel backend={backend!r} needs {module}.{name}, which cannot be imported ({why})")
    return function


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown kernel backend {backend!r}; expected one of {BACKENDS}")


def _resolve(backend: str, tensor: torch.Tensor, cuda: tuple[str, str], triton_name: str | None,
             cuda_unsupported: str) -> str:
    """Pick the concrete backend; `cuda_unsupported` says why the CUDA kernel cannot take the call ("" if it can)."""
    _check_backend(backend)
    if backend == "cuda" and cuda_unsupported:
        raise ValueError(f"kernel backend='cuda' cannot run this call: {cuda_unsupported}")
    if backend != "auto":
        return backend
    if tensor.is_cuda and not cuda_unsupported and _optional(*cuda)[0] is not None:
        return "cuda"
    if tensor.is_cuda and triton_name is not None and _optional("mambaseq.kernels.triton", triton_name)[0] is not None:
        return "triton"
    return "chunked"


def _cuda_dtype_problem(tensor: torch.Tensor) -> str:
    return "" if tensor.dtype in _CUDA_DTYPES else f"dtype {tensor.dtype} (supported: {_CUDA_DTYPES})"


def _tracks_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _wide_inference_scan(u: torch.Tensor, tracks_grad: bool) -> bool:
    """Whether "auto" should prefer the Triton scan: a CUDA call with no gradient to track and batch * d_inner of
    at least TRITON_INFERENCE_MIN_CHANNELS (u: (batch, d_inner, L))."""
    return (u.is_cuda and not tracks_grad and u.shape[0] * u.shape[1] >= TRITON_INFERENCE_MIN_CHANNELS
            and _optional("mambaseq.kernels.triton", "selective_scan_triton")[0] is not None)


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
    *,
    chunk_size: int = 64,
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Mamba-1 selective scan on the chosen backend; contract of `selective_scan_reference`. "auto" takes mamba-ssm's
    CUDA kernel when installed, except for wide calls that need no gradient (`TRITON_INFERENCE_MIN_CHANNELS`).
    mamba-ssm's `selective_scan_fn` has no initial state and drops the final state's gradient; calls that need
    either run it through `selective_scan_from_zero_state_kernel` (fp32, `2 * d_state` extra positions)."""
    tracks_grad = _tracks_grad(u, delta, A, B, C, D, z, delta_bias, initial_state)
    state_positions = initial_state is not None or (return_final_state and tracks_grad)
    cuda_unsupported = _cuda_dtype_problem(u)
    if state_positions and B.dim() != 3:
        cuda_unsupported = "grouped B/C with an initial state or a differentiable final state"
    cuda = ("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn")
    if backend == "auto" and _wide_inference_scan(u, tracks_grad):
        backend = "triton"
    chosen = _resolve(backend, u, cuda, "selective_scan_triton", cuda_unsupported)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if chosen == "reference":
        return selective_scan_reference(*args, initial_state, return_final_state)
    if chosen == "chunked":
        return selective_scan_chunked(*args, initial_state, return_final_state, chunk_size=chunk_size)
    if chosen == "triton":
        return _require("mambaseq.kernels.triton", "selective_scan_triton", chosen)(
            *args, initial_state, return_final_state)
    scan = _require(*cuda, chosen)
    if state_positions:
        y, final_state = selective_scan_from_zero_state_kernel(scan, *args, initial_state)
        return (y, final_state) if return_final_state else y
    return scan(u, delta, A.float(), B, C, None if D is None else D.float(), z,
                None if delta_bias is None else delta_bias.float(), delta_softplus,
                return_last_state=return_final_state)


def ssd(
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
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Mamba-2 SSD on the chosen backend; contract of `ssd_reference` (+ chunk_size for the chunked kernels)."""
    cuda = ("mamba_ssm.ops.triton.ssd_combined", "mamba_chunk_scan_combined")
    chosen = _resolve(backend, x, cuda, "ssd_triton", _cuda_dtype_problem(x))
    args = (x, dt, A, B, C, D, z, dt_bias, dt_softplus, initial_state, return_final_state)
    if chosen == "reference":
        return ssd_reference(*args, dt_limit=dt_limit)
    if chosen == "chunked":
        return ssd_chunked(*args, chunk_size=chunk_size, dt_limit=dt_limit)
    if chosen == "triton":
        return _require("mambaseq.kernels.triton", "ssd_triton", chosen)(
            *args, chunk_size=chunk_size, dt_limit=dt_limit)
    combined = _require(*cuda, chosen)
    return combined(x, dt, A, B, C, chunk_size, D=D, z=z, dt_bias=dt_bias, initial_states=initial_state,
                    dt_softplus=dt_softplus, dt_limit=dt_limit, return_final_states=return_final_state)


def _last_inputs(x: torch.Tensor, count: int) -> torch.Tensor:
    """The last `count` time steps of x (b, channels, L), zero-padded on the left when L < count: the conv state
    after a pass from zero states."""
    return torch.nn.functional.pad(x[..., -count:], (max(count - x.shape[-1], 0), 0))


def causal_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
    *,
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Depthwise causal conv on the chosen backend; contract of `causal_conv1d.causal_conv1d`.
    "cuda" is the causal-conv1d package (widths 2-4); "triton" is `causal_conv1d_triton` (auto picks it on CUDA
    when causal-conv1d cannot take the call, for fp32/fp16/bf16 outside torch.compile); "reference" and "chunked"
    run the PyTorch implementation, which is also what Inductor fuses under torch.compile."""
    width = weight.shape[-1]
    cuda_unsupported = (_cuda_dtype_problem(x) or
                        ("" if 2 <= width <= _CUDA_CONV_MAX_WIDTH else f"width {width} (supported: 2-4)") or
                        (f"{x.shape[1]} channels with an initial state (the channel-last kernel needs a multiple "
                         "of 8)" if initial_state is not None and x.shape[1] % 8 else ""))
    cuda = ("causal_conv1d", "causal_conv1d_fn")
    chosen = _resolve(backend, x, cuda, "causal_conv1d_triton", cuda_unsupported)
    if chosen == "triton" and backend == "auto" and (torch.compiler.is_compiling() or _cuda_dtype_problem(x)):
        chosen = "chunked"
    if chosen == "triton":
        return _require("mambaseq.kernels.triton", "causal_conv1d_triton", chosen)(
            x, weight, bias, activation, initial_state, return_final_state)
    if chosen != "cuda":
        return causal_conv1d_torch(x, weight, bias, activation, initial_state, return_final_state)
    conv = _require(*cuda, chosen)
    if initial_state is None and return_final_state:
        # from zero states the final state is just the last width - 1 inputs: no channel-last copy for the kernel
        out = conv(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype), activation=activation)
        return out, _last_inputs(x, width - 1)
    if initial_state is not None:
        # causal-conv1d reads/writes states only for channel-last x: (batch, L, channels) memory, same shape.
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
        initial_state = initial_state.to(x.dtype).transpose(1, 2).contiguous().transpose(1, 2)
    return conv(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype),
                initial_states=initial_state, return_final_states=return_final_state, activation=activation)
