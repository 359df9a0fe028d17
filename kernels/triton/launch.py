"""Tilings and launches of the selective-scan kernels.

Each program of either kernel runs the whole sequence for its channels, so the number of programs
(batch * d_inner / block_d) decides how much latency the GPU can hide; in tiling sweeps on an H100
(scripts/bench_scan.py --tilings) one-channel programs were fastest for wide problems (b8 d1536: forward 0.54 ms vs
0.69-0.81 ms for 4- to 16-channel tiles; forward + backward 3.1 ms vs 3.6-4.5 ms) and 4-channel, 64-step tiles for
narrow ones (b1 d1024 L65536 forward: 2.7 ms vs 3.3-5.1 ms).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import launch_gluon
from .launch_gluon import GluonScanConfig
from .scan_inputs import ScanInputs
from .selective_scan_bwd import selective_scan_bwd_kernel
from .selective_scan_fwd import selective_scan_fwd_kernel


@dataclass(frozen=True)
class ScanConfig:
    """Programs of `block_d` channels x all states x `chunk` time steps (the register tile), `num_warps` warps.
    block_d must divide the channels of a B/C group."""
    block_d: int
    chunk: int
    num_warps: int


WIDE_CONFIG = ScanConfig(1, 32, 1)
NARROW_CONFIG = ScanConfig(4, 64, 2)
WIDE_CHANNELS = 4096  # batch * d_inner from which one-channel / Gluon programs win


def default_config(inputs: ScanInputs, backward: bool, training: bool = True) -> ScanConfig | GluonScanConfig:
    """Wide problems (batch * d_inner >= 4096) on CUDA: the Gluon kernels (forward + backward at parity with
    mamba-ssm at b8 d1536 L2048 and 0.77x its time at b4 d1536 L32768, H200; BENCHMARKS.md), with 16-step lanes for
    a forward that stores no states (`training=False`). Narrow problems, where one lane per (channel, 4 states)
    leaves the GPU idle, and the interpreter: one-channel Triton programs for the backward and for wide forwards,
    4-channel 64-step tiles for narrow forwards."""
    batch, d_inner, _ = inputs.u.shape
    if batch * d_inner >= WIDE_CHANNELS:
        gluon = launch_gluon.default_config(inputs, steps=8 if training or backward else 16)
        if not launch_gluon.unsupported(inputs, gluon):
            return gluon
    if backward or batch * d_inner >= WIDE_CHANNELS or inputs.channels_per_group % NARROW_CONFIG.block_d:
        return WIDE_CONFIG
    return NARROW_CONFIG


def forward(inputs: ScanInputs, delta_softplus: bool, config: ScanConfig | GluonScanConfig,
            state_chunk: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """y (dtype of u), final state (fp32) and, when `state_chunk` is given, the states entering every
    `state_chunk`-step chunk (batch, d_inner, n_chunks, d_state) fp32, for the backward kernel (the Triton forward
    then runs on the backward's chunks)."""
    if isinstance(config, GluonScanConfig):
        return launch_gluon.forward(inputs, delta_softplus, config, state_chunk)
    u, z, reset = inputs.u, inputs.z_or_u, inputs.reset
    batch, d_inner, seqlen = u.shape
    y, final_state, chunk_states = inputs.forward_buffers(state_chunk)
    chunk = state_chunk or config.chunk
    selective_scan_fwd_kernel[(d_inner // config.block_d, batch)](
        u, inputs.delta, inputs.A, inputs.B, inputs.C, inputs.D, z, inputs.delta_bias, reset,
        inputs.initial_state, y, final_state, chunk_states,
        seqlen, d_inner, inputs.d_state, inputs.channels_per_group, -(-seqlen // chunk),
        u.stride(0), u.stride(1), inputs.delta.stride(0), inputs.delta.stride(1), z.stride(0), z.stride(1),
        y.stride(0), y.stride(1), inputs.B.stride(0), inputs.B.stride(1), inputs.B.stride(2),
        0 if reset is None else reset.stride(0),
        HAS_INITIAL_STATE=inputs.initial_state is not None, STORE_CHUNK_STATES=state_chunk is not None,
        STORE_FINAL_STATE=True, EVEN_L=seqlen % chunk == 0, BLOCK_D=config.block_d, BLOCK_N=inputs.block_n,
        CHUNK=chunk, num_warps=config.num_warps, **inputs.kernel_flags(delta_softplus))
    return y, final_state, chunk_states


def backward(inputs: ScanInputs, delta_softplus: bool, config: ScanConfig | GluonScanConfig, chunk_states: torch.Tensor,
             dy: torch.Tensor, dfinal_state: torch.Tensor | None) -> dict[str, torch.Tensor | None]:
    """Gradients: du, ddelta, dz in the dtypes of u, delta, z; fp32 dA, dB, dC (kernel layout
    (batch, groups, d_state, L)), dD, ddelta_bias, dinitial_state. dy is made time-contiguous and dfinal_state fp32
    here, for either kernel."""
    dy = dy if dy.stride(-1) == 1 else dy.contiguous()
    dfinal_state = None if dfinal_state is None else dfinal_state.to(torch.float32).contiguous()
    if isinstance(config, GluonScanConfig):
        return launch_gluon.backward(inputs, delta_softplus, config, chunk_states, dy, dfinal_state)
    u, z, reset = inputs.u, inputs.z_or_u, inputs.reset
    batch, d_inner, seqlen = u.shape
    grads = inputs.gradient_buffers()
    C_reversed = inputs.C.flip(-1).contiguous()  # the adjoint scan reads C back to front
    selective_scan_bwd_kernel[(d_inner // config.block_d, batch)](
        u, inputs.delta, inputs.A, inputs.B, inputs.C, C_reversed, inputs.D, z, inputs.delta_bias, reset, chunk_states,
        dy, dfinal_state,
        grads["du"], grads["ddelta"], grads["dz"], grads["dA"], grads["dB"], grads["dC"], grads["dD"],
        grads["ddelta_bias"], grads["dinitial_state"],
        seqlen, d_inner, inputs.d_state, inputs.channels_per_group, chunk_states.shape[2],
        u.stride(0), u.stride(1), inputs.delta.stride(0), inputs.delta.stride(1),
        z.stride(0), z.stride(1), dy.stride(0), dy.stride(1), grads["du"].stride(0), grads["du"].stride(1),
        inputs.B.stride(0), inputs.B.stride(1), inputs.B.stride(2), 0 if reset is None else reset.stride(0),
        HAS_DFINAL_STATE=dfinal_state is not None, EVEN_L=seqlen % config.chunk == 0, BLOCK_D=config.block_d,
        BLOCK_N=inputs.block_n, CHUNK=config.chunk, num_warps=config.num_warps, **inputs.kernel_flags(delta_softplus),
    )
    return grads
