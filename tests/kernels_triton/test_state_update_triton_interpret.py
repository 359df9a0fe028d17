"""Triton decoding-step kernels (Mamba-1 and SSD head layouts, causal conv step) on CPU through Triton's
interpreter, against the fp64 PyTorch steps over 3 consecutive steps (state carried): relative error of the norm of
y and of the updated state, tolerance 1e-5 (observed <= 2e-7). Run in a subprocess with TRITON_INTERPRET=1 (read
when kernels are defined)."""
from __future__ import annotations

from pathlib import Path

import pytest

from error_norms import assert_errors_within
from state_update_cases import CASES
from interpreted import run_interpreted

RUNNER = Path(__file__).with_name("state_update_interpret_runner.py")
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def interpreter_errors() -> dict[str, dict[str, float]]:
    """Errors of every interpreter case, from one subprocess (one start of torch and Triton)."""
    return run_interpreted(RUNNER, CASES)


@pytest.mark.parametrize("case", list(CASES))
def test_interpreted_step_kernel_matches_fp64_step(interpreter_errors, case):
    errors = interpreter_errors[case]
    assert all(errors[f"dtype{step}"] == 1.0 for step in range(3)), f"{case}: output dtype/shape differ"
    assert_errors_within({name: error for name, error in errors.items() if not name.startswith("dtype")},
                         TOLERANCE, case)
