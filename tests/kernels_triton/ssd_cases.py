"""Random Mamba-2 SSD problems and their comparison with the fp64 sequential reference, for the `ssd_triton` tests.

Shared by the CPU interpreter runner (`ssd_interpret_runner.py`, run in a subprocess) and the GPU tests.
Errors are max |actual - expected| / max |expected| of every output and gradient.
"""
from __future__ import annotations

import math

import torch

from mambaseq.kernels import ssd_reference
from mambaseq.kernels.triton.ssd_launch import Tiling

# name -> ((batch, seqlen, nheads, headdim, ngroups, d_state), chunk_size, ssd_problem options)
INTERPRETER_CASES = {
    "all-features-L-not-multiple-of-chunk": ((2, 37, 4, 3, 2, 5), 8, dict()),
    "no-initial-state-exact-chunks": ((1, 32, 2, 4, 1, 3), 16, dict(with_initial_state=False)),
    "chunk-longer-than-L-D-per-channel": ((2, 19, 6, 2, 3, 4), 64, dict(D_per_channel=True)),
    "chunk-1-no-softplus-no-bias": ((1, 11, 2, 3, 2, 2), 1, dict(softplus=False, with_dt_bias=False)),
    "no-D-no-z-dt-limit": ((2, 20, 3, 2, 1, 4), 6, dict(with_D=False, with_z=False, dt_limit=(0.2, 0.5))),
    "several-tiles-per-chunk": ((1, 200, 2, 80, 1, 70), 128, dict()),
    "x-non-dense-view": ((2, 37, 4, 3, 2, 5), 8, dict()),
    "gradients-of-A-and-B-only": ((2, 37, 4, 3, 2, 5), 8, dict()),
    "heads-summed-per-program-uneven-splits": ((2, 45, 10, 4, 2, 5), 16, dict()),
    "several-tiles-all-heads-in-one-program": ((1, 200, 4, 80, 1, 70), 128, dict()),
    "mixed-tile-sides": ((1, 200, 4, 80, 1, 70), 128, dict()),
    "fp16-states-carried-in-fp16": ((2, 100, 4, 16, 2, 16), 32, dict()),
}
CASE_DTYPES = {"fp16-states-carried-in-fp16": torch.float16}  # default fp32
X_VIEW_CASES = {"x-non-dense-view"}  # x reaches the kernel through `on_non_dense_x`
# Launch knobs set for a case (module attributes of ssd_launch / ssd_bwd_launch). Fewer chunks per step of the chunk
# recurrences make them loop over several steps, the last one partly past the end (5 chunks in 2s, 11 in 4s). Lower
# program targets make the dB/dC programs sum several of a group's heads (5 heads per group in splits of 3 and 2; all
# 4 heads in one program) and give the chunk recurrences their largest flat state tile (2048: three tiles of a
# 5600-element state). Mixed tile sides: every kernel with its loop's tile unlike its output rows' (both ways),
# whole-d_state dots, and pairs, dC and dB each with its own row tiles. SEPARABLE_DECAYS: one exponent per step in
# tiles off the diagonal (the default), or one per pair everywhere.
LAUNCH_KNOBS = {
    "all-features-L-not-multiple-of-chunk": {"PASSING_CHUNKS": 2},
    "chunk-1-no-softplus-no-bias": {"PASSING_CHUNKS": 4},
    "several-tiles-per-chunk": {"SEPARABLE_DECAYS": False},
    "heads-summed-per-program-uneven-splits": {"TARGET_PROGRAMS": 24},
    "several-tiles-all-heads-in-one-program": {"TARGET_PROGRAMS": 1, "FLAT_TILE_PROGRAMS": 1,
                                               "SEPARABLE_DECAYS": True},
    "mixed-tile-sides": {
        "SEPARABLE_DECAYS": True,
        "SCAN_TILING": Tiling(block_m=64, block_k=32, block_state=128),
        "DX_TILING": Tiling(block_m=32, block_n=32, block_k=64, block_state=128),
        "PAIRS_TILING": Tiling(block_m=32, block_n=32, block_k=64, stages=2),
        "DC_TILING": Tiling(block_m=64, block_k=32, warps=8),
        "DB_TILING": Tiling(block_m=16, block_n=16, block_k=32),
        "STATE_TILING": Tiling(block_m=32, block_n=128, block_k=32),
        "CB_TILING": Tiling(block_m=32, block_n=64, block_k=128)},
}
GRADIENT_SUBSETS = {"gradients-of-A-and-B-only": {"A", "B"}}  # only these inputs require a gradient (default: all)
TENSOR_NAMES = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_state")


def ssd_problem(batch: int, seqlen: int, nheads: int, headdim: int, ngroups: int, d_state: int, *,
                generator: torch.Generator, device: str = "cpu", D_per_channel: bool = False, with_D: bool = True,
                with_z: bool = True, with_dt_bias: bool = True, softplus: bool = True,
                with_initial_state: bool = True, dt_limit: tuple[float, float] = (0.0, math.inf)) -> dict:
    """fp64 keyword arguments of one SSD call (mamba-ssm layout), plus `dt_limit`. Step sizes are positive as after
    a softplus: raw ~N(-1, 0.5) with `softplus`, else uniform (0, 0.5)."""
    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device)

    dt = (randn(batch, seqlen, nheads) * 0.5 - 1.0 if softplus
          else torch.rand(batch, seqlen, nheads, generator=generator, dtype=torch.float64).to(device) * 0.5)
    return dict(
        x=randn(batch, seqlen, nheads, headdim), dt=dt, A=-torch.exp(randn(nheads)),
        B=randn(batch, seqlen, ngroups, d_state), C=randn(batch, seqlen, ngroups, d_state),
        D=(randn(nheads, headdim) if D_per_channel else randn(nheads)) if with_D else None,
        z=randn(batch, seqlen, nheads, headdim) if with_z else None,
        dt_bias=randn(nheads) * 0.5 if with_dt_bias else None, dt_softplus=softplus,
        initial_state=randn(batch, nheads, headdim, d_state) if with_initial_state else None, dt_limit=dt_limit,
    )


def on_non_dense_x(kernel):
    """`kernel` given x as a non-dense view with the step axis innermost, as Mamba2's mixer passes it (a slice of
    the conv output's channels); gradients flow back to the caller's x."""
    def run(x: torch.Tensor, **kwargs):
        wide = torch.cat([x, x], dim=-1).permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
        view = wide[..., :x.shape[-1]]
        assert not view.is_contiguous() and view.stride(1) == 1
        return kernel(view, **kwargs)

    return run


def max_relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.double(), expected.double()
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def _outputs_and_gradients(kernel, problem: dict, cotangents: tuple[torch.Tensor, torch.Tensor],
                           wanted: set[str] | None = None, **extra) -> dict[str, torch.Tensor]:
    leaves = {name: value.detach().clone().requires_grad_(wanted is None or name in wanted)
              if isinstance(value, torch.Tensor) else value for name, value in problem.items()}
    y, final_state = kernel(**leaves, return_final_state=True, **extra)
    loss = (y.double() * cotangents[0]).sum() + (final_state.double() * cotangents[1]).sum()
    loss.backward()
    results = {"y": y.detach(), "final_state": final_state.detach()}
    results.update({f"d{name}": leaves[name].grad for name in TENSOR_NAMES
                    if leaves[name] is not None and (wanted is None or name in wanted)})
    return results


def compare_with_reference(problem: dict, kernel, dtype: torch.dtype, wanted: set[str] | None = None, **extra
                           ) -> dict[str, float]:
    """Run `kernel` on `problem` cast to `dtype` and the fp64 reference on the same rounded inputs; errors of y, the
    final state and the gradient of every tensor input (of those named in `wanted`, which alone require a gradient;
    None: all) under random cotangents."""
    rounded = {name: value.to(dtype) if isinstance(value, torch.Tensor) else value for name, value in problem.items()}
    reference_inputs = {name: value.double() if isinstance(value, torch.Tensor) else value
                        for name, value in rounded.items()}
    x, initial = problem["x"], problem["initial_state"]
    generator = torch.Generator().manual_seed(x.numel())
    state_shape = (x.shape[0], x.shape[2], x.shape[3], problem["B"].shape[-1])
    cotangents = (torch.randn(x.shape, generator=generator, dtype=torch.float64).to(x.device),
                  torch.randn(state_shape, generator=generator, dtype=torch.float64).to(x.device))
    expected = _outputs_and_gradients(ssd_reference, reference_inputs, cotangents, wanted)
    actual = _outputs_and_gradients(kernel, rounded, cotangents, wanted, **extra)
    assert actual.keys() == expected.keys(), (actual.keys(), expected.keys())
    assert wanted is not None or (initial is None) == ("dinitial_state" not in actual)
    return {name: max_relative_error(actual[name], expected[name]) for name in expected}
