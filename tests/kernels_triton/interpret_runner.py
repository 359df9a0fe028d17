"""Runs the Triton scan kernels on CPU under `TRITON_INTERPRET=1` and prints every case's errors as JSON.

Started as a subprocess by test_selective_scan_triton_interpret.py, so that the interpreter setting (read when the
kernels are defined) never leaks into other tests. Usage: python interpret_runner.py CASE [CASE ...].
"""
from __future__ import annotations

import json
import os
import sys

if os.environ.get("TRITON_INTERPRET") != "1":
    raise SystemExit("interpret_runner.py: set TRITON_INTERPRET=1 (the kernels must be defined in interpreter mode)")

import torch  # noqa: E402
from triton.runtime import interpreter  # noqa: E402

from scan_cases import INTERPRETER_CASES, compare_with_reference, scan_problem  # noqa: E402


def _allow_numpy_scalar_index() -> None:
    """Triton 3.6's interpreter turns scalars into 1-element arrays and loops `range(n)` call int() on them, an
    error since NumPy 2.4; make its tensors' __index__ go through .item() instead."""
    original = interpreter._patch_lang_tensor

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.item()))

    interpreter._patch_lang_tensor = patched


_allow_numpy_scalar_index()
from mambaseq.kernels.triton import ScanConfig, selective_scan_triton  # noqa: E402

def run_case(name: str) -> dict[str, float]:
    batch, d_inner, d_state, seqlen, forward_tiling, backward_tiling, options = INTERPRETER_CASES[name]
    config = None if forward_tiling is None else ScanConfig(*forward_tiling)
    backward_config = None if backward_tiling is None else ScanConfig(*backward_tiling)
    problem = scan_problem(batch, d_inner, d_state, seqlen, generator=torch.Generator().manual_seed(len(name)),
                           **options)

    def triton_scan(p: dict):
        return selective_scan_triton(p["u"], p["delta"], p["A"], p["B"], p["C"], p["D"], p["z"], p["delta_bias"],
                                     p["delta_softplus"], p["initial_state"], True, seq_idx=p["seq_idx"],
                                     config=config, backward_config=backward_config)

    return compare_with_reference(problem, triton_scan, torch.float32)


if __name__ == "__main__":
    print(json.dumps({name: run_case(name) for name in sys.argv[1:]}))
