"""Mamba-1 selective scan speed on CUDA: mambaseq's Triton kernels vs mamba-ssm's `selective_scan_fn` (when
installed) vs mambaseq's PyTorch chunked scan, plus causal SDPA (FlashAttention) forward as a yardstick.

    python scripts/bench_scan.py                        # the shapes of /work/shared/ANCHORS.md
    python scripts/bench_scan.py --markdown --shapes 8x1536x16x2048
    python scripts/bench_scan.py --tilings 4,64,2/1,32,1 16,32,4/2,32,1   # forward/backward tilings

All scans: bf16 u/delta/B/C/z, fp32 A/D/delta_bias, D + z gate + delta_bias + softplus (ANCHORS' setting).
Times are medians of CUDA-event timings (after warm-up); fwd+bwd = forward with inputs requiring grad plus
backward of a fixed output gradient. Effective bandwidth of the forward counts u, delta, z, y (2 bytes x
batch x d_inner x L each) and B, C (2 bytes x batch x d_state x L each). ratio = time / mamba-ssm's time.
"""
from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from mambaseq.kernels.selective_scan_chunked import selective_scan_chunked
from mambaseq.kernels.triton import GluonScanConfig, ScanConfig, selective_scan_triton

ANCHOR_SHAPES = ["1x1024x16x4096", "1x1024x16x65536", "1x1024x16x524288", "8x1536x16x2048", "4x1536x16x32768"]
SDPA_SEQLEN_LIMIT = 65536        # ANCHORS lists SDPA up to L65536
CHUNKED_ELEMENT_LIMIT = 1 << 30  # batch * d_inner * d_state * L above which the PyTorch scan is not timed
CHUNKED_BACKWARD_LIMIT = 1 << 28  # ... and its backward (autograd keeps every chunk's states)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=ANCHOR_SHAPES, help="BATCHxD_INNERxD_STATExSEQLEN")
    parser.add_argument("--tilings", nargs="*", default=[],
                        help="tilings FORWARD[/BACKWARD], each BLOCK_D,CHUNK,WARPS[,SEGMENTS] (ScanConfig's fields) or "
                             "gSTEPS,WARPS (GluonScanConfig's; default: the library's choice)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs (fewer for runs slower than 50 ms)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-chunked", action="store_true", help="skip the PyTorch chunked scan")
    parser.add_argument("--forward-only", action="store_true", help="time the forward pass only")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    return parser.parse_args()


def median_ms(run: Callable[[], object], repeats: int, warmup: int) -> float:
    """Median wall time of `run()` in ms, from CUDA events; long runs get fewer repeats (at least 3)."""
    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    while len(times) < repeats:
        start.record()
        run()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
        if len(times) >= 3 and sum(times) > 1500.0:
            break
    return statistics.median(times)


def scan_inputs(batch: int, d_inner: int, d_state: int, seqlen: int) -> dict:
    bf16, fp32 = dict(device="cuda", dtype=torch.bfloat16), dict(device="cuda", dtype=torch.float32)
    return dict(
        u=torch.randn(batch, d_inner, seqlen, **bf16),
        delta=torch.randn(batch, d_inner, seqlen, **bf16) * 0.5 - 1.0,
        A=-torch.arange(1, d_state + 1, **fp32).repeat(d_inner, 1),
        B=torch.randn(batch, d_state, seqlen, **bf16),
        C=torch.randn(batch, d_state, seqlen, **bf16),
        D=torch.ones(d_inner, **fp32),
        z=torch.randn(batch, d_inner, seqlen, **bf16),
        delta_bias=torch.rand(d_inner, **fp32) - 4.0,
    )


def _config(spec: str | None) -> ScanConfig | GluonScanConfig | None:
    """"4,64,2" -> ScanConfig(4, 64, 2); "g8,4" -> GluonScanConfig(8, 4); "" -> None (the library's choice)."""
    if not spec:
        return None
    if spec.startswith("g"):
        return GluonScanConfig(*(int(value) for value in spec[1:].split(",")))
    return ScanConfig(*(int(value) for value in spec.split(",")))


def contenders(tilings: list[str], with_chunked: bool) -> dict[str, Callable]:
    """name -> scan(u, delta, A, B, C, D, z, delta_bias) with delta_softplus=True."""
    scans = {}
    for tiling in tilings or [None]:
        forward, _, backward = (tiling or "").partition("/")
        name = "triton" if tiling is None else f"triton[{tiling}]"
        scans[name] = lambda *args, forward=_config(forward), backward=_config(backward): selective_scan_triton(
            *args, delta_softplus=True, config=forward, backward_config=backward)
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        scans["mamba-ssm"] = lambda *args: selective_scan_fn(*args, delta_softplus=True)
    except ImportError as error:
        print(f"mamba-ssm not importable ({error}): its column is skipped")
    if with_chunked:
        scans["torch chunked"] = lambda *args: selective_scan_chunked(*args, delta_softplus=True)
    return scans


def time_scan(scan: Callable, inputs: dict, backward: bool, repeats: int, warmup: int) -> float:
    if not backward:
        with torch.no_grad():
            return median_ms(lambda: scan(*inputs.values()), repeats, warmup)
    leaves = {name: value.detach().requires_grad_() for name, value in inputs.items()}
    grad_output = torch.randn_like(inputs["u"])

    def step() -> None:
        scan(*leaves.values()).backward(grad_output)
    return median_ms(step, repeats, warmup)


def sdpa_forward_ms(batch: int, d_inner: int, seqlen: int, repeats: int, warmup: int) -> float:
    """Causal scaled-dot-product attention forward, heads of 64 (d_inner / 64 heads), bf16."""
    q, k, v = (torch.randn(batch, d_inner // 64, seqlen, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    with torch.no_grad():
        return median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), repeats, warmup)


def main() -> None:
    args = parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_scan.py needs a CUDA GPU")
    scans = contenders(args.tilings, not args.no_chunked)
    rows = []
    for shape in args.shapes:
        batch, d_inner, d_state, seqlen = (int(value) for value in shape.split("x"))
        inputs = scan_inputs(batch, d_inner, d_state, seqlen)
        gigabytes = 2 * (4 * batch * d_inner * seqlen + 2 * batch * d_state * seqlen) / 1e9
        elements = batch * d_inner * d_state * seqlen
        results = {}
        for name, scan in tqdm(scans.items(), desc=shape, leave=False):
            chunked = name == "torch chunked"
            forward = (None if chunked and elements > CHUNKED_ELEMENT_LIMIT
                       else time_scan(scan, inputs, False, args.repeats, args.warmup))
            both = (None if args.forward_only or (chunked and elements > CHUNKED_BACKWARD_LIMIT)
                    else time_scan(scan, inputs, True, args.repeats, args.warmup))
            results[name] = (forward, both)
            torch.cuda.empty_cache()
        if seqlen <= SDPA_SEQLEN_LIMIT:
            results["SDPA causal (fwd)"] = (sdpa_forward_ms(batch, d_inner, seqlen, args.repeats, args.warmup), None)
        reference = results.get("mamba-ssm", (None, None))
        for name, (forward, both) in results.items():
            rows.append(_row(shape, name, forward, both, gigabytes, reference, name.startswith("SDPA")))
        del inputs
        torch.cuda.empty_cache()
    _print(rows, args.markdown)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _row(shape, name, forward, both, gigabytes, reference, is_attention) -> list[str]:
    ratio = lambda ours, theirs: "-" if ours is None or theirs is None else f"{ours / theirs:.2f}"
    bandwidth = "-" if forward is None or is_attention else f"{gigabytes / (forward / 1e3):.0f}"
    return [shape, name, _ms(forward), _ms(both), bandwidth, ratio(forward, reference[0]), ratio(both, reference[1])]


def _print(rows: list[list[str]], markdown: bool) -> None:
    header = ["shape (b x d x n x L)", "implementation", "fwd ms", "fwd+bwd ms", "fwd GB/s", "fwd ratio",
              "fwd+bwd ratio"]
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; ratio = time / mamba-ssm time")
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(cell.ljust(width) if i < 2 else cell.rjust(width) for i, (cell, width)
                        in enumerate(zip(row, widths))))


if __name__ == "__main__":
    main()
