"""Mamba-2 SSD without a compiled extension: `ssd_chunked`'s block decomposition (batched matmuls, segment-sum
decays, state passing by decay-matrix products) compiled by `torch.compile`. Inductor fuses the elementwise work
around the matmuls into Triton kernels at the first call of each shape family; nothing is built at install time.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from ..ssd_chunked import ssd_chunked


@functools.cache
def _compiled_ssd() -> Callable:
    return torch.compile(ssd_chunked, dynamic=None)


def ssd_triton(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
    *,
    chunk_size: int = 256,
    dt_limit: tuple[float, float] = (0.0, math.inf),
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Compiled SSD; contract of `ssd_chunked` (x, z: (batch, L, nheads, headdim); dt: (batch, L, nheads);
    A, dt_bias: (nheads,); B, C: (batch, L, ngroups, d_state); D: (nheads,) or (nheads, headdim);
    initial_state: (batch, nheads, headdim, d_state)). Differentiable; the backward is compiled too."""
    return _compiled_ssd()(x, dt, A, B, C, D, z, dt_bias, dt_softplus, initial_state, return_final_state,
                           chunk_size, dt_limit)
