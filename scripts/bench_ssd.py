"""Mamba-2 SSD on the GPU: ours (torch.compile of the chunked decomposition, and the same eager) beside mamba-ssm's
`mamba_chunk_scan_combined`, forward and forward+backward, with the relative difference of our outputs to theirs.

    python scripts/bench_ssd.py [--markdown] [--dtype bfloat16] [--shapes 1x65536x32x64x128,8x2048x48x64x128]
    python scripts/bench_ssd.py --tiny   # CPU smoke run: tiny shape, eager and compiled, no timing claims

Shapes are batch x L x heads x headdim x d_state (one group of B/C), chunk 256, with D, dt_bias, softplus.
Medians of CUDA-event timings after warmup (the compiled rows compile during warmup).
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from bench_scan import median_ms
from mambaseq.kernels.dispatch import _optional
from mambaseq.kernels.ssd_chunked import ssd_chunked
from mambaseq.kernels.triton import ssd_triton

Shape = tuple[int, int, int, int, int]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=lambda text: [tuple(int(v) for v in s.split("x")) for s in text.split(",")],
                        default=[(1, 65536, 32, 64, 128), (8, 2048, 48, 64, 128)])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run on a tiny shape")
    return parser.parse_args()


def ssd_problem(shape: Shape, dtype: torch.dtype, device: str) -> dict:
    batch, seqlen, nheads, headdim, d_state = shape
    generator = torch.Generator(device).manual_seed(0)

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=generator, device=device)

    return dict(x=randn(batch, seqlen, nheads, headdim).to(dtype), dt=(randn(batch, seqlen, nheads) * 0.5 - 1).to(dtype),
                A=-torch.exp(randn(nheads)), B=randn(batch, seqlen, 1, d_state).to(dtype),
                C=randn(batch, seqlen, 1, d_state).to(dtype), D=randn(nheads), dt_bias=randn(nheads) * 0.5)


def contenders(chunk_size: int, with_mamba_ssm: bool) -> dict[str, Callable[[dict], torch.Tensor]]:
    rows = {
        "mambaseq compiled (triton backend)": lambda p: ssd_triton(**p, dt_softplus=True, chunk_size=chunk_size),
        "mambaseq chunked (eager)": lambda p: ssd_chunked(**p, dt_softplus=True, chunk_size=chunk_size),
    }
    combined, why = _optional("mamba_ssm.ops.triton.ssd_combined", "mamba_chunk_scan_combined")
    if with_mamba_ssm and combined is not None:
        rows["mamba-ssm mamba_chunk_scan_combined"] = lambda p: combined(
            p["x"], p["dt"], p["A"], p["B"], p["C"], chunk_size, D=p["D"], dt_bias=p["dt_bias"], dt_softplus=True)
    elif with_mamba_ssm:
        print(f"mamba-ssm not importable ({why}): its row is left out")
    return rows


def time_forward_backward(run: Callable[[dict], torch.Tensor], problem: dict, repeats: int, warmup: int
                          ) -> tuple[float, float]:
    with torch.no_grad():
        forward = median_ms(lambda: run(problem), repeats, warmup)
    leaves = {k: v.detach().requires_grad_() for k, v in problem.items()}
    grad_output = torch.randn_like(problem["x"])
    both = median_ms(lambda: run(leaves).backward(grad_output), repeats, warmup)
    return forward, both


def main() -> None:
    args = parse_args()
    if args.tiny:
        problem = ssd_problem((1, 64, 2, 4, 8), torch.float32, "cpu")
        for name, run in contenders(16, with_mamba_ssm=False).items():
            start = time.perf_counter()
            y = run(problem)
            print(f"{name}: output {tuple(y.shape)} finite={bool(y.isfinite().all())} "
                  f"({time.perf_counter() - start:.1f} s incl. compilation)")
        return
    dtype = getattr(torch, args.dtype)
    header = ["shape (b x L x h x p x n)", "implementation", "fwd ms", "fwd+bwd ms", "fwd ratio", "fwd+bwd ratio",
              "max rel. diff to mamba-ssm"]
    rows = []
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.dtype}, chunk {args.chunk_size}; "
          "ratio = time / mamba-ssm time")
    for shape in args.shapes:
        problem = ssd_problem(shape, dtype, "cuda")
        results, outputs = {}, {}
        for name, run in contenders(args.chunk_size, with_mamba_ssm=True).items():
            try:
                with torch.no_grad():
                    outputs[name] = run(problem).float()
                results[name] = time_forward_backward(run, problem, args.repeats, args.warmup)
            except torch.cuda.OutOfMemoryError as error:
                print(f"{name} at {shape}: out of memory ({str(error).splitlines()[0]})")
            torch.cuda.empty_cache()
        reference = next((results[n] for n in results if n.startswith("mamba-ssm")), None)
        theirs = next((outputs[n] for n in outputs if n.startswith("mamba-ssm")), None)
        for name, (forward, both) in results.items():
            ratio = (lambda ours, base: f"{ours / base:.2f}") if reference else (lambda ours, base: "-")
            diff = "-" if theirs is None else f"{float((outputs[name] - theirs).abs().max() / theirs.abs().max()):.1e}"
            rows.append(["x".join(map(str, shape)), name, f"{forward:.3f}", f"{both:.3f}",
                         ratio(forward, reference and reference[0]), ratio(both, reference and reference[1]), diff])
    print("| " + " | ".join(header) + " |" if args.markdown else "  ".join(header))
    if args.markdown:
        print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |" if args.markdown else "  ".join(row))


if __name__ == "__main__":
    main()
