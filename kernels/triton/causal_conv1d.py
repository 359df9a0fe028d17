"""`causal_conv1d_triton`: Mamba's depthwise causal conv (+ optional SiLU) on Triton kernels, forward and backward.

A program owns a (`BLOCK_C` channels x `BLOCK_L` time steps) tile of one sequence; the `width` taps are shifted
loads of the input (inputs before t = 0 come from `initial_state`), so any memory layout of x works (the mixers
pass channel-last views of `in_proj`'s output). The backward is one kernel over the extended time axis
t in [1 - width, L): d x[t] (d initial_state for t < 0) is the transposed conv of the pre-activation's gradient,
which it recomputes at the width shifts it needs from shifted loads (reads x and grad_out, writes d x: nothing in
between goes through memory); per-program fp32 partial sums of d weight and d bias are added up in PyTorch.
The final state is the last width-1 inputs, a slice taken in PyTorch (so autograd handles its gradient).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..causal_conv1d import ACTIVATIONS

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# forward: 64 x 32 tiles, 8 warps (8 elements per thread, <= 52 registers; ptxas, sm_90, bf16, width 4); a time step of
# 64 bf16 channels is one 128-byte line in the channel-last layout
BLOCK_C = 64
BLOCK_L = 32
NUM_WARPS = 8
# backward: 64 x 16 tiles, 8 warps (4 elements per thread: 106 registers channel-last, 128 contiguous; 8 elements
# take 170 / 255). A program loops over up to BACKWARD_MAX_TILES time tiles (fewer when the grid would fall below
# BACKWARD_MIN_PROGRAMS), summing the tap gradients elementwise and reducing them once.
BACKWARD_BLOCK_C = 64
BACKWARD_BLOCK_L = 16
BACKWARD_WARPS = 8
BACKWARD_MAX_TILES = 8
BACKWARD_MIN_PROGRAMS = 1024


def backward_tiles_per_program(time_tiles: int, parallel_programs: int) -> int:
    """Time tiles per backward program, given `parallel_programs` (channel tiles x batch) programs per time range."""
    return max(1, min(BACKWARD_MAX_TILES, time_tiles * parallel_programs // BACKWARD_MIN_PROGRAMS))


@triton.jit
def _load_input(x_ptr, state_ptr, time, channel_mask, seqlen, stride_x_time, stride_state_time,
                WIDTH: tl.constexpr, HAS_INITIAL_STATE: tl.constexpr):
    """Input at `time` (may be negative: the initial state, or zero without one) as fp32; x_ptr / state_ptr point
    at this tile's channels of one sequence."""
    value = tl.load(x_ptr + time * stride_x_time, mask=channel_mask & (time >= 0) & (time < seqlen),
                    other=0.0).to(tl.float32)
    if HAS_INITIAL_STATE:
        in_state = channel_mask & (time < 0) & (time >= 1 - WIDTH)
        value += tl.load(state_ptr + (time + WIDTH - 1) * stride_state_time, mask=in_state, other=0.0).to(tl.float32)
    return value


@triton.jit
def _input_windows(x_ptr, state_ptr, time, channel_mask, seqlen, stride_x_time, stride_state_time,
                   COUNT: tl.constexpr, WIDTH: tl.constexpr, HAS_INITIAL_STATE: tl.constexpr):
    """input[time - WIDTH + 1 + i] for i < COUNT: with COUNT = WIDTH, the inputs that tap i reads for the outputs
    at `time`."""
    windows = ()
    for i in tl.static_range(COUNT):
        windows = windows + (_load_input(x_ptr, state_ptr, time - WIDTH + 1 + i, channel_mask, seqlen, stride_x_time,
                                         stride_state_time, WIDTH, HAS_INITIAL_STATE),)
    return windows


@triton.jit
def _load_taps(weight_ptr, channel_mask, stride_weight_tap, WIDTH: tl.constexpr):
    """The WIDTH conv taps of this tile's channels as fp32 (BLOCK_C, 1) tensors; weight_ptr points at the channels."""
    taps = ()
    for k in tl.static_range(WIDTH):
        taps = taps + (tl.load(weight_ptr + k * stride_weight_tap, mask=channel_mask, other=0.0).to(tl.float32),)
    return taps


@triton.jit
def _pre_activation(windows, taps, bias, WIDTH: tl.constexpr):
    """bias + sum_k taps[k] * windows[k] in fp32, (BLOCK_C, BLOCK_L)."""
    acc = taps[0] * windows[0]
    for k in tl.static_range(1, WIDTH):
        acc += taps[k] * windows[k]
    return acc + bias


@triton.jit
def causal_conv1d_fwd_kernel(
    x_ptr, weight_ptr, bias_ptr, state_ptr, out_ptr,
    channels, seqlen,
    stride_x_batch, stride_x_channel, stride_x_time, stride_weight_channel, stride_weight_tap,
    stride_state_batch, stride_state_channel, stride_state_time,
    stride_out_batch, stride_out_channel, stride_out_time,
    WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_INITIAL_STATE: tl.constexpr, SILU: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr,
):
    batch = tl.program_id(2).to(tl.int64)
    # int64 offsets: channel * stride and time * stride pass 2^31 for long sequences
    channel = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)[:, None]).to(tl.int64)   # (BLOCK_C, 1)
    time = (tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)[None, :]).to(tl.int64)      # (1, BLOCK_L)
    channel_mask = channel < channels
    x_tile = x_ptr + batch * stride_x_batch + channel * stride_x_channel
    state_tile = state_ptr + batch * stride_state_batch + channel * stride_state_channel
    bias = tl.zeros((BLOCK_C, 1), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + channel, mask=channel_mask, other=0.0).to(tl.float32)
    taps = _load_taps(weight_ptr + channel * stride_weight_channel, channel_mask, stride_weight_tap, WIDTH)
    windows = _input_windows(x_tile, state_tile, time, channel_mask, seqlen, stride_x_time, stride_state_time, WIDTH,
                             WIDTH, HAS_INITIAL_STATE)
    out = _pre_activation(windows, taps, bias, WIDTH)
    if SILU:
        out = out / (1.0 + tl.exp(-out))
    out_tile = out_ptr + batch * stride_out_batch + channel * stride_out_channel + time * stride_out_time
    tl.store(out_tile, out.to(out_ptr.dtype.element_ty), mask=channel_mask & (time < seqlen))


@triton.jit
def _grad_pre_activation(windows, grad_out_ptr, time, channel_mask, seqlen, stride_grad_out_time, taps, bias,
                         WIDTH: tl.constexpr, SILU: tl.constexpr):
    """d pre-activation at `time` in fp32, (BLOCK_C, BLOCK_L): grad_out there (zero outside [0, L)), through SiLU's
    derivative at the pre-activation recomputed from its WIDTH input `windows`."""
    grad = tl.load(grad_out_ptr + time * stride_grad_out_time, mask=channel_mask & (time >= 0) & (time < seqlen),
                   other=0.0).to(tl.float32)
    if SILU:
        pre = _pre_activation(windows, taps, bias, WIDTH)
        gate = 1.0 / (1.0 + tl.exp(-pre))
        grad = grad * gate * (1.0 + pre * (1.0 - gate))
    return grad


@triton.jit
def causal_conv1d_bwd_kernel(
    x_ptr, weight_ptr, bias_ptr, state_ptr, grad_out_ptr, grad_x_ptr, grad_state_ptr, grad_weight_partial_ptr,
    grad_bias_partial_ptr,
    channels, seqlen, time_tiles, tiles_per_program,
    stride_x_batch, stride_x_channel, stride_x_time, stride_weight_channel, stride_weight_tap,
    stride_state_batch, stride_state_channel, stride_state_time,
    stride_grad_out_batch, stride_grad_out_channel, stride_grad_out_time,
    stride_grad_x_batch, stride_grad_x_channel, stride_grad_x_time,
    WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_INITIAL_STATE: tl.constexpr, SILU: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr,
):
    """One pass over `tiles_per_program` time tiles of the extended time t in [1 - WIDTH, L):
    d input[t] = sum_j weight[:, WIDTH - 1 - j] * d pre[t + j] (d x for t >= 0, d initial_state for t < 0), with
    d pre recomputed at each shift j from 2 WIDTH - 1 shifted input loads (no stored d pre); the tap and bias
    gradients sum elementwise over the tiles and are reduced once, into this program's partial sums."""
    program = tl.program_id(0)
    batch = tl.program_id(2).to(tl.int64)
    channel = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)[:, None]).to(tl.int64)
    channel_mask = channel < channels
    x_tile = x_ptr + batch * stride_x_batch + channel * stride_x_channel
    state_tile = state_ptr + batch * stride_state_batch + channel * stride_state_channel
    grad_out_tile = grad_out_ptr + batch * stride_grad_out_batch + channel * stride_grad_out_channel
    taps = _load_taps(weight_ptr + channel * stride_weight_channel, channel_mask, stride_weight_tap, WIDTH)
    bias = tl.zeros((BLOCK_C, 1), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + channel, mask=channel_mask, other=0.0).to(tl.float32)
    grad_weight = ()
    for k in tl.static_range(WIDTH):
        grad_weight = grad_weight + (tl.zeros((BLOCK_C, BLOCK_L), tl.float32),)
    grad_bias = tl.zeros((BLOCK_C, BLOCK_L), tl.float32)
    first_tile = program * tiles_per_program
    for tile in range(first_tile, tl.minimum(first_tile + tiles_per_program, time_tiles)):
        time = (tile * BLOCK_L + tl.arange(0, BLOCK_L)[None, :] - (WIDTH - 1)).to(tl.int64)
        # input[time - WIDTH + 1 + i], i < 2 WIDTH - 1: the windows of d pre at time + j are inputs[j : j + WIDTH]
        inputs = _input_windows(x_tile, state_tile, time, channel_mask, seqlen, stride_x_time, stride_state_time,
                                2 * WIDTH - 1, WIDTH, HAS_INITIAL_STATE)
        grad_input = tl.zeros((BLOCK_C, BLOCK_L), tl.float32)
        for shift in tl.static_range(WIDTH):
            windows = ()
            for k in tl.static_range(WIDTH):
                windows = windows + (inputs[shift + k],)
            grad_pre = _grad_pre_activation(windows, grad_out_tile, time + shift, channel_mask, seqlen,
                                            stride_grad_out_time, taps, bias, WIDTH, SILU)
            grad_input += taps[WIDTH - 1 - shift] * grad_pre
            if shift == 0:
                summed = ()
                for k in tl.static_range(WIDTH):
                    summed = summed + (grad_weight[k] + grad_pre * windows[k],)
                grad_weight = summed
                grad_bias += grad_pre
        tl.store(grad_x_ptr + batch * stride_grad_x_batch + channel * stride_grad_x_channel
                 + time * stride_grad_x_time, grad_input.to(grad_x_ptr.dtype.element_ty),
                 mask=channel_mask & (time >= 0) & (time < seqlen))
        if HAS_INITIAL_STATE:
            tl.store(grad_state_ptr + batch * stride_state_batch + channel * stride_state_channel
                     + (time + WIDTH - 1) * stride_state_time, grad_input.to(grad_state_ptr.dtype.element_ty),
                     mask=channel_mask & (time < 0))
    partial = ((batch * tl.num_programs(0) + program) * channels + channel) * WIDTH  # (batch, programs, channels, W)
    for k in tl.static_range(WIDTH):
        tl.store(grad_weight_partial_ptr + partial + k, tl.sum(grad_weight[k], axis=1)[:, None], mask=channel_mask)
    if HAS_BIAS:
        tl.store(grad_bias_partial_ptr + partial // WIDTH, tl.sum(grad_bias, axis=1)[:, None], mask=channel_mask)


def _output_like(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An empty (batch, channels, L) tensor, channel-last in memory when x is (so that the next Linear reads it
    contiguously), else contiguous."""
    batch, channels, seqlen = x.shape
    if x.stride(1) == 1 and x.stride(2) != 1:
        return torch.empty(batch, seqlen, channels, device=x.device, dtype=dtype).transpose(1, 2)
    return torch.empty(batch, channels, seqlen, device=x.device, dtype=dtype)


class CausalConv1dFunction(torch.autograd.Function):
    """forward(x, weight, bias | None, initial_state | None, silu) -> out; backward: d x, d weight, d bias,
    d initial_state."""

    @staticmethod
    def forward(ctx, x, weight, bias, initial_state, silu):
        batch, channels, seqlen = x.shape
        width = weight.shape[1]
        out = _output_like(x, x.dtype)
        state = initial_state if initial_state is not None else x  # placeholder pointer when absent
        causal_conv1d_fwd_kernel[(triton.cdiv(seqlen, BLOCK_L), triton.cdiv(channels, BLOCK_C), batch)](
            x, weight, bias, state, out, channels, seqlen, *x.stride(), *weight.stride(), *state.stride(),
            *out.stride(), WIDTH=width, HAS_BIAS=bias is not None, HAS_INITIAL_STATE=initial_state is not None,
            SILU=silu, BLOCK_C=BLOCK_C, BLOCK_L=BLOCK_L, num_warps=NUM_WARPS)
        ctx.save_for_backward(x, weight, bias, initial_state)
        ctx.silu = silu
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, bias, initial_state = ctx.saved_tensors
        batch, channels, seqlen = x.shape
        width = weight.shape[1]
        channel_tiles = triton.cdiv(channels, BACKWARD_BLOCK_C)
        time_tiles = triton.cdiv(seqlen + width - 1, BACKWARD_BLOCK_L)
        tiles_per_program = backward_tiles_per_program(time_tiles, channel_tiles * batch)
        programs = triton.cdiv(time_tiles, tiles_per_program)
        fp32 = dict(device=x.device, dtype=torch.float32)
        grad_weight_partial = torch.empty(batch, programs, channels, width, **fp32)
        grad_bias_partial = None if bias is None else torch.empty(batch, programs, channels, **fp32)
        grad_x = _output_like(x, x.dtype)
        grad_state = None if initial_state is None else torch.empty_like(initial_state)
        state = initial_state if initial_state is not None else x  # placeholder pointer when absent
        causal_conv1d_bwd_kernel[(programs, channel_tiles, batch)](
            x, weight, bias, state, grad_out, grad_x, grad_state if grad_state is not None else grad_x,
            grad_weight_partial, grad_bias_partial, channels, seqlen, time_tiles, tiles_per_program,
            *x.stride(), *weight.stride(), *state.stride(), *grad_out.stride(), *grad_x.stride(),
            WIDTH=width, HAS_BIAS=bias is not None, HAS_INITIAL_STATE=initial_state is not None, SILU=ctx.silu,
            BLOCK_C=BACKWARD_BLOCK_C, BLOCK_L=BACKWARD_BLOCK_L, num_warps=BACKWARD_WARPS)
        grad_weight = grad_weight_partial.sum((0, 1)).to(weight.dtype)
        grad_bias = None if bias is None else grad_bias_partial.sum((0, 1)).to(bias.dtype)
        return grad_x, grad_weight, grad_bias, grad_state, None


def causal_conv1d_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Contract of `mambaseq.kernels.causal_conv1d.causal_conv1d`, on Triton kernels (fp32 arithmetic).

    x: (batch, channels, L) fp32/fp16/bf16, any strides; weight: (channels, width); bias: (channels,);
    initial_state: (batch, channels, width - 1), the inputs that precede x. Returns out (dtype of x; channel-last
    in memory when x is), plus the final state = the last width - 1 inputs (dtype of x). Differentiable in x,
    weight, bias and initial_state, also through the final state.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"causal_conv1d_triton: activation={activation!r}; expected one of {ACTIVATIONS}")
    batch, channels, seqlen = x.shape
    width = weight.shape[-1]
    if weight.shape != (channels, width):
        raise ValueError(f"causal_conv1d_triton: weight shape {tuple(weight.shape)}, expected ({channels}, width)")
    if initial_state is not None and initial_state.shape != (batch, channels, width - 1):
        raise ValueError(f"causal_conv1d_triton: initial_state shape {tuple(initial_state.shape)}, expected "
                         f"({batch}, {channels}, {width - 1})")
    for name, tensor in {"x": x, "weight": weight, "bias": bias, "initial_state": initial_state}.items():
        if tensor is not None and tensor.dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"causal_conv1d_triton: {name} has dtype {tensor.dtype}, expected one of "
                             f"{SUPPORTED_DTYPES}")
    if initial_state is not None:
        initial_state = initial_state.contiguous()  # its gradient is allocated with the same strides
    out = CausalConv1dFunction.apply(x, weight, bias, initial_state, activation is not None)
    if not return_final_state:
        return out
    history = (initial_state.to(x.dtype) if initial_state is not None
               else x.new_zeros(batch, channels, width - 1))
    tail = x[..., max(0, seqlen - (width - 1)):]
    final_state = torch.cat([history, tail], dim=-1)[..., history.shape[-1] + tail.shape[-1] - (width - 1):]
    return out, final_state
