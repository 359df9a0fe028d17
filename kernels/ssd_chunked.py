"""Mamba-2 SSD by block decomposition (Dao & Gu 2024, section 7): within a chunk the scan is a masked, decayed
"attention" (quadratic in chunk_size); across chunks a short recurrence carries the state.

Decays are built from segment sums of dt*A inside a chunk (sums over a segment, never exponentials of long
cumulative sums), so every exponent is <= 0 for A*dt <= 0 and nothing overflows.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._common import compute_dtype, silu_gate, ssd_skip, step_sizes


def segment_sum(a: torch.Tensor) -> torch.Tensor:
    """a: (..., T) -> (..., T, T) with out[i, j] = a[j+1] + ... + a[i] for i >= j and -inf above the diagonal."""
    length = a.shape[-1]
    lower = torch.ones(length, length, dtype=torch.bool, device=a.device).tril(0)
    strictly_lower = lower.tril(-1)
    sums = a[..., None].expand(*a.shape, length).masked_fill(~strictly_lower, 0.0).cumsum(dim=-2)
    return sums.masked_fill(~lower, -math.inf)


CHUNKS_PER_BLOCK = 64  # the state-passing matrix of a block is (CHUNKS_PER_BLOCK + 1)^2 per head


def _pass_states(
    state: torch.Tensor, chunk_states: torch.Tensor, chunk_log_decay: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """States at the start of each of K consecutive chunks, and after the last, as one product with the matrix of
    decays between chunk boundaries (no loop over chunks).

    state: (batch, g, e, p, n) entering the first chunk; chunk_states: (batch, K, g, e, p, n), each chunk's own
    contribution at its end; chunk_log_decay: (batch, g, e, K), log decay across each whole chunk.
    Returns (start_states: (batch, K, g, e, p, n), final_state: (batch, g, e, p, n)).
    """
    decay = torch.exp(segment_sum(F.pad(chunk_log_decay, (1, 0))))  # (batch, g, e, K + 1, K + 1)
    boundary = torch.cat([state[:, None], chunk_states], dim=1)  # (batch, K + 1, g, e, p, n)
    passed = torch.einsum("bgeij,bjgepn->bigepn", decay, boundary)
    return passed[:, :-1], passed[:, -1]


def ssd_chunked(
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
    chunk_size: int = 256,
    dt_limit: tuple[float, float] = (0.0, math.inf),
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Chunked SSD, same contract as `ssd_reference`: x, z: (batch, L, nheads, headdim); dt: (batch, L, nheads);
    A, dt_bias: (nheads,); B, C: (batch, L, ngroups, d_state); D: (nheads,) or (nheads, headdim);
    initial_state: (batch, nheads, headdim, d_state). Any L (the last chunk is zero-padded: dt = 0 there).
    Returns y (dtype of x), plus the final state (fp32, fp64 for fp64 x)."""
    if chunk_size < 1:
        raise ValueError(f"ssd_chunked: chunk_size={chunk_size}, expected >= 1")
    dtype = compute_dtype(x)
    batch, seqlen, nheads, headdim = x.shape
    ngroups, d_state = B.shape[2], B.shape[3]
    if nheads % ngroups != 0:
        raise ValueError(f"ssd_chunked: {nheads} heads cannot be split evenly over {ngroups} groups of B/C")
    per_group = nheads // ngroups
    dt = step_sizes(dt, dt_bias, dt_softplus, dtype, (nheads,), dt_limit)  # (batch, L, nheads)
    x_compute = x.to(dtype)

    n_chunks = max(1, -(-seqlen // chunk_size))
    pad = n_chunks * chunk_size - seqlen

    def chunked(t: torch.Tensor) -> torch.Tensor:  # (batch, L, ...) -> (batch, n_chunks, chunk_size, ...)
        t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
        return t.reshape(batch, n_chunks, chunk_size, *t.shape[2:])

    # g = group, e = head within the group, c = chunk, i/j = positions within a chunk.
    x_dt = chunked(x_compute * dt[..., None]).reshape(batch, n_chunks, chunk_size, ngroups, per_group, headdim)
    B_chunks, C_chunks = chunked(B.to(dtype)), chunked(C.to(dtype))  # (batch, c, chunk_size, g, d_state)
    log_decay = chunked(dt * A.to(dtype)).reshape(batch, n_chunks, chunk_size, ngroups, per_group)
    log_decay = log_decay.permute(0, 3, 4, 1, 2)  # (batch, g, e, c, i)
    decay_from_start = log_decay.cumsum(dim=-1)  # log decay from the chunk start to (and including) step i

    # 1. Intra-chunk outputs: y_i = sum_{j <= i} (C_i . B_j) exp(a_{j+1} + ... + a_i) dt_j x_j.
    scores = torch.einsum("bcign,bcjgn->bgcij", C_chunks, B_chunks)[:, :, None] * torch.exp(segment_sum(log_decay))
    y = torch.einsum("bgecij,bcjgep->bcigep", scores, x_dt)

    # 2. State each chunk contributes at its end (no carry-in).
    decay_to_end = torch.exp(decay_from_start[..., -1:] - decay_from_start).permute(0, 3, 4, 1, 2)
    chunk_states = torch.einsum("bcjgn,bcjgep->bcgepn", B_chunks, x_dt * decay_to_end[..., None])

    # 3. Inter-chunk recurrence, in blocks of chunks: one decay-matrix product per block, a loop across blocks.
    state = (initial_state.to(dtype).reshape(batch, ngroups, per_group, headdim, d_state)
             if initial_state is not None
             else x.new_zeros(batch, ngroups, per_group, headdim, d_state, dtype=dtype))
    chunk_log_decay = decay_from_start[..., -1]  # (batch, g, e, c)
    start_states = []
    for first in range(0, n_chunks, CHUNKS_PER_BLOCK):
        block = slice(first, min(first + CHUNKS_PER_BLOCK, n_chunks))
        block_starts, state = _pass_states(state, chunk_states[:, block], chunk_log_decay[..., block])
        start_states.append(block_starts)
    start_states = torch.cat(start_states, dim=1)  # (batch, c, g, e, p, n)

    # 4. Carried-in state read out inside each chunk, decayed from the chunk start.
    y_carry = torch.einsum("bcign,bcgepn->bcigep", C_chunks, start_states)
    y = y + y_carry * torch.exp(decay_from_start).permute(0, 3, 4, 1, 2)[..., None]

    y = y.reshape(batch, n_chunks * chunk_size, nheads, headdim)[:, :seqlen]
    if D is not None:
        y = y + ssd_skip(x_compute, D)
    y = silu_gate(y, z).to(x.dtype)
    if not return_final_state:
        return y
    return y, state.reshape(batch, nheads, headdim, d_state)
