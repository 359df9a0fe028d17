"""Tilings and launches of the SSD forward kernels (`ssd_fwd.py`)."""
from __future__ import annotations

import torch
import triton

from .ssd_fwd import chunk_cb_kernel, chunk_scan_kernel, chunk_state_kernel, state_passing_kernel

NUM_WARPS = 4
MIN_BLOCK = 16  # smallest tile side tl.dot accepts


def _block(size: int, cap: int) -> int:
    """Tile side covering `size` (power of two, >= 16, <= cap)."""
    return max(MIN_BLOCK, min(cap, triton.next_power_of_2(size)))


def _strides(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.stride())


def ssd_forward(
    x: torch.Tensor,
    dt_chunks: torch.Tensor,
    cum: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    initial_state: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x, z: (batch, L, nheads, headdim); dt_chunks, cum: (batch, nheads, n_chunks, chunk_size) fp32 contiguous
    (processed step sizes, zero-padded, and their within-chunk cumulative sums times A); B, C: (batch, L, ngroups,
    d_state) in x's dtype; D: (nheads, headdim) fp32 contiguous; initial_state: (batch, nheads, headdim, d_state)
    fp32 contiguous. Returns y (dtype of x) and the final state (fp32)."""
    batch, seqlen, nheads, headdim = x.shape
    ngroups, d_state = B.shape[2], B.shape[3]
    n_chunks, chunk_size = dt_chunks.shape[2], dt_chunks.shape[3]
    heads_per_group = nheads // ngroups
    precision = "ieee" if x.dtype == torch.float32 else "tf32"  # "tf32" is ignored for 16-bit operands
    device = x.device

    cb = torch.empty(batch, n_chunks, ngroups, chunk_size, chunk_size, device=device, dtype=torch.float32)
    tile = _block(chunk_size, 64)
    chunk_cb_kernel[(batch * n_chunks * ngroups, triton.cdiv(chunk_size, tile), triton.cdiv(chunk_size, tile))](
        C, B, cb, seqlen, chunk_size, n_chunks, ngroups, d_state, *_strides(C), *_strides(B),
        BLOCK_M=tile, BLOCK_N=tile, BLOCK_K=_block(d_state, 64), PRECISION=precision, num_warps=NUM_WARPS)

    states = torch.empty(batch, n_chunks, nheads, headdim, d_state, device=device, dtype=torch.float32)
    dim_tile, state_tile = _block(headdim, 64), _block(d_state, 64)
    chunk_state_kernel[(batch * n_chunks * nheads, triton.cdiv(headdim, dim_tile), triton.cdiv(d_state, state_tile))](
        x, B, dt_chunks, cum, states, seqlen, chunk_size, n_chunks, nheads, heads_per_group, headdim, d_state,
        *_strides(x), *_strides(B),
        BLOCK_M=dim_tile, BLOCK_N=state_tile, BLOCK_K=_block(chunk_size, 64), PRECISION=precision,
        num_warps=NUM_WARPS)

    final_state = torch.empty(batch, nheads, headdim, d_state, device=device, dtype=torch.float32)
    state_size = headdim * d_state
    # The recurrence over chunks is sequential in every program: many small programs hide its load latency.
    flat_tile = max(MIN_BLOCK, min(256, triton.next_power_of_2(state_size)))
    state_passing_kernel[(batch * nheads, triton.cdiv(state_size, flat_tile))](
        states, cum, initial_state, final_state, n_chunks, chunk_size, nheads, state_size,
        HAS_INITIAL_STATE=initial_state is not None, BLOCK=flat_tile, num_warps=NUM_WARPS)

    y = torch.empty_like(x)
    z_or_x = x if z is None else z
    step_tile = _block(chunk_size, 64)
    chunk_scan_kernel[(batch * n_chunks * nheads, triton.cdiv(chunk_size, step_tile), triton.cdiv(headdim, dim_tile))](
        x, z_or_x, C, cb, dt_chunks, cum, states, D, y,
        seqlen, chunk_size, n_chunks, nheads, heads_per_group, ngroups, headdim, d_state,
        *_strides(x), *_strides(z_or_x), *_strides(y), *_strides(C),
        HAS_D=D is not None, HAS_Z=z is not None, BLOCK_M=step_tile, BLOCK_N=dim_tile, BLOCK_K=step_tile,
        BLOCK_STATE=state_tile, PRECISION=precision, num_warps=NUM_WARPS)
    return y, final_state
