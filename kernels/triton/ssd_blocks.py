"""Mamba-2 SSD block decomposition laid out for the GPU: a handful of batched matmuls and elementwise maps that
`torch.compile` fuses into Triton kernels. The backward of `ssd_triton` is autograd through this function.

Differences to `ssd_chunked` (the CPU path): within a chunk the decay between steps i >= j is
exp(cum_i - cum_j) of the chunk's cumulative sums of dt*A (one subtraction, no (T, T) segment cumsum), matmul
operands stay in the input dtype when it is bf16/fp16 (fp32 accumulation, like mamba-ssm's kernels), and C.B^T is
computed once per group, not per head.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._common import compute_dtype, silu_gate, ssd_skip, step_sizes
from ..ssd_chunked import CHUNKS_PER_BLOCK, _pass_states

_LOW_PRECISION = (torch.bfloat16, torch.float16)


@torch.compiler.disable
def _cumsum_last(t: torch.Tensor) -> torch.Tensor:
    """Cumulative sum over the last dim, kept out of Inductor graphs: torch 2.11's Triton codegen of the split scan
    it picks for a (8, 48, 8, 256) cumsum fails (InductorError in `get_block_shape`), so the scan runs eagerly
    between the compiled graphs (exact, where a triangular matmul would round under TF32)."""
    return torch.cumsum(t, dim=-1)


def chunk_step_sizes(dt: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """dt: (batch, L, nheads) processed step sizes -> (batch, nheads, n_chunks, chunk_size), zero-padded to whole
    chunks."""
    batch, seqlen, nheads = dt.shape
    n_chunks = max(1, -(-seqlen // chunk_size))
    dt = F.pad(dt, (0, 0, 0, n_chunks * chunk_size - seqlen))
    return dt.reshape(batch, n_chunks, chunk_size, nheads).permute(0, 3, 1, 2)


def chunk_decays(dt: torch.Tensor, A: torch.Tensor, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """dt: (batch, L, nheads) processed step sizes, A: (nheads,) -> (dt, cum) both (batch, nheads, n_chunks,
    chunk_size) in dt's dtype: dt zero-padded to whole chunks, cum = cumulative sum of dt*A within each chunk."""
    dt = chunk_step_sizes(dt, chunk_size)
    return dt, _cumsum_last(dt * A.to(dt.dtype)[:, None, None])


def ssd_blocks(
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
    """Contract of `ssd_chunked`: x, z: (batch, L, nheads, headdim); dt: (batch, L, nheads); A, dt_bias: (nheads,);
    B, C: (batch, L, ngroups, d_state); D: (nheads,) or (nheads, headdim); initial_state: (batch, nheads, headdim,
    d_state). Returns y (dtype of x), plus the final state (fp32; fp64 for fp64 x)."""
    if chunk_size < 1:
        raise ValueError(f"ssd_blocks: chunk_size={chunk_size}, expected >= 1")
    dtype = compute_dtype(x)
    matmul_dtype = x.dtype if x.dtype in _LOW_PRECISION else dtype
    batch, seqlen, nheads, headdim = x.shape
    ngroups, d_state = B.shape[2], B.shape[3]
    if nheads % ngroups != 0:
        raise ValueError(f"ssd_blocks: {nheads} heads cannot be split evenly over {ngroups} groups of B/C")
    per_group = nheads // ngroups
    dt = step_sizes(dt, dt_bias, dt_softplus, dtype, (nheads,), dt_limit)  # (batch, L, nheads)
    dt_chunks, cum = chunk_decays(dt, A, chunk_size)  # (batch, nheads, c, T)
    n_chunks = dt_chunks.shape[2]
    pad = n_chunks * chunk_size - seqlen

    def chunked(t: torch.Tensor) -> torch.Tensor:  # (batch, L, ...) -> (batch, c, T, ...) in the matmul dtype
        t = F.pad(t.to(matmul_dtype), (0, 0) * (t.dim() - 2) + (0, pad))
        return t.reshape(batch, n_chunks, chunk_size, *t.shape[2:])

    # g = group, e = head within the group, c = chunk, i/j = steps within a chunk, p = headdim, n = d_state.
    x_chunks = chunked(x).reshape(batch, n_chunks, chunk_size, ngroups, per_group, headdim)
    B_chunks, C_chunks = chunked(B), chunked(C)  # (batch, c, T, g, n)
    dt_chunks = dt_chunks.reshape(batch, ngroups, per_group, n_chunks, chunk_size)
    cum = cum.reshape(batch, ngroups, per_group, n_chunks, chunk_size)

    # 1. Intra-chunk: y_i = sum_{j <= i} (C_i . B_j) exp(cum_i - cum_j) dt_j x_j.
    CB = torch.einsum("bcign,bcjgn->bgcij", C_chunks, B_chunks).to(dtype)[:, :, None]  # (b, g, 1, c, i, j)
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=x.device).tril()
    log_decay = (cum[..., :, None] - cum[..., None, :]).masked_fill(~causal, -math.inf)
    scores = (CB * torch.exp(log_decay) * dt_chunks[..., None, :]).to(matmul_dtype)  # (b, g, e, c, i, j)
    y = torch.einsum("bgecij,bcjgep->bcigep", scores, x_chunks).to(dtype)

    # 2. State each chunk contributes at its end (no carry-in).
    to_end = torch.exp(cum[..., -1:] - cum) * dt_chunks  # (b, g, e, c, j)
    x_to_end = (x_chunks * to_end.permute(0, 3, 4, 1, 2)[..., None]).to(matmul_dtype)  # (b, c, j, g, e, p)
    chunk_states = torch.einsum("bcjgn,bcjgep->bcgepn", B_chunks, x_to_end).to(dtype)

    # 3. Inter-chunk recurrence in blocks of chunks (one decay-matrix product per block).
    state = (initial_state.to(dtype).reshape(batch, ngroups, per_group, headdim, d_state)
             if initial_state is not None
             else x.new_zeros(batch, ngroups, per_group, headdim, d_state, dtype=dtype))
    chunk_log_decay = cum[..., -1]  # (b, g, e, c)
    start_states = []
    for first in range(0, n_chunks, CHUNKS_PER_BLOCK):
        block = slice(first, min(first + CHUNKS_PER_BLOCK, n_chunks))
        block_starts, state = _pass_states(state, chunk_states[:, block], chunk_log_decay[..., block])
        start_states.append(block_starts)
    start_states = torch.cat(start_states, dim=1).to(matmul_dtype)  # (b, c, g, e, p, n)

    # 4. Carried-in state read out inside each chunk, decayed from the chunk start.
    y_carry = torch.einsum("bcign,bcgepn->bcigep", C_chunks, start_states).to(dtype)
    y = y + y_carry * torch.exp(cum).permute(0, 3, 4, 1, 2)[..., None]

    y = y.reshape(batch, n_chunks * chunk_size, nheads, headdim)[:, :seqlen]
    if D is not None:
        y = y + ssd_skip(x.to(dtype), D)
    y = silu_gate(y, z).to(x.dtype)
    if not return_final_state:
        return y
    return y, state.reshape(batch, nheads, headdim, d_state)
