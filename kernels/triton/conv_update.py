"""Triton decoding step of the depthwise causal conv: one kernel reads the conv state, the new input and the taps,
writes the (optionally SiLU-activated) output and shifts the state in place, where the PyTorch step
(`kernels/causal_conv1d.py`) is a concatenation, a product, a sum, a copy and an activation.

Programs: (channel blocks, batch); each owns whole rows of the state, so the in-place shift needs only a barrier
between its loads and its stores.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..causal_conv1d import ACTIVATIONS
from .causal_conv1d import SUPPORTED_DTYPES

BLOCK_C = 128


@triton.jit
def conv_update_kernel(
    x_ptr, state_ptr, weight_ptr, bias_ptr, out_ptr,
    channels, width,
    stride_x_b, stride_x_c, stride_state_b, stride_state_c, stride_state_k, stride_weight_c, stride_weight_k,
    stride_out_b, stride_out_c,
    HAS_BIAS: tl.constexpr, SILU: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_W: tl.constexpr,
):
    block, batch = tl.program_id(0), tl.program_id(1)
    rows = block * BLOCK_C + tl.arange(0, BLOCK_C)
    taps = tl.arange(0, BLOCK_W)
    row_mask = rows < channels
    state_len = width - 1

    x = tl.load(x_ptr + batch * stride_x_b + rows * stride_x_c, mask=row_mask, other=0.0).to(tl.float32)
    state_row = state_ptr + batch * stride_state_b + rows[:, None] * stride_state_c
    # window[c, k] = state[c, k] for k < width - 1, x[c] at k = width - 1 (the newest input)
    in_state = row_mask[:, None] & (taps[None, :] < state_len)
    window = tl.load(state_row + taps[None, :] * stride_state_k, mask=in_state, other=0.0).to(tl.float32)
    window = tl.where(taps[None, :] == state_len, x[:, None], window)
    # shifted[c, k] = window[c, k + 1]: the state after this step
    shifted_in_state = row_mask[:, None] & (taps[None, :] + 1 < state_len)
    shifted = tl.load(state_row + (taps[None, :] + 1) * stride_state_k, mask=shifted_in_state, other=0.0)
    shifted = tl.where(taps[None, :] + 1 == state_len, x[:, None].to(shifted.dtype), shifted)

    weight = tl.load(weight_ptr + rows[:, None] * stride_weight_c + taps[None, :] * stride_weight_k,
                     mask=row_mask[:, None] & (taps[None, :] < width), other=0.0).to(tl.float32)
    out = tl.sum(window * weight, axis=1)
    if HAS_BIAS:
        out += tl.load(bias_ptr + rows, mask=row_mask, other=0.0).to(tl.float32)
    if SILU:
        out = out * tl.sigmoid(out)
    tl.store(out_ptr + batch * stride_out_b + rows * stride_out_c, out.to(out_ptr.dtype.element_ty), mask=row_mask)

    tl.debug_barrier()  # every load of this program's state rows happens before any of its stores
    tl.store(state_row + taps[None, :] * stride_state_k, shifted.to(state_ptr.dtype.element_ty), mask=in_state)


def causal_conv1d_update_triton(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
) -> torch.Tensor:
    """One causal-conv step; contract of `causal_conv1d.causal_conv1d_update`. x: (batch, channels); conv_state:
    (batch, channels, width - 1), shifted left in place with x appended; weight: (channels, width) with width >= 2;
    bias: (channels,). fp32/fp16/bf16, any strides; computes in fp32. Returns out: (batch, channels) in x's dtype."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"causal_conv1d_update_triton: activation={activation!r}; expected one of {ACTIVATIONS}")
    batch, channels = x.shape
    width = weight.shape[-1]
    if weight.shape != (channels, width) or width < 2:
        raise ValueError(f"causal_conv1d_update_triton: weight shape {tuple(weight.shape)}, expected ({channels}, "
                         "width) with width >= 2")
    if conv_state.shape != (batch, channels, width - 1):
        raise ValueError(f"causal_conv1d_update_triton: conv_state shape {tuple(conv_state.shape)}, expected "
                         f"({batch}, {channels}, {width - 1})")
    bad = {name: t.dtype for name, t in (("x", x), ("conv_state", conv_state), ("weight", weight), ("bias", bias))
           if t is not None and t.dtype not in SUPPORTED_DTYPES}
    if bad:
        raise ValueError(f"causal_conv1d_update_triton: unsupported dtypes {bad} (supported: {SUPPORTED_DTYPES})")
    out = torch.empty(batch, channels, device=x.device, dtype=x.dtype)
    grid = (triton.cdiv(channels, BLOCK_C), batch)
    conv_update_kernel[grid](
        x, conv_state, weight, bias, out, channels, width,
        *x.stride(), *conv_state.stride(), *weight.stride(), *out.stride(),
        HAS_BIAS=bias is not None, SILU=activation is not None, BLOCK_C=BLOCK_C,
        BLOCK_W=triton.next_power_of_2(width), num_warps=4,
    )
    return out
