"""Random Mamba-1 scan problems, the fp64 reference (with packed documents) and error measures for the Triton tests.

Shared by the CPU interpreter runner (`interpret_runner.py`, run in a subprocess) and the GPU tests.
"""
from __future__ import annotations

import torch

from error_norms import norm_relative_error

from mambaseq.kernels import selective_scan_reference

# Tiny problems for the CPU interpreter: name -> (batch, d_inner, d_state, seqlen, forward tiling, backward
# tiling, scan_problem options). A tiling is ScanConfig's arguments (None: the default).
INTERPRETER_CASES = {
    "all-features": (2, 8, 5, 37, (4, 8, 1), (4, 16, 4), dict(groups=2)),
    "shared-BC-no-initial-state-even-L": (1, 8, 4, 24, (8, 8, 2), (8, 8, 2), dict(with_initial_state=False)),
    "no-softplus-no-bias": (2, 4, 3, 19, (4, 8, 1), (4, 8, 1), dict(softplus=False, with_delta_bias=False)),
    "no-D-no-z-group-per-block": (1, 8, 4, 16, (2, 16, 1), (2, 16, 1), dict(groups=4, with_D=False, with_z=False)),
    "packed-documents": (2, 4, 4, 40, (4, 16, 2), (4, 8, 2), dict(documents=4)),
    "packed-documents-even-L": (1, 4, 8, 32, (2, 16, 1), (2, 16, 1), dict(documents=3, groups=2)),
    "default-config-single-step": (2, 4, 16, 1, None, None, dict()),
    # sequence parallelism: 9 chunks in 3 segments (ragged last chunk), segments of 2 or 3 chunks with resets
    "sequence-parallel": (2, 8, 5, 70, (4, 8, 1, 3), (2, 8, 1, 4), dict(groups=2)),
    "sequence-parallel-packed-documents": (2, 4, 4, 64, (4, 8, 2, 4), (4, 8, 2, 3), dict(documents=4)),
    "sequence-parallel-bare": (1, 8, 4, 48, (2, 8, 1, 2), (2, 8, 1, 6),
                               dict(softplus=False, with_delta_bias=False, with_z=False, with_D=False,
                                    with_initial_state=False)),
}
TENSOR_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")


def scan_problem(batch: int, d_inner: int, d_state: int, seqlen: int, *, groups: int | None = None,
                 with_D: bool = True, with_z: bool = True, with_delta_bias: bool = True, softplus: bool = True,
                 with_initial_state: bool = True, documents: int = 0, generator: torch.Generator,
                 device: str = "cpu") -> dict:
    """fp64 inputs of one scan (B/C grouped when `groups`), plus `seq_idx` with `documents` random-length documents
    per row (0: no seq_idx) and random loss weights `y_weight`, `state_weight` for the gradient checks."""
    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device)

    matrix_shape = (batch, d_state, seqlen) if groups is None else (batch, groups, d_state, seqlen)
    delta = (randn(batch, d_inner, seqlen) * 0.5 - 1.0 if softplus
             else torch.rand(batch, d_inner, seqlen, generator=generator, dtype=torch.float64).to(device) * 0.5)
    problem = dict(
        u=randn(batch, d_inner, seqlen), delta=delta, A=-torch.exp(randn(d_inner, d_state)),
        B=randn(*matrix_shape), C=randn(*matrix_shape),
        D=randn(d_inner) if with_D else None, z=randn(batch, d_inner, seqlen) if with_z else None,
        delta_bias=randn(d_inner) * 0.5 if with_delta_bias else None, delta_softplus=softplus,
        initial_state=randn(batch, d_inner, d_state) if with_initial_state else None,
        seq_idx=None, y_weight=randn(batch, d_inner, seqlen), state_weight=randn(batch, d_inner, d_state),
    )
    if documents > 1:
        starts = torch.stack([torch.randperm(seqlen - 1, generator=generator)[:documents - 1] + 1
                              for _ in range(batch)])
        marks = torch.zeros(batch, seqlen, dtype=torch.int64).scatter_(1, starts, 1)
        problem["seq_idx"] = marks.cumsum(1).to(torch.int32).to(device)
    return problem


def reference_scan(problem: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """fp64 sequential scan; with `seq_idx`, every document is scanned separately (state 0 at its start, the
    initial state feeding the first one) and the final state is the last document's."""
    args = {name: problem[name] for name in TENSOR_NAMES}
    softplus, seq_idx = problem["delta_softplus"], problem["seq_idx"]
    if seq_idx is None:
        return selective_scan_reference(**args, delta_softplus=softplus, return_final_state=True)
    outputs, final_states = [], []
    for row in range(seq_idx.shape[0]):
        boundaries = (torch.nonzero(seq_idx[row, 1:] != seq_idx[row, :-1]).flatten() + 1).tolist()
        edges = [0] + boundaries + [seq_idx.shape[1]]
        pieces, state = [], None
        for index, (start, stop) in enumerate(zip(edges[:-1], edges[1:])):
            piece = {name: _document_slice(name, value, row, start, stop) for name, value in args.items()}
            if index > 0:
                piece["initial_state"] = None
            y, state = selective_scan_reference(**piece, delta_softplus=softplus, return_final_state=True)
            pieces.append(y)
        outputs.append(torch.cat(pieces, dim=-1))
        final_states.append(state)
    return torch.cat(outputs), torch.cat(final_states)


def _document_slice(name: str, value: torch.Tensor | None, row: int, start: int, stop: int):
    if value is None or name in ("A", "D", "delta_bias"):
        return value
    value = value[row:row + 1]
    return value if name == "initial_state" else value[..., start:stop]


def outputs_and_gradients(scan, problem: dict, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Run `scan(problem-with-leaves-of-dtype) -> (y, final_state)`, backpropagate the weighted loss; returns y,
    final_state and the gradient of every tensor input (as fp64 for comparison)."""
    leaves = {name: problem[name].detach().to(dtype).clone().requires_grad_()
              for name in TENSOR_NAMES if problem[name] is not None}
    y, final_state = scan({**problem, **leaves})
    loss = (y.double() * problem["y_weight"]).sum() + (final_state.double() * problem["state_weight"]).sum()
    loss.backward()
    results = {"y": y.detach().double(), "final_state": final_state.detach().double()}
    results.update({f"d{name}": leaf.grad.double() for name, leaf in leaves.items()})
    return results


def rounded_problem(problem: dict, dtype: torch.dtype) -> dict:
    """The problem with its tensor inputs rounded to `dtype` and back to fp64 (the reference then sees exactly the
    values the low-precision kernel sees)."""
    return {name: value.to(dtype).double() if name in TENSOR_NAMES and value is not None else value
            for name, value in problem.items()}


def compare_with_reference(problem: dict, triton_scan, dtype: torch.dtype) -> dict[str, float]:
    """Relative error of the norm of every output and gradient of `triton_scan` against the fp64 reference."""
    exact = rounded_problem(problem, dtype)
    expected = outputs_and_gradients(lambda p: reference_scan(p), exact, torch.float64)
    actual = outputs_and_gradients(triton_scan, exact, dtype)
    return {name: norm_relative_error(actual[name], expected[name]) for name in expected}
