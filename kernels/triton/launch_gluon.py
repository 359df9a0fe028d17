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


def default_config(inputs: ScanInputs) -> GluonScanConfig:
    """8-step lanes of 4 states in 2-warp programs (1-warp programs where that leaves too few programs to fill the
    GPU); on an H200 the warps per program changed little, 2 or 8 states per lane were slower (bench_scan.py)."""
    batch, d_inner, _ = inputs.u.shape
    config = GluonScanConfig(8, 2)
    if batch * -(-d_inner // config.block_d(inputs.block_n)) >= PROGRAMS_PER_GPU:
        return config
    return GluonScanConfig(8, 1)


def _geometry(inputs: ScanInputs, config: GluonScanConfig, delta_softplus: bool
              ) -> tuple[tuple[int, int], dict]:
    """Grid and the launch constants both Gluon kernels take (checks that they can run)."""
    problem = unsupported(inputs, config)
    if problem:
        raise ValueError(f"selective_scan_triton: {config} cannot run: {problem}")
    batch, d_inner, seqlen = inputs.u.shape
    block_n = inputs.block_n
    lanes = config.lanes_per_channel(block_n)
    block_d = config.block_d(block_n)
    constants = dict(EVEN_L=seqlen % config.steps == 0, EVEN_D=d_inner % block_d == 0,
                     LAYOUT=_kernels()["scan_layout"](block_n // lanes, lanes, config.steps, config.num_warps),
                     BLOCK_D=block_d, BLOCK_N=block_n, STEPS=config.steps, num_warps=config.num_warps,
                     **inputs.kernel_flags(delta_softplus))
    return (-(-d_inner // block_d), batch), constants


def forward(inputs: ScanInputs, delta_softplus: bool, config: GluonScanConfig, state_chunk: int | None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`launch.forward` on the Gluon kernel (chunk states every `state_chunk` steps, a multiple of `steps`)."""
    grid, constants = _geometry(inputs, config, delta_softplus)
    if state_chunk is not None and state_chunk % config.steps:
        raise ValueError(f"selective_scan_triton: backward chunk {state_chunk} is not a multiple of the Gluon "
                         f"forward's {config.steps} steps")
    u, z, reset = inputs.u, inputs.z_or_u, inputs.reset
    _, d_inner, seqlen = u.shape
    y, final_state, chunk_states = inputs.forward_buffers(state_chunk)
    _kernels()["forward"][grid](
        u, inputs.delta, inputs.A, inputs.B, inputs.C, inputs.D, z, inputs.delta_bias, reset,
        inputs.initial_state, y, final_state, chunk_states,
        seqlen, d_inner, inputs.d_state, inputs.channels_per_group, -(-seqlen // config.steps),
        1 if chunk_states is None else chunk_states.shape[2],
        u.stride(0), u.stride(1), inputs.delta.stride(0), inputs.delta.stride(1), z.stride(0), z.stride(1),
        y.stride(0), y.stride(1), inputs.B.stride(0), inputs.B.stride(1), inputs.B.stride(2),
        0 if reset is None else reset.stride(0),
        HAS_INITIAL_STATE=inputs.initial_state is not None, STORE_CHUNK_STATES=state_chunk is not None,
        STATE_EVERY=1 if state_chunk is None else state_chunk // config.steps, **constants,
    )
    return y, final_state, chunk_states


def backward(inputs: ScanInputs, delta_softplus: bool, config: GluonScanConfig, chunk_states: torch.Tensor,
             dy: torch.Tensor, dfinal_state: torch.Tensor | None) -> dict[str, torch.Tensor | None]:
    """`launch.backward` on the Gluon kernel (chunk states every `config.steps` steps; dy time-contiguous,
    dfinal_state fp32 or None)."""
    grid, constants = _geometry(inputs, config, delta_softplus)
    u, z, reset = inputs.u, inputs.z_or_u, inputs.reset
    _, d_inner, seqlen = u.shape
    n_steps = -(-seqlen // config.steps)
    if chunk_states.shape[2] != n_steps:
        raise ValueError(f"selective_scan_triton: {chunk_states.shape[2]} stored states for {n_steps} blocks of "
                         f"{config.steps} steps")
    grads = inputs.gradient_buffers()
    sum_layout = _kernels()["channel_sum_layout"](constants["BLOCK_D"], constants["BLOCK_N"], config.steps,
                                                  config.num_warps)
    _kernels()["backward"][grid](
        u, inputs.delta, inputs.A, inputs.B, inputs.C, inputs.D, z, inputs.delta_bias, reset, chunk_states,
        dy, dfinal_state,
        grads["du"], grads["ddelta"], grads["dz"], grads["dA"], grads["dB"], grads["dC"], grads["dD"],
        grads["ddelta_bias"], grads["dinitial_state"],
        seqlen, d_inner, inputs.d_state, inputs.channels_per_group, n_steps,
        u.stride(0), u.stride(1), inputs.delta.stride(0), inputs.delta.stride(1),
        z.stride(0), z.stride(1), dy.stride(0), dy.stride(1), grads["du"].stride(0), grads["du"].stride(1),
        inputs.B.stride(0), inputs.B.stride(1), inputs.B.stride(2), 0 if reset is None else reset.stride(0),
        HAS_DFINAL_STATE=dfinal_state is not None, SUM_LAYOUT=sum_layout, **constants,
    )
    return grads
