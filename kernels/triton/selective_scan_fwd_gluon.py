"""Forward Gluon kernel of the Mamba-1 selective scan: time runs sequentially inside each lane.

The Triton kernel (`selective_scan_fwd.py`) leaves the register layout to the compiler, which spreads a chunk's time
steps over the lanes of a warp; its scans then cost ~5 shuffle rounds per element. Here the layout is explicit
(`gluon_math.scan_layout`): a lane owns one channel, `BLOCK_N / LANES_N` states and `STEPS` consecutive steps, so
the scan along time is a chain of FMAs in registers, and only y = C . h crosses the `LANES_N` lanes of a channel.
A program covers `BLOCK_D` channels of one sequence (all in one B/C group) and walks the sequence `STEPS` at a time,
loading the next steps before computing the current ones. `STORE_CHUNK_STATES` writes the state entering every
`STATE_EVERY * STEPS` steps (fp32) for the backward kernel.
"""
from triton.experimental import gluon
from triton.experimental.gluon import language as gl

from .gluon_math import (
    LOG2E,
    exp2_fast,
    linear_recurrence_combine,
    load_masked,
    load_scan_steps,
    sigmoid_fast,
    softplus_fast,
    store_masked,
    take_last,
    tile_indices,
)


@gluon.jit
def selective_scan_fwd_gluon_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, delta_bias_ptr, reset_ptr,
    initial_state_ptr, y_ptr, final_state_ptr, chunk_states_ptr,
    seqlen, d_inner, d_state, channels_per_group, n_steps, n_state_chunks,
    stride_u_batch, stride_u_channel, stride_delta_batch, stride_delta_channel,
    stride_z_batch, stride_z_channel, stride_y_batch, stride_y_channel,
    stride_bc_batch, stride_bc_group, stride_bc_state, stride_reset_batch,
    HAS_D: gl.constexpr, HAS_Z: gl.constexpr, HAS_DELTA_BIAS: gl.constexpr, DELTA_SOFTPLUS: gl.constexpr,
    HAS_RESET: gl.constexpr, HAS_INITIAL_STATE: gl.constexpr, STORE_CHUNK_STATES: gl.constexpr,
    STATE_EVERY: gl.constexpr, EVEN_L: gl.constexpr, EVEN_N: gl.constexpr, EVEN_D: gl.constexpr,
    LAYOUT: gl.constexpr, BLOCK_D: gl.constexpr, BLOCK_N: gl.constexpr, STEPS: gl.constexpr,
):
    batch = gl.program_id(1).to(gl.int64)
    first_channel = gl.program_id(0) * BLOCK_D
    channel_dt, step_dt, channel_dn, state_dn, state_nt, step_nt = tile_indices(first_channel, LAYOUT, BLOCK_D,
                                                                                BLOCK_N, STEPS)
    first_step = gl.expand_dims(step_dt, 1) == 0                                     # (1, 1, STEPS)
    ROWS_MASKED: gl.constexpr = not (EVEN_L and EVEN_D)
    BC_MASKED: gl.constexpr = not (EVEN_L and EVEN_N)
    channel_ok_dt = channel_dt < d_inner
    state_mask = (state_dn < d_state) & (channel_dn < d_inner)                      # (BLOCK_D, BLOCK_N)

    A2 = load_masked(A_ptr + channel_dn * d_state + state_dn, state_mask, not (EVEN_N and EVEN_D), 0.0)
    A2 = gl.expand_dims(A2.to(gl.float32) * LOG2E, 2)                                # (BLOCK_D, BLOCK_N, 1)
    if HAS_DELTA_BIAS:
        delta_bias = load_masked(delta_bias_ptr + channel_dt, channel_ok_dt, not EVEN_D, 0.0).to(gl.float32)
    if HAS_D:
        skip = load_masked(D_ptr + channel_dt, channel_ok_dt, not EVEN_D, 0.0).to(gl.float32)
    group = first_channel // channels_per_group
    bc_offset = batch * stride_bc_batch + group * stride_bc_group + state_nt * stride_bc_state
    wide_channel = channel_dt.to(gl.int64)
    u_row = u_ptr + batch * stride_u_batch + wide_channel * stride_u_channel
    delta_row = delta_ptr + batch * stride_delta_batch + wide_channel * stride_delta_channel
    y_row = y_ptr + batch * stride_y_batch + wide_channel * stride_y_channel
    z_row = u_row
    if HAS_Z:
        z_row = z_ptr + batch * stride_z_batch + wide_channel * stride_z_channel
    state_rows = (batch * d_inner + channel_dn) * d_state + state_dn                 # into (batch, d_inner, d_state)

    if HAS_INITIAL_STATE:
        h = load_masked(initial_state_ptr + state_rows, state_mask, not (EVEN_N and EVEN_D), 0.0).to(gl.float32)
    else:
        h = gl.zeros((BLOCK_D, BLOCK_N), gl.float32, gl.SliceLayout(2, LAYOUT))

    dt_raw, u_raw, z_raw, B, C = load_scan_steps(delta_row, u_row, z_row, bc_offset, B_ptr, C_ptr, step_dt, step_nt,
                                                 state_nt, channel_ok_dt, seqlen, d_state, HAS_Z, ROWS_MASKED,
                                                 BC_MASKED)
    for index in range(n_steps):
        if STORE_CHUNK_STATES:  # (batch, d_inner, n_state_chunks, d_state)
            if index % STATE_EVERY == 0:
                chunk_pointer = (chunk_states_ptr + ((batch * d_inner + channel_dn) * n_state_chunks
                                                     + index // STATE_EVERY) * d_state + state_dn)
                store_masked(chunk_pointer, h, state_mask, not (EVEN_N and EVEN_D))
        start = index * STEPS
        next_start = gl.minimum(index + 1, n_steps - 1) * STEPS
        dt_next, u_next, z_next, B_next, C_next = load_scan_steps(
            delta_row, u_row, z_row, bc_offset, B_ptr, C_ptr, next_start + step_dt, next_start + step_nt, state_nt,
            channel_ok_dt, seqlen, d_state, HAS_Z, ROWS_MASKED, BC_MASKED)
        dt = dt_raw.to(gl.float32)
        if HAS_DELTA_BIAS:
            dt = dt + delta_bias
        if DELTA_SOFTPLUS:
            dt = softplus_fast(dt)
        if not EVEN_L:
            dt = gl.where(start + step_dt < seqlen, dt, 0.0)  # padding steps: decay 1, input 0
        u = u_raw.to(gl.float32)
        decay = exp2_fast(gl.expand_dims(dt, 1) * A2)                                # (BLOCK_D, BLOCK_N, STEPS)
        if HAS_RESET:
            reset = load_masked(reset_ptr + batch * stride_reset_batch + start + step_dt, start + step_dt < seqlen,
                                not EVEN_L, 0)
            decay = gl.where(gl.expand_dims(reset, 1) != 0, 0.0, decay)
        drive = gl.expand_dims(dt * u, 1) * gl.expand_dims(B.to(gl.float32), 0)
        drive = gl.where(first_step, drive + decay * gl.expand_dims(h, 2), drive)  # carry the state in
        _, states = gl.associative_scan((decay, drive), 2, linear_recurrence_combine)
        y = gl.sum(states * gl.expand_dims(C.to(gl.float32), 0), axis=1)                            # (BLOCK_D, STEPS)
        if HAS_D:
            y = y + skip * u
        if HAS_Z:
            z = z_raw.to(gl.float32)
            y = y * z * sigmoid_fast(z)
        store_masked(y_row + start + step_dt, y, channel_ok_dt & (start + step_dt < seqlen), ROWS_MASKED)
        h = gl.reduce(states, 2, take_last)
        dt_raw, u_raw, z_raw, B, C = dt_next, u_next, z_next, B_next, C_next

    store_masked(final_state_ptr + state_rows, h, state_mask, not (EVEN_N and EVEN_D))
