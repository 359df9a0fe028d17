"""Mamba-2 SSD: block-decomposed (chunked) kernel and decoding step against the sequential fp64 reference, and the
reference against the Mamba-1 scan it specializes (A shared per head, B/C shared per group).

Tolerances (relative error = max |diff| / max |reference|): fp64 vs fp64 agree to rounding, 1e-10; fp32 kernels vs
the fp64 reference 2e-5 (observed <= 3e-7 for these sizes, also with decays far beyond fp32's exp range).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kernel_inputs import cast, max_relative_error, ssd_inputs, with_grad
from mambaseq.kernels import selective_scan_reference, ssd_chunked, ssd_reference, ssd_state_update

FP64_RTOL = 1e-10
FP32_RTOL = 2e-5

# (batch, seqlen, nheads, headdim, ngroups, d_state, chunk_size, optional-feature flags)
CASES = [
    pytest.param(2, 37, 4, 3, 2, 5, 8, dict(), id="L-not-multiple-of-chunk"),
    pytest.param(1, 32, 2, 4, 1, 3, 16, dict(with_initial_state=False), id="exact-chunks-no-initial-state"),
    pytest.param(2, 19, 6, 2, 3, 4, 64, dict(D_per_channel=True), id="chunk-longer-than-L-D-per-channel"),
    pytest.param(1, 11, 2, 3, 2, 2, 1, dict(softplus=False, with_dt_bias=False), id="chunk-1-no-softplus"),
    pytest.param(2, 20, 3, 2, 1, 4, 6, dict(with_D=False, with_z=False), id="no-D-no-z"),
    pytest.param(1, 150, 2, 2, 1, 3, 1, dict(), id="several-blocks-of-64-chunks"),
]


def _run(kernel, inputs: dict, chunk_size: int | None = None, **extra):
    if chunk_size is not None:
        extra["chunk_size"] = chunk_size
    return kernel(**inputs, return_final_state=True, **extra)


@pytest.mark.parametrize("batch, seqlen, nheads, headdim, ngroups, d_state, chunk_size, flags", CASES)
def test_chunked_matches_reference_in_fp64(generator, batch, seqlen, nheads, headdim, ngroups, d_state, chunk_size,
                                           flags):
    inputs = ssd_inputs(batch, seqlen, nheads, headdim, ngroups, d_state, generator, **flags)
    y_ref, state_ref = _run(ssd_reference, inputs)
    y, state = _run(ssd_chunked, inputs, chunk_size)
    assert y.shape == (batch, seqlen, nheads, headdim) and state.shape == (batch, nheads, headdim, d_state)
    assert max_relative_error(y, y_ref) < FP64_RTOL
    assert max_relative_error(state, state_ref) < FP64_RTOL


@pytest.mark.parametrize("chunk_size", [16, 64])
def test_chunked_fp32_close_to_fp64_reference(generator, chunk_size):
    inputs = ssd_inputs(2, 150, 4, 8, 2, 16, generator)
    y_ref, state_ref = _run(ssd_reference, inputs)
    y, state = _run(ssd_chunked, cast(inputs, torch.float32), chunk_size)
    assert y.dtype == state.dtype == torch.float32
    assert max_relative_error(y, y_ref) < FP32_RTOL
    assert max_relative_error(state, state_ref) < FP32_RTOL


def test_strong_decay_does_not_overflow_in_fp32(generator):
    """Cumulative dt * A over a chunk reaches thousands: only segment sums (<= 0) may be exponentiated."""
    inputs = ssd_inputs(1, 64, 2, 3, 1, 4, generator)
    inputs["dt"] = inputs["dt"] + 5.0  # softplus -> ~5 per step
    inputs["A"] = inputs["A"] * 10
    y_ref, state_ref = _run(ssd_reference, inputs)
    y, state = _run(ssd_chunked, cast(inputs, torch.float32), 64)
    assert max_relative_error(y, y_ref) < FP32_RTOL
    assert max_relative_error(state, state_ref) < FP32_RTOL


def test_dt_limit_clamps_after_softplus(generator):
    inputs = ssd_inputs(1, 13, 2, 3, 1, 4, generator)
    limit = (0.2, 0.5)
    clamped_dt = F.softplus(inputs["dt"] + inputs["dt_bias"]).clamp(*limit)
    preprocessed = {**inputs, "dt": clamped_dt, "dt_bias": None, "dt_softplus": False}
    y_expected, _ = _run(ssd_reference, preprocessed)
    y_limited, _ = _run(ssd_reference, inputs, dt_limit=limit)
    y_chunked, _ = _run(ssd_chunked, inputs, 4, dt_limit=limit)
    y_unlimited, _ = _run(ssd_reference, inputs)
    assert max_relative_error(y_limited, y_expected) < FP64_RTOL
    assert max_relative_error(y_chunked, y_expected) < FP64_RTOL
    assert max_relative_error(y_unlimited, y_expected) > 1e-3  # the limit is active on these inputs


@pytest.mark.parametrize("seqlen, chunk_size", [(21, 8), (140, 2)])  # (140, 2): 70 chunks, two state-passing blocks
def test_chunked_gradients_match_reference(generator, seqlen, chunk_size):
    inputs = ssd_inputs(2, seqlen, 4, 3, 2, 4, generator, D_per_channel=True)
    y_cotangent = torch.randn(2, seqlen, 4, 3, generator=generator, dtype=torch.float64)
    state_cotangent = torch.randn(2, 4, 3, 4, generator=generator, dtype=torch.float64)
    gradients = []
    for kernel, chunk in ((ssd_reference, None), (ssd_chunked, chunk_size)):
        leaves = with_grad(inputs)
        y, state = _run(kernel, leaves, chunk)
        ((y * y_cotangent).sum() + (state * state_cotangent).sum()).backward()
        gradients.append({name: value.grad for name, value in leaves.items() if isinstance(value, torch.Tensor)})
    reference, chunked = gradients
    assert set(chunked) == {"x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_state"}
    for name in reference:
        assert max_relative_error(chunked[name], reference[name]) < 1e-9, name


def test_chunked_gradcheck(generator):
    inputs = with_grad(ssd_inputs(1, 5, 2, 2, 1, 2, generator))
    names = [name for name, value in inputs.items() if isinstance(value, torch.Tensor)]

    def scan(*tensors: torch.Tensor):
        return ssd_chunked(**{**inputs, **dict(zip(names, tensors))}, return_final_state=True, chunk_size=2)

    assert torch.autograd.gradcheck(scan, tuple(inputs[name] for name in names), fast_mode=True)


@pytest.mark.parametrize("D_per_channel", [False, True])
def test_step_updates_replay_the_scan(generator, D_per_channel):
    inputs = ssd_inputs(2, 10, 4, 3, 2, 5, generator, D_per_channel=D_per_channel)
    limit = (0.05, 2.0)
    y_ref, state_ref = _run(ssd_reference, inputs, dt_limit=limit)
    state = inputs["initial_state"].clone()
    outputs = [
        ssd_state_update(state, inputs["x"][:, t], inputs["dt"][:, t], inputs["A"], inputs["B"][:, t],
                         inputs["C"][:, t], D=inputs["D"], z=inputs["z"][:, t], dt_bias=inputs["dt_bias"],
                         dt_softplus=True, dt_limit=limit)
        for t in range(10)
    ]
    assert max_relative_error(torch.stack(outputs, dim=1), y_ref) < FP64_RTOL
    assert max_relative_error(state, state_ref) < FP64_RTOL


def test_ssd_equals_mamba1_scan_with_a_shared_per_head(generator):
    """SSD is a Mamba-1 scan over nheads * headdim channels whose A row is one value per head and whose
    B/C groups are the SSD groups; step sizes and D are shared by a head's channels."""
    batch, seqlen, nheads, headdim, ngroups, d_state = 2, 17, 4, 3, 2, 5
    inputs = ssd_inputs(batch, seqlen, nheads, headdim, ngroups, d_state, generator)
    y_ssd, state_ssd = _run(ssd_chunked, inputs, 8)

    def per_channel(t: torch.Tensor) -> torch.Tensor:  # (..., nheads) -> (..., nheads * headdim)
        return t.repeat_interleave(headdim, dim=-1)

    channels = nheads * headdim
    y_scan, state_scan = _run(selective_scan_reference, dict(
        u=inputs["x"].reshape(batch, seqlen, channels).transpose(1, 2),
        delta=per_channel(inputs["dt"]).transpose(1, 2),
        A=per_channel(inputs["A"])[:, None].expand(channels, d_state),
        B=inputs["B"].permute(0, 2, 3, 1),
        C=inputs["C"].permute(0, 2, 3, 1),
        D=per_channel(inputs["D"]),
        z=inputs["z"].reshape(batch, seqlen, channels).transpose(1, 2),
        delta_bias=per_channel(inputs["dt_bias"]),
        delta_softplus=True,
        initial_state=inputs["initial_state"].reshape(batch, channels, d_state),
    ))
    assert max_relative_error(y_ssd, y_scan.transpose(1, 2).reshape(batch, seqlen, nheads, headdim)) < FP64_RTOL
    assert max_relative_error(state_ssd, state_scan.reshape(batch, nheads, headdim, d_state)) < FP64_RTOL


def test_uneven_head_groups_are_rejected(generator):
    inputs = ssd_inputs(1, 4, 3, 2, 2, 2, generator)
    with pytest.raises(ValueError, match="3 heads cannot be split evenly over 2 groups"):
        ssd_chunked(**inputs)
    with pytest.raises(ValueError, match="3 channels/heads cannot be split evenly over 2 groups"):
        ssd_reference(**inputs)
