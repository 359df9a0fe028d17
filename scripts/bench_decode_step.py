"""Speed of a whole Mamba-1 decoding step per layer at batch 1 on CUDA: the four-launch step (fused front, cuBLAS
x_proj, Triton state step, cuBLAS out_proj) vs the two-kernel step (the front summing x_proj, then the back: state
step + out_proj added into the fp32 residual stream) under several tilings of each kernel. Each call runs `--layers`
layers of distinct weights and states so the weights stream from HBM, not L2; times are per layer, from CUDA graphs
(`triton.testing.do_bench_cudagraph`); GB/s counts the weights of in_proj, x_proj, dt_proj and out_proj.
A second table times the state step alone by batch: dt projected inside our kernel vs a cuBLAS GEMM first
(`DT_IN_KERNEL_MAX_BATCH` in `triton/state_update.py` picks between them) vs mamba-ssm's step (GEMM,
-exp(A_log), its kernel).

    python scripts/bench_decode_step.py                                   # 1.4B widths, default tilings
    python scripts/bench_decode_step.py --back-tilings 32,256,4 64,128,4 --front-tilings 8,1024,4 4,1024,4
"""
from __future__ import annotations

import argparse
import importlib.util

import torch
import torch.nn.functional as F
from triton.testing import do_bench_cudagraph

from mambaseq.kernels.triton.norm_in_proj_conv import (
    DEFAULT_FRONT_TILING,
    DEFAULT_FRONT_TILING_WITHOUT_X_PROJ,
    FrontTiling,
    add_norm_in_proj_conv_triton,
)
from mambaseq.kernels.triton.state_step_out_proj import (
    DEFAULT_BACK_TILING,
    BackTiling,
    mamba1_state_step_out_proj_triton,
)
from mambaseq.kernels.triton.state_update import mamba1_state_step_triton

DEFAULT_FRONT_TILINGS = ["8,1024,4", "8,512,4", "4,1024,4", "8,2048,8", "4,2048,8", "16,1024,8"]
DEFAULT_BACK_TILINGS = ["32,256,4", "64,128,4", "64,256,8", "32,512,4", "32,512,8", "16,512,4"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-model", type=int, default=2048)
    parser.add_argument("--d-state", type=int, default=16)
    parser.add_argument("--layers", type=int, default=16, help="layers run per call (16 x 52 MB of weights)")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--front-tilings", nargs="*", default=DEFAULT_FRONT_TILINGS,
                        help="FrontTiling texts BLOCK_N,BLOCK_K,WARPS")
    parser.add_argument("--back-tilings", nargs="*", default=DEFAULT_BACK_TILINGS,
                        help="BackTiling texts BLOCK_C,OUT_PER_PROGRAM,WARPS")
    parser.add_argument("--state-batches", default="1,4,8,16,64", help="batch sizes of the state-step table")
    return parser.parse_args()


def layer_inputs(d_model: int, d_state: int, dtype: torch.dtype) -> dict:
    """One layer of the 1.4B model's shapes (d_inner = 2 d_model, dt_rank = d_model / 16) in `dtype`, batch 1."""
    d_inner, dt_rank = 2 * d_model, d_model // 16

    def weight(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, device="cuda") * shape[-1] ** -0.5).to(dtype)

    return dict(
        hidden=torch.randn(1, d_model, device="cuda").to(dtype), residual=torch.randn(1, d_model, device="cuda"),
        norm_weight=torch.ones(d_model, device="cuda", dtype=dtype), in_proj=weight(2 * d_inner, d_model),
        conv_state=torch.randn(1, d_inner, 3, device="cuda").to(dtype), conv_weight=weight(d_inner, 4),
        conv_bias=torch.zeros(d_inner, device="cuda", dtype=dtype), x_proj=weight(dt_rank + 2 * d_state, d_inner),
        x_proj_sums=torch.zeros(1, dt_rank + 2 * d_state, device="cuda"),
        arrivals=torch.zeros(1, 1 + d_inner, dtype=torch.int32, device="cuda"), dt_proj=weight(d_inner, dt_rank),
        dt_bias=torch.rand(d_inner, device="cuda") - 4.0, A_log=torch.rand(d_inner, d_state, device="cuda"),
        D=torch.ones(d_inner, device="cuda"), out_proj=weight(d_model, d_inner),
        state=torch.randn(1, d_inner, d_state, device="cuda"),
    )


def front(layer: dict, tiling: FrontTiling, sums_x_proj: bool) -> tuple[torch.Tensor, torch.Tensor]:
    extra = (layer["x_proj"], layer["x_proj_sums"]) if sums_x_proj else ()
    return add_norm_in_proj_conv_triton(layer["hidden"], layer["residual"], layer["norm_weight"], 1e-5, torch.float32,
                                        layer["in_proj"], None, layer["conv_state"], layer["conv_weight"],
                                        layer["conv_bias"], *extra, tiling=tiling)


def four_launch_step(layer: dict, front_tiling: FrontTiling) -> None:
    xz, _ = front(layer, front_tiling, sums_x_proj=False)
    x, z = xz.chunk(2, dim=-1)
    dt_rank, d_state = layer["dt_proj"].shape[1], layer["state"].shape[-1]
    dt_low, B, C = F.linear(x, layer["x_proj"]).split([dt_rank, d_state, d_state], dim=-1)
    y = mamba1_state_step_triton(layer["state"], x, dt_low, layer["dt_proj"], layer["A_log"], B, C, layer["D"], z,
                                 layer["dt_bias"])
    F.linear(y, layer["out_proj"])


def back(layer: dict, xz: torch.Tensor, residual: torch.Tensor, tiling: BackTiling) -> None:
    mamba1_state_step_out_proj_triton(layer["state"], xz, layer["x_proj_sums"], layer["arrivals"], layer["dt_proj"],
                                      layer["dt_bias"], layer["A_log"], layer["D"], layer["out_proj"], None, residual,
                                      tiling=tiling)


def two_kernel_step(layer: dict, front_tiling: FrontTiling, back_tiling: BackTiling) -> None:
    back(layer, *front(layer, front_tiling, sums_x_proj=True), back_tiling)


def state_step_table(layers: list[dict], batches: list[int]) -> None:
    """us per layer of the state step alone (x, z, dt_low, B, C given) at each batch size."""
    has_mamba_ssm = importlib.util.find_spec("mamba_ssm") is not None
    if has_mamba_ssm:
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update
    print(f"{'batch':>5} {'dt in our kernel':>17} {'cuBLAS dt + ours':>17} {'mamba-ssm step':>15}")
    for batch in batches:
        d_inner, dt_rank = layers[0]["dt_proj"].shape
        d_state = layers[0]["state"].shape[-1]
        dtype = layers[0]["dt_proj"].dtype
        inputs = [dict(state=torch.randn(batch, d_inner, d_state, device="cuda"),
                       x=torch.randn(batch, d_inner, device="cuda").to(dtype),
                       z=torch.randn(batch, d_inner, device="cuda").to(dtype),
                       dt_low=torch.randn(batch, dt_rank, device="cuda").to(dtype),
                       B=torch.randn(batch, d_state, device="cuda").to(dtype),
                       C=torch.randn(batch, d_state, device="cuda").to(dtype)) for _ in layers]

        def ours(dt_in_kernel: bool) -> None:
            for layer, step in zip(layers, inputs):
                mamba1_state_step_triton(step["state"], step["x"], step["dt_low"], layer["dt_proj"], layer["A_log"],
                                         step["B"], step["C"], layer["D"], step["z"], layer["dt_bias"], dt_in_kernel)

        def theirs() -> None:
            for layer, step in zip(layers, inputs):
                dt = F.linear(step["dt_low"], layer["dt_proj"])
                selective_state_update(step["state"], step["x"], dt, -torch.exp(layer["A_log"]), step["B"],
                                       step["C"], D=layer["D"], z=step["z"], dt_bias=layer["dt_bias"],
                                       dt_softplus=True)

        times = [f"{1e3 * do_bench_cudagraph(lambda: ours(in_kernel), rep=50) / len(layers):>17.2f}"
                 for in_kernel in (True, False)]
        mamba_ssm = (f"{1e3 * do_bench_cudagraph(theirs, rep=50) / len(layers):>15.2f}" if has_mamba_ssm
                     else f"{'-':>15}")
        print(f"{batch:>5} {times[0]} {times[1]} {mamba_ssm}")


def main() -> None:
    args = parse_args()
    dtype = getattr(torch, args.dtype)
    layers = [layer_inputs(args.d_model, args.d_state, dtype) for _ in range(args.layers)]
    weight_bytes = sum(layers[0][name].numel() * layers[0][name].element_size()
                       for name in ("in_proj", "x_proj", "dt_proj", "out_proj"))
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.dtype}, d_model {args.d_model}, batch 1;"
          f" us per layer (CUDA graph of {args.layers} layers), GB/s of the layer's weights "
          f"({weight_bytes / 1e6:.1f} MB)")
    front_tilings = dict.fromkeys([DEFAULT_FRONT_TILING] + [FrontTiling.parse(text) for text in args.front_tilings])
    back_tilings = dict.fromkeys([DEFAULT_BACK_TILING] + [BackTiling.parse(text) for text in args.back_tilings])
    for layer in layers:  # the back's inputs, for timing it alone
        layer["xz"], layer["residual_out"] = front(layer, DEFAULT_FRONT_TILING, sums_x_proj=True)
    rows = {f"four launches, front {DEFAULT_FRONT_TILING_WITHOUT_X_PROJ}":
            lambda: [four_launch_step(layer, DEFAULT_FRONT_TILING_WITHOUT_X_PROJ) for layer in layers]}
    for front_tiling in front_tilings:
        rows[f"front alone {front_tiling}"] = lambda ft=front_tiling: [front(layer, ft, True) for layer in layers]
    for back_tiling in back_tilings:
        rows[f"back alone {back_tiling}"] = lambda bt=back_tiling: [back(layer, layer["xz"], layer["residual_out"], bt)
                                                                    for layer in layers]
    for front_tiling in front_tilings:
        for back_tiling in back_tilings:
            rows[f"two kernels, front {front_tiling}, back {back_tiling}"] = (
                lambda ft=front_tiling, bt=back_tiling: [two_kernel_step(layer, ft, bt) for layer in layers])
    print(f"{'implementation':<56} {'us':>8} {'GB/s':>7}")
    for name, run in rows.items():
        microseconds = 1e3 * do_bench_cudagraph(run, rep=50) / args.layers
        print(f"{name:<56} {microseconds:>8.2f} {weight_bytes / microseconds / 1e3:>7.0f}")
    state_step_table(layers, [int(batch) for batch in args.state_batches.split(",")])


if __name__ == "__main__":
    main()
