"""Scalar building blocks shared by the Triton selective-scan kernels (all computed in fp32)."""
import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def linear_recurrence_combine(decay_first, value_first, decay_second, value_second):
    """Compose h -> decay_first * h + value_first with h -> decay_second * h + value_second (first applied first):
    the associative operator of h_t = a_t h_{t-1} + b_t, used by `tl.associative_scan` in both time directions."""
    return decay_first * decay_second, value_first * decay_second + value_second


@triton.jit
def softplus(x):
    """log(1 + exp(x)) in fp32: exact branch for x > 20, series log1p(e) = e - e^2 / 2 for tiny e = exp(x)."""
    e = tl.exp(x)
    small = e - 0.5 * e * e
    return tl.where(x > 20.0, x, tl.where(e < 1e-3, small, tl.log(1.0 + e)))


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def silu_gate_grads(dy, ungated, z, z_sigmoid):
    """y = u silu(z): (du, dz) from dy, u, z and sigmoid(z) (each caller brings its own sigmoid)."""
    return dy * z * z_sigmoid, dy * ungated * z_sigmoid * (1.0 + z * (1.0 - z_sigmoid))


@triton.jit
def load_masked(pointer, mask, MASKED: tl.constexpr, other):
    """tl.load with `mask` only when MASKED (unmasked loads skip the predicate and the zero fill)."""
    if MASKED:
        return tl.load(pointer, mask=mask, other=other)
    return tl.load(pointer)


@triton.jit
def segment_slot(rows, segment, n_segments, d_state, channel3, state3):
    """Offsets of a program's (channel, state) tile in segment `segment` of a (batch, d_inner, n_segments,
    d_state) tensor; `rows` = (batch * d_inner + first channel) * d_state."""
    return rows * n_segments + segment * d_state + channel3 * (n_segments * d_state) + state3


@triton.jit
def load_channel_parameters(A_ptr, delta_bias_ptr, first_channel, channel3, state3, d_state, state_mask,
                            HAS_DELTA_BIAS: tl.constexpr, EVEN_N: tl.constexpr):
    """A (BLOCK_D, BLOCK_N, 1) fp32 and the delta bias (BLOCK_D, 1, 1), 0.0 without one, of the program's channels."""
    A = load_masked(A_ptr + first_channel * d_state + channel3 * d_state + state3, state_mask, not EVEN_N, 0.0)
    delta_bias = 0.0
    if HAS_DELTA_BIAS:
        delta_bias = tl.load(delta_bias_ptr + first_channel + channel3).to(tl.float32)
    return A.to(tl.float32), delta_bias
