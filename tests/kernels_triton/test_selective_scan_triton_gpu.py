"""Triton selective scan on CUDA against the fp64 reference (and mamba-ssm when installed): outputs and every gradient.

Tolerances, relative error of the norm (||actual - expected|| / ||expected||), the reference run in fp64 on the
same rounded inputs: fp32 kernels 1e-4 (fp32 rounding and the hardware exp2 over thousands of steps), bf16 inputs
and outputs 1e-2 (bf16 keeps 8 bits: one rounding of the result is ~2e-3).
"""
from __future__ import annotations

import pytest
import torch

from error_norms import assert_errors_within, norm_relative_error
from scan_cases import compare_with_reference, reference_scan, scan_problem

pytestmark = pytest.mark.gpu
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 1e-2}


def _triton_scan(forward_tiling=None, backward_tiling=None):
    from mambaseq.kernels.triton import GluonScanConfig, ScanConfig, selective_scan_triton

    config = None if forward_tiling is None else (
        GluonScanConfig(*forward_tiling[1:]) if forward_tiling[0] == "gluon" else ScanConfig(*forward_tiling))
    backward_config = None if backward_tiling is None else (
        GluonScanConfig(*backward_tiling[1:]) if backward_tiling[0] == "gluon" else ScanConfig(*backward_tiling))

    def scan(p: dict):
        return selective_scan_triton(p["u"], p["delta"], p["A"], p["B"], p["C"], p["D"], p["z"], p["delta_bias"],
                                     p["delta_softplus"], p["initial_state"], True, seq_idx=p["seq_idx"],
                                     config=config, backward_config=backward_config)
    return scan


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("batch, d_inner, d_state, seqlen, options", [
    pytest.param(2, 256, 16, 1000, dict(), id="shared-BC"),
    pytest.param(2, 2304, 16, 300, dict(groups=3, documents=2), id="wide-default-gluon"),
    pytest.param(2, 192, 16, 2048, dict(groups=3), id="grouped-BC"),
    pytest.param(2, 128, 16, 777, dict(documents=6), id="packed-documents"),
    pytest.param(1, 64, 16, 8192, dict(documents=5), id="long-narrow-sequence-parallel"),
    pytest.param(3, 64, 7, 300, dict(with_D=False, with_z=False, softplus=False, with_delta_bias=False,
                                     with_initial_state=False), id="bare-odd-d_state"),
])
def test_matches_fp64_reference(seed, dtype, batch, d_inner, d_state, seqlen, options):
    generator = torch.Generator().manual_seed(seed)
    problem = scan_problem(batch, d_inner, d_state, seqlen, generator=generator, device="cuda", **options)
    assert_errors_within(compare_with_reference(problem, _triton_scan(), dtype), TOLERANCE[dtype])


@pytest.mark.parametrize("forward_tiling, backward_tiling", [
    ((1, 16, 1), (1, 16, 1)), ((2, 32, 2), (2, 32, 2)), ((16, 32, 4), (4, 32, 4)), ((8, 64, 4), (16, 128, 8)),
    ((4, 64, 2), (1, 64, 1)), ((16, 16, 2), (8, 32, 2)), ((4, 64, 2, 3), (1, 32, 1, 5)), ((1, 16, 1, 7), (2, 16, 1, 2)),
], ids=str)
def test_every_tiling_matches_reference(seed, forward_tiling, backward_tiling):
    generator = torch.Generator().manual_seed(seed)
    problem = scan_problem(2, 128, 16, 333, groups=2, documents=3, generator=generator, device="cuda")
    assert_errors_within(compare_with_reference(problem, _triton_scan(forward_tiling, backward_tiling), torch.float32),
                  TOLERANCE[torch.float32])


@pytest.mark.parametrize("forward_tiling, backward_tiling", [
    (("gluon", 8, 4), ("gluon", 8, 4)), (("gluon", 8, 1), ("gluon", 8, 2)), (("gluon", 4, 2), ("gluon", 4, 1)),
    (("gluon", 16, 4), ("gluon", 16, 2)), (("gluon", 8, 2), (1, 32, 1)), ((2, 32, 2), ("gluon", 8, 4)),
], ids=str)
@pytest.mark.parametrize("d_state, options", [
    pytest.param(16, dict(groups=2, documents=3), id="grouped-documents"),
    pytest.param(5, dict(with_z=False, with_D=False), id="odd-d_state"),
    pytest.param(64, dict(softplus=False, with_delta_bias=False), id="wide-d_state"),
])
def test_gluon_kernels_match_reference(seed, forward_tiling, backward_tiling, d_state, options):
    """Gluon forward and backward layouts, alone and paired with the Triton kernels (which then store or read the
    other's chunk states), on ragged lengths and channel counts: outputs and every gradient against fp64."""
    generator = torch.Generator().manual_seed(seed)
    problem = scan_problem(2, 136 if "groups" not in options else 128, d_state, 333, generator=generator,
                           device="cuda", **options)
    scan = _triton_scan(forward_tiling, backward_tiling)
    assert_errors_within(compare_with_reference(problem, scan, torch.float32), TOLERANCE[torch.float32])


def test_agrees_with_mamba_ssm(seed):
    interface = pytest.importorskip("mamba_ssm.ops.selective_scan_interface")
    from mambaseq.kernels.triton import selective_scan_triton

    generator = torch.Generator().manual_seed(seed)
    problem = scan_problem(2, 256, 16, 2048, with_initial_state=False, generator=generator, device="cuda")
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    results = []
    for scan in (interface.selective_scan_fn, selective_scan_triton):
        leaves = {name: problem[name].to(torch.bfloat16 if name in ("u", "delta", "B", "C", "z") else torch.float32)
                  .requires_grad_() for name in names}
        y = scan(*(leaves[name] for name in names), delta_softplus=True)
        (y.float() * problem["y_weight"].float()).sum().backward()
        results.append({"y": y.detach(), **{f"d{name}": leaves[name].grad for name in names}})
    errors = {name: norm_relative_error(results[1][name], results[0][name]) for name in results[0]}
    assert_errors_within(errors, TOLERANCE[torch.bfloat16])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("batch, d_inner, seqlen, gluon_steps", [
    pytest.param(3, 1400, 1000, None, id="wide-default"), pytest.param(3, 1400, 1000, 16, id="wide-gluon-16-steps"),
    pytest.param(1, 128, 6000, None, id="narrow-sequence-parallel"),
])
def test_inference_forward_matches_reference(seed, dtype, batch, d_inner, seqlen, gluon_steps):
    """Without autograd the forward stores no chunk states: y and the final state alone, for a wide problem (the
    default 2-channel Triton tiles, or Gluon with 16-step lanes) and a long narrow one (Triton, in segments)."""
    from mambaseq.kernels.triton import GluonScanConfig, selective_scan_triton

    generator = torch.Generator().manual_seed(seed)
    problem = scan_problem(batch, d_inner, 16, seqlen, documents=2, generator=generator, device="cuda")
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")
    exact = {name: problem[name].to(dtype).double() for name in names}
    expected = reference_scan({**problem, **exact})
    with torch.no_grad():
        actual = selective_scan_triton(*(exact[name].to(dtype) for name in names[:-1]), delta_softplus=True,
                                       initial_state=exact["initial_state"].to(dtype), return_final_state=True,
                                       seq_idx=problem["seq_idx"],
                                       config=gluon_steps and GluonScanConfig(gluon_steps, 2))
    errors = {name: norm_relative_error(a.double(), e) for name, a, e in zip(("y", "final_state"), actual, expected)}
    assert_errors_within(errors, TOLERANCE[dtype])
