"""Runs the fused residual-add + RMSNorm Triton kernels on CPU under `TRITON_INTERPRET=1` against
`mambaseq.norm.add_rms_norm` in fp64 and prints every case's errors as JSON.

Started as a subprocess by test_add_rms_norm.py (the interpreter setting is read when kernels are defined and must
not leak into other tests). Usage: python add_rms_norm_interpret_runner.py CASE [CASE ...].
"""
from __future__ import annotations

import json
import os
import sys

if os.environ.get("TRITON_INTERPRET") != "1":
    raise SystemExit("add_rms_norm_interpret_runner.py: set TRITON_INTERPRET=1 (kernels must be defined in "
                     "interpreter mode)")

import torch  # noqa: E402

import interpret_runner  # noqa: E402,F401 - importing it patches Triton 3.6's interpreter for NumPy >= 2.4
from add_rms_norm_cases import INTERPRETER_CASES, compare_with_reference, norm_problem  # noqa: E402
from mambaseq.kernels.triton import add_rms_norm_triton  # noqa: E402


def run_case(name: str) -> dict[str, float]:
    shape, hidden_dtype, residual_dtype, residual_in_fp32, options = INTERPRETER_CASES[name]
    problem = norm_problem(shape, hidden_dtype, residual_dtype, generator=torch.Generator().manual_seed(len(name)))
    return compare_with_reference(problem, add_rms_norm_triton, residual_in_fp32, **options)


if __name__ == "__main__":
    print(json.dumps({name: run_case(name) for name in sys.argv[1:]}))
