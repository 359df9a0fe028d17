"""Speed of the front of a Mamba-1 decoding step (residual add + RMSNorm + in_proj + SiLU conv step) on CUDA:
the fused Triton kernel under several tilings vs the unfused path (fused add+norm kernel, cuBLAS in_proj, conv-step
kernel) vs the in_proj GEMV alone (the weight-streaming floor). Each call runs `--layers` copies (distinct weights
and states, as a model's layers) so the weights stream from HBM, not L2; times are per copy, from CUDA graphs
(`triton.testing.do_bench_cudagraph`), so Python's launch overhead is not counted; GB/s counts in_proj's weight.

    python scripts/bench_decode_front.py                                   # 1.4B shape, batch 1, 2, 4, 16
    python scripts/bench_decode_front.py --batch 1 --tilings 8,1024,4 4,1024,4
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from triton.testing import do_bench_cudagraph

from mambaseq.kernels import causal_conv1d_update
from mambaseq.kernels.triton import add_rms_norm_triton
from mambaseq.kernels.triton.norm_in_proj_conv import (
    DEFAULT_FRONT_TILING_WITHOUT_X_PROJ,
    FrontTiling,
    add_norm_in_proj_conv_triton,
)

DEFAULT_TILINGS = ["8,512,4", "4,1024,4", "8,2048,8", "4,2048,8", "16,1024,8"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", default="1,2,4", help="comma-separated batch sizes (one row per program)")
    parser.add_argument("--d-model", type=int, default=2048)
    parser.add_argument("--d-inner", type=int, default=4096)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--layers", type=int, default=8, help="copies run per call (8 x 32 MB > H100's 50 MB L2)")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--tilings", nargs="*", default=DEFAULT_TILINGS,
                        help="FrontTiling texts BLOCK_N,BLOCK_K,WARPS")
    return parser.parse_args()


def front_inputs(batch: int, d_model: int, d_inner: int, width: int, dtype: torch.dtype) -> dict:
    """Random inputs of one front step, as the 1.4B model in fp16 holds them (fp32 residual stream)."""
    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, device="cuda") * scale).to(dtype)

    return dict(hidden=randn(batch, d_model), residual=torch.randn(batch, d_model, device="cuda"),
                norm_weight=randn(d_model), eps=1e-5, residual_dtype=torch.float32,
                proj_weight=randn(2 * d_inner, d_model, scale=d_model**-0.5), proj_bias=None,
                conv_state=randn(batch, d_inner, width - 1), conv_weight=randn(d_inner, width),
                conv_bias=randn(d_inner))


def unfused_front(inputs: dict) -> torch.Tensor:
    """The three-launch path: fused add + RMSNorm, cuBLAS in_proj, conv-step kernel."""
    normed, _ = add_rms_norm_triton(inputs["hidden"], inputs["residual"], inputs["norm_weight"], inputs["eps"],
                                    residual_in_fp32=True)
    x, z = F.linear(normed, inputs["proj_weight"]).chunk(2, dim=-1)
    x = causal_conv1d_update(x, inputs["conv_state"], inputs["conv_weight"], inputs["conv_bias"], "silu",
                             backend="triton")
    return x


def main() -> None:
    args = parse_args()
    dtype = getattr(torch, args.dtype)
    weight_bytes = 2 * args.d_inner * args.d_model * torch.finfo(dtype).bits // 8
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.dtype}, d_model {args.d_model}, "
          f"d_inner {args.d_inner}, width {args.width}; us per call (CUDA graph), GB/s of in_proj's weight")
    print(f"{'batch':>5} {'implementation':<32} {'us':>8} {'GB/s':>7}")
    for batch in (int(b) for b in args.batch.split(",")):
        layers = [front_inputs(batch, args.d_model, args.d_inner, args.width, dtype) for _ in range(args.layers)]
        normed = torch.randn(batch, args.d_model, device="cuda").to(dtype)

        def fused(tiling: FrontTiling | None = None) -> None:
            for inputs in layers:
                add_norm_in_proj_conv_triton(**inputs, tiling=tiling)

        rows = {f"fused default {DEFAULT_FRONT_TILING_WITHOUT_X_PROJ}": fused}
        for text in args.tilings:
            rows[f"fused {text}"] = lambda tiling=FrontTiling.parse(text): fused(tiling)
        rows["unfused (norm, cuBLAS, conv)"] = lambda: [unfused_front(inputs) for inputs in layers]
        rows["in_proj GEMV alone (cuBLAS)"] = lambda: [F.linear(normed, inputs["proj_weight"]) for inputs in layers]
        for name, run in rows.items():
            microseconds = 1e3 * do_bench_cudagraph(run, rep=50) / args.layers
            print(f"{batch:>5} {name:<32.32} {microseconds:>8.2f} {weight_bytes / microseconds / 1e3:>7.0f}")


if __name__ == "__main__":
    main()
