"""Runs the Triton decoding-step kernels (state updates, conv step, fused Mamba-1 front and back) on CPU under
`TRITON_INTERPRET=1` against the fp64 PyTorch steps and prints each case's relative errors as JSON. Started as a subprocess by
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
from mambaseq.kernels.mamba1_step import (  # noqa: E402
    add_norm_in_proj_conv,
    mamba1_state_step,
    mamba1_state_step_out_proj,
)
from mambaseq.kernels.state_update import selective_state_update, ssd_state_update  # noqa: E402
from mambaseq.kernels.triton.conv_update import causal_conv1d_update_triton  # noqa: E402
from mambaseq.kernels.triton.norm_in_proj_conv import FrontTiling, add_norm_in_proj_conv_triton  # noqa: E402
from mambaseq.kernels.triton.state_step_out_proj import (  # noqa: E402
    BackTiling,
    mamba1_state_step_out_proj_triton,
)
from mambaseq.kernels.triton.state_update import (  # noqa: E402
    mamba1_state_step_triton,
    selective_state_update_triton,
    ssd_state_update_triton,
)
from error_norms import norm_relative_error  # noqa: E402
from state_update_cases import CASES, TILINGS, step_inputs  # noqa: E402

STEPS = 3
KERNELS = {"mamba1": (selective_state_update_triton, selective_state_update),
           "ssd": (ssd_state_update_triton, ssd_state_update),
           "conv": (causal_conv1d_update_triton, causal_conv1d_update),
           "mamba1_params": (mamba1_state_step_triton, mamba1_state_step),
           "front": (add_norm_in_proj_conv_triton, add_norm_in_proj_conv),
           "back": (mamba1_state_step_out_proj_triton, mamba1_state_step_out_proj)}  # layout -> (kernel, PyTorch step)
STATE_KEYS = {"conv": "conv_state", "front": "conv_state"}  # the in-place state of each layout (default "state")
TILING_TYPES = {"front": FrontTiling, "back": BackTiling}


def _fp64(name: str, value):
    if name == "residual_dtype":  # an fp32 stream is fp64 in the reference; a half-precision one is rounded alike
        return torch.float64 if value == torch.float32 else value
    return value.double() if isinstance(value, torch.Tensor) else value


def run_case(name: str) -> dict[str, float]:
    layout, options = CASES[name]
    generator = torch.Generator().manual_seed(len(name))
    inputs = step_inputs(layout, generator, **options)
    reference = {key: _fp64(key, value) for key, value in inputs.items()}
    kernel, torch_step = KERNELS[layout]
    kernel_options = {"tiling": TILING_TYPES[layout].parse(TILINGS[name])} if name in TILINGS else {}
    state_key = STATE_KEYS.get(layout, "state")
    errors: dict[str, float] = {}
    for step in range(STEPS):  # the state carries over steps
        if layout == "back":  # fresh x_proj sums each step (the kernel zeroes them)
            inputs["x_proj_sums"].normal_(generator=generator)
            reference["x_proj_sums"].copy_(inputs["x_proj_sums"])
            residual_before, expected_before = inputs["residual"].clone(), reference["residual"].clone()
        out = kernel(**inputs, **kernel_options)
        expected = torch_step(**reference)
        errors[f"state{step}"] = norm_relative_error(inputs[state_key], reference[state_key])
        if layout == "back":  # the outputs are in place: the residual stream, and the sums zeroed
            errors[f"residual{step}"] = norm_relative_error(inputs["residual"], reference["residual"])
            errors[f"out_proj{step}"] = norm_relative_error(inputs["residual"] - residual_before,
                                                            reference["residual"] - expected_before)
            cleared = not inputs["x_proj_sums"].any() and not inputs["arrivals"].any()
            errors[f"dtype{step}"] = float(out is None and cleared)
            continue
        residual_ok = True
        if layout == "front":  # (xz, residual_out): the residual stream in its own dtype
            (out, residual_out), (expected, expected_residual) = out, expected
            errors[f"residual{step}"] = norm_relative_error(residual_out, expected_residual)
            residual_ok = residual_out.dtype == inputs["residual_dtype"]
            if "x_proj_sums" in inputs:  # summed over the front's programs; the back would zero them
                errors[f"x_proj{step}"] = norm_relative_error(inputs["x_proj_sums"], reference["x_proj_sums"])
                inputs["x_proj_sums"].zero_(), reference["x_proj_sums"].zero_()
        errors[f"y{step}"] = norm_relative_error(out, expected)
        like = inputs["hidden"] if layout == "front" else inputs["x"]
        errors[f"dtype{step}"] = float(out.dtype == like.dtype and out.shape == expected.shape and residual_ok)
    return errors


if __name__ == "__main__":
    print(json.dumps({name: run_case(name) for name in sys.argv[1:]}))
