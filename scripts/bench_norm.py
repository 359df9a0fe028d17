"""Mamba-2's gated RMSNorm: ours (`gated_rms_norm_triton`, and the PyTorch `GatedRMSNorm` it replaces on CUDA) beside
mamba-ssm's `rmsnorm_fn`, forward and forward+backward, with the forward's effective bandwidth and each output's max
relative difference to mamba-ssm's.

    python scripts/bench_norm.py [--markdown] [--shapes 8x2048x1536x1536,1x65536x5120x5120]
    TRITON_INTERPRET=1 python scripts/bench_norm.py --tiny   # CPU smoke run, tiny shape, no timing claims

Shapes are batch x L x d x group size; the gate z is a strided slice of an in_proj-like output (2 d + 280 wide), as
in the Mamba-2 mixer; the gate multiplies before the norm (Mamba-2's default). bf16 x and z, fp32 weight; CUDA-event
medians after warmup. GB/s counts reading x and z and writing the output once each. Without mamba-ssm the ratio and
difference columns compare with the first row instead.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from mambaseq.kernels.dispatch import _optional
from mambaseq.norm import GatedRMSNorm
from mambaseq.profiling import forward_backward, median_ms, parse_kernel_bench_args
from mambaseq.report import markdown_table

Shape = tuple[int, int, int, int]
TINY_SHAPE = (2, 8, 64, 32)
EPS = 1e-5
EXTRA_PROJECTION_WIDTH = 280  # B, C and dt columns of a 130M Mamba-2 in_proj beside x and z (2 x 128 + 24)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=lambda text: [tuple(int(v) for v in s.split("x")) for s in text.split(",")],
                        default=[(8, 2048, 1536, 1536), (1, 65536, 5120, 5120), (8, 2048, 4096, 512)],
                        help="batch x L x d x group size, comma-separated")
    return parse_kernel_bench_args(parser)


def norm_problem(shape: Shape, dtype: torch.dtype, device: str) -> dict[str, torch.Tensor]:
    """x (batch, L, d), z a strided (batch, L, d) slice of wider rows, both in `dtype`; weight (d,) fp32."""
    batch, seqlen, width, _ = shape
    generator = torch.Generator(device).manual_seed(0)
    projection = torch.randn(batch, seqlen, 2 * width + EXTRA_PROJECTION_WIDTH, generator=generator, device=device)
    return dict(x=torch.randn(batch, seqlen, width, generator=generator, device=device).to(dtype),
                z=projection.to(dtype)[..., :width],
                weight=1 + 0.1 * torch.randn(width, generator=generator, device=device))


def contenders(group_size: int) -> dict[str, Callable[[dict], torch.Tensor]]:
    from mambaseq.kernels.triton import gated_rms_norm_triton

    def pytorch(p: dict) -> torch.Tensor:
        norm = GatedRMSNorm(p["x"].shape[-1], group_size, eps=EPS).to("meta")  # its weight comes from p
        return torch.func.functional_call(norm, {"weight": p["weight"]}, (p["x"], p["z"]))

    rows = {"ours: gated_rms_norm_triton": lambda p: gated_rms_norm_triton(p["x"], p["z"], p["weight"], group_size,
                                                                           EPS),
            "ours: GatedRMSNorm, PyTorch (fp32)": pytorch}
    rmsnorm_fn, why = _optional("mamba_ssm.ops.triton.layernorm_gated", "rmsnorm_fn")
    if rmsnorm_fn is not None:
        rows["mamba-ssm rmsnorm_fn"] = lambda p: rmsnorm_fn(p["x"], p["weight"], None, z=p["z"], eps=EPS,
                                                            group_size=group_size, norm_before_gate=False)
    else:
        print(f"mamba-ssm not importable ({why}): its row is left out")
    return rows


def benchmark_shape(shape: Shape, args: argparse.Namespace, device: str, dtype: torch.dtype) -> list[list[str]]:
    problem = norm_problem(shape, dtype, device)
    cuda = device == "cuda"
    results, outputs = {}, {}
    for name, run in contenders(shape[3]).items():
        with torch.no_grad():
            outputs[name] = run(problem).float()
            forward = median_ms(lambda: run(problem), args.repeats, args.warmup, cuda)
        results[name] = forward, median_ms(forward_backward(run, problem), args.repeats, args.warmup, cuda)
        if cuda:
            torch.cuda.empty_cache()
    baseline = next((n for n in results if n.startswith("mamba-ssm")), next(iter(results)))
    base_forward, base_both = results[baseline]
    expected = outputs[baseline]
    traffic = 3 * problem["x"].numel() * problem["x"].element_size()
    rows = []
    for name, (forward, both) in results.items():
        error = float((outputs[name] - expected).abs().max() / expected.abs().max())
        rows.append(["x".join(map(str, shape)), name, f"{forward:.3f}", f"{both:.3f}",
                     f"{traffic / forward / 1e6:.0f}", f"{forward / base_forward:.2f}", f"{both / base_both:.2f}",
                     f"{error:.1e}"])
    return rows


def main() -> None:
    args = parse_args()
    device = "cpu" if args.tiny else "cuda"
    dtype = torch.float32 if args.tiny else torch.bfloat16
    shapes = [TINY_SHAPE] if args.tiny else args.shapes
    if args.tiny:
        args.repeats, args.warmup = 2, 1
        print(f"CPU smoke run (interpreter), torch {torch.__version__}, fp32 (timings mean nothing)")
    else:
        print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, bf16")
    rows = [row for shape in shapes for row in benchmark_shape(shape, args, device, dtype)]
    header = ["shape (b x L x d x group)", "implementation", "fwd ms", "fwd+bwd ms", "fwd GB/s", "fwd ratio",
              "fwd+bwd ratio", "max rel. difference vs baseline"]
    print("ratio / difference: against mamba-ssm when importable, else against the first row")
    print(markdown_table(header, rows) if args.markdown else "\n".join("  ".join(row) for row in [header, *rows]))


if __name__ == "__main__":
    main()
