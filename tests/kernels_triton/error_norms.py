"""The error measure of the Triton kernel tests: relative error of the norm, in fp64."""
from __future__ import annotations

import torch


def norm_relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected|| in fp64 on the CPU (0 for two empty tensors, 1 if only `expected` is)."""
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    if expected.numel() == 0:
        return float(actual.numel() != 0)
    return ((actual - expected).norm() / expected.norm().clamp_min(1e-300)).item()


def assert_errors_within(errors: dict[str, float], tolerance: float, label: str = "") -> None:
    """Fail naming every error above `tolerance` (NaN counts as above), with all errors for context."""
    too_large = {name: f"{error:.2e}" for name, error in errors.items() if not error <= tolerance}
    prefix = f"{label}: " if label else ""
    assert not too_large, f"{prefix}relative errors above {tolerance}: {too_large} (all: {errors})"
