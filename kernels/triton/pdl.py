"""Programmatic dependent launch (PDL, Hopper and newer) for the kernels of a decoding step.

A decoding step at batch 1 is a chain of short weight-streaming kernels; between two of them the GPU idles while
the next grid launches and ramps up. Launched with PDL, a kernel's programs start while the previous kernel still
runs: each first asks L2 to prefetch its slice of the weights (constant, so safe to read early), then waits at
`griddepcontrol.wait` for the previous grid to finish and flush its writes, and only then reads activations or
writes anything. That wait covers every earlier kernel too, as each of them waited for its own predecessor. After
the wait a program lets the next kernel launch, so at most one grid waits ahead of the running one.

Opt-in until measured on GPU: `MAMBASEQ_PDL=1` turns it on (CPUs, the interpreter and GPUs before sm_90 never use
it); `ENABLED` is the switch the benchmarks and tests flip.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

ENABLED = os.environ.get("MAMBASEQ_PDL", "0") == "1"
L2_LINE_BYTES = 128


def use_pdl(tensor: torch.Tensor) -> bool:
    """Whether kernels working on `tensor` launch with PDL: a CUDA device of compute capability 9.0 or newer, not
    the interpreter, and `ENABLED`."""
    return (ENABLED and tensor.is_cuda and os.environ.get("TRITON_INTERPRET") != "1"
            and torch.cuda.get_device_capability(tensor.device)[0] >= 9)


def prefetch_lines(tensor: torch.Tensor, row_length: int) -> tuple[int, int]:
    """`(LINE, LINES)` constants of `prefetch_rows_l2` for rows of `row_length` elements of `tensor`: elements per
    L2 line, and the lines of a row rounded up to a power of 2."""
    line = max(1, L2_LINE_BYTES // tensor.element_size())
    return line, triton.next_power_of_2(triton.cdiv(row_length, line))


@triton.jit
def prefetch_rows_l2(base_ptr, rows, row_mask, row_stride, row_length, LINE: tl.constexpr, LINES: tl.constexpr):
    """Ask L2 to fetch `base_ptr[row * row_stride + [0, row_length)]` for each `row` of `rows` where `row_mask`
    (unit stride along a row, one request per line); nothing is waited for. Masked-off requests go to `base_ptr`."""
    offsets = tl.arange(0, LINES) * LINE
    keep = row_mask[:, None] & (offsets < row_length)[None, :]
    pointers = base_ptr + tl.where(keep, rows.to(tl.int64)[:, None] * row_stride + offsets[None, :], 0)
    tl.inline_asm_elementwise("prefetch.global.L2 [$1]; // dummy $0", "=r,l", [pointers], dtype=tl.int32,
                              is_pure=False, pack=1)


@triton.jit
def wait_for_previous_kernel():
    """Block until the previous grid has finished and its writes are visible, then let the next grid launch."""
    gdc_wait()
    gdc_launch_dependents()
