"""Triton selective scan (forward + backward) on CPU through Triton's interpreter, against the fp64 reference.

The kernels run in a subprocess with TRITON_INTERPRET=1 (the setting is read when the kernels are defined, and
must not leak into other tests). fp32 kernel vs fp64 reference, relative error of the norm of every output and
gradient: tolerance 1e-5 (observed <= 4e-7 on these tiny problems).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from error_norms import assert_errors_within
from scan_cases import INTERPRETER_CASES
from interpreted import run_interpreted

RUNNER = Path(__file__).with_name("interpret_runner.py")
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def interpreter_errors() -> dict[str, dict[str, float]]:
    """Errors of every interpreter case, from one subprocess (one start of torch and Triton)."""
    return run_interpreted(RUNNER, INTERPRETER_CASES)


@pytest.mark.parametrize("case", list(INTERPRETER_CASES))
def test_interpreted_kernels_match_fp64_reference(interpreter_errors, case):
    errors = interpreter_errors[case]
    assert {"y", "final_state", "du", "ddelta", "dA", "dB", "dC"} <= errors.keys()
    assert_errors_within(errors, TOLERANCE, case)
