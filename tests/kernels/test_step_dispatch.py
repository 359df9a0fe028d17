"""Decoding-step dispatch: backend errors on CPU; on CUDA, mamba-ssm's `selective_state_update` and causal-conv1d's
`causal_conv1d_update` (when importable), our Triton state update and the fused Mamba-1 step pieces against the fp64
PyTorch steps, state updates included."""
import importlib.util

import pytest
import torch

from mambaseq.kernels import (
    add_norm_in_proj_conv,
    causal_conv1d_update,
    mamba1_state_step,
    mamba1_state_step_out_proj,
    selective_state_update,
    ssd_state_update,
)
from mambaseq.kernels.causal_conv1d import causal_conv1d_update as causal_conv1d_update_torch
from mambaseq.kernels.mamba1_step import add_norm_in_proj_conv as add_norm_in_proj_conv_torch
from mambaseq.kernels.mamba1_step import mamba1_state_step as mamba1_state_step_torch
from mambaseq.kernels.mamba1_step import mamba1_state_step_out_proj as mamba1_state_step_out_proj_torch
from mambaseq.kernels.state_update import selective_state_update as selective_state_update_torch
from mambaseq.kernels.state_update import ssd_state_update as ssd_state_update_torch


def mamba1_step_inputs(batch: int = 2, d_inner: int = 24, d_state: int = 16, device: str = "cpu",
                       dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    return dict(
        state=torch.randn(batch, d_inner, d_state, device=device),
        x=torch.randn(batch, d_inner, device=device, dtype=dtype),
        dt=torch.randn(batch, d_inner, device=device, dtype=dtype),
        A=-torch.rand(d_inner, d_state, device=device) - 0.5,
        B=torch.randn(batch, d_state, device=device, dtype=dtype),
        C=torch.randn(batch, d_state, device=device, dtype=dtype),
        D=torch.randn(d_inner, device=device),
        z=torch.randn(batch, d_inner, device=device, dtype=dtype),
        dt_bias=torch.randn(d_inner, device=device) - 2.0,
    )


def ssd_step_inputs(D_has_hdim: bool, batch: int = 2, nheads: int = 4, headdim: int = 8, ngroups: int = 2,
                    d_state: int = 16, device: str = "cpu", dtype: torch.dtype = torch.float32) -> dict:
    return dict(
        state=torch.randn(batch, nheads, headdim, d_state, device=device),
        x=torch.randn(batch, nheads, headdim, device=device, dtype=dtype),
        dt=torch.randn(batch, nheads, device=device, dtype=dtype),
        A=-torch.rand(nheads, device=device) - 0.5,
        B=torch.randn(batch, ngroups, d_state, device=device, dtype=dtype),
        C=torch.randn(batch, ngroups, d_state, device=device, dtype=dtype),
        D=torch.randn(*((nheads, headdim) if D_has_hdim else (nheads,)), device=device),
        z=torch.randn(batch, nheads, headdim, device=device, dtype=dtype),
        dt_bias=torch.randn(nheads, device=device) - 2.0,
    )


def as_fp64(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.double() for name, tensor in inputs.items()}


def test_cuda_backend_on_cpu_tensors_raises_naming_the_device() -> None:
    inputs = mamba1_step_inputs()
    with pytest.raises(ValueError, match="cannot run this decoding step: tensors on cpu"):
        selective_state_update(**inputs, dt_softplus=True, backend="cuda")
    with pytest.raises(ValueError, match="unknown kernel backend 'fast'"):
        selective_state_update(**inputs, backend="fast")


def test_triton_backend_on_cpu_tensors_raises_naming_the_device() -> None:
    with pytest.raises(ValueError, match="backend='triton' cannot run this decoding step: tensors on cpu"):
        ssd_state_update(**ssd_step_inputs(D_has_hdim=False), dt_softplus=True, backend="triton")
    with pytest.raises(ValueError, match="backend='triton' cannot run this decoding step: tensors on cpu"):
        causal_conv1d_update(torch.randn(2, 6), torch.randn(2, 6, 3), torch.randn(6, 4), None, "silu",
                             backend="triton")
    with pytest.raises(ValueError, match=r"width 1 \(the Triton step needs >= 2\)"):
        causal_conv1d_update(torch.randn(2, 6), torch.randn(2, 6, 0), torch.randn(6, 1), backend="triton")


def test_cuda_backend_refuses_unsupported_calls_by_reason() -> None:
    inputs = ssd_step_inputs(D_has_hdim=False)
    with pytest.raises(ValueError, match=r"dt_limit=\(0.0, 0.5\)"):
        ssd_state_update(**inputs, dt_softplus=True, dt_limit=(0.0, 0.5), backend="cuda")
    conv_state = torch.randn(2, 6, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="dtypes x=torch.float32, conv_state=torch.float64"):
        causal_conv1d_update(torch.randn(2, 6), conv_state, torch.randn(6, 4), None, "silu", backend="cuda")


def test_non_cuda_backends_run_the_pytorch_step(seed: int) -> None:
    inputs = mamba1_step_inputs()
    expected_state = inputs["state"].clone()
    expected = selective_state_update_torch(**{**inputs, "state": expected_state}, dt_softplus=True)
    for backend in ("auto", "chunked", "reference"):
        state = inputs["state"].clone()
        out = selective_state_update(**{**inputs, "state": state}, dt_softplus=True, backend=backend)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(state, expected_state)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
requires_mamba_ssm = pytest.mark.skipif(not _importable("mamba_ssm"), reason="needs mamba-ssm")
requires_causal_conv1d = pytest.mark.skipif(not _importable("causal_conv1d"), reason="needs causal-conv1d")


STATE_UPDATE_BACKENDS = [pytest.param("cuda", marks=requires_mamba_ssm), "triton"]


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("backend", STATE_UPDATE_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_selective_state_update_kernels_match_fp64(backend: str, dtype: torch.dtype, seed: int) -> None:
    inputs = mamba1_step_inputs(d_inner=80, device="cuda", dtype=dtype)
    reference = as_fp64(inputs)
    tolerance = dict(rtol=2e-3, atol=2e-3) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    for _ in range(3):  # state carried over steps
        out = selective_state_update(**inputs, dt_softplus=True, backend=backend)
        expected = selective_state_update_torch(**reference, dt_softplus=True)
        torch.testing.assert_close(out.double(), expected, **tolerance)
        torch.testing.assert_close(inputs["state"].double(), reference["state"], **tolerance)


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("backend", STATE_UPDATE_BACKENDS)
@pytest.mark.parametrize("D_has_hdim", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_ssd_state_update_kernels_match_fp64(backend: str, D_has_hdim: bool, dtype: torch.dtype, seed: int) -> None:
    inputs = ssd_step_inputs(D_has_hdim, device="cuda", dtype=dtype)
    reference = as_fp64(inputs)
    tolerance = dict(rtol=2e-3, atol=2e-3) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    for _ in range(3):
        out = ssd_state_update(**inputs, dt_softplus=True, backend=backend)
        expected = ssd_state_update_torch(**reference, dt_softplus=True)
        torch.testing.assert_close(out.double(), expected, **tolerance)
        torch.testing.assert_close(inputs["state"].double(), reference["state"], **tolerance)


CONV_UPDATE_BACKENDS = [pytest.param("cuda", marks=requires_causal_conv1d), "triton"]


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("backend", CONV_UPDATE_BACKENDS)
@pytest.mark.parametrize("width", [2, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_causal_conv1d_update_kernels_match_fp64(backend: str, width: int, dtype: torch.dtype, seed: int) -> None:
    x = torch.randn(3, 40, 5, device="cuda", dtype=dtype)
    conv_state = torch.randn(3, 40, width - 1, device="cuda", dtype=dtype)
    weight, bias = torch.randn(40, width, device="cuda", dtype=dtype), torch.randn(40, device="cuda", dtype=dtype)
    reference_state = conv_state.double()
    tolerance = dict(rtol=1e-3, atol=1e-3) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    for t in range(x.shape[-1]):
        out = causal_conv1d_update(x[..., t], conv_state, weight, bias, "silu", backend=backend)
        expected = causal_conv1d_update_torch(x[..., t].double(), reference_state, weight.double(), bias.double(),
                                              "silu")
        torch.testing.assert_close(out.double(), expected, **tolerance)
        torch.testing.assert_close(conv_state.double(), reference_state, **tolerance)


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected).norm() / expected.norm()).item()


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("batch", [1, 5, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_fused_mamba1_step_pieces_match_fp64(batch: int, dtype: torch.dtype, seed: int) -> None:
    """The Triton front (add + RMSNorm + in_proj + conv step) and the state step with low-rank dt and A_log, over 3
    steps with carried states, against their fp64 PyTorch twins; 1.4B-like widths scaled down (d_inner = 2 d_model,
    dt_rank = d_model / 16), residual stream in fp32."""
    d_model, d_inner, d_state, dt_rank, width = 256, 512, 16, 16, 4
    device = "cuda"
    front = dict(
        hidden=torch.randn(batch, d_model, device=device, dtype=dtype),
        residual=torch.randn(batch, d_model, device=device) * 4,
        norm_weight=(torch.rand(d_model, device=device) + 0.5).to(dtype), eps=1e-5, residual_dtype=torch.float32,
        proj_weight=(torch.randn(2 * d_inner, d_model, device=device) * d_model**-0.5).to(dtype), proj_bias=None,
        conv_state=torch.randn(batch, d_inner, width - 1, device=device, dtype=dtype),
        conv_weight=(torch.randn(d_inner, width, device=device) * 0.5).to(dtype),
        conv_bias=torch.randn(d_inner, device=device, dtype=dtype),
    )
    reference = {name: (value.double() if isinstance(value, torch.Tensor) else value) for name, value in front.items()}
    reference["residual_dtype"] = torch.float64
    ssm = dict(
        state=torch.randn(batch, d_inner, d_state, device=device), dt_proj_weight=(torch.randn(
            d_inner, dt_rank, device=device) * dt_rank**-0.5).to(dtype),
        A_log=torch.log(torch.arange(1, d_state + 1, device=device, dtype=torch.float32)).expand(d_inner, -1)
        .contiguous(), D=torch.ones(d_inner, device=device), dt_bias=torch.rand(d_inner, device=device) - 4.0,
    )
    ssm_reference = {name: value.double() for name, value in ssm.items()}
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    for _ in range(3):
        xz, residual = add_norm_in_proj_conv(**front, backend="triton")
        xz_expected, residual_expected = add_norm_in_proj_conv_torch(**reference)
        assert xz.dtype == dtype and residual.dtype == torch.float32
        assert _relative_error(residual, residual_expected) < 1e-6
        assert _relative_error(xz, xz_expected) < tolerance
        assert _relative_error(front["conv_state"], reference["conv_state"]) < tolerance
        x, z = xz.chunk(2, dim=-1)
        x_low = torch.randn(batch, dt_rank + 2 * d_state, device=device, dtype=dtype)
        dt_low, B, C = x_low.split([dt_rank, d_state, d_state], dim=-1)
        y = mamba1_state_step(ssm["state"], x, dt_low, ssm["dt_proj_weight"], ssm["A_log"], B, C, D=ssm["D"], z=z,
                              dt_bias=ssm["dt_bias"], backend="triton")
        y_expected = mamba1_state_step_torch(
            ssm_reference["state"], x.double(), dt_low.double(), ssm_reference["dt_proj_weight"],
            ssm_reference["A_log"], B.double(), C.double(), D=ssm_reference["D"], z=z.double(),
            dt_bias=ssm_reference["dt_bias"])
        assert y.dtype == dtype
        assert _relative_error(y, y_expected) < tolerance
        assert _relative_error(ssm["state"], ssm_reference["state"]) < tolerance
        front["hidden"], reference["hidden"] = front["hidden"].roll(1, 0), reference["hidden"].roll(1, 0)


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_two_kernel_mamba1_step_matches_fp64(batch: int, dtype: torch.dtype, seed: int) -> None:
    """The batch-1 decoding step as two Triton kernels at 1.4B widths (d_model 2048, d_inner 4096, dt_rank 128):
    the front summing x_proj with atomics, then the back (state step from the sums, out_proj added into the fp32
    residual stream, sums and counters zeroed), over 3 steps with carried states, against the fp64 PyTorch twins."""
    d_model, d_inner, d_state, dt_rank, width = 2048, 4096, 16, 128, 4
    device = "cuda"

    def weight(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, device=device) * shape[-1] ** -0.5).to(dtype)

    front = dict(
        hidden=torch.randn(batch, d_model, device=device, dtype=dtype), residual=None,
        norm_weight=(torch.rand(d_model, device=device) + 0.5).to(dtype), eps=1e-5, residual_dtype=torch.float32,
        proj_weight=weight(2 * d_inner, d_model), proj_bias=None,
        conv_state=torch.randn(batch, d_inner, width - 1, device=device, dtype=dtype),
        conv_weight=(torch.randn(d_inner, width, device=device) * 0.5).to(dtype),
        conv_bias=torch.randn(d_inner, device=device, dtype=dtype),
        x_proj_weight=weight(dt_rank + 2 * d_state, d_inner),
        x_proj_sums=torch.zeros(batch, dt_rank + 2 * d_state, device=device),
    )
    back = dict(
        state=torch.randn(batch, d_inner, d_state, device=device),
        arrivals=torch.zeros(batch, 1 + d_inner, dtype=torch.int32, device=device), dt_proj_weight=weight(d_inner, dt_rank),
        dt_bias=torch.rand(d_inner, device=device) - 4.0,
        A_log=torch.log(torch.arange(1, d_state + 1, device=device, dtype=torch.float32)).expand(d_inner, -1)
        .contiguous(), D=torch.ones(d_inner, device=device), out_proj_weight=weight(d_model, d_inner),
        out_proj_bias=None,
    )
    front_reference = {name: (value.double() if isinstance(value, torch.Tensor) else value)
                       for name, value in front.items()} | {"residual_dtype": torch.float64}
    back_reference = {name: (value.double() if isinstance(value, torch.Tensor) else value)
                      for name, value in back.items()}
    # the roundings of the unfused step (x_proj's output, dt, y in the activations' dtype) over 3 steps: bf16's
    # 8-bit mantissa gave up to 0.036 at small widths under the interpreter, as the unfused kernels do (0.017)
    tolerance = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    for _ in range(3):
        xz, residual = add_norm_in_proj_conv(**front, backend="triton")
        xz_expected, residual_expected = add_norm_in_proj_conv_torch(**front_reference)
        assert _relative_error(xz, xz_expected) < tolerance
        assert _relative_error(front["x_proj_sums"], front_reference["x_proj_sums"]) < tolerance
        stream_before = residual_expected.clone()
        mamba1_state_step_out_proj(**back, xz=xz, x_proj_sums=front["x_proj_sums"], residual=residual,
                                   backend="triton")
        mamba1_state_step_out_proj_torch(**back_reference, xz=xz_expected, x_proj_sums=front_reference["x_proj_sums"],
                                         residual=residual_expected)
        assert _relative_error(residual - stream_before, residual_expected - stream_before) < tolerance
        assert _relative_error(back["state"], back_reference["state"]) < tolerance
        assert not front["x_proj_sums"].any() and not back["arrivals"].any()
        # the next step: the stream with out_proj in it, plus a fresh sublayer output
        front["residual"], front_reference["residual"] = residual, residual_expected
        front["hidden"] = torch.randn(batch, d_model, device=device, dtype=dtype)
        front_reference["hidden"] = front["hidden"].double()
