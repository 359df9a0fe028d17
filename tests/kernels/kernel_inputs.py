"""Random inputs for the kernel tests and the relative-error measure they are compared with."""
from __future__ import annotations

import torch


def max_relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected| (in fp64): a scale-free error that ignores near-zero entries' noise."""
    actual, expected = actual.double(), expected.double()
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def scan_inputs(
    batch: int,
    d_inner: int,
    d_state: int,
    seqlen: int,
    generator: torch.Generator,
    *,
    groups: int | None = None,
    with_D: bool = True,
    with_z: bool = True,
    with_delta_bias: bool = True,
    softplus: bool = True,
    with_initial_state: bool = True,
    dtype: torch.dtype = torch.float64,
) -> dict:
    """Keyword arguments of a Mamba-1 scan; B/C are (batch, d_state, L), or grouped when `groups` is given.
    Step sizes are positive, as after a softplus: raw ~N(-1, 0.5) when `softplus`, else uniform (0, 0.5)."""
    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=dtype)

    matrix_shape = (batch, d_state, seqlen) if groups is None else (batch, groups, d_state, seqlen)
    delta = (randn(batch, d_inner, seqlen) * 0.5 - 1.0 if softplus
             else torch.rand(batch, d_inner, seqlen, generator=generator, dtype=dtype) * 0.5)
    return dict(
        u=randn(batch, d_inner, seqlen),
        delta=delta,
        A=-torch.exp(randn(d_inner, d_state)),
        B=randn(*matrix_shape),
        C=randn(*matrix_shape),
        D=randn(d_inner) if with_D else None,
        z=randn(batch, d_inner, seqlen) if with_z else None,
        delta_bias=randn(d_inner) * 0.5 if with_delta_bias else None,
        delta_softplus=softplus,
        initial_state=randn(batch, d_inner, d_state) if with_initial_state else None,
    )


def ssd_inputs(
    batch: int,
    seqlen: int,
    nheads: int,
    headdim: int,
    ngroups: int,
    d_state: int,
    generator: torch.Generator,
    *,
    D_per_channel: bool = False,
    with_D: bool = True,
    with_z: bool = True,
    with_dt_bias: bool = True,
    softplus: bool = True,
    with_initial_state: bool = True,
    dtype: torch.dtype = torch.float64,
) -> dict:
    """Keyword arguments of an SSD call in mamba-ssm's layout (x: (batch, L, nheads, headdim), ...)."""
    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=dtype)

    dt = (randn(batch, seqlen, nheads) * 0.5 - 1.0 if softplus
          else torch.rand(batch, seqlen, nheads, generator=generator, dtype=dtype) * 0.5)
    return dict(
        x=randn(batch, seqlen, nheads, headdim),
        dt=dt,
        A=-torch.exp(randn(nheads)),
        B=randn(batch, seqlen, ngroups, d_state),
        C=randn(batch, seqlen, ngroups, d_state),
        D=(randn(nheads, headdim) if D_per_channel else randn(nheads)) if with_D else None,
        z=randn(batch, seqlen, nheads, headdim) if with_z else None,
        dt_bias=randn(nheads) * 0.5 if with_dt_bias else None,
        dt_softplus=softplus,
        initial_state=randn(batch, nheads, headdim, d_state) if with_initial_state else None,
    )


def with_grad(inputs: dict) -> dict:
    """Same inputs as fresh leaf tensors requiring grad (non-tensors and None kept)."""
    return {name: value.detach().clone().requires_grad_() if isinstance(value, torch.Tensor) else value
            for name, value in inputs.items()}


def cast(inputs: dict, dtype: torch.dtype) -> dict:
    return {name: value.to(dtype) if isinstance(value, torch.Tensor) else value for name, value in inputs.items()}
