"""Scalar helpers and the register layout shared by the Gluon selective-scan kernels (fp32, GPU only).

The fast transcendental functions are single PTX approximations (`ex2/lg2/rcp.approx.ftz.f32`, relative error
~2^-22): Triton's `exp`/`log` lower to range-checked or polynomial sequences that cost 3-20 instructions each.
"""
from triton.experimental import gluon
from triton.experimental.gluon import language as gl

LOG2E = gl.constexpr(1.4426950408889634)
LN2 = gl.constexpr(0.6931471805599453)


def scan_layout(states_per_lane: int, lanes_per_channel: int, steps: int, num_warps: int) -> gl.BlockedLayout:
    """(channels, states, steps) register tile: a lane owns one channel, `states_per_lane` states and `steps`
    consecutive time steps, so scans along time run sequentially inside the lane; `lanes_per_channel` lanes split a
    channel's states; the rest of the warp and the warps take further channels."""
    return gl.BlockedLayout([1, states_per_lane, steps], [32 // lanes_per_channel, lanes_per_channel, 1],
                            [num_warps, 1, 1], [2, 1, 0])


def channel_sum_layout(block_d: int, block_n: int, steps: int, num_warps: int) -> gl.BlockedLayout:
    """(channels, states, steps) layout in which a lane holds every channel of its (state, step) elements, so sums
    over channels stay inside lanes; lanes cover states first, then steps (replicated where the tile is smaller)."""
    lanes_state = min(block_n, 32)
    lanes_step = 32 // lanes_state
    warps_step = max(1, min(num_warps, steps // lanes_step))
    return gl.BlockedLayout([block_d, 1, 1], [1, lanes_state, lanes_step], [1, num_warps // warps_step, warps_step],
                            [2, 1, 0])


@gluon.jit
def _approx_f32(INSTRUCTION: gl.constexpr, x):
    """One PTX `INSTRUCTION.approx.ftz.f32` per element."""
    return gl.inline_asm_elementwise(INSTRUCTION + ".approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=gl.float32,
                                     is_pure=True, pack=1)


@gluon.jit
def exp2_fast(x):
    return _approx_f32("ex2", x)


@gluon.jit
def log2_fast(x):
    return _approx_f32("lg2", x)


@gluon.jit
def reciprocal_fast(x):
    return _approx_f32("rcp", x)


@gluon.jit
def softplus_fast(x):
    """log(1 + exp(x)): x itself above 20, the series e - e^2 / 2 for tiny e = exp(x)."""
    e = exp2_fast(x * LOG2E)
    return gl.where(x > 20.0, x, gl.where(e < 1e-3, e - 0.5 * e * e, log2_fast(1.0 + e) * LN2))


@gluon.jit
def sigmoid_fast(x):
    return reciprocal_fast(1.0 + exp2_fast(-x * LOG2E))


@gluon.jit
def linear_recurrence_combine(decay_first, value_first, decay_second, value_second):
    """Compose h -> decay_first h + value_first with h -> decay_second h + value_second (first applied first)."""
    return decay_first * decay_second, value_first * decay_second + value_second


@gluon.jit
def take_last(first, second):
    """Reduction that keeps the later element (the last time step of an in-lane axis: no instructions)."""
    return second


@gluon.jit
def take_first(first, second):
    return first


@gluon.jit
def flip_steps(x, LAYOUT: gl.constexpr):
    """Reverse the last axis of a (channels, states, steps) tile held in `scan_layout` (steps inside the lane: a
    renaming of registers, no instructions). `tl.associative_scan(reverse=True)` would flip through shuffles."""
    return gl.convert_layout(_flip_last(x, x.shape[0], x.shape[1], x.shape[2]), LAYOUT, assert_trivial=True)


@gluon.jit
def _flip_last(x, D: gl.constexpr, N: gl.constexpr, T: gl.constexpr):
    if T == 1:
        return x
    else:
        earlier, later = gl.split(gl.reshape(x, [D, N, T // 2, 2]))
        return gl.reshape(gl.join(_flip_last(later, D, N, T // 2), _flip_last(earlier, D, N, T // 2)), [D, N, T])


@gluon.jit
def tile_indices(first_channel, LAYOUT: gl.constexpr, BLOCK_D: gl.constexpr, BLOCK_N: gl.constexpr,
                 STEPS: gl.constexpr):
    """Index tiles of a program's (channels, states, steps) tile in `LAYOUT`'s three 2-D slices:
    channel (BLOCK_D, 1) and step (1, STEPS) of (channels, steps); channel (BLOCK_D, 1) and state (1, BLOCK_N) of
    (channels, states); state (BLOCK_N, 1) and step (1, STEPS) of (states, steps). Channels are absolute."""
    tile_dt: gl.constexpr = gl.SliceLayout(1, LAYOUT)
    tile_dn: gl.constexpr = gl.SliceLayout(2, LAYOUT)
    tile_nt: gl.constexpr = gl.SliceLayout(0, LAYOUT)
    channel_dt = first_channel + gl.expand_dims(gl.arange(0, BLOCK_D, layout=gl.SliceLayout(1, tile_dt)), 1)
    step_dt = gl.expand_dims(gl.arange(0, STEPS, layout=gl.SliceLayout(0, tile_dt)), 0)
    channel_dn = first_channel + gl.expand_dims(gl.arange(0, BLOCK_D, layout=gl.SliceLayout(1, tile_dn)), 1)
    state_dn = gl.expand_dims(gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, tile_dn)), 0)
    state_nt = gl.expand_dims(gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, tile_nt)), 1)
    step_nt = gl.expand_dims(gl.arange(0, STEPS, layout=gl.SliceLayout(0, tile_nt)), 0)
    return channel_dt, step_dt, channel_dn, state_dn, state_nt, step_nt


@gluon.jit
def load_scan_steps(delta_row, u_row, z_row, bc_offset, B_ptr, C_ptr, time_dt, time_nt, state_nt, channel_ok_dt,
                    seqlen, d_state, HAS_Z: gl.constexpr, ROWS_MASKED: gl.constexpr, BC_MASKED: gl.constexpr):
    """Raw (stored dtype) delta, u, z rows (BLOCK_D, STEPS) at absolute times `time_dt` and B, C (BLOCK_N, STEPS) at
    `time_nt`; z is u without z. Steps past the sequence read zeros."""
    row_mask = channel_ok_dt & (time_dt < seqlen)
    delta = load_masked(delta_row + time_dt, row_mask, ROWS_MASKED, 0.0)
    u = load_masked(u_row + time_dt, row_mask, ROWS_MASKED, 0.0)
    z = u
    if HAS_Z:
        z = load_masked(z_row + time_dt, row_mask, ROWS_MASKED, 0.0)
    bc_mask = (state_nt < d_state) & (time_nt < seqlen)
    B = load_masked(B_ptr + bc_offset + time_nt, bc_mask, BC_MASKED, 0.0)
    C = load_masked(C_ptr + bc_offset + time_nt, bc_mask, BC_MASKED, 0.0)
    return delta, u, z, B, C


@gluon.jit
def load_masked(pointer, mask, MASKED: gl.constexpr, other):
    if MASKED:
        return gl.load(pointer, mask=mask, other=other)
    return gl.load(pointer)


@gluon.jit
def store_masked(pointer, value, mask, MASKED: gl.constexpr):
    if MASKED:
        gl.store(pointer, value.to(pointer.dtype.element_ty), mask=mask)
    else:
        gl.store(pointer, value.to(pointer.dtype.element_ty))
