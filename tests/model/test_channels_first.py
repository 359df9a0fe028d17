"""`channels_first_linear` and `channels_first_to_last_linear`: the Mamba-1 projections over (b, channels, L)
activations, and its inference out_proj into a (b, L, d_model) stream."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mambaseq.mixers.channels_first import channels_first_linear, channels_first_to_last_linear


@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_linear_over_the_channel_axis_with_gradients(with_bias):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 5, generator=generator, dtype=torch.float64).transpose(1, 2)  # (b, 5, L=7), strided
    weight = torch.randn(4, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, generator=generator, dtype=torch.float64, requires_grad=True) if with_bias else None
    x.requires_grad_()
    out = channels_first_linear(x, weight, bias)
    expected = F.linear(x.transpose(1, 2), weight, bias).transpose(1, 2)
    assert out.shape == (3, 4, 7) and out.is_contiguous()
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    probe = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    params = [x, weight] + ([bias] if with_bias else [])
    grads = torch.autograd.grad((out * probe).sum(), params)
    expected_grads = torch.autograd.grad((expected * probe).sum(), params)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)


def test_runs_in_the_autocast_dtype_and_keeps_fp32_weight_gradients():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 9, generator=generator)
    weight = torch.randn(3, 6, generator=generator, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = channels_first_linear(x, weight)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert weight.grad.dtype == torch.float32
    expected = torch.einsum("oi,bil->bol", weight.detach(), x)
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("with_bias", [False, True])
def test_channels_first_to_last_matches_linear_and_is_contiguous(with_bias):
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(3, 5, 7, generator=generator, dtype=torch.float64)  # (b, channels=5, L=7)
    weight = torch.randn(4, 5, generator=generator, dtype=torch.float64)
    bias = torch.randn(4, generator=generator, dtype=torch.float64) if with_bias else None
    out = channels_first_to_last_linear(x, weight, bias)
    assert out.shape == (3, 7, 4) and out.is_contiguous()
    torch.testing.assert_close(out, F.linear(x.transpose(1, 2), weight, bias), rtol=1e-12, atol=1e-12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert channels_first_to_last_linear(x.float(), weight.float()).dtype == torch.bfloat16
