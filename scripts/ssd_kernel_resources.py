"""Registers, spills, shared memory and SASS size of the Mamba-2 SSD Triton kernels as the library launches them,
without a GPU.

The forward and backward launchers run on meta tensors with every kernel replaced by a recorder; each recorded
launch is then compiled for sm_90 as the real launch would be, and its cubin is inspected
(`mambaseq.kernels.triton.compiled_resources`). Registers decide how many programs share an SM; spills and exponentials (MUFU.EX2) show what a tiling
change costs before any GPU time is spent on it.

    python scripts/ssd_kernel_resources.py                                  # 8x2048x48x64x128, library defaults
    python scripts/ssd_kernel_resources.py --shape 1x65536x32x64x128 --set SCAN_TILING=64,64,32,64,4,4 \\
        --set SEPARABLE_DECAYS=1
"""
from __future__ import annotations

import argparse

import torch

from mambaseq.kernels.triton import ssd_bwd_launch, ssd_launch
from mambaseq.kernels.triton.compiled_resources import compile_launch, cubin_report, recorded_launches
from mambaseq.kernels.triton.ssd_launch import Tiling
from mambaseq.report import markdown_table

LAUNCH_MODULES = (ssd_launch, ssd_bwd_launch)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="8x2048x48x64x128", help="batch x L x heads x headdim x d_state")
    parser.add_argument("--groups", type=int, default=1)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                        help="override a launch knob: a *_TILING as block_m,block_n,block_k,block_state,warps,stages; "
                             "any other knob as an integer")
    return parser.parse_args()


def apply_knob(assignment: str) -> None:
    """Set one launch-module attribute from "NAME=VALUE" (a Tiling as six comma-separated integers)."""
    name, _, value = assignment.partition("=")
    module = next((m for m in LAUNCH_MODULES if hasattr(m, name)), None)
    if module is None:
        raise SystemExit(f"--set {assignment}: no launch knob named {name!r} in ssd_launch or ssd_bwd_launch")
    numbers = [int(v) for v in value.split(",")]
    current = getattr(module, name)
    if isinstance(current, Tiling):
        if len(numbers) != len(Tiling._fields):
            raise SystemExit(f"--set {assignment}: a tiling takes {len(Tiling._fields)} integers {Tiling._fields}")
        setattr(module, name, Tiling(*numbers))
    else:
        setattr(module, name, type(current)(numbers[0]))


def record_launches(shape: tuple[int, ...], groups: int, chunk_size: int, dtype: torch.dtype
                    ) -> list[tuple[object, tuple, dict]]:
    """(kernel, args, kwargs) of every launch of one SSD forward and backward on meta tensors (with D, no z)."""
    batch, seqlen, nheads, headdim, d_state = shape
    n_chunks = -(-seqlen // chunk_size)
    meta = dict(device="meta")
    x = torch.empty(batch, seqlen, nheads, headdim, dtype=dtype, **meta)
    steps = torch.empty(batch, nheads, n_chunks, chunk_size, **meta)
    B = torch.empty(batch, seqlen, groups, d_state, dtype=dtype, **meta)
    D = torch.empty(nheads, headdim, **meta)
    with recorded_launches(*LAUNCH_MODULES) as recorders:
        ssd_launch.ssd_forward(x, steps, steps, B, B, D, None, None)
        ssd_bwd_launch.ssd_backward(x, steps, steps, B, B, D, x, None, None)
    return [(recorder.kernel, args, kwargs) for recorder in recorders.values() for args, kwargs in recorder.calls]


def resource_rows(shape: tuple[int, ...], groups: int, chunk_size: int, dtype: torch.dtype) -> list[list[str]]:
    rows, seen = [], set()
    for kernel, args, kwargs in record_launches(shape, groups, chunk_size, dtype):
        compiled = compile_launch(kernel, args, kwargs)
        key = (kernel.fn.__name__, compiled.hash)
        if key in seen:  # e.g. the chunk states of the forward and of its recomputation
            continue
        seen.add(key)
        report = cubin_report(compiled.asm["cubin"])
        tiles = ",".join(f"{k[6:] if k.startswith('BLOCK_') else k}={v}" for k, v in kwargs.items()
                         if k.startswith("BLOCK") or k in ("CHUNKS", "num_warps", "num_stages"))
        flags = ",".join(k for k, v in kwargs.items() if v is True)
        rows.append([kernel.fn.__name__, flags, tiles, str(report["registers"]), str(report["stack"]),
                     str(compiled.metadata.shared), str(report["instructions"]), str(report["exponentials"])])
    return rows


def main() -> None:
    args = parse_args()
    for assignment in args.set:
        apply_knob(assignment)
    shape = tuple(int(v) for v in args.shape.split("x"))
    rows = resource_rows(shape, args.groups, args.chunk_size, getattr(torch, args.dtype))
    header = ["kernel", "flags", "tiles, warps, stages", "registers", "spill bytes", "shared bytes", "SASS", "MUFU.EX2"]
    print(f"sm_90, {args.dtype}, shape {args.shape}, {args.groups} group(s), chunk {args.chunk_size}; knobs: "
          + (", ".join(args.set) or "library defaults"))
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
