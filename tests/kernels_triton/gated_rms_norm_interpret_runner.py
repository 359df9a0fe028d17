"""Runs Mamba-2's gated RMSNorm Triton kernels on CPU under `TRITON_INTERPRET=1` against `mambaseq.norm.GatedRMSNorm`
in fp64 and prints every case's errors as JSON.

Started as a subprocess by test_gated_rms_norm.py (the interpreter setting is read when kernels are defined and must
not leak into other tests). Usage: python gated_rms_norm_interpret_runner.py CASE [CASE ...].
"""
from __future__ import annotations

import json
import os
import sys

if os.environ.get("TRITON_INTERPRET") != "1":
    raise SystemExit("gated_rms_norm_interpret_runner.py: set TRITON_INTERPRET=1 (kernels must be defined in "
                     "interpreter mode)")

import torch  # noqa: E402

import interpret_runner  # noqa: E402,F401 - importing it patches Triton 3.6's interpreter for NumPy >= 2.4
from gated_rms_norm_cases import INTERPRETER_CASES, compare_with_reference, gated_norm_problem  # noqa: E402


def run_case(name: str) -> dict[str, float]:
    shape, group_size, x_dtype, z_dtype, options = INTERPRETER_CASES[name]
    problem = gated_norm_problem(shape, x_dtype, z_dtype, generator=torch.Generator().manual_seed(len(name)),
                                 z_padding=options.get("z_padding", 0))
    return compare_with_reference(problem, group_size, options.get("norm_before_gate", False))


if __name__ == "__main__":
    print(json.dumps({name: run_case(name) for name in sys.argv[1:]}))
