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
def exp2_fast(x):
    return gl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=gl.float32, is_pure=True,
                                     pack=1)


@gluon.jit
def log2_fast(x):
    return gl.inline_asm_elementwise("lg2.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=gl.float32, is_pure=True,
                                     pack=1)


@gluon.jit
def reciprocal_fast(x):
    return gl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=gl.float32, is_pure=True,
                                     pack=1)


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
