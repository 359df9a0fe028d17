"""Mu-law and linear quantization: round-trip error bounds, exact code round trips, silence code."""
import math

import pytest
import torch

from mambaseq.tasks.audio.quantize import Quantizer, linear_decode, linear_encode, mu_law_decode, mu_law_encode


def _grid(count: int = 200_001) -> torch.Tensor:
    return torch.linspace(-1.0, 1.0, count, dtype=torch.float64)


@pytest.mark.parametrize("bits", [8, 10, 16])
def test_mu_law_round_trip_within_half_companded_step(bits: int) -> None:
    mu = 2**bits - 1
    x = torch.cat([_grid(), torch.rand(10_000, generator=torch.Generator().manual_seed(bits), dtype=torch.float64) * 2 - 1])
    codes = mu_law_encode(x, bits)
    assert codes.min() >= 0 and codes.max() <= mu
    error = (mu_law_decode(codes, bits).double() - x).abs()
    # half a step (1/mu) in the companded domain maps to (1 + mu|x|) * ((1 + mu)^(1/mu) - 1) / mu in x
    bound = (1 + mu * x.abs()) * ((1 + mu) ** (1 / mu) - 1) / mu
    assert bool((error <= bound * (1 + 1e-6) + 1e-7).all()), float((error - bound).max())
    # the bound is tight: somewhere the error is more than a third of it
    assert float((error / bound).max()) > 0.33


def test_mu_law_is_finer_near_zero_than_linear() -> None:
    x = torch.linspace(-0.01, 0.01, 1001, dtype=torch.float64)
    mu_law_error = (mu_law_decode(mu_law_encode(x)).double() - x).abs().max()
    linear_error = (linear_decode(linear_encode(x)).double() - x).abs().max()
    assert mu_law_error < linear_error / 5


@pytest.mark.parametrize("kind", ["mu-law", "linear"])
@pytest.mark.parametrize("bits", [4, 8, 12])
def test_codes_round_trip_exactly(kind: str, bits: int) -> None:
    quantizer = Quantizer(kind, bits)
    codes = torch.arange(quantizer.num_classes)
    assert torch.equal(quantizer.encode(quantizer.decode(codes)), codes)


@pytest.mark.parametrize("bits", [8, 12])
def test_linear_round_trip_within_half_step(bits: int) -> None:
    x = _grid()
    error = (linear_decode(linear_encode(x, bits), bits).double() - x).abs()
    assert float(error.max()) <= 1 / (2**bits - 1) + 1e-7


def test_encode_clamps_out_of_range_and_silence_code() -> None:
    quantizer = Quantizer("mu-law", 8)
    assert quantizer.encode(torch.tensor([-3.0, 3.0])).tolist() == [0, 255]
    assert quantizer.silence == 128
    assert abs(float(quantizer.decode(torch.tensor([quantizer.silence])))) < 1e-3
    assert Quantizer("linear", 8).silence == 128
    assert quantizer.code_dtype == torch.uint8 and Quantizer("mu-law", 12).code_dtype == torch.int32


def test_mu_law_matches_closed_form() -> None:
    x = torch.tensor([0.5], dtype=torch.float64)
    expected = math.floor((math.log1p(255 * 0.5) / math.log(256) + 1) / 2 * 255 + 0.5)
    assert int(mu_law_encode(x)) == expected


def test_invalid_settings_are_named() -> None:
    with pytest.raises(ValueError, match="quantization='a-law'"):
        Quantizer("a-law", 8)
    with pytest.raises(ValueError, match="bits=0"):
        Quantizer("mu-law", 0)
