"""The training path's Triton kernels (residual-add + RMSNorm, gated RMSNorm, causal conv, cross-entropy rows)
compile for sm_90 as the library launches them, checked on CPU: each op runs forward and backward on meta tensors
at 130M-model shapes while `compiled_resources.recorded_launches` records its launches, and every launch compiles
with Triton's bundled ptxas, within 255 registers and without spilling. A kernel that only a GPU would compile
(the SSD and scan kernels have their own checks: test_ssd_kernel_resources.py, test_gluon_sass.py) fails here."""
from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest
import torch

from mambaseq.kernels.triton import add_rms_norm, causal_conv1d, cross_entropy, gated_rms_norm
from mambaseq.kernels.triton.compiled_resources import compile_launch, cubin_report, recorded_launches, tools_available

META = dict(device="meta", dtype=torch.bfloat16)


def _leaf(*shape: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    return torch.empty(*shape, device="meta", dtype=dtype).requires_grad_()


def _backward(out: torch.Tensor) -> None:
    out.backward(torch.empty_like(out))


def _add_rms_norm() -> None:
    normed, residual = add_rms_norm.add_rms_norm_triton(_leaf(8, 2048, 768), _leaf(8, 2048, 768, dtype=torch.float32),
                                                        _leaf(768, dtype=torch.float32), 1e-5, True, torch.bfloat16)
    _backward(normed * 1 + residual.to(torch.bfloat16))


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


@pytest.mark.skipif(not tools_available(), reason="this Triton wheel ships no cuobjdump / nvdisasm")
@pytest.mark.parametrize("case", list(CASES))
def test_launches_compile_for_sm90_without_spills(case):
    module, run, kernels = CASES[case]
    with recorded_launches(module) as recorders:
        run()
    launched = {name for name, recorder in recorders.items() if recorder.calls}
    assert launched == kernels
    for name in launched:
        recorder = recorders[name]
        for args, kwargs in recorder.calls:
            report = cubin_report(compile_launch(recorder.kernel, args, kwargs).asm["cubin"])
            assert report["registers"] <= 255 and report["stack"] == 0, (name, kwargs, report)
