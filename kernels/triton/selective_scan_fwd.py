"""Forward Triton kernel of the Mamba-1 selective scan.

One program owns `BLOCK_D` channels of one sequence and walks the sequence in chunks of `CHUNK` steps. A chunk is a
register tile (BLOCK_D, BLOCK_N, CHUNK): decays a = exp(delta A) and inputs b = delta u B are combined by
`tl.associative_scan` along time, the state carried from the previous chunk is folded into the chunk's first input,
and y = C . h is a sum over the state axis. B/C are shared by the program's channels.
With `STORE_CHUNK_STATES` the state entering every chunk is written out (fp32) for the backward pass.

Sequence-parallel use (long, narrow problems): program axis 2 splits the chunks into `n_segments` segments of
`chunks_per_segment`. With `SUMMARY` a program scans its segment from a zero state, reads neither C nor z and writes
no y, only the segment's end state (to `final_state_ptr`) and the product of its decays (`decays_ptr`), both
(batch, d_inner, n_segments, d_state); `selective_scan_segments.combine_segments_kernel` turns those into the state
entering every segment, from which a second, full pass (`HAS_INITIAL_STATE`, one state per segment) writes y.
"""
import triton
import triton.language as tl

from .scan_math import LOG2E, linear_recurrence_combine, load_masked, segment_slot, sigmoid, softplus


@triton.jit
def selective_scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, delta_bias_ptr, reset_ptr,
    initial_state_ptr, y_ptr, final_state_ptr, chunk_states_ptr, decays_ptr,
    seqlen, d_inner, d_state, channels_per_group, n_chunks, chunks_per_segment, n_segments,
    stride_u_batch, stride_u_channel, stride_delta_batch, stride_delta_channel,
    stride_z_batch, stride_z_channel, stride_y_batch, stride_y_channel,
    stride_bc_batch, stride_bc_group, stride_bc_state, stride_reset_batch,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DELTA_BIAS: tl.constexpr, DELTA_SOFTPLUS: tl.constexpr,
    HAS_RESET: tl.constexpr, HAS_INITIAL_STATE: tl.constexpr, STORE_FINAL_STATE: tl.constexpr,
    STORE_CHUNK_STATES: tl.constexpr, SUMMARY: tl.constexpr, EVEN_L: tl.constexpr, EVEN_N: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):
    pid_d = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    segment = tl.program_id(2)
    first_chunk = segment * chunks_per_segment
    end_chunk = tl.minimum(first_chunk + chunks_per_segment, n_chunks)
    LOAD_Z: tl.constexpr = HAS_Z and not SUMMARY
    first_channel = pid_d * BLOCK_D
    channel3 = tl.arange(0, BLOCK_D)[:, None, None]         # (BLOCK_D, 1, 1), relative to first_channel
    state3 = tl.arange(0, BLOCK_N)[None, :, None]           # (1, BLOCK_N, 1)
    time3 = tl.arange(0, CHUNK)[None, None, :]              # (1, 1, CHUNK)
    state_mask = state3 < d_state
    MASKED_BC: tl.constexpr = not (EVEN_L and EVEN_N)

    A2 = load_masked(A_ptr + first_channel * d_state + channel3 * d_state + state3, state_mask, not EVEN_N, 0.0)
    A2 = A2.to(tl.float32) * LOG2E
    if HAS_DELTA_BIAS:
        delta_bias = tl.load(delta_bias_ptr + first_channel + channel3).to(tl.float32)
    if HAS_D:
        skip = tl.load(D_ptr + first_channel + channel3).to(tl.float32)
    group = first_channel // channels_per_group
    B_row = B_ptr + batch * stride_bc_batch + group * stride_bc_group + state3 * stride_bc_state
    C_row = C_ptr + batch * stride_bc_batch + group * stride_bc_group + state3 * stride_bc_state
    u_row = u_ptr + batch * stride_u_batch + first_channel.to(tl.int64) * stride_u_channel + channel3 * stride_u_channel
    delta_row = (delta_ptr + batch * stride_delta_batch + first_channel.to(tl.int64) * stride_delta_channel
                 + channel3 * stride_delta_channel)
    y_row = y_ptr + batch * stride_y_batch + first_channel.to(tl.int64) * stride_y_channel + channel3 * stride_y_channel
    z_row = u_row  # unused without z
    if LOAD_Z:
        z_row = (z_ptr + batch * stride_z_batch + first_channel.to(tl.int64) * stride_z_channel
                 + channel3 * stride_z_channel)
    if HAS_RESET:
        reset_row = reset_ptr + batch * stride_reset_batch
    rows = (batch * d_inner + first_channel) * d_state              # into (batch, d_inner, d_state)
    slot = segment_slot(rows, segment, n_segments, d_state, channel3, state3)

    if HAS_INITIAL_STATE:
        h = load_masked(initial_state_ptr + slot, state_mask, not EVEN_N, 0.0)
    else:
        h = tl.zeros((BLOCK_D, BLOCK_N, 1), tl.float32)
    decay_product = tl.full((BLOCK_D, BLOCK_N, 1), 1.0, tl.float32)

    # rows of the next chunk are loaded before the current chunk is computed (software prefetch)
    dt_raw, u_raw, z_raw = _load_rows(delta_row, u_row, z_row, first_chunk * CHUNK + time3, seqlen, LOAD_Z, EVEN_L)
    for chunk in range(first_chunk, end_chunk):
        if STORE_CHUNK_STATES:  # (batch, d_inner, n_chunks, d_state)
            chunk_state_ptr = chunk_states_ptr + rows * n_chunks + chunk * d_state
            tl.store(chunk_state_ptr + channel3 * (n_chunks * d_state) + state3, h, mask=state_mask)
        time = chunk * CHUNK + time3
        in_seq = time < seqlen
        next_time = tl.minimum(chunk + 1, end_chunk - 1) * CHUNK + time3
        dt_next, u_next, z_next = _load_rows(delta_row, u_row, z_row, next_time, seqlen, LOAD_Z, EVEN_L)
        dt = dt_raw.to(tl.float32)                                                 # (BLOCK_D, 1, CHUNK)
        u = u_raw.to(tl.float32)
        if HAS_DELTA_BIAS:
            dt = dt + delta_bias
        if DELTA_SOFTPLUS:
            dt = softplus(dt)
        if not EVEN_L:
            dt = tl.where(in_seq, dt, 0.0)  # padding steps: decay 1, input 0
        bc_mask = state_mask & in_seq
        B = load_masked(tl.broadcast_to(B_row + time, (BLOCK_D, BLOCK_N, CHUNK)), bc_mask, MASKED_BC, 0.0)
        B = B.to(tl.float32)
        if not SUMMARY:
            C = load_masked(tl.broadcast_to(C_row + time, (BLOCK_D, BLOCK_N, CHUNK)), bc_mask, MASKED_BC, 0.0)

        decay = tl.exp2(dt * A2)
        if HAS_RESET:
            reset = load_masked(reset_row + time, in_seq, not EVEN_L, 0)
            decay = tl.where(reset != 0, 0.0, decay)
        drive = (dt * u) * B + tl.where(time3 == 0, decay * h, -0.0)  # carry the previous chunk's state in
        decays, states = tl.associative_scan((decay, drive), 2, linear_recurrence_combine)
        last_step = time3 == CHUNK - 1
        h = tl.sum(tl.where(last_step, states, -0.0), axis=2, keep_dims=True)
        if SUMMARY:
            decay_product *= tl.sum(tl.where(last_step, decays, -0.0), axis=2, keep_dims=True)
        else:
            y = tl.sum(states * C.to(tl.float32), axis=1, keep_dims=True)            # (BLOCK_D, 1, CHUNK)
            if HAS_D:
                y = y + skip * u
            if HAS_Z:
                z = z_raw.to(tl.float32)
                y = y * z * sigmoid(z)
            if EVEN_L:
                tl.store(y_row + time, y.to(y_ptr.dtype.element_ty))
            else:
                tl.store(y_row + time, y.to(y_ptr.dtype.element_ty), mask=in_seq)
        dt_raw, u_raw, z_raw = dt_next, u_next, z_next

    if STORE_FINAL_STATE:
        tl.store(final_state_ptr + slot, h, mask=state_mask)
    if SUMMARY:
        tl.store(decays_ptr + slot, decay_product, mask=state_mask)


@triton.jit
def _load_rows(delta_row, u_row, z_row, time, seqlen, HAS_Z: tl.constexpr, EVEN_L: tl.constexpr):
    """Raw (input dtype) delta, u and z rows (BLOCK_D, 1, CHUNK) at `time`; z is u's row without z."""
    in_seq = time < seqlen
    delta = load_masked(delta_row + time, in_seq, not EVEN_L, 0.0)
    u = load_masked(u_row + time, in_seq, not EVEN_L, 0.0)
    z = u
    if HAS_Z:
        z = load_masked(z_row + time, in_seq, not EVEN_L, 0.0)
    return delta, u, z
