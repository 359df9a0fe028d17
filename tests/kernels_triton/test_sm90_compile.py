"""Triton kernels compile for sm_90 as the library launches them, checked on CPU: the training path's (residual-add +
RMSNorm, gated RMSNorm, causal conv, cross-entropy rows; forward and backward at 130M-model shapes) and the decoding
steps' (state updates, conv step, Mamba-1's fused front and back; 1.4B widths, fp16, batch 1 and 64). Each op runs
on meta tensors while `compiled_resources.recorded_launches` records its launches, and every launch compiles with
Triton's bundled ptxas within 255 registers and without spilling. A kernel that only a GPU would compile fails
here (the SSD and scan kernels have their own checks: test_ssd_kernel_resources.py, test_gluon_sass.py)."""
from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest
import torch

from mambaseq.kernels.triton import (
    add_rms_norm,
    causal_conv1d,
    conv_update,
    cross_entropy,
    gated_rms_norm,
    norm_in_proj_conv,
    state_step_out_proj,
    state_update,
)
from mambaseq.kernels.triton.compiled_resources import compile_launch, cubin_report, recorded_launches, tools_available
from state_update_cases import step_inputs

META = dict(device="meta", dtype=torch.bfloat16)


def _leaf(*shape: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    return torch.empty(*shape, device="meta", dtype=dtype).requires_grad_()


def _backward(out: torch.Tensor) -> None:
    out.backward(torch.empty_like(out))


def _add_rms_norm() -> None:
    normed, residual = add_rms_norm.add_rms_norm_triton(_leaf(8, 2048, 768), _leaf(8, 2048, 768, dtype=torch.float32),
                                                        _leaf(768, dtype=torch.float32), 1e-5, True, torch.bfloat16)
    _backward(normed + residual.to(torch.bfloat16))


def _gated_rms_norm() -> None:
    z = _leaf(8, 2048, 3352)[..., :1536]  # a slice of in_proj's output, as in the Mamba-2 mixer
    for group_size, norm_before_gate in ((1536, False), (512, True)):
        _backward(gated_rms_norm.gated_rms_norm_triton(_leaf(8, 2048, 1536), z, _leaf(1536, dtype=torch.float32),
                                                       group_size, 1e-5, norm_before_gate))


def _causal_conv1d() -> None:
    weight, bias = _leaf(1792, 4, dtype=torch.float32), _leaf(1792, dtype=torch.float32)
    channel_last = _leaf(8, 2048, 3352)[..., 1536:3328].transpose(1, 2)  # Mamba-2's xBC columns
    _backward(causal_conv1d.causal_conv1d_triton(channel_last, weight, bias, "silu"))
    contiguous = _leaf(8, 1792, 2048)  # Mamba-1's channels-first layout
    _backward(causal_conv1d.causal_conv1d_triton(contiguous, weight, bias, "silu"))


def _cross_entropy() -> None:
    logits = torch.empty(4096, 50277, **META)
    lse = cross_entropy.logsumexp_rows_triton(logits)
    targets = torch.empty(4096, device="meta", dtype=torch.int64)
    cross_entropy.softmax_grad_rows_triton_(logits, lse, targets, torch.empty(4096, device="meta"))


CASES: dict[str, tuple[ModuleType, Callable[[], None], set[str]]] = {
    "add_rms_norm": (add_rms_norm, _add_rms_norm, {"add_rms_norm_fwd_kernel", "add_rms_norm_bwd_kernel"}),
    "gated_rms_norm": (gated_rms_norm, _gated_rms_norm, {"gated_rms_norm_fwd_kernel", "gated_rms_norm_bwd_kernel"}),
    "causal_conv1d": (causal_conv1d, _causal_conv1d, {"causal_conv1d_fwd_kernel", "causal_conv1d_bwd_kernel"}),
    "cross_entropy": (cross_entropy, _cross_entropy, {"logsumexp_rows_kernel", "softmax_grad_rows_kernel"}),
}


# decoding step layout -> (Triton entry point, its kernel, 1.4B widths for `step_inputs`)
STEPS = {
    "mamba1": (state_update.selective_state_update_triton, "state_update_kernel", dict(d_inner=4096, d_state=16)),
    "ssd": (state_update.ssd_state_update_triton, "state_update_kernel", dict(nheads=64, headdim=64, d_state=128)),
    "conv": (conv_update.causal_conv1d_update_triton, "conv_update_kernel", dict(d_inner=4096, width=4)),
    "mamba1_params": (state_update.mamba1_state_step_triton, "state_update_kernel",
                      dict(d_inner=4096, d_state=16, dt_rank=128)),
    "front": (norm_in_proj_conv.add_norm_in_proj_conv_triton, "add_norm_in_proj_conv_kernel",
              dict(d_model=2048, d_inner=4096, width=4, x_proj_width=160)),
    "back": (state_step_out_proj.mamba1_state_step_out_proj_triton, "state_step_out_proj_kernel",
             dict(d_inner=4096, d_state=16, dt_rank=128, d_model=2048)),
}
STEP_MODULES = (state_update, conv_update, norm_in_proj_conv, state_step_out_proj)
FP32_STEP_INPUTS = {"state", "x_proj_sums", "residual", "A", "A_log", "D", "dt_bias"}  # fp32 in the model too
tools = pytest.mark.skipif(not tools_available(), reason="this Triton wheel ships no cuobjdump / nvdisasm")


def _assert_compiles(recorders: dict) -> set[str]:
    """Compiles every recorded launch; returns the names of the kernels that were launched."""
    launched = {name for name, recorder in recorders.items() if recorder.calls}
    for name in launched:
        recorder = recorders[name]
        for args, kwargs in recorder.calls:
            report = cubin_report(compile_launch(recorder.kernel, args, kwargs).asm["cubin"])
            assert report["registers"] <= 255 and report["stack"] == 0, (name, kwargs, report)
    return launched


@tools
@pytest.mark.parametrize("case", list(CASES))
def test_training_launches_compile_for_sm90_without_spills(case):
    module, run, kernels = CASES[case]
    with recorded_launches(module) as recorders:
        run()
    assert _assert_compiles(recorders) == kernels


@tools
@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("layout", list(STEPS))
def test_decoding_step_launches_compile_for_sm90_without_spills(layout, batch):
    entry, kernel, widths = STEPS[layout]
    inputs = step_inputs(layout, torch.Generator().manual_seed(0), batch=batch, **widths)
    half = {name: value.to("meta", torch.float16 if value.is_floating_point() and name not in FP32_STEP_INPUTS
                           else value.dtype) if isinstance(value, torch.Tensor) else value
            for name, value in inputs.items()}
    with recorded_launches(*STEP_MODULES) as recorders:
        entry(**half)
    assert _assert_compiles(recorders) == {kernel}
