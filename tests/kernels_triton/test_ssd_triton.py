"""`ssd_triton` (Triton kernels forward and backward) and `ssd_blocks` against the fp64 sequential reference: y,
final state and the gradients of x, dt, A, B, C, D, z, dt_bias and initial_state; plus dispatch and the benchmark's
CPU smoke run.

Errors are max |diff| / max |reference|. Tolerances: fp64 `ssd_blocks` 1e-10 (rounding only); fp32 Triton kernels
in the CPU interpreter 1e-5 (observed <= 2e-6), fp16 there 4e-3 (observed <= 8e-4; one fp16 rounding is ~5e-4, and
the interpreter has no bf16); on CUDA, fp32 1e-3 (GPU exp and reordered sums over thousands of
steps) and bf16 3e-2 (the reference runs in fp64 on the same bf16-rounded inputs; bf16 matmul operands and output
keep 8 bits, one rounding is ~4e-3 and long sums of them add up).
"""
from __future__ import annotations

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch

from error_norms import assert_errors_within
from mambaseq.kernels import dispatch, ssd
from mambaseq.kernels.triton import ssd as ssd_module
from mambaseq.kernels.triton.ssd_blocks import ssd_blocks
from mambaseq.kernels.triton.ssd_launch import (FLAT_TILE_ELEMENTS, FLAT_TILE_MIN, FLAT_TILE_PROGRAMS, PASSING_CHUNKS,
                                                flat_state_tile, passing_chunks)
from ssd_cases import (CASE_DTYPES, GRADIENT_SUBSETS, INTERPRETER_CASES, compare_with_reference, on_non_dense_x,
                       ssd_problem)
from interpreted import run_interpreted

HERE = Path(__file__).parent
RUNNER = HERE / "ssd_interpret_runner.py"
BENCH = HERE.parents[1] / "scripts" / "bench_ssd.py"
GRADIENTS = {"dx", "ddt", "dA", "dB", "dC", "dD", "dz", "ddt_bias", "dinitial_state"}
INTERPRETER_TOLERANCE = {torch.float32: 1e-5, torch.float16: 4e-3}
CUDA_TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 3e-2}


@pytest.fixture(scope="module")
def interpreter_errors() -> dict[str, dict[str, float]]:
    """Errors of every interpreter case, from one subprocess (one start of torch and Triton)."""
    return run_interpreted(RUNNER, INTERPRETER_CASES)


@pytest.mark.parametrize("case", list(INTERPRETER_CASES))
def test_interpreted_triton_forward_and_backward_match_fp64_reference(interpreter_errors, case):
    errors = dict(interpreter_errors[case])
    assert errors.pop("triton_calls") == 1.0, "ssd_triton did not run the Triton kernels"
    options = INTERPRETER_CASES[case][2]
    subset = GRADIENT_SUBSETS.get(case)
    expected = {"y", "final_state"} | (GRADIENTS if subset is None else {f"d{name}" for name in subset})
    expected -= {f"d{name}" for name, flag in [("D", "with_D"), ("z", "with_z"), ("dt_bias", "with_dt_bias"),
                                               ("initial_state", "with_initial_state")] if not options.get(flag, True)}
    assert errors.keys() == expected
    assert_errors_within(errors, INTERPRETER_TOLERANCE[CASE_DTYPES.get(case, torch.float32)])


@pytest.mark.parametrize("case", list(INTERPRETER_CASES))
def test_blocks_match_fp64_reference(seed, case):
    shape, chunk_size, options = INTERPRETER_CASES[case]
    problem = ssd_problem(*shape, generator=torch.Generator().manual_seed(seed), **options)
    assert_errors_within(compare_with_reference(problem, ssd_blocks, torch.float64, chunk_size=chunk_size), 1e-10)


def test_blocks_pass_states_across_blocks_of_chunks(seed):
    """More than CHUNKS_PER_BLOCK (64) chunks: the inter-chunk recurrence runs block after block."""
    problem = ssd_problem(1, 150, 2, 2, 1, 3, generator=torch.Generator().manual_seed(seed))
    assert_errors_within(compare_with_reference(problem, ssd_blocks, torch.float64, chunk_size=1), 1e-10)


def test_triton_backend_on_cpu_runs_the_pytorch_decomposition(seed, monkeypatch):
    """Outside the interpreter, CPU tensors cannot reach the Triton kernels: the call is `ssd_blocks` (here eager)."""
    monkeypatch.setattr("mambaseq.kernels.triton.ssd._compiled_ssd", lambda: ssd_blocks)
    problem = ssd_problem(2, 21, 4, 3, 2, 4, generator=torch.Generator().manual_seed(seed))
    errors = compare_with_reference(problem, lambda **kw: ssd(**kw, backend="triton", chunk_size=8), torch.float64)
    assert_errors_within(errors, 1e-10)


def test_compile_failure_falls_back_to_eager_with_one_warning(seed, monkeypatch):
    attempts = []

    def failing_compile(*args):
        attempts.append(args)
        raise torch._dynamo.exc.TorchDynamoException("no C compiler")

    monkeypatch.setattr(ssd_module, "_compiled_ssd", lambda: failing_compile)
    monkeypatch.setattr(ssd_module, "_COMPILE_FAILURES", [])
    problem = ssd_problem(1, 30, 2, 3, 1, 4, generator=torch.Generator().manual_seed(seed))
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        errors = compare_with_reference(problem, partial(ssd_module.ssd_triton, chunk_size=8), torch.float64)
    assert_errors_within(errors, 1e-10)
    compare_with_reference(problem, partial(ssd_module.ssd_triton, chunk_size=8), torch.float64)
    assert len(attempts) == 1


@pytest.mark.parametrize("state_size, rows, chunks, expected", [
    (64 * 128, 8 * 48, 8, 1024),  # b8 L2048, 48 heads: 8 chunks of 1024 elements, 3,072 programs
    (64 * 128, 1 * 32, 16, 256),  # b1 L65536, 32 heads: 512 would leave 512 programs
    (64 * 128, 2 * 32, 1, 512),  # 8192 would leave 64 programs
    (64 * 128, 1 * 8, 16, 64),  # 8 sequences: the smallest tile, 1,024 programs
    (64 * 128, 1 * 2, 16, 64),  # 2 sequences: no smaller than FLAT_TILE_MIN, 256 programs
    (3 * 5, 1, 1, 16),  # a state smaller than the smallest tile
])
def test_flat_state_tile_keeps_enough_programs(state_size, rows, chunks, expected):
    tile = flat_state_tile(state_size, rows, chunks)
    assert tile == expected
    assert tile * chunks <= max(FLAT_TILE_ELEMENTS, 16 * chunks)
    assert rows * -(-state_size // tile) >= FLAT_TILE_PROGRAMS or tile <= FLAT_TILE_MIN


@pytest.mark.parametrize("n_chunks, expected", [(1, 1), (5, 8), (16, 16), (256, PASSING_CHUNKS)])
def test_passing_chunks_cover_short_sequences_in_one_step(n_chunks, expected):
    assert passing_chunks(n_chunks) == min(expected, PASSING_CHUNKS)


def test_bench_tiny_runs_on_cpu():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, str(BENCH), "--tiny", "--profile", "1"], env=env,
                               capture_output=True, text=True, timeout=120, cwd=BENCH.parent)
    assert completed.returncode == 0, completed.stderr[-4000:]
    rows = [line for line in completed.stdout.splitlines() if line.startswith("| 1x")]
    assert len(rows) == 2, completed.stdout
    assert all("ssd" in row for row in rows) and "max rel. error" in completed.stdout, completed.stdout
    profiles = [line for line in completed.stdout.splitlines() if "forward+backward: 1 call(s), top 16" in line]
    assert len(profiles) == 2, completed.stdout


def _on_cuda(problem: dict) -> dict:
    return {k: v.to("cuda") if isinstance(v, torch.Tensor) else v for k, v in problem.items()}


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape, chunk_size, options, x_view", [
    pytest.param((2, 1000, 8, 64, 2, 64), 256, dict(), False, id="grouped-L-not-multiple"),
    pytest.param((1, 2048, 4, 64, 1, 128), 256, dict(with_z=False, D_per_channel=True), False,
                 id="mamba2-head-shape"),
    pytest.param((2, 300, 6, 48, 3, 40), 64, dict(with_initial_state=False, dt_limit=(0.05, 1.0)), False,
                 id="odd-dims"),
    pytest.param((2, 700, 8, 64, 1, 128), 256, dict(with_z=False), True, id="mixer-layout-x-view"),
    pytest.param((8, 300, 32, 64, 1, 128), 256, dict(), False, id="256-sequences-flat-tile-2048"),
    pytest.param((2, 3000, 4, 64, 2, 64), 64, dict(), False, id="47-chunks-passed-in-3-steps"),
])
def test_cuda_matches_fp64_reference(seed, dtype, shape, chunk_size, options, x_view):
    from mambaseq.kernels.triton import ssd_triton

    problem = _on_cuda(ssd_problem(*shape, generator=torch.Generator().manual_seed(seed), **options))
    kernel = on_non_dense_x(ssd_triton) if x_view else ssd_triton
    errors = compare_with_reference(problem, kernel, dtype, chunk_size=chunk_size)
    assert_errors_within(errors, CUDA_TOLERANCE[dtype])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_cuda_per_pair_decays_match_fp64_reference(seed, dtype, monkeypatch):
    """The chunk scan, dx and pairs kernels with one exponent per step pair everywhere (the default takes one per
    step in tiles off the diagonal)."""
    from mambaseq.kernels.triton import ssd_launch, ssd_triton

    monkeypatch.setattr(ssd_launch, "SEPARABLE_DECAYS", False)
    problem = _on_cuda(ssd_problem(2, 1000, 8, 64, 2, 64, generator=torch.Generator().manual_seed(seed)))
    errors = compare_with_reference(problem, ssd_triton, dtype, chunk_size=256)
    assert_errors_within(errors, CUDA_TOLERANCE[dtype])


@pytest.mark.gpu
def test_auto_backend_picks_triton_on_cuda_without_mamba_ssm(seed, monkeypatch):
    from mambaseq.kernels.triton.ssd import SSDFunction

    real_optional = dispatch._optional
    monkeypatch.setattr(dispatch, "_optional", lambda module, name: (None, "absent") if module.startswith(
        "mamba_ssm") else real_optional(module, name))
    calls = []
    original_apply = SSDFunction.apply
    monkeypatch.setattr(SSDFunction, "apply", lambda *args: calls.append(args) or original_apply(*args))
    problem = _on_cuda(ssd_problem(1, 100, 4, 16, 1, 16, generator=torch.Generator().manual_seed(seed)))
    errors = compare_with_reference(problem, lambda **kw: ssd(**kw, chunk_size=32), torch.float32)
    assert len(calls) == 1
    assert_errors_within(errors, CUDA_TOLERANCE[torch.float32])


@pytest.mark.gpu
def test_cuda_bf16_matches_mamba_ssm(seed):
    """Same bf16 inputs through mamba-ssm's `mamba_chunk_scan_combined` and ours: outputs within 2e-2."""
    combined, why = dispatch._optional("mamba_ssm.ops.triton.ssd_combined", "mamba_chunk_scan_combined")
    if combined is None:
        pytest.skip(f"mamba-ssm not importable: {why}")
    from mambaseq.kernels.triton import ssd_triton

    p = _on_cuda(ssd_problem(2, 1500, 8, 64, 1, 128, generator=torch.Generator().manual_seed(seed)))
    p = {k: v.to(torch.bfloat16) if k in ("x", "B", "C", "z", "dt") else v.float() if isinstance(v, torch.Tensor)
         else v for k, v in p.items()}
    ours, our_state = ssd_triton(**p, return_final_state=True)
    theirs, their_state = combined(p["x"], p["dt"], p["A"], p["B"], p["C"], 256, D=p["D"], z=p["z"],
                                   dt_bias=p["dt_bias"], initial_states=p["initial_state"], dt_softplus=True,
                                   return_final_states=True)
    assert (ours.float() - theirs.float()).abs().max() / theirs.float().abs().max() < 2e-2
    assert (our_state - their_state.float()).abs().max() / their_state.float().abs().max() < 2e-2
