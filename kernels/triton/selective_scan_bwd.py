"""Backward Triton kernel of the Mamba-1 selective scan.

One program owns `BLOCK_D` channels of one sequence and walks its chunks from the last to the first. Per chunk it
recomputes the states from the chunk-entry state saved by the forward pass, then runs the adjoint recurrence
    g_t = C_t dy'_t + a_{t+1} g_{t+1}            (dy' = dL/d(C.h + D u), i.e. before the z gate)
backwards in time: as a forward `tl.associative_scan` over the chunk read back to front (C from a time-reversed copy,
delta and dy' rows flipped in registers, a_{t+1} recomputed from the next step's delta), whose result is flipped
once (`tl.flip` costs a few shuffles; a reverse=True scan costs several times more). The adjoint entering from
the later chunk is folded into the first reversed input. With h_t - delta_t u_t B_t = a_t h_{t-1}:
    dA = sum_t delta g (h - x B),  ddelta = u (g.B) + A.(g (h - x B)),  du = delta (g.B) + D dy',
    dB = sum_channels g x,  dC = sum_channels dy' h,  dh_{-1} = a_0 g_0.
dB/dC (summed over the program's channels first), dA, dD and ddelta_bias go to fp32 buffers with atomics.

Sequence-parallel use (long, narrow problems): program axis 2 splits the chunks into `n_segments` segments of
`chunks_per_segment`. `selective_scan_bwd_summary_kernel` runs only the adjoint recurrence of every segment from a
zero adjoint and writes the adjoint leaving its start plus the product of its decays; after the carry across
segments (`selective_scan_segments`) the full kernel starts every segment from the adjoint entering it
(`dfinal_state_ptr`, one per segment) and the carry supplies the initial state's gradient.
"""
import triton
import triton.language as tl

from .scan_math import (LOG2E, linear_recurrence_combine, load_channel_parameters, load_masked, segment_slot,
                        sigmoid, silu_gate_grads, softplus)


@triton.jit
def _step_sizes(delta_pointer, valid, delta_bias, HAS_DELTA_BIAS: tl.constexpr, DELTA_SOFTPLUS: tl.constexpr,
                MASKED: tl.constexpr):
    """(pre-softplus value, step size) of the rows at `delta_pointer`; step 0 where not `valid` (when MASKED)."""
    raw = load_masked(delta_pointer, valid, MASKED, 0.0).to(tl.float32)
    if HAS_DELTA_BIAS:
        raw = raw + delta_bias
    dt = raw
    if DELTA_SOFTPLUS:
        dt = softplus(raw)
    if MASKED:
        dt = tl.where(valid, dt, 0.0)
    return raw, dt


@triton.jit
def selective_scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, C_reversed_ptr, D_ptr, z_ptr, delta_bias_ptr, reset_ptr, chunk_states_ptr,
    dy_ptr, dfinal_state_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, ddelta_bias_ptr, dinitial_state_ptr,
    seqlen, d_inner, d_state, channels_per_group, n_chunks, chunks_per_segment, n_segments,
    stride_u_batch, stride_u_channel, stride_delta_batch, stride_delta_channel,
    stride_z_batch, stride_z_channel, stride_dy_batch, stride_dy_channel, stride_grad_batch, stride_grad_channel,
    stride_bc_batch, stride_bc_group, stride_bc_state, stride_reset_batch,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DELTA_BIAS: tl.constexpr, DELTA_SOFTPLUS: tl.constexpr,
    HAS_RESET: tl.constexpr, HAS_DFINAL_STATE: tl.constexpr, STORE_DINITIAL_STATE: tl.constexpr,
    EVEN_L: tl.constexpr, EVEN_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):
    pid_d = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    first_chunk = tl.program_id(2) * chunks_per_segment
    end_chunk = tl.minimum(first_chunk + chunks_per_segment, n_chunks)
    first_channel = pid_d * BLOCK_D
    wide_channel = first_channel.to(tl.int64)
    channel3 = tl.arange(0, BLOCK_D)[:, None, None]         # (BLOCK_D, 1, 1), relative to first_channel
    state3 = tl.arange(0, BLOCK_N)[None, :, None]           # (1, BLOCK_N, 1)
    time3 = tl.arange(0, CHUNK)[None, None, :]              # (1, 1, CHUNK)
    state_mask = state3 < d_state
    MASKED_BC: tl.constexpr = not (EVEN_L and EVEN_N)

    A, delta_bias = load_channel_parameters(A_ptr, delta_bias_ptr, first_channel, channel3, state3, d_state,
                                            state_mask, HAS_DELTA_BIAS, EVEN_N)
    A2 = A * LOG2E
    if HAS_D:
        skip = tl.load(D_ptr + first_channel + channel3).to(tl.float32)
    bc_offset = (batch * stride_bc_batch + (first_channel // channels_per_group) * stride_bc_group
                 + state3 * stride_bc_state)                 # (1, BLOCK_N, 1)
    u_row = u_ptr + batch * stride_u_batch + wide_channel * stride_u_channel + channel3 * stride_u_channel
    delta_row = (delta_ptr + batch * stride_delta_batch + wide_channel * stride_delta_channel
                 + channel3 * stride_delta_channel)
    dy_row = dy_ptr + batch * stride_dy_batch + wide_channel * stride_dy_channel + channel3 * stride_dy_channel
    grad_offset = batch * stride_grad_batch + wide_channel * stride_grad_channel + channel3 * stride_grad_channel
    if HAS_Z:
        z_row = z_ptr + batch * stride_z_batch + wide_channel * stride_z_channel + channel3 * stride_z_channel
    reset_row = reset_ptr  # unused without resets
    if HAS_RESET:
        reset_row = reset_ptr + batch * stride_reset_batch
    rows = (batch * d_inner + first_channel) * d_state              # into (batch, d_inner, d_state)
    state_offset = channel3 * d_state + state3
    slot = segment_slot(rows, tl.program_id(2), n_segments, d_state, channel3, state3)

    if HAS_DFINAL_STATE:
        adjoint_in = load_masked(dfinal_state_ptr + slot, state_mask, not EVEN_N, 0.0)
    else:
        adjoint_in = tl.zeros((BLOCK_D, BLOCK_N, 1), tl.float32)
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N, 1), tl.float32)
    dD_acc = tl.zeros((BLOCK_D, 1, 1), tl.float32)
    ddelta_bias_acc = tl.zeros((BLOCK_D, 1, 1), tl.float32)

    for step in range(end_chunk - first_chunk):
        chunk = end_chunk - 1 - step
        time = chunk * CHUNK + time3
        in_seq = time < seqlen
        h0 = load_masked(chunk_states_ptr + rows * n_chunks + chunk * d_state + channel3 * (n_chunks * d_state)
                         + state3, state_mask, not EVEN_N, 0.0)
        raw, dt = _step_sizes(delta_row + time, in_seq, delta_bias, HAS_DELTA_BIAS, DELTA_SOFTPLUS, not EVEN_L)
        # a_{t+1}'s step: the last step of the sequence reads itself (its value then only meets the folded-in
        # adjoint, or a padding step); padding steps must decay by 1
        time_next = tl.minimum(time + 1, seqlen - 1)
        _, dt_next = _step_sizes(delta_row + time_next, time + 1 < seqlen, delta_bias, HAS_DELTA_BIAS,
                                 DELTA_SOFTPLUS, not EVEN_L)
        u = load_masked(u_row + time, in_seq, not EVEN_L, 0.0).to(tl.float32)
        dy = load_masked(dy_row + time, in_seq, not EVEN_L, 0.0).to(tl.float32)
        bc_mask = state_mask & in_seq
        B = load_masked(tl.broadcast_to(B_ptr + bc_offset + time, (BLOCK_D, BLOCK_N, CHUNK)), bc_mask, MASKED_BC, 0.0)
        C = load_masked(tl.broadcast_to(C_ptr + bc_offset + time, (BLOCK_D, BLOCK_N, CHUNK)), bc_mask, MASKED_BC, 0.0)
        B, C = B.to(tl.float32), C.to(tl.float32)

        # forward states of the chunk, from its saved entry state
        decay = tl.exp2(dt * A2)                 # a_t
        if HAS_RESET:
            reset = load_masked(reset_row + time, in_seq, not EVEN_L, 0)
            decay = tl.where(reset != 0, 0.0, decay)
        decay_first = tl.sum(tl.where(time3 == 0, decay, -0.0), axis=2, keep_dims=True)
        x = dt * u
        drive = x * B
        _, states = tl.associative_scan((decay, drive + tl.where(time3 == 0, decay * h0, -0.0)), 2,
                                        linear_recurrence_combine)

        dy_pre = dy
        if HAS_Z:
            z = load_masked(z_row + time, in_seq, not EVEN_L, 0.0).to(tl.float32)
            y_pre = tl.sum(states * C, axis=1, keep_dims=True)
            if HAS_D:
                y_pre = y_pre + skip * u
            dy_pre, dz = silu_gate_grads(dy, y_pre, z, sigmoid(z))
            _store_rows(dz_ptr + grad_offset + time, dz, in_seq, not EVEN_L)
        if HAS_D:
            dD_acc += tl.sum(dy_pre * u, axis=2, keep_dims=True)
        bc_time_offset = bc_offset + time
        tl.atomic_add(dC_ptr + bc_time_offset, tl.sum(dy_pre * states, axis=0, keep_dims=True), mask=bc_mask,
                      sem="relaxed")
        before_input = states - drive                          # a_t h_{t-1}

        adjoint = _chunk_adjoint(C_reversed_ptr + bc_offset, reset_row, seqlen, chunk, time, time_next, dt_next,
                                 dy_pre, adjoint_in, A2, state_mask, HAS_RESET, EVEN_L, MASKED_BC, BLOCK_D, BLOCK_N,
                                 CHUNK)

        tl.atomic_add(dB_ptr + bc_time_offset, tl.sum(adjoint * x, axis=0, keep_dims=True), mask=bc_mask,
                      sem="relaxed")
        through_decay = adjoint * before_input                 # g_t a_t h_{t-1}
        dA_acc += tl.sum(dt * through_decay, axis=2, keep_dims=True)
        adjoint_B = tl.sum(adjoint * B, axis=1, keep_dims=True)
        du = dt * adjoint_B
        if HAS_D:
            du = du + skip * dy_pre
        ddt = u * adjoint_B + tl.sum(A * through_decay, axis=1, keep_dims=True)
        if DELTA_SOFTPLUS:
            ddt = ddt * sigmoid(raw)
        if not EVEN_L:
            ddt = tl.where(in_seq, ddt, 0.0)
        ddelta_bias_acc += tl.sum(ddt, axis=2, keep_dims=True)
        _store_rows(du_ptr + grad_offset + time, du, in_seq, not EVEN_L)
        _store_rows(ddelta_ptr + grad_offset + time, ddt, in_seq, not EVEN_L)
        adjoint_in = decay_first * tl.sum(tl.where(time3 == 0, adjoint, -0.0), axis=2, keep_dims=True)

    if STORE_DINITIAL_STATE:
        tl.store(dinitial_state_ptr + rows + state_offset, adjoint_in, mask=state_mask)
    tl.atomic_add(dA_ptr + first_channel * d_state + state_offset, dA_acc, mask=state_mask, sem="relaxed")
    if HAS_D:
        tl.atomic_add(dD_ptr + first_channel + channel3, dD_acc, sem="relaxed")
    if HAS_DELTA_BIAS:
        tl.atomic_add(ddelta_bias_ptr + first_channel + channel3, ddelta_bias_acc, sem="relaxed")


@triton.jit
def _store_rows(pointer, value, mask, MASKED: tl.constexpr):
    if MASKED:
        tl.store(pointer, value.to(pointer.dtype.element_ty), mask=mask)
    else:
        tl.store(pointer, value.to(pointer.dtype.element_ty))


@triton.jit
def _chunk_adjoint(C_reversed_row, reset_row, seqlen, chunk, time, time_next, dt_next, dy_pre, adjoint_in, A2,
                   state_mask, HAS_RESET: tl.constexpr, EVEN_L: tl.constexpr, MASKED_BC: tl.constexpr,
                   BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr):
    """Adjoint g (BLOCK_D, BLOCK_N, CHUNK) of one chunk, `adjoint_in` entering from the later chunk. It runs
    backwards in time: scanned forwards over the chunk read back to front (C from the time-reversed copy,
    per-channel rows flipped in registers), the result flipped once."""
    time3 = tl.arange(0, CHUNK)[None, None, :]
    reversed_time = seqlen - (chunk + 1) * CHUNK + time3
    C_reversed = load_masked(tl.broadcast_to(C_reversed_row + reversed_time, (BLOCK_D, BLOCK_N, CHUNK)),
                             state_mask & (reversed_time >= 0), MASKED_BC, 0.0).to(tl.float32)
    decay_next_reversed = tl.exp2(tl.flip(dt_next, 2) * A2)
    if HAS_RESET:
        reset_next = load_masked(reset_row + time_next, time + 1 < seqlen, not EVEN_L, 0)
        decay_next_reversed = tl.where(tl.flip(reset_next, 2) != 0, 0.0, decay_next_reversed)
    target = C_reversed * tl.flip(dy_pre, 2) + tl.where(time3 == 0, adjoint_in, -0.0)
    _, adjoint_reversed = tl.associative_scan((decay_next_reversed, target), 2, linear_recurrence_combine)
    return tl.flip(adjoint_reversed, 2)


@triton.jit
def selective_scan_bwd_summary_kernel(
    delta_ptr, A_ptr, C_reversed_ptr, z_ptr, delta_bias_ptr, reset_ptr, dy_ptr, adjoints_ptr, decays_ptr,
    seqlen, d_inner, d_state, channels_per_group, n_chunks, chunks_per_segment, n_segments,
    stride_delta_batch, stride_delta_channel, stride_z_batch, stride_z_channel, stride_dy_batch, stride_dy_channel,
    stride_bc_batch, stride_bc_group, stride_bc_state, stride_reset_batch,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DELTA_BIAS: tl.constexpr, DELTA_SOFTPLUS: tl.constexpr,
    HAS_RESET: tl.constexpr, EVEN_L: tl.constexpr, EVEN_N: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):
    """Per segment (program axis 2), from a zero adjoint at its end: the adjoint leaving its start (dL/dh of the
    state before it) into `adjoints_ptr` and the product of its decays, exp(A sum(delta)) or 0 after a reset, into
    `decays_ptr`, both (batch, d_inner, n_segments, d_state). Reads delta, z, dy and C only. HAS_D is unused (the
    adjoint does not depend on D)."""
    pid_d = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    segment = tl.program_id(2)
    first_chunk = segment * chunks_per_segment
    end_chunk = tl.minimum(first_chunk + chunks_per_segment, n_chunks)
    first_channel = pid_d * BLOCK_D
    wide_channel = first_channel.to(tl.int64)
    channel3 = tl.arange(0, BLOCK_D)[:, None, None]
    state3 = tl.arange(0, BLOCK_N)[None, :, None]
    time3 = tl.arange(0, CHUNK)[None, None, :]
    state_mask = state3 < d_state
    MASKED_BC: tl.constexpr = not (EVEN_L and EVEN_N)

    A, delta_bias = load_channel_parameters(A_ptr, delta_bias_ptr, first_channel, channel3, state3, d_state,
                                            state_mask, HAS_DELTA_BIAS, EVEN_N)
    A2 = A * LOG2E
    C_reversed_row = (C_reversed_ptr + batch * stride_bc_batch + (first_channel // channels_per_group) * stride_bc_group
                      + state3 * stride_bc_state)
    delta_row = (delta_ptr + batch * stride_delta_batch + wide_channel * stride_delta_channel
                 + channel3 * stride_delta_channel)
    dy_row = dy_ptr + batch * stride_dy_batch + wide_channel * stride_dy_channel + channel3 * stride_dy_channel
    if HAS_Z:
        z_row = z_ptr + batch * stride_z_batch + wide_channel * stride_z_channel + channel3 * stride_z_channel
    reset_row = reset_ptr
    if HAS_RESET:
        reset_row = reset_ptr + batch * stride_reset_batch

    adjoint_in = tl.zeros((BLOCK_D, BLOCK_N, 1), tl.float32)
    step_sum = tl.zeros((BLOCK_D, 1, 1), tl.float32)
    was_reset = tl.zeros((BLOCK_D, 1, 1), tl.int32)
    for step in range(end_chunk - first_chunk):
        chunk = end_chunk - 1 - step
        time = chunk * CHUNK + time3
        in_seq = time < seqlen
        _, dt = _step_sizes(delta_row + time, in_seq, delta_bias, HAS_DELTA_BIAS, DELTA_SOFTPLUS, not EVEN_L)
        time_next = tl.minimum(time + 1, seqlen - 1)
        _, dt_next = _step_sizes(delta_row + time_next, time + 1 < seqlen, delta_bias, HAS_DELTA_BIAS,
                                 DELTA_SOFTPLUS, not EVEN_L)
        dy_pre = load_masked(dy_row + time, in_seq, not EVEN_L, 0.0).to(tl.float32)
        if HAS_Z:
            z = load_masked(z_row + time, in_seq, not EVEN_L, 0.0).to(tl.float32)
            dy_pre = dy_pre * z * sigmoid(z)
        adjoint = _chunk_adjoint(C_reversed_row, reset_row, seqlen, chunk, time, time_next, dt_next, dy_pre,
                                 adjoint_in, A2, state_mask, HAS_RESET, EVEN_L, MASKED_BC, BLOCK_D, BLOCK_N, CHUNK)
        first_step = time3 == 0
        decay_first = tl.exp2(tl.sum(tl.where(first_step, dt, 0.0), axis=2, keep_dims=True) * A2)
        step_sum += tl.sum(dt, axis=2, keep_dims=True)
        if HAS_RESET:
            reset = load_masked(reset_row + time, in_seq, not EVEN_L, 0)
            reset_first = tl.sum(tl.where(first_step, reset, 0), axis=2, keep_dims=True)
            decay_first = tl.where(reset_first != 0, 0.0, decay_first)
            was_reset = tl.maximum(was_reset, tl.max(reset.to(tl.int32), axis=2, keep_dims=True))
        adjoint_in = decay_first * tl.sum(tl.where(first_step, adjoint, -0.0), axis=2, keep_dims=True)

    slot = segment_slot((batch * d_inner + first_channel) * d_state, segment, n_segments, d_state, channel3, state3)
    tl.store(adjoints_ptr + slot, adjoint_in, mask=state_mask)
    decay_product = tl.where(was_reset != 0, 0.0, tl.exp2(step_sum * A2))
    tl.store(decays_ptr + slot, decay_product, mask=state_mask)
