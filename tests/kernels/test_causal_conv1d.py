"""Depthwise causal conv: against torch's F.conv1d, state hand-over between calls, and the one-step update."""
from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from kernel_inputs import max_relative_error
from mambaseq.kernels import causal_conv1d_update

# The module's own kernel (the package-level `causal_conv1d` is the dispatching `causal_conv`).
causal_conv1d = importlib.import_module("mambaseq.kernels.causal_conv1d").causal_conv1d

FP64_RTOL = 1e-12


def _conv_inputs(generator: torch.Generator, batch: int, channels: int, seqlen: int, width: int):
    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    return randn(batch, channels, seqlen), randn(channels, width), randn(channels), randn(batch, channels, width - 1)


def _torch_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, history: torch.Tensor,
                activation: str | None) -> torch.Tensor:
    """F.conv1d over [history, x] without padding: the causal conv by definition."""
    out = F.conv1d(torch.cat([history, x], dim=-1), weight[:, None, :], bias, groups=x.shape[1])
    return F.silu(out) if activation == "silu" else out


@pytest.mark.parametrize("width", [2, 3, 4])
@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("use_bias", [False, True])
def test_matches_torch_conv_with_zero_history(generator, width, activation, use_bias):
    x, weight, bias, _ = _conv_inputs(generator, 2, 5, 13, width)
    bias = bias if use_bias else None
    out = causal_conv1d(x, weight, bias, activation)
    expected = F.conv1d(x, weight[:, None, :], bias, padding=width - 1, groups=5)[..., :13]
    expected = F.silu(expected) if activation == "silu" else expected
    assert max_relative_error(out, expected) < FP64_RTOL


@pytest.mark.parametrize("seqlen", [1, 2, 3, 9])
def test_initial_and_final_state(generator, seqlen):
    width = 4
    x, weight, bias, history = _conv_inputs(generator, 2, 3, seqlen, width)
    out, final = causal_conv1d(x, weight, bias, "silu", initial_state=history, return_final_state=True)
    assert max_relative_error(out, _torch_conv(x, weight, bias, history, "silu")) < FP64_RTOL
    assert torch.equal(final, torch.cat([history, x], dim=-1)[..., -(width - 1):])
    _, final_from_zeros = causal_conv1d(x, weight, return_final_state=True)
    assert torch.equal(final_from_zeros, F.pad(x, (width - 1, 0))[..., -(width - 1):])


def test_consecutive_calls_equal_one_call(generator):
    x, weight, bias, history = _conv_inputs(generator, 2, 4, 20, 4)
    full, final = causal_conv1d(x, weight, bias, "silu", history, return_final_state=True)
    head, carried = causal_conv1d(x[..., :2], weight, bias, "silu", history, return_final_state=True)
    tail, final_split = causal_conv1d(x[..., 2:], weight, bias, "silu", carried, return_final_state=True)
    assert max_relative_error(torch.cat([head, tail], dim=-1), full) < FP64_RTOL
    assert torch.equal(final_split, final)


def test_update_steps_replay_the_conv(generator):
    x, weight, bias, history = _conv_inputs(generator, 2, 4, 9, 4)
    full, final = causal_conv1d(x, weight, bias, "silu", history, return_final_state=True)
    state = history.clone()
    steps = [causal_conv1d_update(x[..., t], state, weight, bias, "silu") for t in range(9)]
    assert max_relative_error(torch.stack(steps, dim=-1), full) < FP64_RTOL
    assert torch.equal(state, final)


def test_low_precision_output_dtype(generator):
    x, weight, bias, history = _conv_inputs(generator, 1, 3, 6, 4)
    out, final = causal_conv1d(x.bfloat16(), weight.float(), bias.float(), "silu", history.bfloat16(),
                               return_final_state=True)
    assert out.dtype == final.dtype == torch.bfloat16
    assert max_relative_error(out, _torch_conv(x, weight, bias, history, "silu")) < 2e-2


def test_gradcheck(generator):
    x, weight, bias, history = (t.requires_grad_() for t in _conv_inputs(generator, 1, 2, 5, 3))
    assert torch.autograd.gradcheck(
        lambda *args: causal_conv1d(*args[:3], "silu", args[3], return_final_state=True), (x, weight, bias, history))


def test_bad_arguments_are_named(generator):
    x, weight, bias, history = _conv_inputs(generator, 1, 3, 6, 4)
    with pytest.raises(ValueError, match="activation='relu'"):
        causal_conv1d(x, weight, bias, "relu")
    with pytest.raises(ValueError, match=r"weight shape \(2, 4\)"):
        causal_conv1d(x, weight[:2], bias)
