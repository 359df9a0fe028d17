"""Carry of the sequence-parallel selective scan across segments.

A segment maps the state (forward) or the adjoint (backward) entering it to the one leaving it as
    out = decay_product * in + local        (elementwise per channel and state)
where `local` is what the segment produces from zero and `decay_product` the product of its decays a_t. One program
owns `BLOCK` (channel, state) pairs and walks the segments in order (forward) or in reverse (backward), overwriting
each segment's `local` by the value entering it; what leaves the last segment walked is the final state (forward) or
the gradient of the initial state (backward).
"""
import triton
import triton.language as tl


@triton.jit
def combine_segments_kernel(
    local_ptr, decays_ptr, entering_ptr, leaving_ptr, n_pairs, d_state, n_segments,
    HAS_ENTERING: tl.constexpr, REVERSE: tl.constexpr, BLOCK: tl.constexpr,
):
    """local, decays: (batch, d_inner, n_segments, d_state) fp32, `local` overwritten in place by the value entering
    every segment; entering (optional, zeros without) and leaving: (batch, d_inner, d_state) fp32, the value
    entering the first segment walked and leaving the last; n_pairs = batch * d_inner * d_state."""
    pair = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = pair < n_pairs
    slot = (pair // d_state) * (n_segments * d_state) + pair % d_state
    carry = tl.zeros((BLOCK,), tl.float32)
    if HAS_ENTERING:
        carry = tl.load(entering_ptr + pair, mask=valid, other=0.0)
    for step in range(n_segments):
        segment = n_segments - 1 - step if REVERSE else step
        pointer = slot + segment * d_state
        local = tl.load(local_ptr + pointer, mask=valid, other=0.0)
        decay = tl.load(decays_ptr + pointer, mask=valid, other=0.0)
        tl.store(local_ptr + pointer, carry, mask=valid)
        carry = decay * carry + local
    tl.store(leaving_ptr + pair, carry, mask=valid)
