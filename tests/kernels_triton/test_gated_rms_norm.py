"""Mamba-2's gated RMSNorm Triton kernels (`gated_rms_norm_triton`) against `mambaseq.norm.GatedRMSNorm`'s PyTorch path
in fp64: output and the gradients of x, z and weight, gate first or norm first, one or several groups, strided z;
plus the wiring (a Mamba-2 mixer on CUDA with kernel_backend auto/triton runs the kernel, the PyTorch path elsewhere).

Errors are relative errors of the norm. Tolerances: fp32 cases 1e-5 in the CPU interpreter (observed <= 1.3e-7) and
1e-4 on CUDA; cases with 16-bit tensors 1e-2 (one bf16 rounding is ~4e-3; observed <= 4.2e-3 in the interpreter).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from error_norms import assert_errors_within
from gated_rms_norm_cases import INTERPRETER_CASES, NAMES, compare_with_reference, gated_norm_problem
from interpreted import run_interpreted, run_tiny_bench
from mambaseq.config import Mamba2Config
from mambaseq.kernels.triton import gated_rms_norm_triton
from mambaseq.kernels.triton.gated_rms_norm import GatedRMSNormFunction

HERE = Path(__file__).parent
RUNNER = HERE / "gated_rms_norm_interpret_runner.py"
BENCH = HERE.parents[1] / "scripts" / "bench_norm.py"
FP32_TOLERANCE = {"cpu": 1e-5, "cuda": 1e-4}
LOW_PRECISION_TOLERANCE = 1e-2


def _check(errors: dict[str, float], has_gate: bool, tolerance: float) -> None:
    errors = dict(errors)
    assert errors.pop("dtypes_match") == 1.0, "output / gradient dtypes differ from the PyTorch path's"
    assert errors.keys() == set(NAMES) - (set() if has_gate else {"grad_z"})
    assert_errors_within(errors, tolerance)


@pytest.fixture(scope="module")
def interpreter_errors() -> dict[str, dict[str, float]]:
    """Errors of every interpreter case, from one subprocess (one start of torch and Triton)."""
    return run_interpreted(RUNNER, INTERPRETER_CASES)


@pytest.mark.parametrize("case", list(INTERPRETER_CASES))
def test_interpreted_kernels_match_fp64_gated_rms_norm(interpreter_errors, case):
    _, _, x_dtype, z_dtype, _ = INTERPRETER_CASES[case]
    fp32 = x_dtype == torch.float32 and z_dtype in (None, torch.float32)
    _check(interpreter_errors[case], z_dtype is not None, FP32_TOLERANCE["cpu"] if fp32 else LOW_PRECISION_TOLERANCE)


def test_bad_arguments_are_named():
    x = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match="x has dtype torch.float64"):
        gated_rms_norm_triton(x.double(), None, torch.ones(8), 4, 1e-5)
    with pytest.raises(ValueError, match=r"z shape \(2, 3, 4\) != x shape \(2, 3, 8\)"):
        gated_rms_norm_triton(x, torch.randn(2, 3, 4), torch.ones(8), 4, 1e-5)
    with pytest.raises(ValueError, match=r"weight shape \(7,\), expected \(8,\)"):
        gated_rms_norm_triton(x, None, torch.ones(7), 4, 1e-5)
    with pytest.raises(ValueError, match="group_size=3 must divide d=8"):
        gated_rms_norm_triton(x, None, torch.ones(8), 3, 1e-5)


def test_bench_tiny_compares_the_kernel_with_pytorch_on_cpu():
    """scripts/bench_norm.py --tiny (interpreter): a row per implementation, the same output up to fp32 rounding."""
    stdout = run_tiny_bench(BENCH)
    rows = {line.split("  ")[1]: line.split("  ") for line in stdout.splitlines() if line.startswith("2x8x64x32")}
    assert {"ours: gated_rms_norm_triton", "ours: GatedRMSNorm, PyTorch (fp32)"} <= rows.keys(), stdout
    assert all(float(row[-1]) < 1e-5 for row in rows.values()), stdout


def _count_fused_calls(monkeypatch) -> list[int]:
    calls = []
    original_apply = GatedRMSNormFunction.apply
    monkeypatch.setattr(GatedRMSNormFunction, "apply", lambda *args: calls.append(1) or original_apply(*args))
    return calls


def _mixer_outputs(backend: str, device: str, seed: int) -> list[torch.Tensor]:
    """Output and gradients of a small Mamba-2 mixer (2 groups) on `backend`, same weights for every backend."""
    from mambaseq.mixers.mamba2 import Mamba2Mixer

    torch.manual_seed(seed)
    mixer = Mamba2Mixer(64, Mamba2Config(d_state=16, headdim=16, ngroups=2, chunk_size=16), kernel_backend=backend)
    mixer = mixer.to(device)
    with torch.no_grad():
        mixer.norm.weight.add_(0.1 * torch.randn_like(mixer.norm.weight))
    hidden = torch.randn(2, 40, 64, device=device, requires_grad=True)
    out = mixer(hidden)
    out.square().sum().backward()
    return [out, hidden.grad, *(p.grad for p in mixer.parameters())]


def test_mixer_on_cpu_keeps_the_pytorch_path(monkeypatch, seed):
    calls = _count_fused_calls(monkeypatch)
    reference = _mixer_outputs("chunked", "cpu", seed)
    auto = _mixer_outputs("auto", "cpu", seed)
    assert not calls
    for got, want in zip(auto, reference):
        assert torch.equal(got, want)


@pytest.mark.gpu
@pytest.mark.parametrize("shape, group_size, dtype, options", [
    pytest.param((8, 2048, 1536), 1536, torch.bfloat16, {"z_padding": 1536 + 256 + 24}, id="130M-mamba2-layer"),
    pytest.param((2, 1000, 2048), 256, torch.float32, {}, id="fp32-8-groups"),
    pytest.param((3, 333, 1000), 200, torch.bfloat16, {"norm_before_gate": True}, id="norm-first-odd-groups"),
    pytest.param((4, 1, 5120), 5120, torch.float16, {}, id="decoding-step-fp16"),
])
def test_cuda_kernels_match_fp64_gated_rms_norm(seed, shape, group_size, dtype, options):
    problem = gated_norm_problem(shape, dtype, dtype, generator=torch.Generator().manual_seed(seed), device="cuda",
                                 z_padding=options.get("z_padding", 0))
    errors = compare_with_reference(problem, group_size, options.get("norm_before_gate", False))
    _check(errors, True, FP32_TOLERANCE["cuda"] if dtype == torch.float32 else LOW_PRECISION_TOLERANCE)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["auto", "triton"])
def test_mixer_on_cuda_uses_the_fused_kernel_and_matches_pytorch(monkeypatch, seed, backend):
    """A Mamba-2 mixer on `backend` vs the PyTorch norm ("chunked"): the fused kernel runs once, and outputs and
    gradients agree within 1e-3 (fp32; the SSD and conv kernels differ too)."""
    calls = _count_fused_calls(monkeypatch)
    fused = _mixer_outputs(backend, "cuda", seed)
    assert len(calls) == 1
    calls.clear()
    reference = _mixer_outputs("chunked", "cuda", seed)
    assert not calls
    for index, (got, want) in enumerate(zip(fused, reference)):
        error = ((got.double() - want.double()).norm() / want.double().norm()).item()
        assert error < 1e-3, f"tensor {index}: relative error {error:.2e}"
