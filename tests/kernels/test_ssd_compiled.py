"""`ssd_triton` against the fp64 sequential reference: outputs, final state and every gradient. CPU: the call is
`ssd_blocks` under torch.compile (Inductor's C++ backend) on a tiny fp64 problem (compiles for ~40 s, hence `slow`);
GPU: the Triton kernels in fp32 and bf16 at small head and state sizes, tolerances as for the chunked kernel on the
GPU."""
import pytest
import torch

from kernel_inputs import cast, max_relative_error, ssd_inputs, with_grad
from mambaseq.kernels import ssd, ssd_reference
from mambaseq.kernels.triton import ssd_triton

GRAD_NAMES = {"x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_state"}


def _outputs_and_gradients(kernel, inputs: dict, cotangents: tuple[torch.Tensor, torch.Tensor], **extra):
    leaves = with_grad(inputs)
    y, state = kernel(**leaves, return_final_state=True, **extra)
    ((y * cotangents[0].to(y)).sum() + (state * cotangents[1].to(state)).sum()).backward()
    grads = {name: value.grad for name, value in leaves.items() if isinstance(value, torch.Tensor)}
    return y.detach(), state.detach(), grads


def _compare(inputs: dict, reference_inputs: dict, generator: torch.Generator, chunk_size: int, tolerance: float):
    batch, seqlen, nheads, headdim = inputs["x"].shape
    d_state = inputs["B"].shape[-1]
    cotangents = (torch.randn(batch, seqlen, nheads, headdim, generator=generator, dtype=torch.float64),
                  torch.randn(batch, nheads, headdim, d_state, generator=generator, dtype=torch.float64))
    y_ref, state_ref, grads_ref = _outputs_and_gradients(ssd_reference, reference_inputs, cotangents)
    y, state, grads = _outputs_and_gradients(ssd_triton, inputs, cotangents, chunk_size=chunk_size)
    assert set(grads) == GRAD_NAMES
    assert max_relative_error(y.cpu(), y_ref) < tolerance
    assert max_relative_error(state.cpu(), state_ref) < tolerance
    for name in GRAD_NAMES:
        assert max_relative_error(grads[name].cpu(), grads_ref[name]) < tolerance, name


@pytest.mark.slow
def test_compiled_ssd_matches_the_reference_on_cpu_in_fp64(generator):
    inputs = ssd_inputs(2, 37, 4, 3, 2, 5, generator, D_per_channel=True)
    _compare(inputs, inputs, generator, chunk_size=8, tolerance=1e-10)


def test_dispatch_routes_the_triton_backend_to_the_compiled_ssd(generator, monkeypatch):
    calls = []
    monkeypatch.setattr("mambaseq.kernels.triton.ssd._compiled_ssd", lambda: lambda *args: calls.append(args) or args)
    inputs = ssd_inputs(1, 5, 2, 2, 1, 3, generator)
    ssd(**inputs, chunk_size=4, backend="triton")
    assert len(calls) == 1 and calls[0][-2] == 4  # chunk_size passed through


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-3), (torch.bfloat16, 3e-2)])
def test_compiled_ssd_matches_the_reference_on_cuda(generator, dtype, tolerance):
    """fp32: reordered sums over 1000 steps; bf16: inputs and output rounded to 8 bits (the reference runs in
    fp64 on the same rounded inputs)."""
    inputs = ssd_inputs(2, 1000, 8, 16, 2, 32, generator)
    rounded = cast(cast(inputs, dtype), torch.float64)
    on_gpu = {k: v.to("cuda", dtype) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    _compare(on_gpu, rounded, generator, chunk_size=128, tolerance=tolerance)
