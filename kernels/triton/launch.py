"""Tilings and launches of the selective-scan kernels.

Each program of either kernel runs the whole sequence for its channels, so the number of programs
(batch * d_inner / block_d) decides how much latency the GPU can hide; in tiling sweeps on an H100
(scripts/bench_scan.py --tilings) one-channel programs were fastest for wide problems (b8 d1536: forward 0.54 ms vs
0.69-0.81 ms for 4- to 16-channel tiles; forward + backward 3.1 ms vs 3.6-4.5 ms). Narrow forwards with long
sequences are also cut along time into segments (`ScanConfig.segments`, chosen by `segment_count`), each scanned
by its own programs: a summary pass per segment, a carry across segments (`selective_scan_segments`), then the full
pass. Sweeps at b1 d1024 (H100 and H200, BENCHMARKS.md): 2-channel 32-step one-warp tiles with segments of about
4096 steps were the fastest forwards (L65536: 1.51 ms vs 2.29 ms unsegmented; L524288: 10.6 ms vs 16.5 ms);
shorter segments lost (L4096 in 16 segments: 0.38 ms vs 0.26 ms), and segmenting the backward lost at every length
(L65536 backward: 8.3 ms unsegmented vs 9.3-9.6 ms in 4-16 segments), so the default backward runs unsegmented.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from . import launch_gluon
from .launch_gluon import GluonScanConfig
from .scan_inputs import ScanInputs
from .selective_scan_bwd import selective_scan_bwd_kernel, selective_scan_bwd_summary_kernel
from .selective_scan_fwd import selective_scan_fwd_kernel
from .selective_scan_segments import combine_segments_kernel


@dataclass(frozen=True)
class ScanConfig:
    """Programs of `block_d` channels x all states x `chunk` time steps (the register tile), `num_warps` warps;
    the sequence is cut into up to `segments` runs of whole chunks scanned in parallel (sequence parallelism: a
    summary pass, a carry across segments, then the full pass; `segments=1` scans it in one go).
    block_d must divide the channels of a B/C group."""
    block_d: int
    chunk: int
    num_warps: int
    segments: int = 1

    def __post_init__(self) -> None:
        if min(self.block_d, self.chunk, self.num_warps, self.segments) < 1:
            raise ValueError(f"ScanConfig: every field must be >= 1, got {self}")


WIDE_CONFIG = ScanConfig(1, 32, 1)
NARROW_CONFIG = ScanConfig(2, 32, 1)
WIDE_CHANNELS = 4096  # batch * d_inner from which one-channel / Gluon programs win
TARGET_PROGRAMS = 65536  # narrow forwards are cut into segments until about this many programs run
MIN_SEGMENT_CHUNKS = 128  # ... but never into segments of fewer chunks (4096 steps of 32)


def segment_count(programs: int, seqlen: int, chunk: int) -> int:
    """Segments for sequence parallelism: enough to bring `programs` (channel tiles x batch) to about
    TARGET_PROGRAMS, none shorter than MIN_SEGMENT_CHUNKS chunks."""
    return max(1, min(TARGET_PROGRAMS // programs, seqlen // (chunk * MIN_SEGMENT_CHUNKS)))


def default_config(inputs: ScanInputs, backward: bool, training: bool = True) -> ScanConfig | GluonScanConfig:
    """Training on wide problems (batch * d_inner >= 4096) on CUDA: the Gluon kernels (forward + backward at parity
    with mamba-ssm at b8 d1536 L2048 and 0.77x its time at b4 d1536 L32768, H200; BENCHMARKS.md). A forward that
    stores no states (`training=False`): 2-channel 32-step Triton tiles at every width (b64 d4096 L2048, H100:
    6.1 ms vs 7.6 for the Gluon forward and 9.2 for mamba-ssm's). Narrow training forwards too; the backward and
    wide training forwards that Gluon cannot take: one-channel programs, the backward unsegmented. Forwards get as
    many segments along time as `segment_count` gives, and 2-channel tiles need an even number of channels per
    B/C group (one-channel otherwise)."""
    batch, d_inner, _ = inputs.u.shape
    wide = batch * d_inner >= WIDE_CHANNELS
    if wide and (training or backward):
        gluon = launch_gluon.default_config(inputs)
        if not launch_gluon.unsupported(inputs, gluon):
            return gluon
    if backward:
        return WIDE_CONFIG
    if (wide and training) or inputs.channels_per_group % NARROW_CONFIG.block_d:
        config = WIDE_CONFIG
    else:
        config = NARROW_CONFIG
    # a training forward runs on the backward's chunks
    chunk = WIDE_CONFIG.chunk if training else config.chunk
    return replace(config, segments=segment_count(batch * d_inner // config.block_d, inputs.u.shape[-1], chunk))


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
    n_chunks = -(-seqlen // chunk)
    chunks_per_segment, n_segments = _segments(n_chunks, config.segments)

    def scan(initial_state, final_state, decays, summary: bool, store_final_state: bool) -> None:
        selective_scan_fwd_kernel[(d_inner // config.block_d, batch, n_segments)](
            u, inputs.delta, inputs.A, inputs.B, inputs.C, inputs.D, z, inputs.delta_bias, reset,
            initial_state, y, final_state, chunk_states, decays,
            seqlen, d_inner, inputs.d_state, inputs.channels_per_group, n_chunks, chunks_per_segment, n_segments,
            u.stride(0), u.stride(1), inputs.delta.stride(0), inputs.delta.stride(1), z.stride(0), z.stride(1),
            y.stride(0), y.stride(1), inputs.B.stride(0), inputs.B.stride(1), inputs.B.stride(2),
            0 if reset is None else reset.stride(0),
            HAS_INITIAL_STATE=initial_state is not None, STORE_CHUNK_STATES=state_chunk is not None and not summary,
            STORE_FINAL_STATE=store_final_state, SUMMARY=summary, EVEN_L=seqlen % chunk == 0,
            BLOCK_D=config.block_d, BLOCK_N=inputs.block_n, CHUNK=chunk, num_warps=config.num_warps,
            **inputs.kernel_flags(delta_softplus))

    if n_segments == 1:
        scan(inputs.initial_state, final_state, None, summary=False, store_final_state=True)
    else:
        segment_states, decays = inputs.segment_buffers(n_segments), inputs.segment_buffers(n_segments)
        scan(None, segment_states, decays, summary=True, store_final_state=True)
        combine_segments(segment_states, decays, inputs.initial_state, final_state, reverse=False)
        scan(segment_states, None, None, summary=False, store_final_state=False)
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
    n_chunks = chunk_states.shape[2]
    chunks_per_segment, n_segments = _segments(n_chunks, config.segments)
    grid = (d_inner // config.block_d, batch, n_segments)
    geometry = dict(EVEN_L=seqlen % config.chunk == 0, BLOCK_N=inputs.block_n, BLOCK_D=config.block_d,
                    CHUNK=config.chunk, num_warps=config.num_warps, **inputs.kernel_flags(delta_softplus))
    adjoints = dfinal_state
    if n_segments > 1:
        adjoints, decays = inputs.segment_buffers(n_segments), inputs.segment_buffers(n_segments)
        selective_scan_bwd_summary_kernel[grid](
            inputs.delta, inputs.A, C_reversed, z, inputs.delta_bias, reset, dy, adjoints, decays,
            seqlen, d_inner, inputs.d_state, inputs.channels_per_group, n_chunks, chunks_per_segment, n_segments,
            inputs.delta.stride(0), inputs.delta.stride(1), z.stride(0), z.stride(1), dy.stride(0), dy.stride(1),
            inputs.B.stride(0), inputs.B.stride(1), inputs.B.stride(2), 0 if reset is None else reset.stride(0),
            **geometry)
        combine_segments(adjoints, decays, dfinal_state, grads["dinitial_state"], reverse=True)
    selective_scan_bwd_kernel[grid](
        u, inputs.delta, inputs.A, inputs.B, inputs.C, C_reversed, inputs.D, z, inputs.delta_bias, reset, chunk_states,
        dy, adjoints,
        grads["du"], grads["ddelta"], grads["dz"], grads["dA"], grads["dB"], grads["dC"], grads["dD"],
        grads["ddelta_bias"], grads["dinitial_state"],
        seqlen, d_inner, inputs.d_state, inputs.channels_per_group, n_chunks, chunks_per_segment, n_segments,
        u.stride(0), u.stride(1), inputs.delta.stride(0), inputs.delta.stride(1),
        z.stride(0), z.stride(1), dy.stride(0), dy.stride(1), grads["du"].stride(0), grads["du"].stride(1),
        inputs.B.stride(0), inputs.B.stride(1), inputs.B.stride(2), 0 if reset is None else reset.stride(0),
        HAS_DFINAL_STATE=adjoints is not None, STORE_DINITIAL_STATE=n_segments == 1, **geometry,
    )
    return grads


def _segments(n_chunks: int, segments: int) -> tuple[int, int]:
    """(chunks per segment, number of segments) cutting `n_chunks` chunks into at most `segments` equal runs."""
    chunks_per_segment = -(-n_chunks // segments)
    return chunks_per_segment, -(-n_chunks // chunks_per_segment)


COMBINE_BLOCK = 256


def combine_segments(local: torch.Tensor, decays: torch.Tensor, entering: torch.Tensor | None,
                     leaving: torch.Tensor, reverse: bool) -> None:
    """Carry across segments (`combine_segments_kernel`): `local` (batch, d_inner, n_segments, d_state) becomes the
    value entering every segment, `leaving` (batch, d_inner, d_state) receives the value leaving the last one."""
    batch, d_inner, n_segments, d_state = local.shape
    n_pairs = batch * d_inner * d_state
    combine_segments_kernel[(-(-n_pairs // COMBINE_BLOCK),)](
        local, decays, entering, leaving, n_pairs, d_state, n_segments,
        HAS_ENTERING=entering is not None, REVERSE=reverse, BLOCK=COMBINE_BLOCK)
