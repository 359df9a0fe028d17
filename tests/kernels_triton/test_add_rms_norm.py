"""Fused residual add + RMSNorm Triton kernels (`add_rms_norm_triton`) against `mambaseq.norm.add_rms_norm` in fp64:
normed output, new residual and the gradients of hidden, residual and weight; plus the wiring (a `Block` on CUDA
with kernel_backend auto/triton runs the kernel, the PyTorch path elsewhere).

Errors are relative errors of the norm. Tolerances: all-fp32 cases 1e-5 in the CPU interpreter (observed <= 1.2e-7)
and 1e-4 on CUDA (approximate sqrt, other summation order over thousands of rows); cases with bf16 tensors 1e-2
(one bf16 rounding is ~4e-3; observed <= 3.6e-3 in the interpreter).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from error_norms import assert_errors_within
from add_rms_norm_cases import INTERPRETER_CASES, NAMES, compare_with_reference, norm_problem
from interpreted import run_interpreted
from mambaseq.config import BackboneConfig
from mambaseq.kernels.triton.add_rms_norm import AddRMSNormFunction, add_rms_norm_triton

HERE = Path(__file__).parent
RUNNER = HERE / "add_rms_norm_interpret_runner.py"
FP32_TOLERANCE = {"cpu": 1e-5, "cuda": 1e-4}
BF16_TOLERANCE = 1e-2


def _tolerance(device: str, *dtypes: torch.dtype | None) -> float:
    return FP32_TOLERANCE[device] if all(d in (None, torch.float32) for d in dtypes) else BF16_TOLERANCE


def _check(errors: dict[str, float], has_residual: bool, tolerance: float) -> None:
    errors = dict(errors)
    assert errors.pop("dtypes_match") == 1.0, "output / gradient dtypes differ from the PyTorch path's"
    assert errors.keys() == set(NAMES) - (set() if has_residual else {"grad_residual"})
    assert_errors_within(errors, tolerance)


@pytest.fixture(scope="module")
def interpreter_errors() -> dict[str, dict[str, float]]:
    """Errors of every interpreter case, from one subprocess (one start of torch and Triton)."""
    return run_interpreted(RUNNER, INTERPRETER_CASES)


@pytest.mark.parametrize("case", list(INTERPRETER_CASES))
def test_interpreted_kernels_match_fp64_add_rms_norm(interpreter_errors, case):
    _, hidden_dtype, residual_dtype, _, options = INTERPRETER_CASES[case]
    tolerance = _tolerance("cpu", hidden_dtype, residual_dtype, options.get("out_dtype"))
    _check(interpreter_errors[case], residual_dtype is not None, tolerance)


def test_bad_arguments_are_named():
    hidden = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match="hidden has dtype torch.float64"):
        add_rms_norm_triton(hidden.double(), None, torch.ones(8), 1e-5, True)
    with pytest.raises(ValueError, match=r"residual shape \(2, 3, 4\) != hidden shape \(2, 3, 8\)"):
        add_rms_norm_triton(hidden, torch.randn(2, 3, 4), torch.ones(8), 1e-5, True)
    with pytest.raises(ValueError, match=r"weight shape \(7,\), expected \(8,\)"):
        add_rms_norm_triton(hidden, None, torch.ones(7), 1e-5, True)


def _count_fused_calls(monkeypatch) -> list[int]:
    calls = []
    original_apply = AddRMSNormFunction.apply
    monkeypatch.setattr(AddRMSNormFunction, "apply", lambda *args: calls.append(1) or original_apply(*args))
    return calls


def _block_outputs(backend: str, device: str, autocast: bool, seed: int):
    """Outputs and gradients of a two-block stack (Mamba-1 + MLP) on `backend`, same weights for every backend."""
    from mambaseq.block import Block

    torch.manual_seed(seed)
    config = BackboneConfig(d_model=64, n_layer=2, d_intermediate=96, kernel_backend=backend)
    blocks = torch.nn.ModuleList(Block(config, index) for index in range(2)).to(device)
    for parameter in blocks.parameters():  # norm weights away from their init of ones
        parameter.data.add_(0.1 * torch.randn_like(parameter))
    hidden = torch.randn(2, 40, 64, device=device, requires_grad=True)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
        out, residual = hidden, None
        for block in blocks:
            out, residual = block(out, residual)
    (out.float().square().sum() + residual.float().sum()).backward()
    return [out, residual, hidden.grad, *(p.grad for p in blocks.parameters())]


def test_block_on_cpu_keeps_the_pytorch_path(monkeypatch, seed):
    calls = _count_fused_calls(monkeypatch)
    reference = _block_outputs("chunked", "cpu", False, seed)
    fused_backend = _block_outputs("auto", "cpu", False, seed)  # ("triton" would send the CPU scan to Triton)
    assert not calls
    for got, want in zip(fused_backend, reference):
        assert torch.equal(got, want)


@pytest.mark.gpu
@pytest.mark.parametrize("shape, hidden_dtype, residual_dtype, residual_in_fp32, out_dtype", [
    pytest.param((8, 2048, 768), torch.bfloat16, torch.float32, True, torch.bfloat16, id="130M-training-layer"),
    pytest.param((8, 2048, 768), torch.float32, None, True, None, id="130M-first-layer"),
    pytest.param((2, 1000, 2560), torch.bfloat16, torch.bfloat16, False, None, id="bf16-stream-d2560"),
    pytest.param((3, 333, 1000), torch.float32, torch.float32, False, None, id="fp32-odd-d"),
    pytest.param((4, 1, 2048), torch.float16, torch.float32, True, torch.float16, id="decoding-step-fp16"),
])
def test_cuda_kernels_match_fp64_add_rms_norm(seed, shape, hidden_dtype, residual_dtype, residual_in_fp32, out_dtype):
    problem = norm_problem(shape, hidden_dtype, residual_dtype, generator=torch.Generator().manual_seed(seed),
                           device="cuda")
    errors = compare_with_reference(problem, add_rms_norm_triton, residual_in_fp32, out_dtype)
    _check(errors, residual_dtype is not None, _tolerance("cuda", hidden_dtype, residual_dtype, out_dtype))


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["auto", "triton"])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_block_on_cuda_uses_the_fused_kernel_and_matches_pytorch(monkeypatch, seed, backend, autocast):
    """Whole blocks (scan, conv, MLP included) on `backend` vs the PyTorch norm ("chunked"): the fused kernel runs
    for every norm (2 per block), and outputs and gradients agree (fp32 1e-3; bf16 autocast 5e-2: the mixers' bf16
    products and kernels round in other places; a wiring mistake is off by O(1))."""
    calls = _count_fused_calls(monkeypatch)
    fused = _block_outputs(backend, "cuda", autocast, seed)
    assert len(calls) == 4
    calls.clear()
    reference = _block_outputs("chunked", "cuda", autocast, seed)
    assert not calls
    tolerance = 5e-2 if autocast else 1e-3
    for index, (got, want) in enumerate(zip(fused, reference)):
        error = ((got.double() - want.double()).norm() / want.double().norm()).item()
        assert error < tolerance, f"tensor {index}: relative error {error:.2e}"
