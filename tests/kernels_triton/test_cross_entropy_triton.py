"""Triton row kernels of the chunked cross-entropy: on CPU through Triton's interpreter against fp64 PyTorch
(relative error of the norm: lse 1e-6, fp32 gradient 1e-5, fp16 gradient 1e-3 = the fp16 rounding of the output;
observed <= 1.5e-7 and 1.3e-4), and on CUDA through `linear_cross_entropy` in bf16 against the fp64 full-logits loss."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cross_entropy_cases import CASES
from error_norms import assert_errors_within, norm_relative_error
from interpreted import run_interpreted

RUNNER = Path(__file__).with_name("cross_entropy_interpret_runner.py")
LSE_TOLERANCE = 1e-6
GRAD_TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-3}


@pytest.fixture(scope="module")
def interpreter_errors() -> dict[str, dict[str, float]]:
    return run_interpreted(RUNNER, CASES)


@pytest.mark.parametrize("case", list(CASES))
def test_interpreted_row_kernels_match_fp64(interpreter_errors, case):
    errors = interpreter_errors[case]
    assert errors["lse_fp32"] == 1.0 and errors["grad_dtype"] == 1.0, f"{case}: output dtypes differ"
    assert_errors_within({"lse": errors["lse"]}, LSE_TOLERANCE, case)
    assert_errors_within({"grad": errors["grad"]}, GRAD_TOLERANCE[CASES[case][2]], case)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_chunked_loss_uses_triton_on_cuda_and_matches_fp64(dtype):
    """The CUDA path of `linear_cross_entropy` (Triton row kernels) against fp64 full logits of the same rounded
    inputs; tolerances as tests/model/test_losses.py (bf16: loss 1e-3, gradients 1e-2; fp32: 1e-5)."""
    import torch.nn.functional as F

    from mambaseq import losses
    from mambaseq.kernels import cross_entropy

    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(700, 64, generator=generator).to(dtype).cuda().requires_grad_()
    weight = (torch.randn(5000, 64, generator=generator) / 8).to(dtype).cuda().requires_grad_()
    targets = torch.randint(0, 5000, (700,), generator=generator).cuda()
    targets[::7] = losses.IGNORE_INDEX
    probe_logits = hidden[:1] @ weight[:1].t()
    assert cross_entropy._triton_kernel("logsumexp_rows_triton", probe_logits) is not None
    assert cross_entropy._triton_kernel("softmax_grad_rows_triton_", probe_logits) is not None
    loss = losses.linear_cross_entropy(hidden, weight, targets, chunk_size=256)
    loss.backward()
    exact_hidden = hidden.detach().double().requires_grad_()
    exact_weight = weight.detach().double().requires_grad_()
    expected = F.cross_entropy(exact_hidden @ exact_weight.t(), targets, ignore_index=losses.IGNORE_INDEX)
    expected.backward()
    loss_tolerance, grad_tolerance = (1e-3, 1e-2) if dtype == torch.bfloat16 else (1e-5, 1e-5)
    assert_errors_within({"loss": norm_relative_error(loss, expected)}, loss_tolerance)
    assert_errors_within({"hidden": norm_relative_error(hidden.grad, exact_hidden.grad),
                          "weight": norm_relative_error(weight.grad, exact_weight.grad)}, grad_tolerance)
