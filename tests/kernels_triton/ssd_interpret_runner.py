"""Runs `ssd_triton` (Triton kernels, forward and backward) on CPU under `TRITON_INTERPRET=1` in fp32 (or a case's
own dtype) against the fp64 reference and prints every case's errors as JSON.

Started as a subprocess by test_ssd_triton.py (the interpreter setting is read when kernels are defined and must
not leak into other tests). Usage: python ssd_interpret_runner.py CASE [CASE ...].
"""
from __future__ import annotations

import json
import os
import sys

if os.environ.get("TRITON_INTERPRET") != "1":
    raise SystemExit("ssd_interpret_runner.py: set TRITON_INTERPRET=1 (kernels must be defined in interpreter mode)")

import torch  # noqa: E402

import interpret_runner  # noqa: E402,F401 - importing it patches Triton 3.6's interpreter for NumPy >= 2.4
from mambaseq.kernels.triton import ssd_bwd_launch, ssd_launch, ssd_triton  # noqa: E402
from mambaseq.kernels.triton.ssd import SSDFunction  # noqa: E402
from kernel_calls import counting_applies  # noqa: E402
from ssd_cases import (CASE_DTYPES, GRADIENT_SUBSETS, INTERPRETER_CASES, LAUNCH_KNOBS, X_VIEW_CASES,  # noqa: E402
                       compare_with_reference, on_non_dense_x, ssd_problem)

KNOB_NAMES = {name for knobs in LAUNCH_KNOBS.values() for name in knobs}
KNOB_MODULES = {name: module for module in (ssd_launch, ssd_bwd_launch) for name in KNOB_NAMES if hasattr(module, name)}
DEFAULT_KNOBS = {name: getattr(module, name) for name, module in KNOB_MODULES.items()}


def run_case(name: str) -> dict[str, float]:
    shape, chunk_size, options = INTERPRETER_CASES[name]
    problem = ssd_problem(*shape, generator=torch.Generator().manual_seed(len(name)), **options)
    kernel = on_non_dense_x(ssd_triton) if name in X_VIEW_CASES else ssd_triton
    for knob, value in {**DEFAULT_KNOBS, **LAUNCH_KNOBS.get(name, {})}.items():
        setattr(KNOB_MODULES[knob], knob, value)
    with counting_applies(SSDFunction) as calls:  # the Triton path ran, not the PyTorch fallback
        errors = compare_with_reference(problem, kernel, CASE_DTYPES.get(name, torch.float32),
                                        GRADIENT_SUBSETS.get(name), chunk_size=chunk_size)
    errors["triton_calls"] = float(len(calls))
    return errors


if __name__ == "__main__":
    print(json.dumps({name: run_case(name) for name in sys.argv[1:]}))
