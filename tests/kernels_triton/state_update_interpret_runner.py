"""Runs the Triton decoding-step kernels (state updates, conv step) on CPU under `TRITON_INTERPRET=1` against the
fp64 PyTorch steps and prints each case's relative errors as JSON. Started as a subprocess by
test_state_update_triton_interpret.py (the interpreter setting is read when kernels are defined and must not leak
into other tests).
Usage: python state_update_interpret_runner.py CASE [CASE ...]."""
from __future__ import annotations

import json
import os
import sys

if os.environ.get("TRITON_INTERPRET") != "1":
    raise SystemExit("state_update_interpret_runner.py: set TRITON_INTERPRET=1")

import torch  # noqa: E402

from mambaseq.kernels.causal_conv1d import causal_conv1d_update  # noqa: E402
from mambaseq.kernels.state_update import selective_state_update, ssd_state_update  # noqa: E402
from mambaseq.kernels.triton.conv_update import causal_conv1d_update_triton  # noqa: E402
from mambaseq.kernels.triton.state_update import (  # noqa: E402
    selective_state_update_triton,
    ssd_state_update_triton,
)
from error_norms import norm_relative_error  # noqa: E402
from state_update_cases import CASES, step_inputs  # noqa: E402

STEPS = 3
KERNELS = {"mamba1": (selective_state_update_triton, selective_state_update),
           "ssd": (ssd_state_update_triton, ssd_state_update),
           "conv": (causal_conv1d_update_triton, causal_conv1d_update)}  # layout -> (Triton kernel, PyTorch step)


def run_case(name: str) -> dict[str, float]:
    layout, options = CASES[name]
    generator = torch.Generator().manual_seed(len(name))
    inputs = step_inputs(layout, generator, **options)
    reference = {key: value.double() if isinstance(value, torch.Tensor) else value for key, value in inputs.items()}
    kernel, torch_step = KERNELS[layout]
    state_key = "conv_state" if layout == "conv" else "state"
    errors: dict[str, float] = {}
    for step in range(STEPS):  # the state carries over steps
        out = kernel(**inputs)
        expected = torch_step(**reference)
        errors[f"y{step}"] = norm_relative_error(out, expected)
        errors[f"state{step}"] = norm_relative_error(inputs[state_key], reference[state_key])
        errors[f"dtype{step}"] = float(out.dtype == inputs["x"].dtype and out.shape == expected.shape)
    return errors


if __name__ == "__main__":
    print(json.dumps({name: run_case(name) for name in sys.argv[1:]}))
