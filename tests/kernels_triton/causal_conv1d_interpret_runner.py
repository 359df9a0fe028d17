"""Runs the Triton causal conv (through `mambaseq.kernels.causal_conv(..., backend="triton")`) on CPU under
`TRITON_INTERPRET=1` against the fp64 PyTorch kernel and prints every case's errors as JSON.

Started as a subprocess by test_causal_conv1d_triton.py (the interpreter setting is read when kernels are defined
and must not leak into other tests). Usage: python causal_conv1d_interpret_runner.py CASE [CASE ...].
"""
from __future__ import annotations

import json
import os
import sys
from functools import partial

if os.environ.get("TRITON_INTERPRET") != "1":
    raise SystemExit("causal_conv1d_interpret_runner.py: set TRITON_INTERPRET=1 (kernels must be defined in "
                     "interpreter mode)")

from unittest import mock  # noqa: E402

import torch  # noqa: E402

import interpret_runner  # noqa: E402,F401 - importing it patches Triton 3.6's interpreter for NumPy >= 2.4
from kernel_calls import counting_applies  # noqa: E402
from causal_conv1d_cases import (INTERPRETER_CASES, INTERPRETER_LAUNCH, compare_with_reference,  # noqa: E402
                                 conv_problem)
from mambaseq.kernels import causal_conv  # noqa: E402
from mambaseq.kernels.triton import causal_conv1d as triton_conv  # noqa: E402


def run_case(name: str) -> dict[str, float]:
    batch, channels, seqlen, width, options = INTERPRETER_CASES[name]
    problem = conv_problem(batch, channels, seqlen, width, generator=torch.Generator().manual_seed(len(name)),
                           **options)
    launch = {"BACKWARD_MIN_PROGRAMS": triton_conv.BACKWARD_MIN_PROGRAMS, **INTERPRETER_LAUNCH.get(name, {})}
    with mock.patch.multiple(triton_conv, **launch), counting_applies(triton_conv.CausalConv1dFunction) as calls:
        errors = compare_with_reference(problem, partial(causal_conv, backend="triton"))
    errors["triton_calls"] = float(len(calls))
    return errors


if __name__ == "__main__":
    print(json.dumps({name: run_case(name) for name in sys.argv[1:]}))
