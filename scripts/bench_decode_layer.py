"""Speed of a Mamba-1 decoding step at batch 1 on CUDA, per layer, and of its projections: cuBLAS vs our Triton
GEMV (under several tilings), with and without programmatic dependent launch (PDL).

Rows "x_proj" / "out_proj": `--layers` distinct weights of the 1.4B shape (d_inner 4096 -> dt_rank + 2 d_state,
4096 -> d_model) applied one after the other, so the weights stream from HBM, not L2. Rows "layer step": a 1.4B-wide
Mamba-1 LM of `--layers` layers (small vocabulary) stepping one token, as the generation loop does; "cuBLAS
projections" is `DECODE_GEMV_MAX_BATCH = 0`, "Triton GEMVs" is 1; "+ PDL" sets `pdl.ENABLED`. Times are per layer,
from CUDA graphs (`triton.testing.do_bench_cudagraph`), so Python's launch overhead is not counted; GB/s counts the
weights read.

    python scripts/bench_decode_layer.py
    python scripts/bench_decode_layer.py --tilings 4,512,4,3 2,1024,4,3 --no-layer-step
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from triton.testing import do_bench_cudagraph

from mambaseq.config import BackboneConfig, LMConfig, Mamba1Config
from mambaseq.kernels.triton import pdl
from mambaseq.kernels.triton.gemv import DEFAULT_GEMV_TILING, GemvTiling, gemv_triton
from mambaseq.lm import MambaLM
from mambaseq.mixers import mamba1

DEFAULT_TILINGS = ["2,512,4,3", "4,256,4,3", "4,1024,4,3", "8,512,4,3", "4,512,8,3", "1,1024,4,3"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-model", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=16, help="distinct weights / layers per call")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--tilings", nargs="*", default=DEFAULT_TILINGS,
                        help="GemvTiling texts BLOCK_N,BLOCK_K,WARPS,STAGES")
    parser.add_argument("--no-layer-step", action="store_true", help="only the projection rows")
    return parser.parse_args()


def time_per_call(run: Callable[[], object], calls: int, pdl_enabled: bool) -> float:
    """Microseconds per call of `run` (which makes `calls` calls) replayed from a CUDA graph."""
    default, pdl.ENABLED = pdl.ENABLED, pdl_enabled
    try:
        return 1e3 * do_bench_cudagraph(run, rep=100) / calls
    finally:
        pdl.ENABLED = default


def projection_rows(name: str, n_out: int, k: int, args: argparse.Namespace, dtype: torch.dtype) -> None:
    weights = [(torch.randn(n_out, k, device="cuda") * k**-0.5).to(dtype) for _ in range(args.layers)]
    x = torch.randn(1, k, device="cuda").to(dtype)
    weight_bytes = n_out * k * weights[0].element_size()
    rows: dict[str, tuple[Callable[[], object], bool]] = {
        "cuBLAS (F.linear)": (lambda: [F.linear(x, w) for w in weights], False)}
    for text in [str(DEFAULT_GEMV_TILING)] + [t for t in args.tilings if t != str(DEFAULT_GEMV_TILING)]:
        tiling = GemvTiling.parse(text)
        for use_pdl in (False, True):
            rows[f"Triton {text}{' + PDL' if use_pdl else ''}"] = (
                lambda tiling=tiling: [gemv_triton(x, w, tiling=tiling) for w in weights], use_pdl)
    for row, (run, use_pdl) in rows.items():
        microseconds = time_per_call(run, args.layers, use_pdl)
        print(f"{name:<10} {row:<36} {microseconds:>8.2f} {weight_bytes / microseconds / 1e3:>7.0f}")


def layer_step_rows(args: argparse.Namespace, dtype: torch.dtype) -> None:
    config = LMConfig(backbone=BackboneConfig(d_model=args.d_model, n_layer=args.layers, mixer=Mamba1Config(),
                                              residual_in_fp32=True), vocab_size=256)
    model = MambaLM(config).to("cuda", dtype).eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.backbone.layers[0].parameters())
    cache = model.allocate_cache(1)
    token = torch.zeros(1, 1, dtype=torch.long, device="cuda")
    gemv_max_batch = mamba1.DECODE_GEMV_MAX_BATCH
    variants = {"cuBLAS projections": (0, False), "cuBLAS projections + PDL": (0, True),
                "Triton GEMVs": (1, False), "Triton GEMVs + PDL": (1, True)}
    with torch.inference_mode():
        for row, (max_batch, use_pdl) in variants.items():
            mamba1.DECODE_GEMV_MAX_BATCH = max_batch
            try:
                microseconds = time_per_call(lambda: model.step(token, cache), args.layers, use_pdl)
            finally:
                mamba1.DECODE_GEMV_MAX_BATCH = gemv_max_batch
            print(f"{'layer step':<10} {row:<36} {microseconds:>8.2f} {weight_bytes / microseconds / 1e3:>7.0f}")


def main() -> None:
    args = parse_args()
    dtype = getattr(torch, args.dtype)
    d_inner, d_state = 2 * args.d_model, Mamba1Config().d_state
    dt_rank = -(-args.d_model // 16)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.dtype}, batch 1, d_model {args.d_model}, "
          f"d_inner {d_inner}, {args.layers} layers; us per layer (CUDA graph), GB/s of the weights read")
    print(f"{'what':<10} {'implementation':<36} {'us':>8} {'GB/s':>7}")
    projection_rows("x_proj", dt_rank + 2 * d_state, d_inner, args, dtype)
    projection_rows("out_proj", args.d_model, d_inner, args, dtype)
    if not args.no_layer_step:
        layer_step_rows(args, dtype)


if __name__ == "__main__":
    main()
