"""Argument checking and kernel-ready views of a Mamba-1 selective-scan call (shared by forward and backward)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass
class ScanInputs:
    """u, delta, z contiguous along time; A, D, delta_bias, initial_state fp32; B/C (own dtype, read as fp32 by
    the kernels) contiguous (batch, groups, d_state, L); reset int8 (batch, L) or None; `channels_per_group` =
    d_inner / groups."""
    u: torch.Tensor
    delta: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    D: torch.Tensor | None
    z: torch.Tensor | None
    delta_bias: torch.Tensor | None
    reset: torch.Tensor | None
    initial_state: torch.Tensor | None
    channels_per_group: int

    @property
    def d_state(self) -> int:
        return self.A.shape[1]

    @property
    def z_or_u(self) -> torch.Tensor:
        """z, or u as a placeholder pointer (and strides) for kernels compiled without z."""
        return self.u if self.z is None else self.z

    def kernel_flags(self, delta_softplus: bool) -> dict[str, bool]:
        """The constexpr switches every scan kernel (Triton and Gluon, forward and backward) takes."""
        return dict(HAS_D=self.D is not None, HAS_Z=self.z is not None, HAS_DELTA_BIAS=self.delta_bias is not None,
                    DELTA_SOFTPLUS=delta_softplus, HAS_RESET=self.reset is not None,
                    EVEN_N=self.block_n == self.d_state)

    def forward_buffers(self, state_chunk: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Outputs of the forward kernels: y (dtype of u), fp32 final state and, when `state_chunk` is given, fp32
        states entering every `state_chunk` steps (batch, d_inner, n_chunks, d_state)."""
        u = self.u
        batch, d_inner, seqlen = u.shape
        y = torch.empty(u.shape, device=u.device, dtype=u.dtype)
        final_state = torch.empty(batch, d_inner, self.d_state, device=u.device, dtype=torch.float32)
        chunk_states = None
        if state_chunk is not None:
            chunk_states = torch.empty(batch, d_inner, -(-seqlen // state_chunk), self.d_state, device=u.device,
                                       dtype=torch.float32)
        return y, final_state, chunk_states

    def segment_buffers(self, n_segments: int) -> torch.Tensor:
        """fp32 (batch, d_inner, n_segments, d_state): one state per segment of a sequence-parallel scan."""
        batch, d_inner, _ = self.u.shape
        return torch.empty(batch, d_inner, n_segments, self.d_state, device=self.u.device, dtype=torch.float32)

    def gradient_buffers(self) -> dict[str, torch.Tensor | None]:
        """Gradient outputs of the backward kernels: du, ddelta, dz in the dtypes of u, delta, z; zeroed fp32 dA, dB,
        dC (B's layout), dD, ddelta_bias (the kernels add into them); fp32 dinitial_state."""
        u = self.u
        batch, d_inner, _ = u.shape
        fp32 = dict(device=u.device, dtype=torch.float32)
        return dict(
            du=torch.empty(u.shape, device=u.device, dtype=u.dtype),
            ddelta=torch.empty(u.shape, device=u.device, dtype=self.delta.dtype),
            dz=None if self.z is None else torch.empty(u.shape, device=u.device, dtype=self.z.dtype),
            dA=torch.zeros(d_inner, self.d_state, **fp32),
            dB=torch.zeros(self.B.shape, **fp32),
            dC=torch.zeros(self.C.shape, **fp32),
            dD=None if self.D is None else torch.zeros(d_inner, **fp32),
            ddelta_bias=None if self.delta_bias is None else torch.zeros(d_inner, **fp32),
            dinitial_state=torch.empty(batch, d_inner, self.d_state, **fp32),
        )

    @property
    def block_n(self) -> int:
        """d_state rounded up to a power of two (>= 2), the register tile's state axis."""
        return max(2, 1 << (self.d_state - 1).bit_length())


def reset_mask_from_seq_idx(seq_idx: torch.Tensor) -> torch.Tensor:
    """seq_idx: (batch, L) document index of every position -> int8 (batch, L), 1 where a new document starts
    (seq_idx[t] != seq_idx[t - 1]); position 0 never resets, so an initial state feeds the first document."""
    reset = torch.zeros(seq_idx.shape, dtype=torch.int8, device=seq_idx.device)
    reset[:, 1:] = (seq_idx[:, 1:] != seq_idx[:, :-1]).to(torch.int8)
    return reset


def _time_contiguous(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.stride(-1) == 1 else tensor.contiguous()


def _check_shape(name: str, tensor: torch.Tensor | None, shape: tuple[int, ...]) -> None:
    if tensor is not None and tuple(tensor.shape) != shape:
        raise ValueError(f"selective_scan_triton: {name} has shape {tuple(tensor.shape)}, expected {shape}")


def _fp32(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(torch.float32).contiguous()


def prepare_inputs(u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx) -> ScanInputs:
    """Validate shapes and dtypes (errors name the argument and the expected shape) and build the kernel views."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan_triton: u must be (batch, d_inner, seqlen), got shape {tuple(u.shape)}")
    if u.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"selective_scan_triton: u has dtype {u.dtype}, supported: {SUPPORTED_DTYPES}")
    if u.shape[-1] == 0:
        raise ValueError("selective_scan_triton: empty sequence (seqlen 0)")
    batch, d_inner, seqlen = u.shape
    d_state = A.shape[-1]
    for name, tensor, shape in (("delta", delta, (batch, d_inner, seqlen)), ("z", z, (batch, d_inner, seqlen)),
                                ("A", A, (d_inner, d_state)), ("D", D, (d_inner,)),
                                ("delta_bias", delta_bias, (d_inner,)),
                                ("initial_state", initial_state, (batch, d_inner, d_state)),
                                ("seq_idx", seq_idx, (batch, seqlen))):
        _check_shape(name, tensor, shape)
    matrices = []
    for name, matrix in (("B", B), ("C", C)):
        if matrix.dim() == 3:
            matrix = matrix.unsqueeze(1)
        if matrix.dim() != 4 or matrix.shape[0] != batch or matrix.shape[2:] != (d_state, seqlen):
            raise ValueError(f"selective_scan_triton: {name} has shape {tuple(matrix.shape)}, expected "
                             f"({batch}, {d_state}, {seqlen}) or ({batch}, groups, {d_state}, {seqlen})")
        matrices.append(matrix.contiguous())
    groups = matrices[0].shape[1]
    if matrices[1].shape[1] != groups or d_inner % groups != 0:
        raise ValueError(f"selective_scan_triton: B has {groups} groups and C {matrices[1].shape[1]}; both must "
                         f"be equal and divide d_inner={d_inner}")
    return ScanInputs(
        u=_time_contiguous(u), delta=_time_contiguous(delta), A=_fp32(A), B=matrices[0], C=matrices[1],
        D=_fp32(D), z=None if z is None else _time_contiguous(z), delta_bias=_fp32(delta_bias),
        reset=None if seq_idx is None else reset_mask_from_seq_idx(seq_idx), initial_state=_fp32(initial_state),
        channels_per_group=d_inner // groups,
    )
