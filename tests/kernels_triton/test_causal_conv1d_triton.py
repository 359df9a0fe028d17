"""Triton causal conv (`causal_conv1d_triton`, forward + backward) against the fp64 PyTorch kernel: output, final
state and the gradients of x, weight, bias and initial_state; plus dispatch ("triton", and "auto" on CUDA without
causal-conv1d) and Mamba-1 / Mamba-2 mixers on the Triton backend.

Errors are relative errors of the norm. Tolerances: fp32 kernels in the CPU interpreter 1e-5 (observed <= 1.1e-7);
on CUDA fp32 1e-4 (reordered sums of the weight gradient over batch x L); bf16 x 1e-2 (the output and dx are
rounded to bf16, ~4e-3 per rounding; observed <= 3.6e-3 in the interpreter).
"""
from __future__ import annotations

import importlib
from functools import partial
from pathlib import Path

import pytest
import torch

from error_norms import assert_errors_within
from causal_conv1d_cases import GRADIENTS, INTERPRETER_CASES, compare_with_reference, conv_problem
from interpreted import run_interpreted, run_tiny_bench
from mambaseq.kernels.triton import causal_conv1d as triton_conv
from mambaseq.kernels.triton.causal_conv1d import causal_conv1d_triton
from script_loader import load_script

HERE = Path(__file__).parent
RUNNER = HERE / "causal_conv1d_interpret_runner.py"
BENCH = HERE.parents[1] / "scripts" / "bench_conv.py"
INTERPRETER_TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 1e-2}
CUDA_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 1e-2}
dispatch = importlib.import_module("mambaseq.kernels.dispatch")


def _expected_keys(options: dict) -> set[str]:
    keys = {"out", *GRADIENTS}
    if options.get("return_final_state", True):
        keys.add("final_state")
    if not options.get("with_bias", True):
        keys.discard("dbias")
    if not options.get("with_initial_state", True):
        keys.discard("dinitial_state")
    return keys


@pytest.fixture(scope="module")
def interpreter_errors() -> dict[str, dict[str, float]]:
    """Errors of every interpreter case, from one subprocess (one start of torch and Triton)."""
    return run_interpreted(RUNNER, INTERPRETER_CASES)


@pytest.mark.parametrize("case", list(INTERPRETER_CASES))
def test_interpreted_triton_conv_matches_fp64_reference(interpreter_errors, case):
    errors = dict(interpreter_errors[case])
    assert errors.pop("triton_calls") == 1.0, "causal_conv(backend='triton') did not run the Triton kernels"
    assert errors.pop("dtypes_match") == 1.0, "output / gradient dtypes differ from the inputs'"
    options = INTERPRETER_CASES[case][-1]
    assert errors.keys() == _expected_keys(options)
    assert_errors_within(errors, INTERPRETER_TOLERANCE[options.get("dtype", torch.float32)])


def test_bad_arguments_are_named():
    x, weight = torch.randn(1, 4, 6), torch.randn(4, 3)
    with pytest.raises(ValueError, match="activation='relu'"):
        causal_conv1d_triton(x, weight, activation="relu")
    with pytest.raises(ValueError, match=r"weight shape \(3, 3\), expected \(4, width\)"):
        causal_conv1d_triton(x, weight[:3])
    with pytest.raises(ValueError, match=r"initial_state shape \(1, 4, 3\), expected \(1, 4, 2\)"):
        causal_conv1d_triton(x, weight, initial_state=torch.zeros(1, 4, 3))
    with pytest.raises(ValueError, match="x has dtype torch.float64"):
        causal_conv1d_triton(x.double(), weight)


def test_bench_tiny_compares_the_kernel_with_pytorch_on_cpu():
    """scripts/bench_conv.py --tiny (interpreter), both layouts and an extra backward tile: a row each, the same
    output and gradients as the PyTorch conv up to fp32 rounding."""
    stdout = run_tiny_bench(BENCH, "--backward-tiles", "16x16x4")
    rows = [line.split("  ") for line in stdout.splitlines() if line.startswith("2x70x150x")]
    names = {"ours: causal_conv1d_triton", "ours, backward tile 16x16x4", "PyTorch F.conv1d"}
    assert {(row[0], row[1]) for row in rows} == {(shape, name) for shape in ("2x70x150xc", "2x70x150xl")
                                                   for name in names}, stdout
    assert all(float(row[-1]) < 1e-5 for row in rows), stdout


def test_bench_resources_compile_every_launch_for_sm90_with_the_tile_in_force():
    """scripts/bench_conv.py --resources (no GPU): a forward and a backward row per shape and backward tile, the
    backward compiled with the tile asked for (8 elements per thread take more registers than 4)."""
    from mambaseq.kernels.triton.compiled_resources import tools_available

    if not tools_available():
        pytest.skip("this Triton wheel ships no cuobjdump / nvdisasm")
    bench = load_script("bench_conv")
    rows = bench.resource_rows([(2, 96, 300, "l")], [(64, 32, 8)])
    kernels = [(tile, kernel) for _, tile, kernel, *_ in rows]
    default = "x".join(str(getattr(triton_conv, name)) for name in bench.TILE_NAMES)
    assert kernels == [(tile, kernel) for tile in (default, "64x32x8")
                       for kernel in ("causal_conv1d_fwd_kernel", "causal_conv1d_bwd_kernel")]
    registers = {(tile, kernel): int(count) for _, tile, kernel, count, *_ in rows}
    assert registers[default, "causal_conv1d_bwd_kernel"] < registers["64x32x8", "causal_conv1d_bwd_kernel"]
    assert all(int(spill) == 0 for *_, spill, _ in rows)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("batch, channels, seqlen, width, options", [
    pytest.param(2, 1536, 2048, 4, dict(channel_last=True), id="mamba-layout-states"),
    pytest.param(3, 200, 1000, 4, dict(with_initial_state=False), id="contiguous-final-state"),
    pytest.param(2, 96, 777, 3, dict(activation=None, with_bias=False, channel_last=True), id="width3-plain"),
    pytest.param(2, 64, 3, 4, dict(), id="shorter-than-state"),
])
def test_cuda_triton_conv_matches_fp64_reference(seed, dtype, batch, channels, seqlen, width, options):
    problem = conv_problem(batch, channels, seqlen, width, dtype=dtype, device="cuda",
                           generator=torch.Generator().manual_seed(seed), **options)
    errors = compare_with_reference(problem, causal_conv1d_triton)
    assert errors.pop("dtypes_match") == 1.0
    assert errors.keys() == _expected_keys(options)
    assert_errors_within(errors, CUDA_TOLERANCE[dtype])


@pytest.mark.gpu
def test_auto_backend_uses_triton_on_cuda_without_causal_conv1d(seed, monkeypatch):
    real_optional = dispatch._optional
    monkeypatch.setattr(dispatch, "_optional", lambda module, name: (None, "absent") if module == "causal_conv1d"
                        else real_optional(module, name))
    from mambaseq.kernels import causal_conv
    from mambaseq.kernels.triton.causal_conv1d import CausalConv1dFunction

    calls = []
    original_apply = CausalConv1dFunction.apply
    monkeypatch.setattr(CausalConv1dFunction, "apply", lambda *args: calls.append(1) or original_apply(*args))
    problem = conv_problem(2, 24, 50, 4, device="cuda", generator=torch.Generator().manual_seed(seed))
    errors = compare_with_reference(problem, partial(causal_conv, backend="auto"))
    assert calls, "auto did not pick the Triton conv"
    errors.pop("dtypes_match")
    assert_errors_within(errors, CUDA_TOLERANCE[torch.float32])
    calls.clear()
    causal_conv(problem["x"].double(), problem["weight"].double(), backend="auto")  # fp64: PyTorch conv
    assert not calls


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["mamba1", "mamba2"])
def test_mixer_on_triton_backend_matches_chunked(seed, kind):
    """The conv's channel-last output feeds x_proj / the SSD's head split: whole-mixer outputs and gradients agree
    (Triton scan / SSD and conv vs the PyTorch chunked kernels, fp32; 1e-3, or 1e-2 for Mamba-2, whose SSD may take
    its fp32 matmuls in TF32). A layout mistake would be off by O(1)."""
    from mambaseq.config import Mamba1Config, Mamba2Config
    from mambaseq.mixers import build_mixer

    torch.manual_seed(seed)
    config = Mamba1Config() if kind == "mamba1" else Mamba2Config(d_state=32, headdim=16, ngroups=2)
    mixers = {backend: build_mixer(64, config, backend).cuda() for backend in ("triton", "chunked")}
    mixers["chunked"].load_state_dict(mixers["triton"].state_dict())
    hidden = torch.randn(2, 300, 64, device="cuda")
    results = {}
    for backend, mixer in mixers.items():
        out = mixer(hidden)
        out.square().sum().backward()
        results[backend] = (out, {name: p.grad for name, p in mixer.named_parameters()})
    tolerance = 1e-3 if kind == "mamba1" else 1e-2
    assert (results["triton"][0] - results["chunked"][0]).norm() / results["chunked"][0].norm() < tolerance
    for name, grad in results["chunked"][1].items():
        assert (results["triton"][1][name] - grad).norm() / grad.norm() < tolerance, name
