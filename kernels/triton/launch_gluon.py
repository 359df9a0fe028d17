"""Configurations and launches of the Gluon selective-scan kernels (CUDA only; `launch` dispatches to them).

A lane owns `steps` consecutive time steps and `states_per_lane` states of one channel (`gluon_math.scan_layout`),
so there is one lane per (channel, state group) and the number of warps is fixed by the problem; `num_warps` only
groups them into programs (a program's channels share one B/C group).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import torch

from .scan_inputs import ScanInputs


@dataclass(frozen=True)
class GluonScanConfig:
    """Gluon kernels (CUDA only): a lane owns `steps` consecutive steps and `states_per_lane` states of one channel
    (fewer where d_state is smaller); programs of `num_warps` warps."""
    steps: int = 8
    num_warps: int = 4
    states_per_lane: int = 4

    @property
    def chunk(self) -> int:
        """Steps between the states the forward pass stores for this (backward) configuration."""
        return self.steps

    def lanes_per_channel(self, block_n: int) -> int:
        return min(32, max(1, block_n // self.states_per_lane))

    def block_d(self, block_n: int) -> int:
        """Channels per program."""
        return 32 // self.lanes_per_channel(block_n) * self.num_warps


PROGRAMS_PER_GPU = 256  # fewer programs of 2 warps than this: use 1-warp programs


@lru_cache(maxsize=None)
def _kernels() -> dict | None:
    """The Gluon kernels and layouts ("forward", "backward", "scan_layout", "channel_sum_layout"), or None where
    Gluon cannot be imported (imported here, not at module level: Gluon is an experimental Triton frontend)."""
    try:
        from .gluon_math import channel_sum_layout, scan_layout
        from .selective_scan_bwd_gluon import selective_scan_bwd_gluon_kernel
        from .selective_scan_fwd_gluon import selective_scan_fwd_gluon_kernel
    except Exception:  # noqa: BLE001 - an older Triton without the experimental Gluon frontend
        return None
    return dict(forward=selective_scan_fwd_gluon_kernel, backward=selective_scan_bwd_gluon_kernel,
                scan_layout=scan_layout, channel_sum_layout=channel_sum_layout)


def unsupported(inputs: ScanInputs, config: GluonScanConfig) -> str:
    """Why the Gluon kernels cannot take this call ("" if they can)."""
    if not inputs.u.is_cuda or os.environ.get("TRITON_INTERPRET") == "1":
        return "Gluon kernels need CUDA (the Triton interpreter does not run them)"
    if _kernels() is None:
        return "this Triton has no Gluon frontend"
    groups = inputs.B.shape[1]
    block_d = config.block_d(inputs.block_n)
    if groups > 1 and inputs.channels_per_group % block_d:
        return f"B/C groups of {inputs.channels_per_group} channels do not split into programs of {block_d}"
    return ""


def default_config(inputs: ScanInputs, steps: int = 8) -> GluonScanConfig:
    """`steps`-step lanes of 4 states in 2-warp programs (1-warp programs where that leaves too few programs to fill
    the GPU); on an H200 the warps per program changed little, 2 or 8 states per lane were slower (bench_scan.py)."""
    batch, d_inner, _ = inputs.u.shape
    config = GluonScanConfig(steps, 2)
    if batch * -(-d_inner // config.block_d(inputs.block_n)) >= PROGRAMS_PER_GPU:
        return config
    return GluonScanConfig(steps, 1)


def forward(inputs: ScanInputs, delta_softplus: bool, config: GluonScanConfig, state_chunk: int | None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`launch.forward` on the Gluon kernel (chunk states every `state_chunk` steps, a multiple of `steps`)."""
    problem = unsupported(inputs, config)
    if problem:
        raise ValueError(f"selective_scan_triton: {config} cannot run: {problem}")
    if state_chunk is not None and state_chunk % config.steps:
        raise ValueError(f"selective_scan_triton: backward chunk {state_chunk} is not a multiple of the Gluon "
                         f"forward's {config.steps} steps")
    u = inputs.u
    batch, d_inner, seqlen = u.shape
    block_n = inputs.block_n
    lanes = config.lanes_per_channel(block_n)
    block_d = config.block_d(block_n)
    y = torch.empty(u.shape, device=u.device, dtype=u.dtype)
    final_state = torch.empty(batch, d_inner, inputs.d_state, device=u.device, dtype=torch.float32)
    n_state_chunks = 1 if state_chunk is None else -(-seqlen // state_chunk)
    chunk_states = None if state_chunk is None else torch.empty(batch, d_inner, n_state_chunks, inputs.d_state,
                                                                device=u.device, dtype=torch.float32)
    z = inputs.z if inputs.z is not None else u
    reset = inputs.reset
    kernels = _kernels()
    kernels["forward"][(-(-d_inner // block_d), batch)](
        u, inputs.delta, inputs.A, inputs.B, inputs.C, inputs.D, z, inputs.delta_bias, reset,
        inputs.initial_state, y, final_state, chunk_states,
        seqlen, d_inner, inputs.d_state, inputs.channels_per_group, -(-seqlen // config.steps), n_state_chunks,
        u.stride(0), u.stride(1), inputs.delta.stride(0), inputs.delta.stride(1), z.stride(0), z.stride(1),
        y.stride(0), y.stride(1), inputs.B.stride(0), inputs.B.stride(1), inputs.B.stride(2),
        0 if reset is None else reset.stride(0),
        HAS_D=inputs.D is not None, HAS_Z=inputs.z is not None, HAS_DELTA_BIAS=inputs.delta_bias is not None,
        DELTA_SOFTPLUS=delta_softplus, HAS_RESET=reset is not None,
        HAS_INITIAL_STATE=inputs.initial_state is not None, STORE_CHUNK_STATES=state_chunk is not None,
        STATE_EVERY=1 if state_chunk is None else state_chunk // config.steps,
        EVEN_L=seqlen % config.steps == 0, EVEN_N=block_n == inputs.d_state, EVEN_D=d_inner % block_d == 0,
        LAYOUT=kernels["scan_layout"](block_n // lanes, lanes, config.steps, config.num_warps), BLOCK_D=block_d,
        BLOCK_N=block_n, STEPS=config.steps, num_warps=config.num_warps,
    )
    return y, final_state, chunk_states


def backward(inputs: ScanInputs, delta_softplus: bool, config: GluonScanConfig, chunk_states: torch.Tensor,
             dy: torch.Tensor, dfinal_state: torch.Tensor | None) -> dict[str, torch.Tensor | None]:
    """`launch.backward` on the Gluon kernel (chunk states every `config.steps` steps)."""
    problem = unsupported(inputs, config)
    if problem:
        raise ValueError(f"selective_scan_triton: {config} cannot run: {problem}")
    u = inputs.u
    batch, d_inner, seqlen = u.shape
    n_steps = -(-seqlen // config.steps)
    if chunk_states.shape[2] != n_steps:
        raise ValueError(f"selective_scan_triton: {chunk_states.shape[2]} stored states for {n_steps} blocks of "
                         f"{config.steps} steps")
    dy = dy if dy.stride(-1) == 1 else dy.contiguous()
    grads = inputs.gradient_buffers()
    z = inputs.z if inputs.z is not None else u
    reset = inputs.reset
    dfinal_state = None if dfinal_state is None else dfinal_state.to(torch.float32).contiguous()
    block_n = inputs.block_n
    lanes = config.lanes_per_channel(block_n)
    block_d = config.block_d(block_n)
    kernels = _kernels()
    kernels["backward"][(-(-d_inner // block_d), batch)](
        u, inputs.delta, inputs.A, inputs.B, inputs.C, inputs.D, z, inputs.delta_bias, reset, chunk_states,
        dy, dfinal_state,
        grads["du"], grads["ddelta"], grads["dz"], grads["dA"], grads["dB"], grads["dC"], grads["dD"],
        grads["ddelta_bias"], grads["dinitial_state"],
        seqlen, d_inner, inputs.d_state, inputs.channels_per_group, n_steps,
        u.stride(0), u.stride(1), inputs.delta.stride(0), inputs.delta.stride(1),
        z.stride(0), z.stride(1), dy.stride(0), dy.stride(1), grads["du"].stride(0), grads["du"].stride(1),
        inputs.B.stride(0), inputs.B.stride(1), inputs.B.stride(2), 0 if reset is None else reset.stride(0),
        HAS_D=inputs.D is not None, HAS_Z=inputs.z is not None, HAS_DELTA_BIAS=inputs.delta_bias is not None,
        DELTA_SOFTPLUS=delta_softplus, HAS_RESET=reset is not None, HAS_DFINAL_STATE=dfinal_state is not None,
        EVEN_L=seqlen % config.steps == 0, EVEN_N=block_n == inputs.d_state, EVEN_D=d_inner % block_d == 0,
        LAYOUT=kernels["scan_layout"](block_n // lanes, lanes, config.steps, config.num_warps),
        SUM_LAYOUT=kernels["channel_sum_layout"](block_d, block_n, config.steps, config.num_warps),
        BLOCK_D=block_d, BLOCK_N=block_n, STEPS=config.steps, num_warps=config.num_warps,
    )
    return grads
