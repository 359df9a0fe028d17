"""Tilings and launches of the SSD backward kernels (`ssd_bwd.py`)."""
from __future__ import annotations

from typing import NamedTuple

import torch
import triton

from .ssd_bwd import (chunk_pairs_bwd_kernel, chunk_scan_bwd_dB_kernel, chunk_scan_bwd_dC_kernel,
                      chunk_scan_bwd_dx_kernel, gate_bwd_kernel, passed_state_grads_kernel)
from . import ssd_launch
from .ssd_launch import (NUM_WARPS, Tiling, chunk_products, chunk_states, dot_precision, pass_states, strides_of,
                         tile_side)

# chunk_scan_bwd_dx_kernel: M = steps j, N = headdim, K = steps i, STATE = states. 32-step K tiles (H100, bf16, ms
# per fwd+bwd at b8 L2048 48 heads / b1 L65536 32 heads): 0.661 / 1.713, where 64 took 0.711 / 1.862
DX_TILING = Tiling(block_k=32)
# pairs / dC / dB: M = output steps, K = the loop's steps, N = headdim (the inner side of the dots over it). dC and
# dB hold (M, d_state) tiles: above d_state 128 their M and K are halved. Pairs, dC and dB together with 4 warps
# (H100, bf16, fwd+bwd at b8 L2048 48 heads and b1 L65536 32 heads): 4.51 and 11.48 ms; with 8 warps 4.90 and 12.55.
PAIRS_TILING = Tiling()
# Swept alone (kernel ms, same shapes, 2026-12-08): dC with 32-wide headdim tiles 0.217 / 0.509, where 64 took
# 0.320 / 0.763; dB with 128-row tiles and 8 warps 0.179 / 0.437, where 64 rows and 4 warps took 0.213 / 0.496.
DC_TILING = Tiling(block_n=32)
DB_TILING = Tiling(block_m=128, warps=8)
# The three split a group's heads over programs until about TARGET_PROGRAMS pairs programs run (512: 4.58 and 11.61
# ms, 2048: 4.70 and 11.62).
TARGET_PROGRAMS = 1024
GATE_BLOCK = 1024
DOT_TILE = 2048  # flat state tile of passed_state_grads_kernel


class SSDGradients(NamedTuple):
    """Gradients of `ssd_forward`'s inputs (fp32 unless said): dx in x's dtype, ddt and the increments' (dt A,
    whose within-chunk cumulative sums are cum) (batch, nheads, n_chunks, chunk_size), dB and dC (batch, L, ngroups,
    d_state), dD (nheads, headdim) or None, and the initial state's (batch, nheads, headdim, d_state)."""
    dx: torch.Tensor
    ddt: torch.Tensor
    dincrements: torch.Tensor
    dB: torch.Tensor
    dC: torch.Tensor
    dD: torch.Tensor | None
    dinitial_state: torch.Tensor


def group_tiles(knobs: Tiling, chunk_size: int, headdim: int, halve: bool, precision: str) -> tuple[int, dict]:
    """(step tiles per chunk, launch arguments) of a pairs / dC / dB launch; `halve` halves its step tiles."""
    divisor = 2 if halve else 1
    rows = tile_side(chunk_size, knobs.block_m // divisor)
    return triton.cdiv(chunk_size, rows), dict(
        BLOCK_M=rows, BLOCK_K=tile_side(chunk_size, knobs.block_k // divisor),
        BLOCK_DIM=tile_side(headdim, knobs.block_n), PRECISION=precision, num_warps=knobs.warps,
        num_stages=knobs.stages)


def head_splits(programs_per_split: int, heads_per_group: int) -> int:
    """Heads per pairs/dB/dC program: as many as keep about TARGET_PROGRAMS programs running."""
    splits = min(heads_per_group, max(1, triton.cdiv(TARGET_PROGRAMS, programs_per_split)))
    return triton.cdiv(heads_per_group, splits)


def ssd_backward(
    x: torch.Tensor,
    dt_chunks: torch.Tensor,
    cum: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    dy: torch.Tensor,
    dfinal_state: torch.Tensor | None,
    initial_state: torch.Tensor | None,
) -> SSDGradients:
    """Inputs as in `ssd_forward` (without z); dy: (batch, L, nheads, headdim) in x's dtype, the gradient of y before
    the gate; dfinal_state: fp32 contiguous, like the final state. The forward's chunk products and entering states
    are recomputed."""
    batch, seqlen, nheads, headdim = x.shape
    ngroups, d_state = B.shape[2], B.shape[3]
    n_chunks, chunk_size = dt_chunks.shape[2], dt_chunks.shape[3]
    heads_per_group = nheads // ngroups
    if B.stride() != C.stride():  # the dC kernel reads both with one set of strides
        B, C = B.contiguous(), C.contiguous()
    device, precision = x.device, dot_precision(x)
    cb = chunk_products(C, B, n_chunks, chunk_size)
    states = chunk_states(x, B, dt_chunks, cum)
    pass_states(states, cum, initial_state)
    grads = chunk_states(dy, C, dt_chunks, cum, to_end=False)

    state_size = headdim * d_state
    dinitial_state = pass_states(grads, cum, dfinal_state, reverse=True)
    dot_tile = tile_side(state_size, DOT_TILE)
    dpassed = torch.empty(batch, nheads, n_chunks, triton.cdiv(state_size, dot_tile), device=device,
                          dtype=torch.float32)
    passed_state_grads_kernel[(batch * n_chunks * nheads, dpassed.shape[-1])](
        grads, states, cum, dpassed, n_chunks, chunk_size, nheads, state_size, BLOCK=dot_tile, num_warps=NUM_WARPS)

    knobs = DX_TILING
    step_tile, dim_tile = tile_side(chunk_size, knobs.block_m), tile_side(headdim, knobs.block_n)
    n_step_tiles, n_dim_tiles = triton.cdiv(chunk_size, step_tile), triton.cdiv(headdim, dim_tile)
    dx = torch.empty_like(x)
    ddt_parts = torch.zeros(2, n_dim_tiles, batch, nheads, n_chunks, chunk_size, device=device, dtype=torch.float32)
    dD_parts = (torch.zeros(batch, n_chunks, n_step_tiles, nheads, headdim, device=device, dtype=torch.float32)
                if D is not None else None)
    chunk_scan_bwd_dx_kernel[(batch * n_chunks * nheads, n_step_tiles, n_dim_tiles)](
        x, dy, B, cb, dt_chunks, cum, grads, x if D is None else D, dx, ddt_parts[0], ddt_parts[1],
        ddt_parts if dD_parts is None else dD_parts,
        seqlen, chunk_size, n_chunks, nheads, heads_per_group, ngroups, headdim, d_state,
        *strides_of(x), *strides_of(dy), *strides_of(dx), *strides_of(B),
        HAS_D=D is not None, BLOCK_M=step_tile, BLOCK_N=dim_tile, BLOCK_K=tile_side(chunk_size, knobs.block_k),
        BLOCK_STATE=tile_side(d_state, knobs.block_state), SEPARABLE=ssd_launch.SEPARABLE_DECAYS, PRECISION=precision,
        num_warps=knobs.warps, num_stages=knobs.stages)

    full_state = max(16, triton.next_power_of_2(d_state))
    pair_tiles, pair_args = group_tiles(PAIRS_TILING, chunk_size, headdim, False, precision)
    heads_per_split = head_splits(batch * n_chunks * ngroups * pair_tiles, heads_per_group)
    n_splits = triton.cdiv(heads_per_group, heads_per_split)
    programs = batch * n_chunks * ngroups * n_splits
    pair_weights = torch.empty(n_splits, batch, n_chunks, ngroups, chunk_size, chunk_size, device=device,
                               dtype=x.dtype)
    dpairs = torch.zeros(pair_tiles, batch, nheads, n_chunks, chunk_size, device=device, dtype=torch.float32)
    chunk_pairs_bwd_kernel[(programs, pair_tiles)](
        x, dy, cb, dt_chunks, cum, pair_weights, dpairs,
        seqlen, chunk_size, n_chunks, nheads, heads_per_group, ngroups, headdim, heads_per_split,
        *strides_of(x), *strides_of(dy), BLOCK_HEADS=triton.next_power_of_2(heads_per_split),
        SEPARABLE=ssd_launch.SEPARABLE_DECAYS, **pair_args)
    dC_parts = torch.empty(n_splits, batch, seqlen, ngroups, d_state, device=device, dtype=torch.float32)
    dread = torch.zeros(batch, nheads, n_chunks, chunk_size, device=device, dtype=torch.float32)
    tiles, args = group_tiles(DC_TILING, chunk_size, headdim, full_state > 128, precision)
    chunk_scan_bwd_dC_kernel[(programs, tiles)](
        dy, C, B, cum, states, pair_weights, dC_parts, dread,
        seqlen, chunk_size, n_chunks, nheads, heads_per_group, ngroups, headdim, d_state, heads_per_split,
        *strides_of(dy), *strides_of(B), *strides_of(dC_parts)[:4], BLOCK_STATE=full_state, **args)
    dB_parts = torch.empty_like(dC_parts)
    tiles, args = group_tiles(DB_TILING, chunk_size, headdim, full_state > 128, precision)
    chunk_scan_bwd_dB_kernel[(programs, tiles)](
        x, C, dt_chunks, cum, grads, pair_weights, dB_parts,
        seqlen, chunk_size, n_chunks, nheads, heads_per_group, ngroups, headdim, d_state, heads_per_split,
        *strides_of(x), *strides_of(C), *strides_of(dB_parts)[:4], BLOCK_STATE=full_state, **args)

    ddt, ddt_end = ddt_parts.sum(1)
    through_end = dt_chunks * ddt_end  # exp(cum_end - cum_j): the increments after step j
    dincrements = (dpairs.sum(0) + dread.flip(-1).cumsum(-1).flip(-1) + (through_end.cumsum(-1) - through_end)
                   + dpassed.sum(-1, keepdim=True))
    return SSDGradients(dx, ddt, dincrements, dB_parts.sum(0), dC_parts.sum(0),
                        None if dD_parts is None else dD_parts.sum((0, 1, 2)), dinitial_state)


def gate_backward(dy: torch.Tensor, z: torch.Tensor, ungated: torch.Tensor | None, dtype: torch.dtype
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """y = u silu(z): (du in `dtype`, dz in z's dtype or None when `ungated` (u) is None), both contiguous."""
    dy, z = dy.contiguous(), z.contiguous()
    dungated = torch.empty(dy.shape, device=dy.device, dtype=dtype)
    dz = None if ungated is None else torch.empty_like(z)
    gate_bwd_kernel[(triton.cdiv(dy.numel(), GATE_BLOCK),)](
        dy, z, z if ungated is None else ungated.contiguous(), dungated, z if dz is None else dz, dy.numel(),
        WANT_DZ=dz is not None, BLOCK=GATE_BLOCK, num_warps=NUM_WARPS)
    return dungated, dz
