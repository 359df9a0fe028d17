"""Mamba's depthwise causal conv + SiLU: ours (`causal_conv1d_triton`) beside causal-conv1d's `causal_conv1d_fn` and
the PyTorch conv (`F.conv1d`), forward and forward+backward, with effective bandwidth and each result's max relative
difference to causal-conv1d's.

    python scripts/bench_conv.py [--markdown] [--shapes 8x1536x2048xc,8x1792x2048xl]
        [--backward-tiles 64x16x8,16x64x8]   # extra rows: our backward with other (channels x steps x warps) tiles
    python scripts/bench_conv.py --resources [--backward-tiles ...]   # no GPU: our kernels compiled for sm_90
    TRITON_INTERPRET=1 python scripts/bench_conv.py --tiny   # CPU smoke run, tiny shapes, no timing claims

Shapes are batch x channels x L x layout: "c" is x contiguous in (batch, channels, L), the Mamba-1 mixer's layout;
"l" is a channel-last slice of wider rows, the Mamba-2 mixer's xBC columns of in_proj's output. Width 4, bias, bf16
x, fp32 weights; CUDA-event medians after warmup. GB/s: the forward reads x and writes the output; forward+backward
adds reading x and the output gradient and writing d x (the weight gradients are per-channel sums). Without
causal-conv1d the ratio and difference columns compare with the first row instead.
"""
from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from unittest import mock

import torch

from mambaseq.kernels.causal_conv1d import causal_conv1d as causal_conv1d_torch
from mambaseq.kernels.dispatch import _optional
from mambaseq.profiling import forward_backward, median_ms, parse_kernel_bench_args
from mambaseq.report import markdown_table

Shape = tuple[int, int, int, str]
TINY_SHAPES = [(2, 70, 150, "c"), (2, 70, 150, "l")]
WIDTH = 4
LAYOUTS = ("c", "l")


def parse_shape(text: str) -> Shape:
    *sizes, layout = text.split("x")
    if len(sizes) != 3 or layout not in LAYOUTS:
        raise argparse.ArgumentTypeError(f"shape {text!r}: expected batch x channels x L x layout (c or l)")
    batch, channels, seqlen = (int(v) for v in sizes)
    return batch, channels, seqlen, layout


def parse_tile(text: str) -> tuple[int, int, int]:
    sizes = tuple(int(v) for v in text.split("x"))
    if len(sizes) != 3:
        raise argparse.ArgumentTypeError(f"backward tile {text!r}: expected channels x steps x warps")
    return sizes


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=lambda text: [parse_shape(s) for s in text.split(",")],
                        default=[(8, 1536, 2048, "c"), (8, 1792, 2048, "l"), (1, 1024, 65536, "c"),
                                 (1, 5376, 65536, "l")],
                        help="batch x channels x L x layout (c: contiguous, l: channel-last), comma-separated")
    parser.add_argument("--backward-tiles", type=lambda text: [parse_tile(s) for s in text.split(",")], default=[],
                        help="extra rows: our backward with these channels x steps x warps tiles")
    parser.add_argument("--resources", action="store_true",
                        help="no timing and no GPU: registers, spills and SASS of our kernels compiled for sm_90, per "
                             "shape and backward tile")
    return parse_kernel_bench_args(parser, device_free="resources")


def conv_problem(shape: Shape, dtype: torch.dtype, device: str) -> dict[str, torch.Tensor]:
    """x (batch, channels, L) in `dtype` and the layout of `shape`; weight (channels, WIDTH) and bias fp32."""
    batch, channels, seqlen, layout = shape
    if device == "meta":
        def randn(*size: int) -> torch.Tensor:
            return torch.empty(*size, device="meta")
    else:
        generator = torch.Generator(device).manual_seed(0)

        def randn(*size: int) -> torch.Tensor:
            return torch.randn(*size, generator=generator, device=device)
    if layout == "c":
        x = randn(batch, channels, seqlen)
    else:  # the middle columns of (batch, L, 2 x channels) rows, as the mixer slices in_proj's output
        x = randn(batch, seqlen, 2 * channels)[..., channels // 2: channels // 2 + channels].transpose(1, 2)
    return dict(x=x.to(dtype), weight=randn(channels, WIDTH) / WIDTH**0.5, bias=randn(channels))


TILE_NAMES = ("BACKWARD_BLOCK_C", "BACKWARD_BLOCK_L", "BACKWARD_WARPS")
Contender = tuple[Callable[[dict], torch.Tensor], dict[str, int]]  # run, our module constants it runs under


def contenders(tiles: list[tuple[int, int, int]]) -> dict[str, Contender]:
    from mambaseq.kernels.triton import causal_conv1d as triton_conv

    def ours(p: dict) -> torch.Tensor:
        return triton_conv.causal_conv1d_triton(p["x"], p["weight"], p["bias"], "silu")

    rows = {"ours: causal_conv1d_triton": (ours, {})}
    rows.update({f"ours, backward tile {'x'.join(map(str, tile))}": (ours, dict(zip(TILE_NAMES, tile)))
                 for tile in tiles})
    rows["PyTorch F.conv1d"] = (lambda p: causal_conv1d_torch(p["x"], p["weight"], p["bias"], "silu"), {})
    causal_conv1d_fn, why = _optional("causal_conv1d", "causal_conv1d_fn")
    if causal_conv1d_fn is not None:
        rows["causal-conv1d causal_conv1d_fn"] = (
            lambda p: causal_conv1d_fn(p["x"], p["weight"], p["bias"], activation="silu"), {})
    else:
        print(f"causal-conv1d not importable ({why}): its row is left out")
    return rows


def results_of(run: Callable[[dict], torch.Tensor], problem: dict, args: argparse.Namespace, cuda: bool
               ) -> tuple[float, float, list[torch.Tensor]]:
    """Forward ms, forward+backward ms, and [out, d x, d weight] in fp32 of one contender."""
    with torch.no_grad():
        forward = median_ms(lambda: run(problem), args.repeats, args.warmup, cuda)
    both = median_ms(forward_backward(run, problem), args.repeats, args.warmup, cuda)
    leaves = {k: v.detach().requires_grad_() for k, v in problem.items()}
    out = run(leaves)
    out.backward(torch.ones_like(out))
    return forward, both, [out.detach().float(), leaves["x"].grad.float(), leaves["weight"].grad.float()]


def benchmark_shape(shape: Shape, rows_to_run: dict[str, Contender], args: argparse.Namespace, device: str,
                    dtype: torch.dtype) -> list[list[str]]:
    from mambaseq.kernels.triton import causal_conv1d as triton_conv

    problem = conv_problem(shape, dtype, device)
    cuda = device == "cuda"
    results, failures = {}, []
    for name, (run, launch) in rows_to_run.items():
        try:
            with mock.patch.multiple(triton_conv, **launch) if launch else contextlib.nullcontext():
                results[name] = results_of(run, problem, args, cuda)
        except (RuntimeError, ValueError) as error:  # e.g. out of memory, or a layout a contender rejects
            failures.append(["x".join(map(str, shape)), name, f"failed: {type(error).__name__}: "
                             f"{str(error).splitlines()[0][:120] if str(error) else ''}", *[""] * 6])
        if cuda:
            torch.cuda.empty_cache()
    if not results:
        return failures
    baseline = next((n for n in results if n.startswith("causal-conv1d")), next(iter(results)))
    base_forward, base_both, expected = results[baseline]
    element_bytes = problem["x"].numel() * problem["x"].element_size()
    rows = failures
    for name, (forward, both, outputs) in results.items():
        difference = max(float((a - e).abs().max() / e.abs().max()) for a, e in zip(outputs, expected))
        rows.append(["x".join(map(str, shape)), name, f"{forward:.3f}", f"{both:.3f}",
                     f"{2 * element_bytes / forward / 1e6:.0f}", f"{5 * element_bytes / both / 1e6:.0f}",
                     f"{forward / base_forward:.2f}", f"{both / base_both:.2f}", f"{difference:.1e}"])
    return rows


def resource_rows(shapes: list[Shape], tiles: list[tuple[int, int, int]]) -> list[list[str]]:
    """Our forward and backward launches of every shape (bf16, on meta tensors), with the default backward tile
    and each of `tiles`, compiled for sm_90: registers and spill bytes per thread, SASS instructions."""
    from mambaseq.kernels.triton import causal_conv1d as triton_conv
    from mambaseq.kernels.triton.compiled_resources import compile_launch, cubin_report, recorded_launches

    default = tuple(getattr(triton_conv, name) for name in TILE_NAMES)
    rows = []
    for shape in shapes:
        for tile in dict.fromkeys([default, *tiles]):
            problem = {k: v.requires_grad_() for k, v in conv_problem(shape, torch.bfloat16, "meta").items()}
            with mock.patch.multiple(triton_conv, **dict(zip(TILE_NAMES, tile))), \
                    recorded_launches(triton_conv) as recorders:
                out = triton_conv.causal_conv1d_triton(problem["x"], problem["weight"], problem["bias"], "silu")
                out.backward(torch.empty_like(out))
            for name, recorder in recorders.items():
                for args, kwargs in recorder.calls:
                    report = cubin_report(compile_launch(recorder.kernel, args, kwargs).asm["cubin"])
                    rows.append(["x".join(map(str, shape)), "x".join(map(str, tile)), name,
                                 str(report["registers"]), str(report["stack"]), str(report["instructions"])])
    return rows


def main() -> None:
    args = parse_args()
    if args.resources:
        rows = resource_rows(args.shapes, args.backward_tiles)
        header = ["shape (b x channels x L x layout)", "backward tile (channels x steps x warps)", "kernel",
                  "registers", "spill bytes", "SASS"]
        print("sm_90, bf16, compiled without a GPU")
        print(markdown_table(header, rows) if args.markdown else "\n".join("  ".join(r) for r in [header, *rows]))
        return
    device = "cpu" if args.tiny else "cuda"
    dtype = torch.float32 if args.tiny else torch.bfloat16
    shapes = TINY_SHAPES if args.tiny else args.shapes
    if args.tiny:
        args.repeats, args.warmup = 2, 1
        print(f"CPU smoke run (interpreter), torch {torch.__version__}, fp32 (timings mean nothing)")
    else:
        print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, bf16")
    rows_to_run = contenders(args.backward_tiles)
    rows = [row for shape in shapes for row in benchmark_shape(shape, rows_to_run, args, device, dtype)]
    header = ["shape (b x channels x L x layout)", "implementation", "fwd ms", "fwd+bwd ms", "fwd GB/s",
              "fwd+bwd GB/s", "fwd ratio", "fwd+bwd ratio", "max rel. difference vs baseline"]
    print("ratio / difference (output, d x, d weight): against causal-conv1d when importable, else the first row")
    print(markdown_table(header, rows) if args.markdown else "\n".join("  ".join(row) for row in [header, *rows]))


if __name__ == "__main__":
    main()
