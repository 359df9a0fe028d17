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
def load_masked(pointer, mask, MASKED: tl.constexpr, other):
    """tl.load with `mask` only when MASKED (unmasked loads skip the predicate and the zero fill)."""
    if MASKED:
        return tl.load(pointer, mask=mask, other=other)
    return tl.load(pointer)
