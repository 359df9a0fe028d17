"""Runs the Triton cross-entropy row kernels on CPU under `TRITON_INTERPRET=1` against fp64 PyTorch and prints each
case's relative errors as JSON. Started as a subprocess by test_cross_entropy_triton.py.
Usage: python cross_entropy_interpret_runner.py CASE [CASE ...]."""
from __future__ import annotations

import json
import os
import sys

if os.environ.get("TRITON_INTERPRET") != "1":
    raise SystemExit("cross_entropy_interpret_runner.py: set TRITON_INTERPRET=1")

import torch  # noqa: E402

from mambaseq.kernels.triton.cross_entropy import logsumexp_rows_triton, softmax_grad_rows_triton_  # noqa: E402
from cross_entropy_cases import CASES, expected_outputs, row_inputs  # noqa: E402
from error_norms import norm_relative_error  # noqa: E402


def run_case(name: str) -> dict[str, float]:
    rows, vocab, dtype = CASES[name]
    logits, targets, row_scale = row_inputs(rows, vocab, dtype, torch.Generator().manual_seed(len(name)))
    expected_lse, expected_grad = expected_outputs(logits, targets, row_scale)
    lse = logsumexp_rows_triton(logits)
    grad = softmax_grad_rows_triton_(logits.clone(), expected_lse.float(), targets, row_scale)
    return {"lse": norm_relative_error(lse, expected_lse), "grad": norm_relative_error(grad, expected_grad),
            "lse_fp32": float(lse.dtype == torch.float32), "grad_dtype": float(grad.dtype == dtype)}


if __name__ == "__main__":
    print(json.dumps({name: run_case(name) for name in sys.argv[1:]}))
