"""Random causal-conv problems, the fp64 PyTorch kernel as reference, and error measures for the Triton conv tests.

Shared by the CPU interpreter runner (`causal_conv1d_interpret_runner.py`, run in a subprocess) and the GPU tests.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from error_norms import norm_relative_error

from mambaseq.kernels.causal_conv1d import causal_conv1d as causal_conv1d_torch

# Tiny problems for the CPU interpreter: name -> (batch, channels, seqlen, width, conv_problem options).
# 70 channels and 150 steps span 2 x 5 tiles of the kernels' 64 x 32 blocks (partial last tiles).
INTERPRETER_CASES = {
    "silu-bias-states-channel-last": (2, 70, 150, 4, dict(channel_last=True)),
    "plain-contiguous": (1, 8, 20, 4, dict(activation=None, with_bias=False, with_initial_state=False,
                                           return_final_state=False)),
    "final-state-from-zeros": (2, 5, 9, 3, dict(with_initial_state=False)),
    "initial-state-only": (1, 6, 33, 2, dict(return_final_state=False)),
    "shorter-than-state": (2, 4, 2, 4, dict()),  # final state mixes initial state and inputs
    "width-one": (1, 3, 7, 1, dict(with_initial_state=False, return_final_state=False)),
    "bf16-input-fp32-weight": (2, 16, 40, 4, dict(dtype=torch.bfloat16, channel_last=True)),
    # with BACKWARD_MIN_PROGRAMS = 1 a backward program loops over BACKWARD_MAX_TILES (8) of the 19 time tiles of
    # 16 steps: three programs per channel tile (8, 8 and 3 tiles), the first starting in the initial state
    "backward-loops-over-tiles": (2, 70, 300, 4, dict(channel_last=True)),
    "backward-loops-no-bias-contiguous": (1, 9, 290, 3, dict(with_bias=False, with_initial_state=False)),
}
# module constants of kernels/triton/causal_conv1d.py that a case sets before it runs (the runner restores them)
INTERPRETER_LAUNCH = {
    "backward-loops-over-tiles": dict(BACKWARD_MIN_PROGRAMS=1),
    "backward-loops-no-bias-contiguous": dict(BACKWARD_MIN_PROGRAMS=1),
}
GRADIENTS = ("dx", "dweight", "dbias", "dinitial_state")


def conv_problem(batch: int, channels: int, seqlen: int, width: int, *, activation: str | None = "silu",
                 with_bias: bool = True, with_initial_state: bool = True, return_final_state: bool = True,
                 channel_last: bool = False, dtype: torch.dtype = torch.float32, generator: torch.Generator,
                 device: str = "cpu") -> dict:
    """Inputs of one conv: x (in `dtype`, rounded once so the fp64 reference sees the same values), fp32 weight,
    bias and initial state, and random weights `out_weight` / `state_weight` of the loss used for gradients."""
    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device)

    x = randn(batch, seqlen, channels).transpose(1, 2) if channel_last else randn(batch, channels, seqlen)
    return dict(
        x=x.to(dtype), weight=randn(channels, width).float() / width**0.5,
        bias=randn(channels).float() if with_bias else None, activation=activation,
        initial_state=randn(batch, channels, width - 1).float() if with_initial_state else None,
        return_final_state=return_final_state,
        out_weight=randn(batch, channels, seqlen), state_weight=randn(batch, channels, width - 1),
    )


def _run(problem: dict, conv: Callable, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Outputs and gradients of `sum(out * out_weight) + sum(final_state * state_weight)`; inputs cast to `dtype`
    (None: as given)."""
    names = ("x", "weight", "bias", "initial_state")
    leaves = {name: (problem[name] if dtype is None else problem[name].to(dtype)).detach().requires_grad_()
              for name in names if problem[name] is not None}
    result = conv(leaves["x"], leaves["weight"], leaves.get("bias"), problem["activation"],
                  leaves.get("initial_state"), problem["return_final_state"])
    out, final_state = result if problem["return_final_state"] else (result, None)
    loss = (out * problem["out_weight"].to(out.dtype)).sum()
    if final_state is not None:
        loss = loss + (final_state * problem["state_weight"].to(final_state.dtype)).sum()
    loss.backward()
    outputs = {"out": out}
    if final_state is not None:
        outputs["final_state"] = final_state
    outputs.update({f"d{name}": leaf.grad for name, leaf in leaves.items()})
    return outputs


def compare_with_reference(problem: dict, conv: Callable) -> dict[str, float]:
    """Relative errors of `conv` (inputs as given) against the PyTorch kernel in fp64 on the same values, for the
    output, the final state and every gradient; also checks the output dtypes match the inputs'."""
    actual = _run(problem, conv, None)
    expected = _run(problem, causal_conv1d_torch, torch.float64)
    errors = {name: norm_relative_error(actual[name], expected[name]) for name in expected}
    dtypes_ok = actual["out"].dtype == problem["x"].dtype and actual["dx"].dtype == problem["x"].dtype
    dtypes_ok &= actual["dweight"].dtype == problem["weight"].dtype
    errors["dtypes_match"] = float(dtypes_ok)
    return errors
