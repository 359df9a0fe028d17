"""Waveform quantization into `2**bits` classes: mu-law (WaveNet / SaShiMi's 8-bit default) and linear.

Codes are integers in `[0, 2**bits - 1]`; `decode(encode(x))` is within half a quantization step of `x` in the
companded domain (mu-law) or the linear domain, and `encode(decode(q)) == q` exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

QuantizationKind = Literal["mu-law", "linear"]
QUANTIZATIONS = ("mu-law", "linear")


def mu_law_encode(waveform: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """`waveform` in [-1, 1] (any shape, float) -> int64 codes in [0, 2**bits - 1] (same shape)."""
    mu = 2**bits - 1
    x = waveform.double().clamp(-1.0, 1.0)
    companded = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    return torch.floor((companded + 1) / 2 * mu + 0.5).long()


def mu_law_decode(codes: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Inverse of `mu_law_encode`: int codes -> float32 waveform in [-1, 1]."""
    mu = 2**bits - 1
    companded = 2 * codes.double() / mu - 1
    return (torch.sign(companded) * torch.expm1(companded.abs() * math.log1p(mu)) / mu).float()


def linear_encode(waveform: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """`waveform` in [-1, 1] -> int64 codes of `2**bits` evenly spaced levels from -1 to 1."""
    top = 2**bits - 1
    return torch.floor((waveform.double().clamp(-1.0, 1.0) + 1) / 2 * top + 0.5).long()


def linear_decode(codes: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Inverse of `linear_encode`: int codes -> float32 waveform in [-1, 1]."""
    return (2 * codes.double() / (2**bits - 1) - 1).float()


@dataclass(frozen=True)
class Quantizer:
    """`kind` ("mu-law" | "linear") at `bits` bits: `num_classes = 2**bits` codes, `silence` = code of 0.0."""

    kind: QuantizationKind = "mu-law"
    bits: int = 8

    def __post_init__(self) -> None:
        if self.kind not in QUANTIZATIONS:
            raise ValueError(f"quantization={self.kind!r} is unknown: expected one of {QUANTIZATIONS}")
        if not 1 <= self.bits <= 16:
            raise ValueError(f"bits={self.bits} is invalid: expected 1 to 16")

    @property
    def num_classes(self) -> int:
        return 2**self.bits

    @property
    def code_dtype(self) -> torch.dtype:
        """Smallest integer dtype that holds every code (uint8 up to 8 bits)."""
        return torch.uint8 if self.bits <= 8 else torch.int32

    @property
    def silence(self) -> int:
        return int(self.encode(torch.zeros(1))[0])

    def encode(self, waveform: torch.Tensor) -> torch.Tensor:
        encode = mu_law_encode if self.kind == "mu-law" else linear_encode
        return encode(waveform, self.bits)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        decode = mu_law_decode if self.kind == "mu-law" else linear_decode
        return decode(codes, self.bits)
