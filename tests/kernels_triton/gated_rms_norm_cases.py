"""Random gated RMSNorm problems and their comparison with `mambaseq.norm.GatedRMSNorm` (the PyTorch path) run in
fp64, for the Triton kernel tests. Shared by the CPU interpreter runner (`gated_rms_norm_interpret_runner.py`, run in
a subprocess) and the GPU tests.
"""
from __future__ import annotations

import torch

from error_norms import norm_relative_error

from mambaseq.norm import GatedRMSNorm

# name -> (shape, group_size, x dtype, z dtype (None: no gate), options)
# options: norm_before_gate, z_padding (z is a slice of a row this much wider, as of in_proj's output)
INTERPRETER_CASES = {
    "gate-first-one-group": ((2, 5, 48), 48, torch.float32, torch.float32, {}),
    "gate-first-four-groups": ((2, 7, 64), 16, torch.float32, torch.float32, {}),
    "norm-first-groups": ((3, 4, 48), 24, torch.float32, torch.float32, {"norm_before_gate": True}),
    "no-gate": ((2, 6, 40), 20, torch.float32, None, {}),
    "group-not-power-of-two": ((2, 5, 72), 24, torch.float32, torch.float32, {}),
    "bf16-strided-z": ((2, 6, 64), 32, torch.bfloat16, torch.bfloat16, {"z_padding": 40}),
    "fp16-norm-first-strided-z": ((2, 3, 32), 32, torch.float16, torch.float16,
                                  {"norm_before_gate": True, "z_padding": 8}),
    # group 256 -> 16-row tiles; 120 rows over the interpreter's 4 backward programs: 2 tiles per program
    "several-tiles-per-program": ((2, 60, 256), 256, torch.float32, torch.float32, {}),
}
NAMES = ("out", "grad_x", "grad_z", "grad_weight")


def gated_norm_problem(shape: tuple[int, ...], x_dtype: torch.dtype, z_dtype: torch.dtype | None, *,
                       generator: torch.Generator, device: str = "cpu", z_padding: int = 0) -> dict:
    """x, z (rounded to their dtypes once; z a slice of wider rows when `z_padding`), an fp32 weight away from 1 and
    random loss weights."""
    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=generator, dtype=torch.float64).to(device)

    z = None
    if z_dtype is not None:
        z = (2 * randn(*shape[:-1], shape[-1] + z_padding)).to(z_dtype)[..., z_padding:]
    return dict(x=randn(*shape).to(x_dtype), z=z, weight=(1 + 0.5 * randn(shape[-1])).float(), eps=1e-5,
                loss_weight=randn(*shape))


def _run(problem: dict, group_size: int, norm_before_gate: bool, backend: str | None, dtype: torch.dtype | None
         ) -> dict[str, torch.Tensor]:
    """Output and gradients of `sum(out * a)` through a `GatedRMSNorm` on `backend`, inputs cast to `dtype` (None:
    as given; a strided z stays strided)."""
    def leaf(tensor: torch.Tensor | None) -> torch.Tensor | None:
        if tensor is None:
            return None
        return (tensor if dtype is None else tensor.to(dtype)).detach().requires_grad_()

    x, z = leaf(problem["x"]), leaf(problem["z"])
    weight = problem["weight"] if dtype is None else problem["weight"].to(dtype)
    norm = GatedRMSNorm(weight.shape[0], group_size, eps=problem["eps"], norm_before_gate=norm_before_gate,
                        kernel_backend=backend).to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
    out = norm(x, z)
    (out * problem["loss_weight"].to(out.dtype)).sum().backward()
    results = {"out": out, "grad_x": x.grad, "grad_weight": norm.weight.grad}
    if z is not None:
        results["grad_z"] = z.grad
    return results


def compare_with_reference(problem: dict, group_size: int, norm_before_gate: bool = False) -> dict[str, float]:
    """Relative errors of the Triton path (`GatedRMSNorm(kernel_backend="triton")`; on CPU tensors only under
    `TRITON_INTERPRET=1`, through `gated_rms_norm_triton`) against the PyTorch path in fp64; `dtypes_match` = 1.0 when
    the output and gradients have the PyTorch path's dtypes."""
    from mambaseq.kernels.triton import gated_rms_norm_triton

    def fused(x, z, weight):
        return gated_rms_norm_triton(x, z, weight, group_size, problem["eps"], norm_before_gate)

    actual = _run_fused(problem, fused)
    expected = _run(problem, group_size, norm_before_gate, None, torch.float64)
    eager = _run(problem, group_size, norm_before_gate, None, None)
    errors = {name: norm_relative_error(actual[name], expected[name]) for name in expected}
    errors["dtypes_match"] = float(actual.keys() == eager.keys()
                                   and all(actual[name].dtype == eager[name].dtype for name in eager))
    return errors


def _run_fused(problem: dict, fused) -> dict[str, torch.Tensor]:
    """`_run` for a function fused(x, z, weight) in place of the module."""
    x = problem["x"].detach().requires_grad_()
    z = None if problem["z"] is None else problem["z"].detach().requires_grad_()
    weight = problem["weight"].detach().requires_grad_()
    out = fused(x, z, weight)
    (out * problem["loss_weight"].to(out.dtype)).sum().backward()
    results = {"out": out, "grad_x": x.grad, "grad_weight": weight.grad}
    if z is not None:
        results["grad_z"] = z.grad
    return results
