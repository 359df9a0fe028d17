"""Mamba-2 SSD speed: ours (`ssd_triton`: Triton kernels forward and backward; `ssd_blocks` under
torch.compile; the eager `ssd_chunked`) beside mamba-ssm's `mamba_chunk_scan_combined`, forward and forward+backward,
and the max relative difference of each output to mamba-ssm's.

    python scripts/bench_ssd.py [--markdown] [--dtype bfloat16] [--shapes 1x65536x32x64x128,8x2048x48x64x128]
    python scripts/bench_ssd.py --skip-compiled --skip-eager --profile 5   # + top kernels of each row's fwd+bwd
    python scripts/bench_ssd.py --tiny   # CPU smoke run: tiny shape, eager PyTorch rows, no timing claims

Shapes are batch x L x heads x headdim x d_state (one group of B/C), chunk 256, with D, z, dt_bias, softplus.
CUDA-event medians after warmup (compiled rows compile during warmup). Without mamba-ssm the ratio and difference
columns compare with the first row instead.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from mambaseq.kernels.dispatch import _optional
from mambaseq.kernels.ssd_chunked import ssd_chunked
from mambaseq.kernels.triton.ssd_blocks import ssd_blocks
from mambaseq.profiling import forward_backward, median_ms, top_ops_table
from mambaseq.report import markdown_table

Shape = tuple[int, int, int, int, int]
TINY_SHAPE = (1, 64, 2, 4, 8)
TINY_CHUNK = 16


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=lambda text: [tuple(int(v) for v in s.split("x")) for s in text.split(",")],
                        default=[(1, 65536, 32, 64, 128), (8, 2048, 48, 64, 128)])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--skip-eager", action="store_true", help="leave out the eager ssd_chunked row")
    parser.add_argument("--skip-compiled", action="store_true",
                        help="leave out the ssd_blocks + torch.compile row (minutes of compiling)")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run on a tiny shape (eager PyTorch rows)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also print each row's kernels with the most self time over N forward+backward calls")
    parser.add_argument("--profile-rows", type=int, default=16, help="kernels listed per profiled row")
    return parser.parse_args()


def ssd_problem(shape: Shape, dtype: torch.dtype, device: str) -> dict:
    """Inputs in mamba-ssm's layout: x, z, dt, B, C in `dtype`; A, D, dt_bias fp32 (as Mamba2's parameters)."""
    batch, seqlen, nheads, headdim, d_state = shape
    generator = torch.Generator(device).manual_seed(0)

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=generator, device=device)

    return dict(x=randn(batch, seqlen, nheads, headdim).to(dtype),
                dt=(randn(batch, seqlen, nheads) * 0.5 - 1).to(dtype),
                A=-torch.exp(randn(nheads)), B=randn(batch, seqlen, 1, d_state).to(dtype),
                C=randn(batch, seqlen, 1, d_state).to(dtype), D=randn(nheads),
                z=randn(batch, seqlen, nheads, headdim).to(dtype), dt_bias=randn(nheads) * 0.5)


def contenders(chunk_size: int, tiny: bool, skip_eager: bool, skip_compiled: bool
               ) -> dict[str, Callable[[dict], torch.Tensor]]:
    def ours(kernel: Callable) -> Callable[[dict], torch.Tensor]:
        return lambda p: kernel(**p, dt_softplus=True, chunk_size=chunk_size)

    if tiny:
        return {"ssd_blocks (eager)": ours(ssd_blocks), "ssd_chunked (eager)": ours(ssd_chunked)}
    from mambaseq.kernels.triton import ssd_triton
    from mambaseq.kernels.triton.ssd import _compiled_ssd

    rows = {"ours: ssd_triton (Triton fwd + bwd)": ours(ssd_triton)}
    if not skip_compiled:
        rows["ours: ssd_blocks + torch.compile"] = ours(_compiled_ssd())
    if not skip_eager:
        rows["ours: ssd_chunked (eager torch)"] = ours(ssd_chunked)
    combined, why = _optional("mamba_ssm.ops.triton.ssd_combined", "mamba_chunk_scan_combined")
    if combined is not None:
        rows["mamba-ssm mamba_chunk_scan_combined"] = lambda p: combined(
            p["x"], p["dt"], p["A"], p["B"], p["C"], chunk_size, D=p["D"], z=p["z"], dt_bias=p["dt_bias"],
            dt_softplus=True)
    else:
        print(f"mamba-ssm not importable ({why}): its row is left out")
    return rows


def time_forward_backward(run: Callable[[dict], torch.Tensor], problem: dict, repeats: int, warmup: int,
                          cuda: bool) -> tuple[float, float]:
    """(forward ms without autograd, forward+backward ms with gradients of every input)."""
    with torch.no_grad():
        forward = median_ms(lambda: run(problem), repeats, warmup, cuda)
    return forward, median_ms(forward_backward(run, problem), repeats, warmup, cuda)


def benchmark_shape(shape: Shape, args: argparse.Namespace, device: str, dtype: torch.dtype) -> list[list[str]]:
    problem = ssd_problem(shape, dtype, device)
    chunk_size = TINY_CHUNK if args.tiny else args.chunk_size
    results, outputs = {}, {}
    for name, run in contenders(chunk_size, args.tiny, args.skip_eager, args.skip_compiled).items():
        try:
            with torch.no_grad():
                outputs[name] = run(problem).float()
            results[name] = time_forward_backward(run, problem, args.repeats, args.warmup, device == "cuda")
            if args.profile:
                print(f"{name} at {'x'.join(map(str, shape))}, forward+backward: " + top_ops_table(
                    forward_backward(run, problem), args.profile, args.profile_rows, torch.device(device)))
        except (torch.cuda.OutOfMemoryError, torch._dynamo.exc.TorchDynamoException) as error:
            print(f"{name} at {shape}: {type(error).__name__} ({str(error).splitlines()[0]}); row left out")
            outputs.pop(name, None)
        if device == "cuda":
            torch.cuda.empty_cache()
    if not results:
        return []
    baseline = next((n for n in results if n.startswith("mamba-ssm")), next(iter(results)))
    base_forward, base_both = results[baseline]
    expected = outputs[baseline]
    rows = []
    for name, (forward, both) in results.items():
        error = float((outputs[name] - expected).abs().max() / expected.abs().max())
        rows.append(["x".join(map(str, shape)), name, f"{forward:.3f}", f"{both:.3f}", f"{forward / base_forward:.2f}",
                     f"{both / base_both:.2f}", f"{error:.1e}"])
    return rows


def main() -> None:
    args = parse_args()
    device = "cpu" if args.tiny else "cuda"
    dtype = torch.float32 if args.tiny else getattr(torch, args.dtype)
    shapes = [TINY_SHAPE] if args.tiny else args.shapes
    if args.tiny:
        args.repeats, args.warmup, args.markdown = 3, 1, True
        print(f"CPU smoke run, torch {torch.__version__}, fp32, chunk {TINY_CHUNK} (timings mean nothing)")
    else:
        print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.dtype}, chunk {args.chunk_size}")
    rows = [row for shape in shapes for row in benchmark_shape(shape, args, device, dtype)]
    header = ["shape (b x L x h x p x n)", "implementation", "fwd ms", "fwd+bwd ms", "fwd ratio", "fwd+bwd ratio",
              "max rel. error vs baseline"]
    print("ratio / error: against mamba-ssm when importable, else against the first row")
    if args.markdown:
        print(markdown_table(header, rows))
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        for line in [header, *rows]:
            print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)))


if __name__ == "__main__":
    main()
