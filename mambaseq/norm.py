"""Normalization layers: RMSNorm, the gated group RMSNorm of Mamba-2, and the fused-style residual add + norm."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mambaseq.precision import at_least_fp32


class RMSNorm(nn.Module):
    """`y = x / sqrt(mean(x^2) + eps) * weight`, computed in fp32 and returned in the input dtype.

    x: (..., d_model) -> (..., d_model)
    """

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_float = at_least_fp32(x)
        normed = x_float * torch.rsqrt(x_float.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * at_least_fp32(self.weight)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class GatedRMSNorm(nn.Module):
    """RMSNorm over groups of `group_size` channels, gated by `silu(z)` (Mamba-2's output norm).

    With `norm_before_gate=False` (Mamba-2's default) the gate multiplies before normalizing:
    `y = rmsnorm_groups(x * silu(z)) * weight`; otherwise `y = rmsnorm_groups(x) * weight * silu(z)`.
    x, z: (..., d_inner) -> (..., d_inner), `d_inner` a multiple of `group_size`. With `kernel_backend` "auto" or
    "triton", CUDA tensors (fp32/fp16/bf16, outside torch.compile) run one Triton kernel per direction
    (`mambaseq.kernels.triton.gated_rms_norm_triton`); the arithmetic is the same, in fp32.
    """

    def __init__(self, d_inner: int, group_size: int, eps: float = 1e-5, norm_before_gate: bool = False,
                 kernel_backend: str | None = None) -> None:
        super().__init__()
        if d_inner % group_size:
            raise ValueError(f"GatedRMSNorm: d_inner={d_inner} is not a multiple of group_size={group_size}")
        self.eps = eps
        self.group_size = group_size
        self.norm_before_gate = norm_before_gate
        self.kernel_backend = kernel_backend
        self.weight = nn.Parameter(torch.ones(d_inner))

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if _triton_norm_runs(self.kernel_backend, x, z, self.weight):
            from mambaseq.kernels.triton import gated_rms_norm_triton

            return gated_rms_norm_triton(x, z, self.weight, self.group_size, self.eps, self.norm_before_gate)
        out = at_least_fp32(x)
        if z is not None and not self.norm_before_gate:
            out = out * F.silu(at_least_fp32(z))
        groups = out.unflatten(-1, (-1, self.group_size))
        groups = groups * torch.rsqrt(groups.pow(2).mean(-1, keepdim=True) + self.eps)
        out = groups.flatten(-2) * at_least_fp32(self.weight)
        if z is not None and self.norm_before_gate:
            out = out * F.silu(at_least_fp32(z))
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return (f"{self.weight.shape[0]}, group_size={self.group_size}, eps={self.eps}, "
                f"norm_before_gate={self.norm_before_gate}")


def make_norm(d_model: int, eps: float, rms_norm: bool) -> nn.Module:
    """RMSNorm, or `nn.LayerNorm` (weight and bias) when `rms_norm` is False, as mamba-ssm's `rms_norm` flag."""
    return RMSNorm(d_model, eps=eps) if rms_norm else nn.LayerNorm(d_model, eps=eps)


FUSED_NORM_BACKENDS = ("auto", "triton")
FUSED_NORM_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def add_rms_norm(
    hidden: torch.Tensor, residual: torch.Tensor | None, norm: nn.Module, residual_in_fp32: bool,
    kernel_backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual add then norm, mamba-ssm's "Add -> Norm" block order.

    hidden: (b, L, d_model) output of the previous sublayer; residual: (b, L, d_model) stream so far, or None for the
    first layer. Returns `(norm(residual_new), residual_new)`; the residual is kept in fp32 when `residual_in_fp32`.
    With `kernel_backend` "auto" or "triton", an `RMSNorm` of CUDA tensors (fp32/fp16/bf16, outside torch.compile)
    runs as one Triton kernel per direction (`mambaseq.kernels.triton.add_rms_norm_triton`); under autocast its
    normed output then comes in the autocast dtype, which the next Linear would cast it to anyway.
    """
    if isinstance(norm, RMSNorm) and _triton_norm_runs(kernel_backend, hidden, residual, norm.weight):
        from mambaseq.kernels.triton import add_rms_norm_triton

        out_dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None
        return add_rms_norm_triton(hidden, residual, norm.weight, norm.eps, residual_in_fp32, out_dtype)
    residual = hidden if residual is None else residual + hidden
    normed = norm(residual.to(norm.weight.dtype))
    if residual_in_fp32:
        residual = at_least_fp32(residual)
    return normed, residual


def _triton_norm_runs(kernel_backend: str | None, first: torch.Tensor, *others: torch.Tensor | None) -> bool:
    """Whether a norm's Triton kernels take these tensors (`first` decides the device; None stands for an absent
    optional input): a Triton-capable backend, CUDA, outside torch.compile, every dtype supported."""
    tensors = [first, *(t for t in others if t is not None)]
    return (kernel_backend in FUSED_NORM_BACKENDS and first.is_cuda and not torch.compiler.is_compiling()
            and all(t.dtype in FUSED_NORM_DTYPES for t in tensors))
