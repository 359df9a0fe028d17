"""Launch-knob sweep of the Mamba-2 SSD Triton kernels (`ssd_triton`) on the GPU at hand.

Each knob of `ssd_launch` / `ssd_bwd_launch` (a kernel's `Tiling`, or `SEPARABLE_DECAYS`) is set to each of its
variants in turn, the others at their defaults. A variant is timed by the CUDA time of the kernels it changes
(torch.profiler, per forward+backward, so the other kernels' noise stays out), with the time of all kernels beside
it. Its outputs and gradients are compared with the defaults'. Inputs are bf16 in mamba-ssm's layout, with D,
dt_bias and softplus, one group of B/C, and chunk 256.

    python scripts/tune_ssd.py                                   # every knob at 8x2048x48x64x128 and 1x65536x32x64x128
    python scripts/tune_ssd.py --knobs SEPARABLE_DECAYS,SCAN_TILING --budget 300
    TRITON_INTERPRET=1 python scripts/tune_ssd.py --tiny --knobs DC_TILING   # CPU, fp32: differences only

A variant that cannot launch (e.g. more shared memory than the GPU has) is reported and skipped. The sweep stops
when --budget seconds have passed, and reports what it measured by then.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from mambaseq.kernels.triton import ssd_bwd_launch, ssd_launch, ssd_triton
from mambaseq.kernels.triton.ssd_launch import Tiling
from mambaseq.profiling import check_tiny_or_cuda
from mambaseq.report import markdown_table

Shape = tuple[int, int, int, int, int]
SHAPES = [(8, 2048, 48, 64, 128), (1, 65536, 32, 64, 128)]
TINY_SHAPE, TINY_CHUNK = (1, 200, 2, 32, 16), 128  # two 64-step row tiles per chunk
ROW_TILINGS = [  # chunk scan and dx: M = output steps, K = the loop's steps, N = headdim, STATE = d_state
    Tiling(stages=1), Tiling(stages=2), Tiling(stages=4), Tiling(block_k=32), Tiling(block_k=32, stages=2),
    Tiling(block_state=128), Tiling(block_state=128, stages=2), Tiling(block_m=128, warps=8),
    Tiling(block_m=128, warps=8, stages=2), Tiling(block_m=128), Tiling(block_m=32, block_k=32),
    Tiling(block_m=32, warps=2), Tiling(block_n=32), Tiling(warps=8), Tiling(block_k=32, stages=4),
    Tiling(block_m=128, block_k=32, stages=4), Tiling(block_k=32, warps=2, stages=4),
    Tiling(block_state=128, block_k=32, stages=4), Tiling(block_m=128, block_state=128, block_k=32, stages=4)]
GROUP_TILINGS = [  # pairs, dC, dB
    Tiling(stages=1), Tiling(stages=2), Tiling(stages=4), Tiling(block_k=32), Tiling(block_m=32, block_k=32),
    Tiling(block_m=32), Tiling(block_n=32), Tiling(block_n=32, stages=2), Tiling(block_m=128, warps=8),
    Tiling(block_k=128), Tiling(block_k=32, stages=4), Tiling(block_m=32, block_k=32, warps=2, stages=4),
    Tiling(warps=8), Tiling(warps=8, stages=2), Tiling(block_k=32, warps=8), Tiling(block_m=32, block_k=32, warps=8)]
# knob -> (the kernels it changes, its variants besides the default)
KNOBS: dict[str, tuple[tuple[str, ...], list]] = {
    "SEPARABLE_DECAYS": (("chunk_scan_kernel", "chunk_scan_bwd_dx_kernel", "chunk_pairs_bwd_kernel"), [True, False]),
    "SCAN_TILING": (("chunk_scan_kernel",), ROW_TILINGS),
    "DX_TILING": (("chunk_scan_bwd_dx_kernel",), ROW_TILINGS),
    "PAIRS_TILING": (("chunk_pairs_bwd_kernel",), GROUP_TILINGS),
    "DC_TILING": (("chunk_scan_bwd_dC_kernel",), GROUP_TILINGS),
    "DB_TILING": (("chunk_scan_bwd_dB_kernel",), GROUP_TILINGS),
    "STATE_TILING": (("chunk_state_kernel",), [
        Tiling(stages=2), Tiling(stages=4), Tiling(block_n=128), Tiling(block_n=128, warps=8), Tiling(block_k=32),
        Tiling(block_k=128), Tiling(block_n=128, block_k=32), Tiling(block_m=32), Tiling(warps=8)]),
    "PASSING_CHUNKS": (("state_passing_kernel",), [1, 4, 8, 32]),
    "FLAT_TILE_ELEMENTS": (("state_passing_kernel",), [2048, 8192, 16384]),
    "FLAT_TILE_PROGRAMS": (("state_passing_kernel",), [256, 2048, 4096]),
    "CB_TILING": (("chunk_cb_kernel",), [
        Tiling(stages=2), Tiling(stages=4), Tiling(block_k=128), Tiling(block_m=128, block_n=128, warps=8),
        Tiling(block_m=128, warps=8), Tiling(block_m=32, block_n=32)]),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=lambda text: [tuple(int(v) for v in s.split("x")) for s in text.split(",")],
                        default=SHAPES, help="batch x L x heads x headdim x d_state, comma-separated")
    parser.add_argument("--knobs", type=lambda text: text.split(","), default=list(KNOBS),
                        help=f"comma-separated, of {', '.join(KNOBS)}")
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--calls", type=int, default=5, help="profiled forward+backward calls per variant")
    parser.add_argument("--budget", type=float, default=float("inf"), help="seconds; the sweep stops after them")
    parser.add_argument("--tiny", action="store_true", help="CPU run on a tiny shape, fp32 (no timings)")
    args = parser.parse_args()
    check_tiny_or_cuda(parser, args.tiny)
    unknown = [knob for knob in args.knobs if knob not in KNOBS]
    if unknown:
        parser.error(f"--knobs: unknown {unknown}; known: {list(KNOBS)}")
    return args


def knob_module(name: str):
    return ssd_launch if hasattr(ssd_launch, name) else ssd_bwd_launch


def ssd_inputs(shape: Shape, dtype: torch.dtype, device: str) -> dict[str, torch.Tensor]:
    """x, dt, B, C in `dtype`, A, D, dt_bias fp32 (as Mamba2's parameters), all requiring gradients."""
    batch, seqlen, nheads, headdim, d_state = shape
    generator = torch.Generator(device).manual_seed(0)

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=generator, device=device)

    inputs = dict(x=randn(batch, seqlen, nheads, headdim).to(dtype),
                  dt=(randn(batch, seqlen, nheads) * 0.5 - 1).to(dtype), A=-torch.exp(randn(nheads)),
                  B=randn(batch, seqlen, 1, d_state).to(dtype), C=randn(batch, seqlen, 1, d_state).to(dtype),
                  D=randn(nheads), dt_bias=randn(nheads) * 0.5)
    return {name: value.requires_grad_() for name, value in inputs.items()}


def outputs_and_gradients(inputs: dict[str, torch.Tensor], grad_output: torch.Tensor, chunk_size: int
                          ) -> dict[str, torch.Tensor]:
    for value in inputs.values():
        value.grad = None
    y = ssd_triton(**inputs, dt_softplus=True, chunk_size=chunk_size)
    y.backward(grad_output)
    return {"y": y.detach().float()} | {f"d{name}": value.grad.float() for name, value in inputs.items()}


def max_difference(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> float:
    """Largest max |actual - expected| / max |expected| over the outputs and gradients."""
    return max(((actual[k] - expected[k]).abs().max() / expected[k].abs().max().clamp_min(1e-30)).item()
               for k in expected)


def kernel_times(run: Callable[[], object], calls: int) -> dict[str, float]:
    """CUDA ms per call of every kernel `run` launches, after two warm-up calls (compilation)."""
    run()
    run()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as profiler:
        for _ in range(calls):
            run()
        torch.cuda.synchronize()
    times: dict[str, float] = {}
    for event in profiler.key_averages():
        if event.self_device_time_total > 0:
            times[event.key] = times.get(event.key, 0.0) + event.self_device_time_total / calls / 1e3
    return times


def sweep_knob(name: str, shape: Shape, args: argparse.Namespace, device: str, deadline: float) -> list[list[str]]:
    """Table rows (variant, its kernels' ms, all kernels' ms, difference to the defaults) of one knob at one shape."""
    kernels, variants = KNOBS[name]
    module = knob_module(name)
    default = getattr(module, name)
    dtype = torch.float32 if args.tiny else torch.bfloat16
    inputs = ssd_inputs(shape, dtype, device)
    grad_output = torch.randn_like(inputs["x"])
    expected = outputs_and_gradients(inputs, grad_output, args.chunk_size)
    rows = []
    try:
        for variant in [default] + [v for v in variants if v != default]:
            if time.monotonic() > deadline:
                print(f"{name} at {shape}: budget spent, {len(rows)} of {len(variants) + 1} variants measured")
                break
            setattr(module, name, variant)
            label = f"{variant}{' (default)' if variant == default else ''}"
            try:
                difference = max_difference(outputs_and_gradients(inputs, grad_output, args.chunk_size), expected)
                if device == "cuda":
                    times = kernel_times(lambda: outputs_and_gradients(inputs, grad_output, args.chunk_size),
                                         args.calls)
                    own = sum(t for key, t in times.items() if any(kernel in key for kernel in kernels))
                    rows.append([label, f"{own:.3f}", f"{sum(times.values()):.3f}", f"{difference:.1e}"])
                else:
                    rows.append([label, "-", "-", f"{difference:.1e}"])
            except Exception as error:  # a variant that cannot compile or launch here (resources, Triton limits)
                message = str(error).splitlines()[0][:80].replace("|", "/")
                rows.append([label, "failed", type(error).__name__, message])
    finally:
        setattr(module, name, default)
    return rows


def main() -> None:
    args = parse_args()
    device = "cpu" if args.tiny else "cuda"
    if args.tiny:
        args.shapes, args.chunk_size = [TINY_SHAPE], TINY_CHUNK
    print(f"{'CPU (interpreter), fp32' if args.tiny else torch.cuda.get_device_name() + ', bf16'}, "
          f"torch {torch.__version__}, chunk {args.chunk_size}; ms per forward+backward")
    deadline = time.monotonic() + args.budget
    header = ["variant", "its kernels ms", "all kernels ms", "max rel. difference to the defaults"]
    for name in args.knobs:  # knob by knob, each at every shape: a knob's shapes are measured one after the other
        for shape in args.shapes:
            rows = sweep_knob(name, shape, args, device, deadline)
            print(f"\n{name} ({', '.join(KNOBS[name][0])}) at {'x'.join(map(str, shape))}")
            print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
