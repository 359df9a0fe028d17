"""Tilings and launches of the SSD forward kernels (`ssd_fwd.py`); the backward reuses the chunk products and
chunk states (`ssd_bwd_launch.py`)."""
from __future__ import annotations

from typing import NamedTuple

import torch
import triton

from .ssd_fwd import chunk_cb_kernel, chunk_scan_kernel, chunk_state_kernel, state_passing_kernel

NUM_WARPS = 4
MIN_BLOCK = 16  # smallest tile side tl.dot accepts
# The chunk recurrences (`state_passing_kernel`: forward, backward recompute, reverse) are latency-bound loops over
# the chunks. Looping over one chunk at a time, all programs together keep one chunk's states (1 MB at 32 heads x
# 64 x 128 fp32) in flight: at b1 L65536 that took 1.26 ms a call on an H100, where mamba-ssm's took 0.19 (2026-12-07).
# Each loop step now loads PASSING_CHUNKS chunks. A program's flat state tile holds at most FLAT_TILE_ELEMENTS
# (chunks x state elements), and is halved, down to FLAT_TILE_MIN, while fewer than FLAT_TILE_PROGRAMS programs run.
PASSING_CHUNKS, FLAT_TILE_ELEMENTS, FLAT_TILE_MIN, FLAT_TILE_PROGRAMS = 16, 8192, 64, 1024


class Tiling(NamedTuple):
    """Launch knobs of one SSD kernel: caps of its tile sides (each kernel's docstring names what its BLOCK_M,
    BLOCK_N, BLOCK_K and BLOCK_STATE tile), warps, and software-pipelining stages of its loops."""
    block_m: int = 64
    block_n: int = 64
    block_k: int = 64
    block_state: int = 64
    warps: int = NUM_WARPS
    stages: int = 3


CB_TILING = Tiling()  # chunk_cb_kernel: M = steps i, N = steps j, K = states
# chunk_state_kernel: M = headdim, N = states, K = steps. Whole 128-state rows and 32-step K tiles (kernel ms per
# fwd+bwd, 3 calls, at b8 L2048 48 heads / b1 L65536 32 heads, 2026-12-08): 0.244 / 0.624, where 64 x 64 tiles took
# 0.351 / 0.881
STATE_TILING = Tiling(block_n=128, block_k=32)
# chunk_scan_kernel: M = steps i, N = headdim, K = steps j, STATE = states. 32-step K tiles (H100, bf16, kernel ms per
# fwd+bwd at b8 L2048 48 heads / b1 L65536 32 heads, scripts/tune_ssd.py): 0.397 / 1.019, where 64 took 0.600 / 1.574
SCAN_TILING = Tiling(block_k=32)
# Chunk scan, dx and pairs: one exponent per step, not per pair, in tiles off the diagonal (`ssd_fwd.pair_decays`).
# The three kernels at 64-step tiles: 1.839 / 4.812 ms with it, 1.965 / 5.159 without.
SEPARABLE_DECAYS = True


def tile_side(size: int, cap: int) -> int:
    """Tile side covering `size` (power of two, >= 16, <= cap)."""
    return max(MIN_BLOCK, min(cap, triton.next_power_of_2(size)))


def strides_of(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.stride())


def dot_precision(tensor: torch.Tensor) -> str:
    """tl.dot precision: IEEE fp32 for fp32 operands (no TF32); "tf32" is ignored for 16-bit operands."""
    return "ieee" if tensor.dtype == torch.float32 else "tf32"


def passing_chunks(n_chunks: int) -> int:
    """Chunks per loop step of the chunk recurrences: PASSING_CHUNKS, or fewer for shorter sequences (power of 2)."""
    return min(PASSING_CHUNKS, triton.next_power_of_2(n_chunks))


def flat_state_tile(state_size: int, rows: int, chunks: int) -> int:
    """Tile of a flattened (headdim * d_state) state in the chunk recurrences, over `rows` = batch * nheads
    sequences, `chunks` chunks per loop step: the largest power of two within FLAT_TILE_ELEMENTS / chunks (and the
    state) that still leaves FLAT_TILE_PROGRAMS programs, but no smaller than FLAT_TILE_MIN."""
    tile = max(MIN_BLOCK, min(FLAT_TILE_ELEMENTS // chunks, triton.next_power_of_2(state_size)))
    while tile > FLAT_TILE_MIN and rows * triton.cdiv(state_size, tile) < FLAT_TILE_PROGRAMS:
        tile //= 2
    return tile


def chunk_products(C: torch.Tensor, B: torch.Tensor, n_chunks: int, chunk_size: int) -> torch.Tensor:
    """C, B: (batch, L, ngroups, d_state) -> CB: (batch, n_chunks, ngroups, chunk_size, chunk_size) fp32, C_i . B_j
    (only tiles on or below the diagonal are written)."""
    batch, seqlen, ngroups, d_state = B.shape
    cb = torch.empty(batch, n_chunks, ngroups, chunk_size, chunk_size, device=B.device, dtype=torch.float32)
    knobs = CB_TILING
    rows, cols = tile_side(chunk_size, knobs.block_m), tile_side(chunk_size, knobs.block_n)
    chunk_cb_kernel[(batch * n_chunks * ngroups, triton.cdiv(chunk_size, rows), triton.cdiv(chunk_size, cols))](
        C, B, cb, seqlen, chunk_size, n_chunks, ngroups, d_state, *strides_of(C), *strides_of(B),
        BLOCK_M=rows, BLOCK_N=cols, BLOCK_K=tile_side(d_state, knobs.block_k), PRECISION=dot_precision(B),
        num_warps=knobs.warps, num_stages=knobs.stages)
    return cb


def chunk_states(x: torch.Tensor, B: torch.Tensor, dt_chunks: torch.Tensor, cum: torch.Tensor, to_end: bool = True
                 ) -> torch.Tensor:
    """Per chunk, sum_j x_j^T w_j B_j: (batch, n_chunks, nheads, headdim, d_state) fp32, with w_j = dt_j
    exp(cum_end - cum_j) (the state the chunk adds at its end) or, with `to_end=False`, exp(cum_j) (called with dy
    and C: the gradient of the state entering the chunk)."""
    batch, seqlen, nheads, headdim = x.shape
    d_state = B.shape[3]
    n_chunks, chunk_size = dt_chunks.shape[2], dt_chunks.shape[3]
    states = torch.empty(batch, n_chunks, nheads, headdim, d_state, device=x.device, dtype=torch.float32)
    knobs = STATE_TILING
    dim_tile, state_tile = tile_side(headdim, knobs.block_m), tile_side(d_state, knobs.block_n)
    chunk_state_kernel[(batch * n_chunks * nheads, triton.cdiv(headdim, dim_tile), triton.cdiv(d_state, state_tile))](
        x, B, dt_chunks, cum, states, seqlen, chunk_size, n_chunks, nheads, nheads // B.shape[2], headdim, d_state,
        *strides_of(x), *strides_of(B),
        TO_END=to_end, BLOCK_M=dim_tile, BLOCK_N=state_tile, BLOCK_K=tile_side(chunk_size, knobs.block_k),
        PRECISION=dot_precision(x), num_warps=knobs.warps, num_stages=knobs.stages)
    return states


def pass_states(states: torch.Tensor, cum: torch.Tensor, start: torch.Tensor | None, reverse: bool = False,
                carried: torch.Tensor | None = None) -> torch.Tensor:
    """Each chunk's own end state (from `chunk_states`) is replaced by the state entering that chunk, starting from
    `start` (the initial state, or zero when None), in place or, given `carried` (same shape, any float dtype), into
    it. Returns the final state (batch, nheads, headdim, d_state) fp32. With `reverse`, the same over the chunks
    from the last: called with the gradients of the entering states (from `chunk_states(to_end=False)`) and of the
    final state, each chunk's becomes the gradient of the state it adds at its end, and the return is the initial
    state's gradient."""
    batch, n_chunks, nheads, headdim, d_state = states.shape
    end = torch.empty(batch, nheads, headdim, d_state, device=states.device, dtype=torch.float32)
    state_size = headdim * d_state
    chunks = passing_chunks(n_chunks)
    flat_tile = flat_state_tile(state_size, batch * nheads, chunks)
    state_passing_kernel[(batch * nheads, triton.cdiv(state_size, flat_tile))](
        states, states if carried is None else carried, cum, start, end, n_chunks, cum.shape[3], nheads, state_size,
        HAS_START=start is not None, REVERSE=reverse, BLOCK=flat_tile, CHUNKS=chunks, num_warps=NUM_WARPS)
    return end


def ssd_forward(
    x: torch.Tensor,
    dt_chunks: torch.Tensor,
    cum: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    store_ungated: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """x, z: (batch, L, nheads, headdim); dt_chunks, cum: (batch, nheads, n_chunks, chunk_size) fp32 contiguous
    (processed step sizes, zero-padded, and their within-chunk cumulative sums times A); B, C: (batch, L, ngroups,
    d_state) in x's dtype; D: (nheads, headdim) fp32 contiguous; initial_state: (batch, nheads, headdim, d_state)
    fp32 contiguous. Returns y (dtype of x), the final state (fp32) and, with `store_ungated` and z, y before the
    gate (for the gradient of z; else None)."""
    batch, seqlen, nheads, headdim = x.shape
    ngroups, d_state = B.shape[2], B.shape[3]
    n_chunks, chunk_size = dt_chunks.shape[2], dt_chunks.shape[3]
    cb = chunk_products(C, B, n_chunks, chunk_size)
    states = chunk_states(x, B, dt_chunks, cum)
    entering = torch.empty_like(states, dtype=C.dtype)  # the chunk scan's matmuls take them in C's dtype
    final_state = pass_states(states, cum, initial_state, carried=entering)

    y = torch.empty_like(x)
    ungated = torch.empty_like(x) if store_ungated and z is not None else None
    z_or_x = x if z is None else z
    knobs = SCAN_TILING
    row_tile, dim_tile = tile_side(chunk_size, knobs.block_m), tile_side(headdim, knobs.block_n)
    chunk_scan_kernel[(batch * n_chunks * nheads, triton.cdiv(chunk_size, row_tile), triton.cdiv(headdim, dim_tile))](
        x, z_or_x, C, cb, dt_chunks, cum, entering, D, y, y if ungated is None else ungated,
        seqlen, chunk_size, n_chunks, nheads, nheads // ngroups, ngroups, headdim, d_state,
        *strides_of(x), *strides_of(z_or_x), *strides_of(y), *strides_of(C),
        HAS_D=D is not None, HAS_Z=z is not None, STORE_UNGATED=ungated is not None, BLOCK_M=row_tile,
        BLOCK_N=dim_tile, BLOCK_K=tile_side(chunk_size, knobs.block_k),
        BLOCK_STATE=tile_side(d_state, knobs.block_state), SEPARABLE=SEPARABLE_DECAYS, PRECISION=dot_precision(x),
        num_warps=knobs.warps, num_stages=knobs.stages)
    return y, final_state, ungated
