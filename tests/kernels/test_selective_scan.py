"""Mamba-1 selective scan: chunked kernel and decoding step against the sequential fp64 reference.

Tolerances (relative error = max |diff| / max |reference|): fp64 vs fp64 agree to rounding, 1e-10. fp32 kernels vs
the fp64 reference: values 2e-5 (observed <= 3e-7: fp32 epsilon 6e-8 times exponents up to ~40 and sums over the
sequence), gradients 1e-4 (observed <= 4e-6; the step-size gradient sums long products).
"""
from __future__ import annotations

import importlib

import pytest
import torch

from kernel_inputs import cast, max_relative_error, scan_inputs, with_grad
from mambaseq.kernels import selective_scan_chunked, selective_scan_reference, selective_state_update

# The module itself (the package attribute of the same name is the function).
selective_scan_chunked_module = importlib.import_module("mambaseq.kernels.selective_scan_chunked")
FP64_RTOL = 1e-10
FP32_RTOL = 2e-5
FP32_GRAD_RTOL = 1e-4

# (batch, d_inner, d_state, seqlen, chunk_size, groups, optional-feature flags)
CASES = [
    pytest.param(2, 6, 4, 37, 8, None, dict(), id="L-not-multiple-of-chunk"),
    pytest.param(1, 4, 3, 16, 4, None, dict(with_initial_state=False), id="no-initial-state"),
    pytest.param(2, 8, 5, 21, 64, 2, dict(), id="groups-chunk-longer-than-L"),
    pytest.param(2, 6, 2, 19, 1, 3, dict(softplus=False, with_delta_bias=False), id="chunk-1-no-softplus"),
    pytest.param(1, 5, 4, 30, 7, 5, dict(with_D=False, with_z=False), id="group-per-channel-no-D-no-z"),
    pytest.param(3, 4, 8, 1, 16, None, dict(), id="single-step"),
]


def _run(kernel, inputs: dict, chunk_size: int | None = None):
    extra = {} if chunk_size is None else {"chunk_size": chunk_size}
    return kernel(**inputs, return_final_state=True, **extra)


@pytest.mark.parametrize("batch, d_inner, d_state, seqlen, chunk_size, groups, flags", CASES)
def test_chunked_matches_reference_in_fp64(generator, batch, d_inner, d_state, seqlen, chunk_size, groups, flags):
    inputs = scan_inputs(batch, d_inner, d_state, seqlen, generator, groups=groups, **flags)
    y_ref, state_ref = _run(selective_scan_reference, inputs)
    y, state = _run(selective_scan_chunked, inputs, chunk_size)
    assert y.dtype == state.dtype == torch.float64
    assert y.shape == (batch, d_inner, seqlen) and state.shape == (batch, d_inner, d_state)
    assert max_relative_error(y, y_ref) < FP64_RTOL
    assert max_relative_error(state, state_ref) < FP64_RTOL


@pytest.mark.parametrize("chunk_size", [16, 64])
def test_chunked_fp32_close_to_fp64_reference(generator, chunk_size):
    inputs = scan_inputs(2, 16, 16, 200, generator, groups=2)
    y_ref, state_ref = _run(selective_scan_reference, inputs)
    y, state = _run(selective_scan_chunked, cast(inputs, torch.float32), chunk_size)
    assert y.dtype == state.dtype == torch.float32
    assert max_relative_error(y, y_ref) < FP32_RTOL
    assert max_relative_error(state, state_ref) < FP32_RTOL


def test_large_step_sizes_split_chunks_and_stay_accurate(generator, monkeypatch):
    """exp(delta * A) spans far more than fp32's range within one chunk: the chunk must be split, not overflow."""
    spans = []
    original = selective_scan_chunked_module._scan_span
    monkeypatch.setattr(selective_scan_chunked_module, "_scan_span",
                        lambda delta, *rest: spans.append(delta.shape[-1]) or original(delta, *rest))
    inputs = scan_inputs(2, 8, 4, 50, generator)
    inputs["delta"] = inputs["delta"] * 4 + 6  # softplus -> ~6 per step, |A| up to ~20: ~100 decades per step
    inputs["A"] = inputs["A"] * 4
    reference = with_grad(inputs)
    y_ref, state_ref = _run(selective_scan_reference, reference)
    fp32 = with_grad(cast(inputs, torch.float32))
    y, state = _run(selective_scan_chunked, fp32, 16)
    assert min(spans) == 1, "the chunks were not split down to single steps"
    assert max_relative_error(y, y_ref) < FP32_RTOL
    assert max_relative_error(state, state_ref) < FP32_RTOL
    y_cotangent = torch.randn(y.shape, generator=generator, dtype=torch.float64)
    for y_out, state_out in ((y_ref, state_ref), (y, state)):
        ((y_out * y_cotangent.to(y_out.dtype)).sum() + state_out.sum()).backward()
    for name, value in fp32.items():
        if isinstance(value, torch.Tensor):
            assert max_relative_error(value.grad, reference[name].grad) < FP32_GRAD_RTOL, name


def test_low_precision_inputs_give_low_precision_output_and_fp32_state(generator):
    inputs = cast(scan_inputs(1, 4, 3, 10, generator), torch.bfloat16)
    y, state = _run(selective_scan_chunked, inputs, 4)
    y_ref, state_ref = _run(selective_scan_reference, inputs)
    assert y.dtype == y_ref.dtype == torch.bfloat16
    assert state.dtype == state_ref.dtype == torch.float32
    assert max_relative_error(state, state_ref) < FP32_RTOL


@pytest.mark.parametrize("groups, flags", [(None, dict()), (2, dict(softplus=False, with_delta_bias=False))])
def test_chunked_gradients_match_reference(generator, groups, flags):
    inputs = scan_inputs(2, 6, 4, 23, generator, groups=groups, **flags)
    y_cotangent = torch.randn(2, 6, 23, generator=generator, dtype=torch.float64)
    state_cotangent = torch.randn(2, 6, 4, generator=generator, dtype=torch.float64)
    gradients = []
    for kernel, chunk in ((selective_scan_reference, None), (selective_scan_chunked, 5)):
        leaves = with_grad(inputs)
        y, state = _run(kernel, leaves, chunk)
        ((y * y_cotangent).sum() + (state * state_cotangent).sum()).backward()
        gradients.append({name: value.grad for name, value in leaves.items() if isinstance(value, torch.Tensor)})
    reference, chunked = gradients
    assert {"u", "delta", "A", "B", "C", "D", "z", "initial_state"} <= set(chunked)
    for name in reference:
        assert chunked[name] is not None and reference[name] is not None, name
        assert max_relative_error(chunked[name], reference[name]) < 1e-9, name


def test_chunked_gradcheck(generator):
    inputs = with_grad(scan_inputs(1, 2, 2, 5, generator, groups=2))
    names = [name for name, value in inputs.items() if isinstance(value, torch.Tensor)]

    def scan(*tensors: torch.Tensor):
        return selective_scan_chunked(**{**inputs, **dict(zip(names, tensors))}, return_final_state=True,
                                      chunk_size=2)

    assert torch.autograd.gradcheck(scan, tuple(inputs[name] for name in names), fast_mode=True)


@pytest.mark.parametrize("groups", [None, 2])
def test_step_updates_replay_the_scan(generator, groups):
    inputs = scan_inputs(2, 6, 4, 12, generator, groups=groups)
    y_ref, state_ref = _run(selective_scan_reference, inputs)
    state = inputs["initial_state"].clone()
    outputs = [
        selective_state_update(state, inputs["u"][..., t], inputs["delta"][..., t], inputs["A"],
                               inputs["B"][..., t], inputs["C"][..., t], D=inputs["D"], z=inputs["z"][..., t],
                               dt_bias=inputs["delta_bias"], dt_softplus=True)
        for t in range(12)
    ]
    assert max_relative_error(torch.stack(outputs, dim=-1), y_ref) < FP64_RTOL
    assert max_relative_error(state, state_ref) < FP64_RTOL


def test_scan_splits_into_consecutive_calls_through_the_final_state(generator):
    inputs = scan_inputs(1, 4, 3, 20, generator)
    y_full, state_full = _run(selective_scan_chunked, inputs, 4)
    head = {k: v[..., :9] if k in ("u", "delta", "B", "C", "z") else v for k, v in inputs.items()}
    tail = {k: v[..., 9:] if k in ("u", "delta", "B", "C", "z") else v for k, v in inputs.items()}
    y_head, state_head = _run(selective_scan_chunked, head, 4)
    y_tail, state_tail = _run(selective_scan_chunked, {**tail, "initial_state": state_head}, 4)
    assert max_relative_error(torch.cat([y_head, y_tail], dim=-1), y_full) < FP64_RTOL
    assert max_relative_error(state_tail, state_full) < FP64_RTOL


def test_uneven_groups_are_rejected(generator):
    inputs = scan_inputs(1, 6, 2, 4, generator, groups=4)
    with pytest.raises(ValueError, match="6 channels/heads cannot be split evenly over 4 groups"):
        selective_scan_chunked(**inputs)
