"""Backend dispatch: name validation, which kernel runs on CPU, clear errors for missing optional backends,
cached optional imports, and (on a GPU) the CUDA / Triton backends against the fp64 references."""
from __future__ import annotations

import importlib

import pytest
import torch

from kernel_inputs import cast, max_relative_error, scan_inputs, ssd_inputs
from mambaseq.kernels import (
    BACKENDS,
    causal_conv,
    selective_scan,
    selective_scan_chunked,
    selective_scan_reference,
    ssd,
    ssd_chunked,
    ssd_reference,
)

dispatch = importlib.import_module("mambaseq.kernels.dispatch")


def _conv_arguments(generator: torch.Generator, device: str = "cpu", dtype: torch.dtype = torch.float64,
                    channels: int = 6):
    x = torch.randn(2, channels, 11, generator=generator, dtype=dtype).to(device)
    weight = torch.randn(channels, 4, generator=generator, dtype=dtype).to(device)
    bias = torch.randn(channels, generator=generator, dtype=dtype).to(device)
    history = torch.randn(2, channels, 3, generator=generator, dtype=dtype).to(device)
    return x, weight, bias, history


def test_unknown_backend_names_the_value_and_the_choices(generator):
    scan = scan_inputs(1, 2, 2, 3, generator)
    heads = ssd_inputs(1, 3, 2, 2, 1, 2, generator)
    x, weight, bias, _ = _conv_arguments(generator)
    calls = [lambda: selective_scan(**scan, backend="cuda-graphs"), lambda: ssd(**heads, backend="cuda-graphs"),
             lambda: causal_conv(x, weight, bias, backend="cuda-graphs")]
    for call in calls:
        with pytest.raises(ValueError, match=r"'cuda-graphs'.*'auto', 'reference', 'chunked', 'triton', 'cuda'"):
            call()
    assert BACKENDS == ("auto", "reference", "chunked", "triton", "cuda")


def test_cpu_backends_run_the_named_pytorch_kernels(generator):
    scan = scan_inputs(2, 4, 3, 19, generator)
    heads = ssd_inputs(2, 19, 2, 3, 1, 4, generator)
    for backend in ("auto", "chunked"):
        assert torch.equal(selective_scan(**scan, chunk_size=8, backend=backend),
                           selective_scan_chunked(**scan, chunk_size=8))
        assert torch.equal(ssd(**heads, chunk_size=8, backend=backend), ssd_chunked(**heads, chunk_size=8))
    assert torch.equal(selective_scan(**scan, backend="reference"), selective_scan_reference(**scan))
    assert torch.equal(ssd(**heads, backend="reference"), ssd_reference(**heads))
    conv_module = importlib.import_module("mambaseq.kernels.causal_conv1d")
    x, weight, bias, history = _conv_arguments(generator)
    out, final = causal_conv(x, weight, bias, "silu", history, True, backend="auto")
    expected, expected_final = conv_module.causal_conv1d(x, weight, bias, "silu", history, True)
    assert torch.equal(out, expected) and torch.equal(final, expected_final)


def test_missing_optional_backend_is_a_clear_error(generator, monkeypatch):
    monkeypatch.setattr(dispatch, "_optional", lambda module, name: (None, "ModuleNotFoundError: absent"))
    scan = scan_inputs(1, 2, 2, 3, generator, with_initial_state=False)
    heads = ssd_inputs(1, 3, 2, 2, 1, 2, generator)
    with pytest.raises(RuntimeError, match=r"backend='triton' needs mambaseq\.kernels\.triton\.selective_scan_triton"):
        selective_scan(**scan, backend="triton")
    with pytest.raises(RuntimeError, match=r"backend='triton' needs mambaseq\.kernels\.triton\.ssd_triton"):
        ssd(**heads, backend="triton")
    with pytest.raises(RuntimeError, match=r"needs mamba_ssm\.ops\.selective_scan_interface\.selective_scan_fn"):
        selective_scan(**cast(scan, torch.float32), backend="cuda")
    with pytest.raises(RuntimeError, match=r"needs mamba_ssm\.ops\.triton\.ssd_combined\.mamba_chunk_scan_combined"):
        ssd(**cast(heads, torch.float32), backend="cuda")


def test_cuda_backend_refuses_what_its_kernel_cannot_do(generator):
    scan = scan_inputs(1, 2, 2, 3, generator)
    with pytest.raises(ValueError, match="dtype torch.float64"):
        selective_scan(**scan, backend="cuda")
    x, weight, bias, _ = _conv_arguments(generator, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"width 5 \(supported: 2-4\)"):
        causal_conv(x, torch.randn(6, 5), bias, backend="cuda")
    with pytest.raises(ValueError, match="dtype torch.float64"):
        causal_conv(x.double(), weight, bias, backend="cuda")
    _, _, _, history = _conv_arguments(generator, dtype=torch.float32)
    with pytest.raises(ValueError, match="6 channels with an initial state"):
        causal_conv(x, weight, bias, initial_state=history, return_final_state=True, backend="cuda")


def test_optional_imports_are_attempted_once(generator, monkeypatch):
    attempts = []
    real_import = importlib.import_module

    def counting_import(name: str):
        attempts.append(name)
        if name.startswith("mamba_ssm"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name)

    monkeypatch.setattr(dispatch.importlib, "import_module", counting_import)
    dispatch._optional.cache_clear()
    scan = cast(scan_inputs(1, 2, 2, 3, generator, with_initial_state=False), torch.float32)
    try:
        for _ in range(3):
            with pytest.raises(RuntimeError, match="ModuleNotFoundError"):
                selective_scan(**scan, backend="cuda")
    finally:
        dispatch._optional.cache_clear()
    assert attempts == ["mamba_ssm.ops.selective_scan_interface"]


_GPU_KERNELS = {
    "cuda": [("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn"),
             ("mamba_ssm.ops.triton.ssd_combined", "mamba_chunk_scan_combined"), ("causal_conv1d", "causal_conv1d_fn")],
    "triton": [("mambaseq.kernels.triton", "selective_scan_triton"), ("mambaseq.kernels.triton", "ssd_triton")],
}


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["auto", "chunked", "triton", "cuda"])
def test_gpu_backends_match_the_fp64_references(generator, backend):
    """fp32 on the GPU vs the fp64 CPU reference, relative 1e-3 (GPU kernels reorder sums and use fast exp)."""
    missing = [f"{module}.{name}" for module, name in _GPU_KERNELS.get(backend, [])
               if dispatch._optional(module, name)[0] is None]
    if missing:
        pytest.skip(f"not importable: {missing}")

    def on_gpu(inputs: dict) -> dict:
        return {k: v.to("cuda", torch.float32) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}

    scan = scan_inputs(2, 16, 8, 100, generator, with_initial_state=False)
    y, state = selective_scan(**on_gpu(scan), return_final_state=True, backend=backend)
    y_ref, state_ref = selective_scan_reference(**scan, return_final_state=True)
    assert max_relative_error(y.cpu(), y_ref) < 1e-3 and max_relative_error(state.cpu(), state_ref) < 1e-3
    heads = ssd_inputs(2, 100, 4, 16, 2, 16, generator)
    y, state = ssd(**on_gpu(heads), return_final_state=True, chunk_size=32, backend=backend)
    y_ref, state_ref = ssd_reference(**heads, return_final_state=True)
    # mamba-ssm's SSD kernels multiply fp32 inputs with TF32 tensor-core dots (10-bit mantissa): 1.5e-3 seen on H100.
    ssd_tolerance = 5e-3 if backend in ("cuda", "auto") else 1e-3
    assert max_relative_error(y.cpu(), y_ref) < ssd_tolerance
    assert max_relative_error(state.cpu(), state_ref) < ssd_tolerance
    x, weight, bias, history = _conv_arguments(generator, channels=16)  # causal-conv1d: multiples of 8 with states
    out, final = causal_conv(*(t.to("cuda", torch.float32) for t in (x, weight, bias)), "silu",
                             history.to("cuda", torch.float32), True, backend=backend)
    expected, expected_final = causal_conv(x, weight, bias, "silu", history, True, backend="reference")
    assert max_relative_error(out.cpu(), expected) < 1e-3 and max_relative_error(final.cpu(), expected_final) < 1e-6


@pytest.mark.gpu
@pytest.mark.parametrize("seqlen", [2, 11])
@pytest.mark.parametrize("backend", ["auto", "cuda", "triton"])
def test_gpu_conv_final_state_from_zero_states(generator, backend, seqlen):
    """A pass from zero states that returns the final state (prompt prefill): any channel count, sequences shorter
    than the state (zero-padded), output and state equal to the reference's, and gradients through both."""
    missing = [f"{module}.{name}" for module, name in _GPU_KERNELS.get(backend, [])
               if dispatch._optional(module, name)[0] is None]
    if missing:
        pytest.skip(f"not importable: {missing}")
    x, weight, bias, _ = _conv_arguments(generator, channels=6)
    x = x[..., :seqlen]
    gpu = [t.to("cuda", torch.float32).requires_grad_() for t in (x, weight, bias)]
    cpu = [t.clone().requires_grad_() for t in (x, weight, bias)]
    out, final = causal_conv(*gpu, "silu", None, True, backend=backend)
    expected, expected_final = causal_conv(*cpu, "silu", None, True, backend="reference")
    assert final.shape == expected_final.shape == (2, 6, 3)
    assert max_relative_error(out.cpu(), expected) < 1e-3 and max_relative_error(final.cpu(), expected_final) < 1e-6
    probe = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    probe_state = torch.randn(final.shape, generator=generator, dtype=torch.float64)
    ((out * probe.to(out)).sum() + (final * probe_state.to(final)).sum()).backward()
    ((expected * probe).sum() + (expected_final * probe_state).sum()).backward()
    for name, mine, reference in zip(("x", "weight", "bias"), gpu, cpu):
        assert max_relative_error(mine.grad.cpu(), reference.grad) < 1e-3, name


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["auto", "triton", "cuda"])
def test_gpu_scan_from_an_initial_state_with_gradients(generator, backend):
    """The stateful scan on CUDA (mamba-ssm's kernel with state positions, or Triton) vs the fp64 reference:
    outputs, final state and the gradients of a random objective through both, relative 1e-3 in fp32."""
    missing = [f"{module}.{name}" for module, name in _GPU_KERNELS.get(backend, [])[:1]
               if dispatch._optional(module, name)[0] is None]
    if missing:
        pytest.skip(f"not importable: {missing}")
    scan = scan_inputs(2, 16, 8, 100, generator, with_initial_state=True)
    leaves = {k: v.requires_grad_() for k, v in scan.items() if isinstance(v, torch.Tensor)}
    on_gpu = {k: v.detach().to("cuda", torch.float32).requires_grad_() if k in leaves else v for k, v in scan.items()}
    weights_y = torch.randn(scan["u"].shape, generator=generator, dtype=torch.float64)
    weights_state = torch.randn(scan["initial_state"].shape, generator=generator, dtype=torch.float64)

    def objective(y, state):
        return (y * weights_y.to(y)).sum() + (state * weights_state.to(state)).sum()

    y_ref, state_ref = selective_scan_reference(**scan, return_final_state=True)
    grads_ref = torch.autograd.grad(objective(y_ref, state_ref), list(leaves.values()))
    y, state = selective_scan(**on_gpu, return_final_state=True, backend=backend)
    grads = torch.autograd.grad(objective(y, state), [on_gpu[k] for k in leaves])
    assert max_relative_error(y.cpu(), y_ref) < 1e-3 and max_relative_error(state.cpu(), state_ref) < 1e-3
    for name, got, expected in zip(leaves, grads, grads_ref, strict=True):
        assert max_relative_error(got.cpu(), expected) < 1e-3, name


@pytest.mark.gpu
def test_gpu_auto_runs_wide_scans_without_gradient_on_triton(generator):
    """"auto" takes the Triton scan for a call with no gradient and batch * d_inner >= TRITON_INFERENCE_MIN_CHANNELS
    (a prompt prefill at large batch), mamba-ssm's kernel otherwise; the wide call's output and final state match
    the fp64 reference (relative 1e-3 in fp32)."""
    if dispatch._optional("mambaseq.kernels.triton", "selective_scan_triton")[0] is None:
        pytest.skip("Triton scan not importable")
    batch, d_inner = 4, dispatch.TRITON_INFERENCE_MIN_CHANNELS // 4
    scan = scan_inputs(batch, d_inner, 16, 40, generator, with_initial_state=False)
    on_gpu = {k: v.to("cuda", torch.float32) if isinstance(v, torch.Tensor) else v for k, v in scan.items()}
    assert dispatch._wide_inference_scan(on_gpu["u"], tracks_grad=False)
    assert not dispatch._wide_inference_scan(on_gpu["u"][:1], tracks_grad=False)
    assert not dispatch._wide_inference_scan(on_gpu["u"], tracks_grad=True)
    with torch.enable_grad():
        assert dispatch._tracks_grad(on_gpu["u"], on_gpu["delta"].clone().requires_grad_())
    y_ref, state_ref = selective_scan_reference(**scan, return_final_state=True)
    with torch.no_grad():
        y, state = selective_scan(**on_gpu, return_final_state=True, backend="auto")
    assert max_relative_error(y.cpu(), y_ref) < 1e-3 and max_relative_error(state.cpu(), state_ref) < 1e-3
