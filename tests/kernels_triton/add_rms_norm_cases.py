"""Random residual-add + RMSNorm problems and their comparison with `mambaseq.norm.add_rms_norm` run in fp64, for the
Triton kernel tests. Shared by the CPU interpreter runner (`add_rms_norm_interpret_runner.py`, run in a subprocess)
and the GPU tests.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from error_norms import norm_relative_error

from mambaseq.norm import RMSNorm, add_rms_norm

# name -> (shape, hidden dtype, residual dtype (None: first layer), residual_in_fp32, options)
# options: out_dtype (normed dtype asked of the kernel), loss_on_residual (False: the new residual gets no gradient).
INTERPRETER_CASES = {
    "fp32-stream": ((2, 5, 48), torch.float32, torch.float32, True, {}),
    "first-layer": ((3, 4, 32), torch.float32, None, True, {}),
    "first-layer-bf16-stream": ((2, 3, 40), torch.bfloat16, None, False, {}),
    "bf16-hidden-fp32-stream": ((2, 6, 64), torch.bfloat16, torch.float32, True, {}),
    "bf16-stream-rounded-sum": ((2, 6, 64), torch.bfloat16, torch.bfloat16, False, {}),
    # d 256 -> 16-row tiles; 120 rows over the interpreter's 4 backward programs: 2 tiles per program
    "several-tiles-per-program": ((2, 60, 256), torch.float32, torch.float32, False, {}),
    "normed-only-loss": ((2, 7, 24), torch.float32, torch.float32, True, {"loss_on_residual": False}),
    "autocast-out-dtype": ((2, 5, 64), torch.bfloat16, torch.float32, True, {"out_dtype": torch.bfloat16}),
}
NAMES = ("normed", "residual_out", "grad_hidden", "grad_residual", "grad_weight")


def norm_problem(shape: tuple[int, ...], hidden_dtype: torch.dtype, residual_dtype: torch.dtype | None, *,
                 generator: torch.Generator, device: str = "cpu") -> dict:
    """Inputs (rounded to their dtypes once, so the fp64 reference sees the same values), an fp32 weight away from 1,
    and random loss weights for the two outputs."""
    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=generator, dtype=torch.float64).to(device)

    return dict(
        hidden=randn(*shape).to(hidden_dtype),
        residual=None if residual_dtype is None else randn(*shape).to(residual_dtype),
        weight=(1 + 0.5 * randn(shape[-1])).float(), eps=1e-5,
        normed_weight=randn(*shape), residual_weight=randn(*shape),
    )


def _run(problem: dict, function: Callable, residual_in_fp32: bool, dtype: torch.dtype | None,
         loss_on_residual: bool) -> dict[str, torch.Tensor]:
    """Outputs and gradients of `sum(normed * a) (+ sum(residual_new * b))` through `function(hidden, residual,
    norm, residual_in_fp32)`, inputs cast to `dtype` (None: as given)."""
    def leaf(tensor: torch.Tensor | None) -> torch.Tensor | None:
        if tensor is None:
            return None
        return (tensor if dtype is None else tensor.to(dtype)).detach().requires_grad_()

    hidden, residual = leaf(problem["hidden"]), leaf(problem["residual"])
    weight = problem["weight"] if dtype is None else problem["weight"].to(dtype)
    norm = RMSNorm(weight.shape[0], eps=problem["eps"]).to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
    normed, residual_out = function(hidden, residual, norm, residual_in_fp32)
    loss = (normed * problem["normed_weight"].to(normed.dtype)).sum()
    if loss_on_residual:
        loss = loss + (residual_out * problem["residual_weight"].to(residual_out.dtype)).sum()
    loss.backward()
    results = {"normed": normed, "residual_out": residual_out, "grad_hidden": hidden.grad,
               "grad_weight": norm.weight.grad}
    if residual is not None:
        results["grad_residual"] = residual.grad
    return results


def compare_with_reference(problem: dict, fused: Callable, residual_in_fp32: bool, out_dtype: torch.dtype | None = None,
                           loss_on_residual: bool = True) -> dict[str, float]:
    """Relative errors of `fused(hidden, residual, weight, eps, residual_in_fp32, out_dtype)` against
    `mambaseq.norm.add_rms_norm` in fp64 on the same values; `dtypes_match` = 1.0 when the fused outputs and
    gradients have the dtypes of the PyTorch path run on the inputs as given (normed: `out_dtype` when asked)."""
    def fused_call(hidden, residual, norm, in_fp32):
        return fused(hidden, residual, norm.weight, norm.eps, in_fp32, out_dtype)

    actual = _run(problem, fused_call, residual_in_fp32, None, loss_on_residual)
    expected = _run(problem, add_rms_norm, residual_in_fp32, torch.float64, loss_on_residual)
    eager = _run(problem, add_rms_norm, residual_in_fp32, None, loss_on_residual)
    errors = {name: norm_relative_error(actual[name], expected[name]) for name in expected}
    wanted = {name: tensor.dtype for name, tensor in eager.items()}
    if out_dtype is not None:
        wanted["normed"] = out_dtype
    errors["dtypes_match"] = float(all(actual[name].dtype == dtype for name, dtype in wanted.items())
                                   and actual.keys() == wanted.keys())
    return errors
