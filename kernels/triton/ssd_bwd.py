"""Backward Triton kernels of the Mamba-2 SSD block decomposition (notation of `ssd_fwd.py`; dy is the gradient of
y before the gate, S[c] the state entering chunk c, G[c] the gradient of S[c], a_t = dt_t A the increments whose
within-chunk cumulative sums are cum).

With the forward's cb and entering states recomputed, and dS_in[c] = sum_i exp(cum_i) dy_i^T C_i from
`chunk_state_kernel(TO_END=False)`:
1. `state_passing_kernel` (ssd_fwd.py) with REVERSE: the recurrence over chunks run backwards, G[c] = dS_in[c] +
   exp(cum_end[c]) G[c+1] (G[n_chunks] = gradient of the final state), in place: dS_in[c] becomes G[c+1], the
   gradient of the state chunk c adds at its end. G[0] is the gradient of the initial state. Then, in parallel over
   chunks, `passed_state_grads_kernel`: <G[c+1], exp(cum_end[c]) S[c]>, which every increment of chunk c gets (a
   reduction inside the sequential loop would put a block-wide sum on its critical path).
2. `chunk_scan_bwd_dx_kernel`: r_j = exp(cum_end - cum_j) B_j G[c+1]^T + sum_{i >= j} CB_ij exp(cum_i - cum_j) dy_i;
   dx_j = dt_j r_j + D dy_j, d dt_j = x_j . r_j (its first term apart: the increments after j get dt_j times it),
   and partial sums of dy * x for dD.
3. `chunk_pairs_bwd_kernel`: per head, W_ij = (dy_i . x_j) exp(cum_i - cum_j) dt_j for j <= i, stored summed over a
   slice of the group's heads (B and C are shared by the group, so the products with them are taken once per
   slice, not per head). Per head it also gives sum_{i >= t > j} M_ij with M_ij = W_ij CB_ij, the increments'
   gradient through the pairs, summed straight from the pair products: taking d cum_i = sum_j M_ij and
   d cum_j = -sum_i M_ij apart and cumulating them would cancel, and in bf16 lose the small difference.
4. `chunk_scan_bwd_dC_kernel`: dC_i = sum_h exp(cum_i) dy_i S[c] + sum_{j <= i} W_ij B_j, and per head the read-out
   term exp(cum_i) dy_i . S[c] C_i that every increment up to i gets.
5. `chunk_scan_bwd_dB_kernel`: dB_j = sum_h exp(cum_end - cum_j) dt_j x_j G[c+1] + sum_{i >= j} W_ij C_i.
6. `gate_bwd_kernel`: the z gate, elementwise.
The caller adds up the increments' gradient and backpropagates dt and the increments through the step sizes in
PyTorch. Matmul operands are in the input dtype (fp32 accumulation), as in the forward.
"""
import triton
import triton.language as tl

from .scan_math import silu_gate_grads
from .ssd_fwd import chunk_state_offset, head_chunk_program, pair_decays


@triton.jit
def passed_state_grads_kernel(
    grads_ptr, states_ptr, cum_ptr, dpassed_ptr, n_chunks, chunk_size, nheads, state_size, BLOCK: tl.constexpr,
):
    """Grid (batch * n_chunks * nheads, state tiles), after the reverse state passing: dpassed (batch, nheads,
    n_chunks, state tiles) fp32, partial sums of <G[c+1], exp(cum_end[c]) S[c]>, which every increment of chunk c
    gets (the state S[c] passes through the whole chunk)."""
    batch, chunk, head = head_chunk_program(nheads, n_chunks)
    tile = tl.program_id(1)
    offsets = tile * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < state_size
    pointer = chunk_state_offset(batch, chunk, head, n_chunks, nheads, state_size) + offsets
    grad = tl.load(grads_ptr + pointer, mask=mask, other=0.0)
    entering = tl.load(states_ptr + pointer, mask=mask, other=0.0)
    row = (batch * nheads + head) * n_chunks + chunk
    decay = tl.exp(tl.load(cum_ptr + row * chunk_size + chunk_size - 1))
    tl.store(dpassed_ptr + row * tl.num_programs(1) + tile, decay * tl.sum(grad * entering, axis=0))


@triton.jit
def chunk_scan_bwd_dx_kernel(
    x_ptr, dy_ptr, B_ptr, cb_ptr, dt_ptr, cum_ptr, grads_ptr, D_ptr, dx_ptr, ddt_ptr, ddt_end_ptr, dD_ptr,
    seqlen, chunk_size, n_chunks, nheads, heads_per_group, ngroups, headdim, d_state,
    stride_x_batch, stride_x_seq, stride_x_head, stride_x_dim,
    stride_dy_batch, stride_dy_seq, stride_dy_head, stride_dy_dim,
    stride_dx_batch, stride_dx_seq, stride_dx_head, stride_dx_dim,
    stride_B_batch, stride_B_seq, stride_B_group, stride_B_state,
    HAS_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    BLOCK_STATE: tl.constexpr, SEPARABLE: tl.constexpr, PRECISION: tl.constexpr,
):
    """Grid (batch * n_chunks * nheads, step tiles, headdim tiles). ddt and ddt_end (the part of ddt through the
    chunk's end state): (headdim tiles, batch, nheads, n_chunks, chunk_size), and dD: (batch, n_chunks, step tiles,
    nheads, headdim), fp32 partial sums. SEPARABLE: tiles of steps i wholly after the column tile take
    `pair_decays`' one exponent per step."""
    batch, chunk, head = head_chunk_program(nheads, n_chunks)
    group = head // heads_per_group
    chunk_len = tl.minimum(chunk_size, seqlen - chunk * chunk_size)
    if tl.program_id(1) * BLOCK_M >= chunk_len:
        return
    cols = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)  # steps j
    dims = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_mask = cols < chunk_len
    dim_mask = dims < headdim
    first = chunk.to(tl.int64) * chunk_size
    decay_base = ((batch * nheads + head) * n_chunks + chunk) * chunk_size
    cum_cols = tl.load(cum_ptr + decay_base + cols, mask=col_mask, other=0.0)
    cum_end = tl.load(cum_ptr + decay_base + chunk_size - 1)
    B_base = B_ptr + batch * stride_B_batch + first * stride_B_seq + group * stride_B_group
    dy_base = dy_ptr + batch * stride_dy_batch + first * stride_dy_seq + head * stride_dy_head
    x_base = x_ptr + batch * stride_x_batch + first * stride_x_seq + head * stride_x_head

    # What the chunk's own end state passes on: exp(cum_end - cum_j) B_j G[c+1]^T.
    grad_base = grads_ptr + chunk_state_offset(batch, chunk, head, n_chunks, nheads, headdim * d_state)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for start in range(0, d_state, BLOCK_STATE):
        n = start + tl.arange(0, BLOCK_STATE)
        B_tile = tl.load(B_base + cols[:, None] * stride_B_seq + n[None, :] * stride_B_state,
                         mask=col_mask[:, None] & (n[None, :] < d_state), other=0.0)
        grad_tile = tl.load(grad_base + dims[None, :] * d_state + n[:, None],
                            mask=dim_mask[None, :] & (n[:, None] < d_state), other=0.0)
        acc += tl.dot(B_tile, grad_tile.to(B_tile.dtype), input_precision=PRECISION)
    acc *= tl.exp(cum_end - cum_cols)[:, None]
    tile_mask = col_mask[:, None] & dim_mask[None, :]
    x_cols = tl.load(x_base + cols[:, None] * stride_x_seq + dims[None, :] * stride_x_dim, mask=tile_mask,
                     other=0.0).to(tl.float32)
    n_batches = tl.num_programs(0) // (nheads * n_chunks)
    ddt_offsets = ((tl.program_id(2) * n_batches + batch) * nheads + head) * n_chunks * chunk_size + first + cols
    tl.store(ddt_end_ptr + ddt_offsets, tl.sum(acc * x_cols, axis=1), mask=col_mask)

    # Within the chunk: sum over later steps i of CB_ij exp(cum_i - cum_j) dy_i.
    cb_base = cb_ptr + ((batch * n_chunks + chunk) * ngroups + group) * chunk_size * chunk_size
    for start in range(tl.program_id(1) * BLOCK_M, chunk_len, BLOCK_K):
        i = start + tl.arange(0, BLOCK_K)
        in_chunk = i < chunk_len
        causal = (i[None, :] >= cols[:, None]) & in_chunk[None, :] & col_mask[:, None]
        cb = tl.load(cb_base + i[None, :] * chunk_size + cols[:, None], mask=causal, other=0.0)
        cum = tl.load(cum_ptr + decay_base + i, mask=in_chunk, other=0.0)
        separable = SEPARABLE and start >= tl.program_id(1) * BLOCK_M + BLOCK_M
        decay = pair_decays(cum[None, :], cum_cols[:, None], causal, cum_ptr + decay_base + start, separable)
        dy_tile = tl.load(dy_base + i[:, None] * stride_dy_seq + dims[None, :] * stride_dy_dim,
                          mask=in_chunk[:, None] & dim_mask[None, :], other=0.0)
        acc += tl.dot(tl.where(causal, cb * decay, 0.0).to(dy_tile.dtype), dy_tile, input_precision=PRECISION)

    tl.store(ddt_ptr + ddt_offsets, tl.sum(acc * x_cols, axis=1), mask=col_mask)
    dt_cols = tl.load(dt_ptr + decay_base + cols, mask=col_mask, other=0.0)
    dx = acc * dt_cols[:, None]
    if HAS_D:
        dy_cols = tl.load(dy_base + cols[:, None] * stride_dy_seq + dims[None, :] * stride_dy_dim, mask=tile_mask,
                          other=0.0).to(tl.float32)
        dx += dy_cols * tl.load(D_ptr + head * headdim + dims, mask=dim_mask, other=0.0)[None, :]
        partial = ((batch * n_chunks + chunk) * tl.num_programs(1) + tl.program_id(1)) * nheads + head
        tl.store(dD_ptr + partial * headdim + dims, tl.sum(dy_cols * x_cols, axis=0), mask=dim_mask)
    tl.store(dx_ptr + batch * stride_dx_batch + (first + cols[:, None]) * stride_dx_seq + head * stride_dx_head
             + dims[None, :] * stride_dx_dim, dx.to(dx_ptr.dtype.element_ty), mask=tile_mask)


@triton.jit
def group_split_program(ngroups, n_chunks, heads_per_group, heads_per_split):
    """(batch (int64), chunk, group, split, first head, end head) of a dB/dC program: its axis-0 id runs over
    batch * n_chunks * ngroups * splits (split fastest), and it sums heads [first, end), a slice of the group's."""
    pid = tl.program_id(0)
    n_splits = tl.cdiv(heads_per_group, heads_per_split)
    split = pid % n_splits
    group = (pid // n_splits) % ngroups
    chunk = (pid // (n_splits * ngroups)) % n_chunks
    batch = (pid // (n_splits * ngroups * n_chunks)).to(tl.int64)
    first_head = group * heads_per_group + split * heads_per_split
    end_head = tl.minimum(first_head + heads_per_split, (group + 1) * heads_per_group)
    return batch, chunk, group, split, first_head, end_head


@triton.jit
def group_split_batches(ngroups, n_chunks, heads_per_group, heads_per_split):
    """The batch size, from a pairs/dB/dC program (axis 0 of its grid runs over batch * n_chunks * ngroups * splits)."""
    return tl.num_programs(0) // (tl.cdiv(heads_per_group, heads_per_split) * ngroups * n_chunks)


@triton.jit
def pair_weights_offset(batch, chunk, group, split, n_chunks, ngroups, heads_per_group, heads_per_split, chunk_size):
    """Offset of the (chunk_size, chunk_size) block of summed pair weights W of (split, batch, chunk, group) in a
    (splits, batch, n_chunks, ngroups, chunk_size, chunk_size) buffer, from a dB/dC/pairs program."""
    n_batches = group_split_batches(ngroups, n_chunks, heads_per_group, heads_per_split)
    return (((split * n_batches + batch) * n_chunks + chunk) * ngroups + group) * chunk_size * chunk_size


@triton.jit
def chunk_pairs_bwd_kernel(
    x_ptr, dy_ptr, cb_ptr, dt_ptr, cum_ptr, W_ptr, dpairs_ptr,
    seqlen, chunk_size, n_chunks, nheads, heads_per_group, ngroups, headdim, heads_per_split,
    stride_x_batch, stride_x_seq, stride_x_head, stride_x_dim,
    stride_dy_batch, stride_dy_seq, stride_dy_head, stride_dy_dim,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_DIM: tl.constexpr, BLOCK_HEADS: tl.constexpr,
    SEPARABLE: tl.constexpr, PRECISION: tl.constexpr,
):
    """Grid (batch * n_chunks * ngroups * splits, step tiles). W: (splits, batch, n_chunks, ngroups, chunk_size,
    chunk_size) in x's dtype, sum_h W_ij over each split's heads for every tile on or below the diagonal (zero above
    it); dpairs: (step tiles, batch, nheads, n_chunks, chunk_size), zeroed, each row tile's part of
    sum_{i >= t > j} M_ij. BLOCK_HEADS >= heads_per_split. SEPARABLE as in the chunk scan."""
    batch, chunk, group, split, first_head, end_head = group_split_program(ngroups, n_chunks, heads_per_group,
                                                                           heads_per_split)
    chunk_len = tl.minimum(chunk_size, seqlen - chunk * chunk_size)
    if tl.program_id(1) * BLOCK_M >= chunk_len:
        return
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)  # steps i
    row_mask = rows < chunk_len
    first = chunk.to(tl.int64) * chunk_size
    n_batches = group_split_batches(ngroups, n_chunks, heads_per_group, heads_per_split)
    cb_base = cb_ptr + ((batch * n_chunks + chunk) * ngroups + group) * chunk_size * chunk_size
    W_base = W_ptr + pair_weights_offset(batch, chunk, group, split, n_chunks, ngroups, heads_per_group,
                                         heads_per_split, chunk_size)
    pairs_tile = dpairs_ptr + tl.program_id(1) * n_batches * nheads * n_chunks * chunk_size
    slots = tl.arange(0, BLOCK_HEADS)
    earlier = tl.zeros((BLOCK_HEADS, BLOCK_M), dtype=tl.float32)  # per head and row i: sum of M_ij over past tiles
    end = tl.minimum(tl.program_id(1) * BLOCK_M + BLOCK_M, chunk_len)
    for start in range(0, end, BLOCK_K):
        j = start + tl.arange(0, BLOCK_K)
        in_chunk = j < chunk_len
        causal = (j[None, :] <= rows[:, None]) & in_chunk[None, :] & row_mask[:, None]
        cb = tl.load(cb_base + rows[:, None] * chunk_size + j[None, :], mask=causal, other=0.0)
        separable = SEPARABLE and start + BLOCK_K <= tl.program_id(1) * BLOCK_M
        weights = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
        for head in range(first_head, end_head):
            decay_base = ((batch * nheads + head) * n_chunks + chunk) * chunk_size
            dy_base = dy_ptr + batch * stride_dy_batch + first * stride_dy_seq + head * stride_dy_head
            x_base = x_ptr + batch * stride_x_batch + first * stride_x_seq + head * stride_x_head
            products = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
            for dim_start in range(0, headdim, BLOCK_DIM):
                p = dim_start + tl.arange(0, BLOCK_DIM)
                dy_tile = tl.load(dy_base + rows[:, None] * stride_dy_seq + p[None, :] * stride_dy_dim,
                                  mask=row_mask[:, None] & (p[None, :] < headdim), other=0.0)
                x_tile = tl.load(x_base + j[None, :] * stride_x_seq + p[:, None] * stride_x_dim,
                                 mask=in_chunk[None, :] & (p[:, None] < headdim), other=0.0)
                products += tl.dot(dy_tile, x_tile, input_precision=PRECISION)
            cum_rows = tl.load(cum_ptr + decay_base + rows, mask=row_mask, other=0.0)
            cum = tl.load(cum_ptr + decay_base + j, mask=in_chunk, other=0.0)
            dt = tl.load(dt_ptr + decay_base + j, mask=in_chunk, other=0.0)
            decay = pair_decays(cum_rows[:, None], cum[None, :], causal, cum_ptr + decay_base + start + BLOCK_K - 1,
                                separable)
            weight = tl.where(causal, products * decay * dt[None, :], 0.0)
            weights += weight
            # The gradient of the increment at step t takes sum_{j < t} M_ij from every row i >= t: per head and
            # row, a running sum over j.
            pairs = weight * cb
            slot = slots[:, None] == head - first_head
            head_earlier = tl.sum(tl.where(slot, earlier, 0.0), axis=0)
            before = head_earlier[:, None] + tl.cumsum(pairs, axis=1) - pairs
            tl.store(pairs_tile + decay_base + j, tl.sum(tl.where(causal, before, 0.0), axis=0), mask=in_chunk)
            earlier = tl.where(slot, (head_earlier + tl.sum(pairs, axis=1))[None, :], earlier)
        tl.store(W_base + rows[:, None] * chunk_size + j[None, :], weights.to(W_ptr.dtype.element_ty),
                 mask=row_mask[:, None] & in_chunk[None, :])


@triton.jit
def chunk_scan_bwd_dC_kernel(
    dy_ptr, C_ptr, B_ptr, cum_ptr, states_ptr, W_ptr, dC_ptr, dread_ptr,
    seqlen, chunk_size, n_chunks, nheads, heads_per_group, ngroups, headdim, d_state, heads_per_split,
    stride_dy_batch, stride_dy_seq, stride_dy_head, stride_dy_dim,
    stride_B_batch, stride_B_seq, stride_B_group, stride_B_state,
    stride_dC_split, stride_dC_batch, stride_dC_seq, stride_dC_group,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_DIM: tl.constexpr, BLOCK_STATE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Grid and splits as `chunk_pairs_bwd_kernel`'s, whose W it reads. C and B share strides. dC: (splits, batch,
    L, ngroups, d_state) fp32 partial sums over each split's heads; dread: (batch, nheads, n_chunks, chunk_size),
    the read-out term exp(cum_i) dy_i . S[c] C_i."""
    batch, chunk, group, split, first_head, end_head = group_split_program(ngroups, n_chunks, heads_per_group,
                                                                           heads_per_split)
    chunk_len = tl.minimum(chunk_size, seqlen - chunk * chunk_size)
    if tl.program_id(1) * BLOCK_M >= chunk_len:
        return
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)  # steps i
    row_mask = rows < chunk_len
    n = tl.arange(0, BLOCK_STATE)
    state_mask = n < d_state
    first = chunk.to(tl.int64) * chunk_size
    BC_offset = batch * stride_B_batch + first * stride_B_seq + group * stride_B_group
    C_rows = tl.load(C_ptr + BC_offset + rows[:, None] * stride_B_seq + n[None, :] * stride_B_state,
                     mask=row_mask[:, None] & state_mask[None, :], other=0.0)
    dC = tl.zeros((BLOCK_M, BLOCK_STATE), dtype=tl.float32)
    for head in range(first_head, end_head):  # the entering state read out: exp(cum_i) dy_i S[c]
        decay_base = ((batch * nheads + head) * n_chunks + chunk) * chunk_size
        cum_rows = tl.load(cum_ptr + decay_base + rows, mask=row_mask, other=0.0)
        dy_base = dy_ptr + batch * stride_dy_batch + first * stride_dy_seq + head * stride_dy_head
        state_base = states_ptr + chunk_state_offset(batch, chunk, head, n_chunks, nheads, headdim * d_state)
        read = tl.zeros((BLOCK_M, BLOCK_STATE), dtype=tl.float32)
        for dim_start in range(0, headdim, BLOCK_DIM):
            p = dim_start + tl.arange(0, BLOCK_DIM)
            dy_tile = tl.load(dy_base + rows[:, None] * stride_dy_seq + p[None, :] * stride_dy_dim,
                              mask=row_mask[:, None] & (p[None, :] < headdim), other=0.0)
            state_tile = tl.load(state_base + p[:, None] * d_state + n[None, :],
                                 mask=(p[:, None] < headdim) & state_mask[None, :], other=0.0)
            read += tl.dot(dy_tile, state_tile.to(dy_tile.dtype), input_precision=PRECISION)
        read *= tl.exp(cum_rows)[:, None]
        tl.store(dread_ptr + decay_base + rows, tl.sum(read * C_rows.to(tl.float32), axis=1), mask=row_mask)
        dC += read

    # Within the chunk, once for the split's heads: sum_{j <= i} W_ij B_j.
    W_base = W_ptr + pair_weights_offset(batch, chunk, group, split, n_chunks, ngroups, heads_per_group,
                                         heads_per_split, chunk_size)
    end = tl.minimum(tl.program_id(1) * BLOCK_M + BLOCK_M, chunk_len)
    for start in range(0, end, BLOCK_K):
        j = start + tl.arange(0, BLOCK_K)
        in_chunk = j < chunk_len
        W_tile = tl.load(W_base + rows[:, None] * chunk_size + j[None, :],
                         mask=(j[None, :] <= rows[:, None]) & in_chunk[None, :] & row_mask[:, None], other=0.0)
        B_tile = tl.load(B_ptr + BC_offset + j[:, None] * stride_B_seq + n[None, :] * stride_B_state,
                         mask=in_chunk[:, None] & state_mask[None, :], other=0.0)
        dC += tl.dot(W_tile.to(B_tile.dtype), B_tile, input_precision=PRECISION)
    out = dC_ptr + split * stride_dC_split + batch * stride_dC_batch + (first + rows[:, None]) * stride_dC_seq
    tl.store(out + group * stride_dC_group + n[None, :], dC, mask=row_mask[:, None] & state_mask[None, :])


@triton.jit
def chunk_scan_bwd_dB_kernel(
    x_ptr, C_ptr, dt_ptr, cum_ptr, grads_ptr, W_ptr, dB_ptr,
    seqlen, chunk_size, n_chunks, nheads, heads_per_group, ngroups, headdim, d_state, heads_per_split,
    stride_x_batch, stride_x_seq, stride_x_head, stride_x_dim,
    stride_C_batch, stride_C_seq, stride_C_group, stride_C_state,
    stride_dB_split, stride_dB_batch, stride_dB_seq, stride_dB_group,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_DIM: tl.constexpr, BLOCK_STATE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Grid and splits as `chunk_pairs_bwd_kernel`'s, whose W it reads. dB: (splits, batch, L, ngroups, d_state)
    fp32 partial sums over each split's heads."""
    batch, chunk, group, split, first_head, end_head = group_split_program(ngroups, n_chunks, heads_per_group,
                                                                           heads_per_split)
    chunk_len = tl.minimum(chunk_size, seqlen - chunk * chunk_size)
    if tl.program_id(1) * BLOCK_M >= chunk_len:
        return
    cols = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)  # steps j
    col_mask = cols < chunk_len
    n = tl.arange(0, BLOCK_STATE)
    state_mask = n < d_state
    first = chunk.to(tl.int64) * chunk_size
    C_base = C_ptr + batch * stride_C_batch + first * stride_C_seq + group * stride_C_group
    dB = tl.zeros((BLOCK_M, BLOCK_STATE), dtype=tl.float32)
    for head in range(first_head, end_head):  # the chunk's own end state: exp(cum_end - cum_j) dt_j x_j G[c+1]
        decay_base = ((batch * nheads + head) * n_chunks + chunk) * chunk_size
        cum_cols = tl.load(cum_ptr + decay_base + cols, mask=col_mask, other=0.0)
        dt_cols = tl.load(dt_ptr + decay_base + cols, mask=col_mask, other=0.0)
        cum_end = tl.load(cum_ptr + decay_base + chunk_size - 1)
        x_base = x_ptr + batch * stride_x_batch + first * stride_x_seq + head * stride_x_head
        grad_base = grads_ptr + chunk_state_offset(batch, chunk, head, n_chunks, nheads, headdim * d_state)
        dB_head = tl.zeros((BLOCK_M, BLOCK_STATE), dtype=tl.float32)
        for dim_start in range(0, headdim, BLOCK_DIM):
            p = dim_start + tl.arange(0, BLOCK_DIM)
            x_tile = tl.load(x_base + cols[:, None] * stride_x_seq + p[None, :] * stride_x_dim,
                             mask=col_mask[:, None] & (p[None, :] < headdim), other=0.0)
            grad_tile = tl.load(grad_base + p[:, None] * d_state + n[None, :],
                                mask=(p[:, None] < headdim) & state_mask[None, :], other=0.0)
            dB_head += tl.dot(x_tile, grad_tile.to(x_tile.dtype), input_precision=PRECISION)
        dB += dB_head * (tl.exp(cum_end - cum_cols) * dt_cols)[:, None]

    # Within the chunk, once for the split's heads: sum_{i >= j} W_ij C_i.
    W_base = W_ptr + pair_weights_offset(batch, chunk, group, split, n_chunks, ngroups, heads_per_group,
                                         heads_per_split, chunk_size)
    for start in range(tl.program_id(1) * BLOCK_M, chunk_len, BLOCK_K):
        i = start + tl.arange(0, BLOCK_K)
        in_chunk = i < chunk_len
        W_tile = tl.load(W_base + i[None, :] * chunk_size + cols[:, None],  # transposed: (j, i)
                         mask=(i[None, :] >= cols[:, None]) & in_chunk[None, :] & col_mask[:, None], other=0.0)
        C_tile = tl.load(C_base + i[:, None] * stride_C_seq + n[None, :] * stride_C_state,
                         mask=in_chunk[:, None] & state_mask[None, :], other=0.0)
        dB += tl.dot(W_tile.to(C_tile.dtype), C_tile, input_precision=PRECISION)
    out = dB_ptr + split * stride_dB_split + batch * stride_dB_batch + (first + cols[:, None]) * stride_dB_seq
    tl.store(out + group * stride_dB_group + n[None, :], dB, mask=col_mask[:, None] & state_mask[None, :])


@triton.jit
def gate_bwd_kernel(dy_ptr, z_ptr, ungated_ptr, dungated_ptr, dz_ptr, numel, WANT_DZ: tl.constexpr,
                    BLOCK: tl.constexpr):
    """y = u silu(z), elementwise over contiguous tensors: du = dy silu(z) (u's dtype) and dz = dy u silu'(z)."""
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < numel
    dy = tl.load(dy_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    z = tl.load(z_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    if WANT_DZ:
        ungated = tl.load(ungated_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    else:
        ungated = tl.zeros_like(dy)  # dz is not stored
    dungated, dz = silu_gate_grads(dy, ungated, z, tl.sigmoid(z))
    tl.store(dungated_ptr + offsets, dungated.to(dungated_ptr.dtype.element_ty), mask=mask)
    if WANT_DZ:
        tl.store(dz_ptr + offsets, dz.to(dz_ptr.dtype.element_ty), mask=mask)
