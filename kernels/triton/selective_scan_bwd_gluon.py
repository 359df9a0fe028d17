"""Backward Gluon kernel of the Mamba-1 selective scan: time runs sequentially inside each lane.

Same register layout as the Gluon forward (`gluon_math.scan_layout`): a lane owns one channel, `BLOCK_N / LANES_N`
states and `STEPS` consecutive steps. A program walks its channels' sequence backwards, `STEPS` at a time, from the
state the forward pass stored at the start of every block; per block it recomputes the states h_t (a scan in
registers) and runs the adjoint recurrence
    g_t = C_t dy'_t + a_{t+1} g_{t+1}               (dy' = dL/d(C.h + D u), i.e. before the z gate)
as a scan over the time-reversed block (`flip_steps` renames registers) whose running tuple carries the decay of
its first step (`_adjoint_combine`); the adjoint a_{t+1} g_{t+1} of the later block is folded into the block's last
step. With a_t h_{t-1} = h_t - x_t B_t:
    dA = sum_t delta g (h - x B),  ddelta = u (g.B) + A.(g (h - x B)),  du = delta (g.B) + D dy',
    dB = sum_channels g x,  dC = sum_channels dy' h,  dh_{-1} = a_0 g_0.
dB/dC (summed over the program's channels first, in shared memory), dA, dD and ddelta_bias go to fp32 buffers
with atomics.
"""
from triton.experimental import gluon
from triton.experimental.gluon import language as gl

from .gluon_math import (
    LOG2E,
    exp2_fast,
    flip_steps,
    linear_recurrence_combine,
    load_masked,
    load_scan_steps,
    sigmoid_fast,
    softplus_fast,
    store_masked,
    take_first,
    tile_indices,
)


@gluon.jit
def _adjoint_combine(later_decay, later_value, later_gain, decay, value, gain):
    """Operator of g_t = v_t + a_{t+1} g_{t+1} scanned over time-reversed steps, so it combines (later segment,
    earlier segment). A segment of steps i..j is (a_i, G, P) with g_i = G + P a_{j+1} g_{j+1}."""
    carried = gain * later_decay
    return decay, value + carried * later_value, carried * later_gain


@gluon.jit
def _load_block(chunk_state_rows, delta_row, u_row, dy_row, z_row, B_ptr, C_ptr, bc_offset, block, step_dt, step_nt,
                state_nt, channel_ok_dt, state_mask, seqlen, d_state, HAS_Z: gl.constexpr, ROWS_MASKED: gl.constexpr,
                BC_MASKED: gl.constexpr, STATES_MASKED: gl.constexpr, STEPS: gl.constexpr):
    """Inputs of block `block` as stored: entry state (BLOCK_D, BLOCK_N), delta, u, dy, z rows (BLOCK_D, STEPS; z is
    u without z), B, C (BLOCK_N, STEPS). Steps past the sequence read zeros."""
    time_dt = block * STEPS + step_dt
    h0 = load_masked(chunk_state_rows + block * d_state, state_mask, STATES_MASKED, 0.0)
    dy = load_masked(dy_row + time_dt, channel_ok_dt & (time_dt < seqlen), ROWS_MASKED, 0.0)
    delta, u, z, B, C = load_scan_steps(delta_row, u_row, z_row, bc_offset, B_ptr, C_ptr, time_dt,
                                        block * STEPS + step_nt, state_nt, channel_ok_dt, seqlen, d_state, HAS_Z,
                                        ROWS_MASKED, BC_MASKED)
    return h0, delta, u, dy, z, B, C


@gluon.jit
def _add_channel_sum(pointer, value, mask, MASKED: gl.constexpr, SUM_LAYOUT: gl.constexpr):
    """Atomically add the sum over channels of a (channels, states, steps) tile at `pointer` (states, steps): the
    tile moves through shared memory into `SUM_LAYOUT`, where every lane holds all channels of its elements."""
    total = gl.sum(gl.convert_layout(value, SUM_LAYOUT), axis=0)
    if MASKED:
        gl.atomic_add(pointer, total, mask=mask, sem="relaxed")
    else:
        gl.atomic_add(pointer, total, sem="relaxed")


@gluon.jit
def selective_scan_bwd_gluon_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, delta_bias_ptr, reset_ptr, chunk_states_ptr,
    dy_ptr, dfinal_state_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, ddelta_bias_ptr, dinitial_state_ptr,
    seqlen, d_inner, d_state, channels_per_group, n_steps,
    stride_u_batch, stride_u_channel, stride_delta_batch, stride_delta_channel,
    stride_z_batch, stride_z_channel, stride_dy_batch, stride_dy_channel, stride_grad_batch, stride_grad_channel,
    stride_bc_batch, stride_bc_group, stride_bc_state, stride_reset_batch,
    HAS_D: gl.constexpr, HAS_Z: gl.constexpr, HAS_DELTA_BIAS: gl.constexpr, DELTA_SOFTPLUS: gl.constexpr,
    HAS_RESET: gl.constexpr, HAS_DFINAL_STATE: gl.constexpr, EVEN_L: gl.constexpr, EVEN_N: gl.constexpr,
    EVEN_D: gl.constexpr, LAYOUT: gl.constexpr, SUM_LAYOUT: gl.constexpr, BLOCK_D: gl.constexpr,
    BLOCK_N: gl.constexpr, STEPS: gl.constexpr,
):
    tile_dt: gl.constexpr = gl.SliceLayout(1, LAYOUT)      # (BLOCK_D, STEPS)
    tile_dn: gl.constexpr = gl.SliceLayout(2, LAYOUT)      # (BLOCK_D, BLOCK_N)
    batch = gl.program_id(1).to(gl.int64)
    first_channel = gl.program_id(0) * BLOCK_D
    channel_dt, step_dt, channel_dn, state_dn, state_nt, step_nt = tile_indices(first_channel, LAYOUT, BLOCK_D,
                                                                                BLOCK_N, STEPS)
    channel_d = gl.sum(channel_dt, axis=1)                                           # (BLOCK_D,)
    step3 = gl.expand_dims(step_dt, 1)                                               # (1, 1, STEPS)
    tile_r: gl.constexpr = gl.SliceLayout(0, SUM_LAYOUT)   # (BLOCK_N, STEPS), one lane per element
    state_r = gl.expand_dims(gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, tile_r)), 1)
    step_r = gl.expand_dims(gl.arange(0, STEPS, layout=gl.SliceLayout(0, tile_r)), 0)
    ROWS_MASKED: gl.constexpr = not (EVEN_L and EVEN_D)
    BC_MASKED: gl.constexpr = not (EVEN_L and EVEN_N)
    STATES_MASKED: gl.constexpr = not (EVEN_N and EVEN_D)
    channel_ok_dt = channel_dt < d_inner
    state_mask = (state_dn < d_state) & (channel_dn < d_inner)                      # (BLOCK_D, BLOCK_N)

    A = load_masked(A_ptr + channel_dn * d_state + state_dn, state_mask, STATES_MASKED, 0.0).to(gl.float32)
    A3 = gl.expand_dims(A, 2)
    A2 = A3 * LOG2E
    delta_bias = 0.0
    if HAS_DELTA_BIAS:
        delta_bias = load_masked(delta_bias_ptr + channel_dt, channel_ok_dt, not EVEN_D, 0.0).to(gl.float32)
    if HAS_D:
        skip = load_masked(D_ptr + channel_dt, channel_ok_dt, not EVEN_D, 0.0).to(gl.float32)
    group_offset = batch * stride_bc_batch + (first_channel // channels_per_group) * stride_bc_group
    bc_offset = group_offset + state_nt * stride_bc_state                            # (BLOCK_N, 1)
    bc_offset_r = group_offset + state_r * stride_bc_state
    wide_channel = channel_dt.to(gl.int64)
    u_row = u_ptr + batch * stride_u_batch + wide_channel * stride_u_channel
    delta_row = delta_ptr + batch * stride_delta_batch + wide_channel * stride_delta_channel
    dy_row = dy_ptr + batch * stride_dy_batch + wide_channel * stride_dy_channel
    grad_row = batch * stride_grad_batch + wide_channel * stride_grad_channel
    z_row = u_row
    if HAS_Z:
        z_row = z_ptr + batch * stride_z_batch + wide_channel * stride_z_channel
    state_rows = (batch * d_inner + channel_dn) * d_state + state_dn                 # into (batch, d_inner, d_state)
    chunk_rows = (batch * d_inner + channel_dn) * n_steps * d_state + state_dn       # (batch, d_inner, n_steps, ...)

    if HAS_DFINAL_STATE:
        adjoint_in = load_masked(dfinal_state_ptr + state_rows, state_mask, STATES_MASKED, 0.0)
    else:
        adjoint_in = gl.zeros((BLOCK_D, BLOCK_N), gl.float32, tile_dn)
    dA_acc = gl.zeros((BLOCK_D, BLOCK_N), gl.float32, tile_dn)
    dD_acc = gl.zeros((BLOCK_D, STEPS), gl.float32, tile_dt)
    ddelta_bias_acc = gl.zeros((BLOCK_D, STEPS), gl.float32, tile_dt)
    unit_gain = gl.full((BLOCK_D, BLOCK_N, STEPS), 1.0, gl.float32, LAYOUT)

    # the next (earlier) block's inputs are loaded before the current block is computed (software prefetch)
    h0_raw, delta_raw, u_raw, dy_raw, z_raw, B_raw, C_raw = _load_block(
        chunk_states_ptr + chunk_rows, delta_row, u_row, dy_row, z_row, B_ptr, C_ptr, bc_offset, n_steps - 1,
        step_dt, step_nt, state_nt, channel_ok_dt, state_mask, seqlen, d_state, HAS_Z, ROWS_MASKED, BC_MASKED,
        STATES_MASKED, STEPS)
    for index in range(n_steps):
        block = n_steps - 1 - index
        h0_next, delta_next, u_next, dy_next, z_next, B_next, C_next = _load_block(
            chunk_states_ptr + chunk_rows, delta_row, u_row, dy_row, z_row, B_ptr, C_ptr, bc_offset,
            gl.maximum(block - 1, 0), step_dt, step_nt, state_nt, channel_ok_dt, state_mask, seqlen, d_state, HAS_Z,
            ROWS_MASKED, BC_MASKED, STATES_MASKED, STEPS)
        time_dt = block * STEPS + step_dt
        in_seq = time_dt < seqlen
        row_mask = channel_ok_dt & in_seq
        time_r = block * STEPS + step_r
        bc_mask_r = (state_r < d_state) & (time_r < seqlen)
        h0 = h0_raw
        raw = delta_raw.to(gl.float32) + delta_bias
        u = u_raw.to(gl.float32)
        dy = dy_raw.to(gl.float32)
        B = B_raw.to(gl.float32)
        C = C_raw.to(gl.float32)
        dt = raw
        if DELTA_SOFTPLUS:
            dt = softplus_fast(raw)
        if not EVEN_L:
            dt = gl.where(in_seq, dt, 0.0)  # padding steps: decay 1, input 0

        # the block's states, from the entry state saved by the forward pass
        decay = exp2_fast(gl.expand_dims(dt, 1) * A2)                                # a_t (BLOCK_D, BLOCK_N, STEPS)
        if HAS_RESET:
            reset = load_masked(reset_ptr + batch * stride_reset_batch + time_dt, in_seq, not EVEN_L, 0)
            decay = gl.where(gl.expand_dims(reset, 1) != 0, 0.0, decay)
        x = dt * u
        drive = gl.expand_dims(x, 1) * gl.expand_dims(B, 0)
        _, states = gl.associative_scan(
            (decay, gl.where(step3 == 0, drive + decay * gl.expand_dims(h0, 2), drive)), 2,
            linear_recurrence_combine)

        dy_pre = dy
        if HAS_Z:
            z = z_raw.to(gl.float32)
            z_sigmoid = sigmoid_fast(z)
            y_pre = gl.sum(states * gl.expand_dims(C, 0), axis=1)
            if HAS_D:
                y_pre = y_pre + skip * u
            dz = dy * y_pre * z_sigmoid * (1.0 + z * (1.0 - z_sigmoid))
            store_masked(dz_ptr + grad_row + time_dt, dz, row_mask, ROWS_MASKED)
            dy_pre = dy * z * z_sigmoid
        if HAS_D:
            dD_acc += dy_pre * u
        dy3 = gl.expand_dims(dy_pre, 1)
        _add_channel_sum(dC_ptr + bc_offset_r + time_r, dy3 * states, bc_mask_r, BC_MASKED, SUM_LAYOUT)

        # adjoint: reverse scan in registers, the later block's a g folded into the last step
        target = gl.expand_dims(C, 0) * dy3
        target = gl.where(step3 == STEPS - 1, target + gl.expand_dims(adjoint_in, 2), target)
        _, adjoint, _ = gl.associative_scan((flip_steps(decay, LAYOUT), flip_steps(target, LAYOUT), unit_gain), 2,
                                            _adjoint_combine)
        adjoint = flip_steps(adjoint, LAYOUT)

        _add_channel_sum(dB_ptr + bc_offset_r + time_r, adjoint * gl.expand_dims(x, 1), bc_mask_r, BC_MASKED,
                         SUM_LAYOUT)
        through_decay = adjoint * (states - drive)                                   # g_t a_t h_{t-1}
        dA_acc += gl.sum(gl.expand_dims(dt, 1) * through_decay, axis=2)
        adjoint_B = gl.sum(adjoint * gl.expand_dims(B, 0), axis=1)                   # (BLOCK_D, STEPS)
        du = dt * adjoint_B
        if HAS_D:
            du = du + skip * dy_pre
        ddt = u * adjoint_B + gl.sum(A3 * through_decay, axis=1)
        if DELTA_SOFTPLUS:
            ddt = ddt * sigmoid_fast(raw)
        if not EVEN_L:
            ddt = gl.where(in_seq, ddt, 0.0)
        ddelta_bias_acc += ddt
        store_masked(du_ptr + grad_row + time_dt, du, row_mask, ROWS_MASKED)
        store_masked(ddelta_ptr + grad_row + time_dt, ddt, row_mask, ROWS_MASKED)
        adjoint_in = gl.reduce(decay * adjoint, 2, take_first)                       # a_0 g_0 of this block
        h0_raw, delta_raw, u_raw, dy_raw, z_raw, B_raw, C_raw = (h0_next, delta_next, u_next, dy_next, z_next, B_next,
                                                                 C_next)

    store_masked(dinitial_state_ptr + state_rows, adjoint_in, state_mask, STATES_MASKED)
    if STATES_MASKED:
        gl.atomic_add(dA_ptr + channel_dn * d_state + state_dn, dA_acc, mask=state_mask, sem="relaxed")
    else:
        gl.atomic_add(dA_ptr + channel_dn * d_state + state_dn, dA_acc, sem="relaxed")
    if HAS_D:
        gl.atomic_add(dD_ptr + channel_d, gl.sum(dD_acc, axis=1), mask=channel_d < d_inner, sem="relaxed")
    if HAS_DELTA_BIAS:
        gl.atomic_add(ddelta_bias_ptr + channel_d, gl.sum(ddelta_bias_acc, axis=1), mask=channel_d < d_inner,
                      sem="relaxed")
