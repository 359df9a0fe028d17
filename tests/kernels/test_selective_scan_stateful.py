"""The mamba-ssm route for initial and differentiable final states, with `selective_scan_fn` emulated (fp64)."""
import pytest
import torch

from mambaseq.kernels import dispatch, selective_scan_reference
from mambaseq.kernels.selective_scan_stateful import selective_scan_from_zero_state_kernel


def _zero_state_kernel(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """mamba-ssm's `selective_scan_fn` contract, emulated: zero initial state, last state without gradient."""
    y, last = selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_final_state=True)
    return (y, last.detach()) if return_last_state else y


def _scan_inputs(seed: int, with_initial_state: bool, with_optional: bool) -> dict:
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=generator, dtype=torch.float64) * scale).requires_grad_(True)

    batch, d_inner, d_state, length = 2, 3, 4, 9
    A = (-torch.rand(d_inner, d_state, generator=generator, dtype=torch.float64) * 8 - 0.5).requires_grad_(True)
    return {
        "u": rand(batch, d_inner, length), "delta": rand(batch, d_inner, length), "A": A,
        "B": rand(batch, d_state, length), "C": rand(batch, d_state, length),
        "D": rand(d_inner) if with_optional else None, "z": rand(batch, d_inner, length) if with_optional else None,
        "delta_bias": rand(d_inner, scale=0.5) if with_optional else None, "delta_softplus": with_optional,
        "initial_state": rand(batch, d_inner, d_state) if with_initial_state else None,
    }


@pytest.mark.parametrize("with_initial_state", [True, False])
@pytest.mark.parametrize("with_optional", [True, False])
def test_zero_state_kernel_route_equals_the_reference(with_initial_state, with_optional):
    inputs = _scan_inputs(5, with_initial_state, with_optional)
    leaves = [t for t in inputs.values() if isinstance(t, torch.Tensor)]
    length = inputs["u"].shape[-1]
    weights_y = torch.randn(*inputs["u"].shape, dtype=torch.float64)
    weights_state = torch.randn(*inputs["u"].shape[:2], inputs["A"].shape[1], dtype=torch.float64)

    def objective(y, final):
        return (y * weights_y).sum() + (final * weights_state).sum()

    y_ref, final_ref = selective_scan_reference(**inputs, return_final_state=True)
    reference = torch.autograd.grad(objective(y_ref, final_ref), leaves)
    y, final = selective_scan_from_zero_state_kernel(_zero_state_kernel, **inputs)
    assert y.shape[-1] == length
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(final, final_ref, rtol=1e-10, atol=1e-12)
    for got, expected in zip(torch.autograd.grad(objective(y, final), leaves), reference, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)


def test_cuda_backend_takes_the_state_route_only_when_needed(monkeypatch):
    calls = []

    def kernel(*args, **kwargs):
        calls.append(args[0].shape[-1])
        return _zero_state_kernel(*args, **kwargs)

    monkeypatch.setattr(dispatch, "_optional", lambda module, name: (kernel, ""))
    monkeypatch.setattr(dispatch, "_CUDA_DTYPES", (torch.float64,))  # exact emulation in fp64
    inputs = _scan_inputs(6, with_initial_state=True, with_optional=True)
    length, d_state = inputs["u"].shape[-1], inputs["A"].shape[1]
    y, final = dispatch.selective_scan(**inputs, return_final_state=True, backend="cuda")
    y_ref, final_ref = selective_scan_reference(**inputs, return_final_state=True)
    torch.testing.assert_close(final, final_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    with torch.no_grad():  # no initial state, no gradient: the kernel is called on the sequence as is
        dispatch.selective_scan(**{**inputs, "initial_state": None}, return_final_state=True, backend="cuda")
    assert calls == [length + 2 * d_state, length]


def test_grouped_B_with_states_is_refused_by_the_cuda_backend():
    inputs = _scan_inputs(7, with_initial_state=True, with_optional=False)
    inputs["B"] = inputs["B"].detach()[:, None]
    inputs["C"] = inputs["C"].detach()[:, None]
    with pytest.raises(ValueError, match="grouped B/C with an initial state"):
        dispatch.selective_scan(**inputs, backend="cuda")
