"""Forward Triton kernels of the Mamba-2 SSD block decomposition (chunks of T steps; c = chunk, h = head, g = group).

Four launches, each a grid of independent tiles:
1. `chunk_cb_kernel`: CB[b, c, g] = C_chunk . B_chunk^T, (T, T) per chunk and group (shared by the group's heads);
   only tiles on or below the diagonal are written.
2. `chunk_state_kernel`: each chunk's own state at its end, S[b, c, h] = sum_j x_j^T (dt_j exp(cum_end - cum_j)) B_j,
   (headdim, d_state) fp32. With TO_END=False it weighs step j by exp(cum_j) instead: the backward's gradient of the
   state entering the chunk, sum_i dy_i^T exp(cum_i) C_i (called with dy for x and C for B).
3. `state_passing_kernel`: the short recurrence across chunks, s <- exp(cum_end[c]) s + S[c], which gives the
   states entering the chunks (stored in the matmul dtype for the chunk scan, fp32 for the backward) and the final
   state, several chunks per loop step. The backward runs the same recurrence in reverse over the state gradients.
4. `chunk_scan_kernel`: y_i = exp(cum_i) C_i . S_in[c] + sum_{j <= i} CB_ij exp(cum_i - cum_j) dt_j x_j, + D x_i,
   times silu(z_i) (optionally also stored before that gate, for the backward).
cum is the within-chunk cumulative sum of dt*A; every exponent used is <= 0 (A*dt <= 0), so nothing overflows.
Matmul operands are in the input dtype (bf16/fp16: tensor cores, fp32 accumulation; fp32: IEEE, no TF32).
"""
import triton
import triton.language as tl

from .scan_math import linear_recurrence_combine


@triton.jit
def head_chunk_program(nheads, n_chunks):
    """(batch (int64), chunk, head) of a program whose axis-0 id runs over batch * n_chunks * nheads, head fastest."""
    pid = tl.program_id(0)
    return (pid // (nheads * n_chunks)).to(tl.int64), (pid // nheads) % n_chunks, pid % nheads


@triton.jit
def chunk_state_offset(batch, chunk, head, n_chunks, nheads, state_size):
    """Offset of the (headdim x d_state = state_size) state of (batch, chunk, head) in a (batch, n_chunks, nheads,
    headdim, d_state) buffer (chunk states, entering states and their gradients)."""
    return ((batch * n_chunks + chunk) * nheads + head) * state_size


@triton.jit
def pair_decays(cum_later, cum_earlier, causal, reference_ptr, separable):
    """exp(cum_i - cum_j) over a tile of step pairs, i later than j (cum_later and cum_earlier broadcast against each
    other: (rows, 1) with (1, cols) or the transpose), zero where not `causal`. When `separable` (every j of the tile
    comes before every i), one exponent per step instead of one per pair: cum never increases, so its value at
    `reference_ptr` (a step between the tile's j and i) splits the decay into exp(cum_i - ref) exp(ref - cum_j), two
    factors <= 1 that cannot overflow (clamped to 1 for steps masked out of the tile, which need not lie between)."""
    if separable:
        reference = tl.load(reference_ptr)
        decay = tl.exp(tl.minimum(cum_later - reference, 0.0)) * tl.exp(tl.minimum(reference - cum_earlier, 0.0))
    else:
        decay = tl.exp(tl.where(causal, cum_later - cum_earlier, float("-inf")))
    return decay


@triton.jit
def chunk_cb_kernel(
    C_ptr, B_ptr, cb_ptr, seqlen, chunk_size, n_chunks, ngroups, d_state,
    stride_C_batch, stride_C_seq, stride_C_group, stride_C_state,
    stride_B_batch, stride_B_seq, stride_B_group, stride_B_state,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_n = tl.program_id(2)
    if pid_n * BLOCK_N > pid_m * BLOCK_M + BLOCK_M - 1:  # strictly above the diagonal: never read
        return
    group = pid % ngroups
    chunk = (pid // ngroups) % n_chunks
    batch = (pid // (ngroups * n_chunks)).to(tl.int64)
    chunk_len = tl.minimum(chunk_size, seqlen - chunk * chunk_size)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    states = tl.arange(0, BLOCK_K)
    first = chunk.to(tl.int64) * chunk_size
    C_base = C_ptr + batch * stride_C_batch + first * stride_C_seq + group * stride_C_group
    B_base = B_ptr + batch * stride_B_batch + first * stride_B_seq + group * stride_B_group
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for start in range(0, d_state, BLOCK_K):
        n = start + states
        C_tile = tl.load(C_base + rows[:, None] * stride_C_seq + n[None, :] * stride_C_state,
                         mask=(rows[:, None] < chunk_len) & (n[None, :] < d_state), other=0.0)
        B_tile = tl.load(B_base + cols[None, :] * stride_B_seq + n[:, None] * stride_B_state,
                         mask=(cols[None, :] < chunk_len) & (n[:, None] < d_state), other=0.0)
        acc += tl.dot(C_tile, B_tile, input_precision=PRECISION)
    out = cb_ptr + ((batch * n_chunks + chunk) * ngroups + group) * chunk_size * chunk_size
    tl.store(out + rows[:, None] * chunk_size + cols[None, :], acc,
             mask=(rows[:, None] < chunk_size) & (cols[None, :] < chunk_size))


@triton.jit
def chunk_state_kernel(
    x_ptr, B_ptr, dt_ptr, cum_ptr, states_ptr,
    seqlen, chunk_size, n_chunks, nheads, heads_per_group, headdim, d_state,
    stride_x_batch, stride_x_seq, stride_x_head, stride_x_dim,
    stride_B_batch, stride_B_seq, stride_B_group, stride_B_state,
    TO_END: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    batch, chunk, head = head_chunk_program(nheads, n_chunks)
    chunk_len = tl.minimum(chunk_size, seqlen - chunk * chunk_size)
    dims = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    n = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
    steps = tl.arange(0, BLOCK_K)
    first = chunk.to(tl.int64) * chunk_size
    x_base = x_ptr + batch * stride_x_batch + first * stride_x_seq + head * stride_x_head
    B_base = (B_ptr + batch * stride_B_batch + first * stride_B_seq
              + (head // heads_per_group) * stride_B_group)
    decay_base = ((batch * nheads + head) * n_chunks + chunk) * chunk_size
    cum_end = tl.load(cum_ptr + decay_base + chunk_size - 1)  # padding steps have dt = 0: same as the last real one
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for start in range(0, chunk_len, BLOCK_K):
        j = start + steps
        in_chunk = j < chunk_len
        cum = tl.load(cum_ptr + decay_base + j, mask=in_chunk, other=0.0)
        if TO_END:
            dt = tl.load(dt_ptr + decay_base + j, mask=in_chunk, other=0.0)
            weight = tl.where(in_chunk, dt * tl.exp(cum_end - cum), 0.0)
        else:
            weight = tl.where(in_chunk, tl.exp(cum), 0.0)
        x_tile = tl.load(x_base + j[None, :] * stride_x_seq + dims[:, None] * stride_x_dim,
                         mask=in_chunk[None, :] & (dims[:, None] < headdim), other=0.0)
        B_tile = tl.load(B_base + j[:, None] * stride_B_seq + n[None, :] * stride_B_state,
                         mask=in_chunk[:, None] & (n[None, :] < d_state), other=0.0)
        acc += tl.dot((x_tile * weight[None, :]).to(B_tile.dtype), B_tile, input_precision=PRECISION)
    out = states_ptr + chunk_state_offset(batch, chunk, head, n_chunks, nheads, headdim * d_state)
    tl.store(out + dims[:, None] * d_state + n[None, :], acc, mask=(dims[:, None] < headdim) & (n[None, :] < d_state))


@triton.jit
def state_passing_kernel(
    states_ptr, carried_ptr, cum_ptr, start_ptr, end_ptr, n_chunks, chunk_size, nheads, state_size,
    HAS_START: tl.constexpr, REVERSE: tl.constexpr, BLOCK: tl.constexpr, CHUNKS: tl.constexpr,
):
    """Grid (batch * nheads, state tiles). Over the chunks (from the last one with REVERSE): `carried` (same layout
    as `states`, any float dtype; may be `states` itself) gets the value carried into each chunk, s <- exp(cum_end[c])
    s + entry, starting from `start` (or zero); the value carried out of the last chunk is stored in `end`.
    Each loop step loads the entries of CHUNKS chunks at once (CHUNKS times the bytes in flight of a loop over single
    chunks, which is latency-bound) and runs the recurrence over them as an associative scan."""
    pid = tl.program_id(0)
    head = pid % nheads
    batch = (pid // nheads).to(tl.int64)
    offsets = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < state_size
    own = (batch * nheads + head) * state_size + offsets
    if HAS_START:
        state = tl.load(start_ptr + own, mask=mask, other=0.0).to(tl.float32)
    else:
        state = tl.zeros((BLOCK,), dtype=tl.float32)
    cum_end = cum_ptr + (batch * nheads + head) * n_chunks * chunk_size + chunk_size - 1
    slots = tl.arange(0, CHUNKS)
    for first in range(0, n_chunks, CHUNKS):
        order = first + slots
        valid = order < n_chunks
        chunk = n_chunks - 1 - order if REVERSE else order
        offset = chunk_state_offset(batch, chunk, head, n_chunks, nheads, state_size)[:, None] + offsets[None, :]
        tile_mask = valid[:, None] & mask[None, :]
        entries = tl.load(states_ptr + offset, mask=tile_mask, other=0.0)
        decays = tl.exp(tl.load(cum_end + chunk * chunk_size, mask=valid, other=0.0))  # 1 past the last chunk
        entries = tl.where(slots[:, None] == 0, entries + decays[:, None] * state[None, :], entries)
        _, leaving = tl.associative_scan((tl.broadcast_to(decays[:, None], (CHUNKS, BLOCK)), entries), 0,
                                         linear_recurrence_combine)
        # In place, `carried` is `states`: every load of the step comes before any store (the barrier orders the
        # loads of each thread before the stores of the others). Chunk slot k gets the value leaving slot k - 1.
        tl.debug_barrier()
        first_chunk = n_chunks - 1 - first if REVERSE else first
        tl.store(carried_ptr + chunk_state_offset(batch, first_chunk, head, n_chunks, nheads, state_size) + offsets,
                 state.to(carried_ptr.dtype.element_ty), mask=mask)
        next_offset = offset + (-nheads if REVERSE else nheads) * state_size  # the chunk each slot passes into
        tl.store(carried_ptr + next_offset, leaving.to(carried_ptr.dtype.element_ty),
                 mask=((slots < CHUNKS - 1) & (order + 1 < n_chunks))[:, None] & mask[None, :])
        state = tl.sum(tl.where(slots[:, None] == CHUNKS - 1, leaving, 0.0), axis=0)
    tl.store(end_ptr + own, state, mask=mask)


@triton.jit
def chunk_scan_kernel(
    x_ptr, z_ptr, C_ptr, cb_ptr, dt_ptr, cum_ptr, states_ptr, D_ptr, y_ptr, ungated_ptr,
    seqlen, chunk_size, n_chunks, nheads, heads_per_group, ngroups, headdim, d_state,
    stride_x_batch, stride_x_seq, stride_x_head, stride_x_dim,
    stride_z_batch, stride_z_seq, stride_z_head, stride_z_dim,
    stride_y_batch, stride_y_seq, stride_y_head, stride_y_dim,
    stride_C_batch, stride_C_seq, stride_C_group, stride_C_state,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, STORE_UNGATED: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_STATE: tl.constexpr, SEPARABLE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """SEPARABLE: tiles of steps j wholly before the row tile take `pair_decays`' one exponent per step."""
    batch, chunk, head = head_chunk_program(nheads, n_chunks)
    group = head // heads_per_group
    chunk_len = tl.minimum(chunk_size, seqlen - chunk * chunk_size)
    if tl.program_id(1) * BLOCK_M >= chunk_len:
        return
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < chunk_len
    dim_mask = dims < headdim
    first = chunk.to(tl.int64) * chunk_size
    decay_base = ((batch * nheads + head) * n_chunks + chunk) * chunk_size
    cum_rows = tl.load(cum_ptr + decay_base + rows, mask=row_mask, other=0.0)
    C_base = C_ptr + batch * stride_C_batch + first * stride_C_seq + group * stride_C_group
    x_base = x_ptr + batch * stride_x_batch + first * stride_x_seq + head * stride_x_head

    # State carried into the chunk, read out by C and decayed from the chunk start.
    state_base = states_ptr + chunk_state_offset(batch, chunk, head, n_chunks, nheads, headdim * d_state)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for start in range(0, d_state, BLOCK_STATE):
        n = start + tl.arange(0, BLOCK_STATE)
        C_tile = tl.load(C_base + rows[:, None] * stride_C_seq + n[None, :] * stride_C_state,
                         mask=row_mask[:, None] & (n[None, :] < d_state), other=0.0)
        state_tile = tl.load(state_base + dims[None, :] * d_state + n[:, None],
                             mask=dim_mask[None, :] & (n[:, None] < d_state), other=0.0)
        acc += tl.dot(C_tile, state_tile.to(C_tile.dtype), input_precision=PRECISION)
    acc *= tl.exp(cum_rows)[:, None]

    # Within the chunk: causal, decayed C.B^T applied to dt x.
    cb_base = cb_ptr + ((batch * n_chunks + chunk) * ngroups + group) * chunk_size * chunk_size
    steps = tl.arange(0, BLOCK_K)
    end = tl.minimum(tl.program_id(1) * BLOCK_M + BLOCK_M, chunk_len)
    for start in range(0, end, BLOCK_K):
        j = start + steps
        in_chunk = j < chunk_len
        causal = (j[None, :] <= rows[:, None]) & in_chunk[None, :] & row_mask[:, None]
        cb = tl.load(cb_base + rows[:, None] * chunk_size + j[None, :], mask=causal, other=0.0)
        cum = tl.load(cum_ptr + decay_base + j, mask=in_chunk, other=0.0)
        dt = tl.load(dt_ptr + decay_base + j, mask=in_chunk, other=0.0)
        separable = SEPARABLE and start + BLOCK_K <= tl.program_id(1) * BLOCK_M
        decay = pair_decays(cum_rows[:, None], cum[None, :], causal, cum_ptr + decay_base + start + BLOCK_K - 1,
                            separable)
        weight = tl.where(causal, cb * decay * dt[None, :], 0.0)
        x_tile = tl.load(x_base + j[:, None] * stride_x_seq + dims[None, :] * stride_x_dim,
                         mask=in_chunk[:, None] & dim_mask[None, :], other=0.0)
        acc += tl.dot(weight.to(x_tile.dtype), x_tile, input_precision=PRECISION)

    tile_mask = row_mask[:, None] & dim_mask[None, :]
    if HAS_D:
        x_rows = tl.load(x_base + rows[:, None] * stride_x_seq + dims[None, :] * stride_x_dim, mask=tile_mask,
                         other=0.0).to(tl.float32)
        acc += x_rows * tl.load(D_ptr + head * headdim + dims, mask=dim_mask, other=0.0)[None, :]
    y_offsets = (batch * stride_y_batch + (first + rows[:, None]) * stride_y_seq + head * stride_y_head
                 + dims[None, :] * stride_y_dim)
    if STORE_UNGATED:  # y before the gate, for the gradient of z (same layout as y)
        tl.store(ungated_ptr + y_offsets, acc.to(y_ptr.dtype.element_ty), mask=tile_mask)
    if HAS_Z:
        z = tl.load(z_ptr + batch * stride_z_batch + (first + rows[:, None]) * stride_z_seq + head * stride_z_head
                    + dims[None, :] * stride_z_dim, mask=tile_mask, other=0.0).to(tl.float32)
        acc *= z * tl.sigmoid(z)
    tl.store(y_ptr + y_offsets, acc.to(y_ptr.dtype.element_ty), mask=tile_mask)
