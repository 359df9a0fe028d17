"""Time the sequential reference scans against the chunked kernels on CPU (forward, and forward + backward).

    python scripts/bench_scan_cpu.py [--threads 1] [--seqlen 2048] [--repeats 3]

Prints one row per (kernel, shape): best-of-`repeats` milliseconds and the speed-up of the chunked kernel.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from mambaseq.kernels import selective_scan_chunked, selective_scan_reference, ssd_chunked, ssd_reference


def mamba1_inputs(batch: int, d_inner: int, d_state: int, seqlen: int) -> dict:
    """Mamba-1-like inputs: A = -(1..d_state) per channel (mamba-ssm's init), softplus step sizes ~0.1."""
    return dict(
        u=torch.randn(batch, d_inner, seqlen), delta=torch.randn(batch, d_inner, seqlen) * 0.5 - 2.0,
        A=-torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1),
        B=torch.randn(batch, d_state, seqlen), C=torch.randn(batch, d_state, seqlen), D=torch.randn(d_inner),
        z=torch.randn(batch, d_inner, seqlen), delta_bias=torch.randn(d_inner) * 0.1, delta_softplus=True,
    )


def ssd_inputs(batch: int, nheads: int, headdim: int, d_state: int, seqlen: int) -> dict:
    return dict(
        x=torch.randn(batch, seqlen, nheads, headdim), dt=torch.randn(batch, seqlen, nheads) * 0.5 - 2.0,
        A=-torch.rand(nheads) * 15 - 1,
        B=torch.randn(batch, seqlen, 1, d_state), C=torch.randn(batch, seqlen, 1, d_state),
        D=torch.randn(nheads), dt_bias=torch.randn(nheads) * 0.1, dt_softplus=True,
    )


def best_time_ms(kernel: Callable, inputs: dict, backward: bool, repeats: int, **options) -> float:
    best = float("inf")
    for _ in range(repeats):
        leaves = {k: v.detach().requires_grad_(backward) if isinstance(v, torch.Tensor) else v
                  for k, v in inputs.items()}
        start = time.perf_counter()
        with torch.set_grad_enabled(backward):
            y = kernel(**leaves, **options)
            if backward:
                y.square().sum().backward()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seqlen", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    length = args.seqlen
    cases = [
        ("mamba1 b=1 d=64 n=16", selective_scan_reference, selective_scan_chunked, mamba1_inputs(1, 64, 16, length),
         {"chunk_size": 64}),
        ("mamba1 b=2 d=256 n=16", selective_scan_reference, selective_scan_chunked,
         mamba1_inputs(2, 256, 16, length), {"chunk_size": 64}),
        ("mamba1 b=1 d=768 n=16", selective_scan_reference, selective_scan_chunked,
         mamba1_inputs(1, 768, 16, length), {"chunk_size": 64}),
        ("ssd b=1 h=8 p=64 n=64", ssd_reference, ssd_chunked, ssd_inputs(1, 8, 64, 64, length), {"chunk_size": 128}),
    ]
    print(f"CPU, torch {torch.__version__}, {torch.get_num_threads()} thread(s), L={length}, best of {args.repeats}")
    print(f"{'shape':<24} {'pass':<9} {'sequential ms':>14} {'chunked ms':>11} {'speed-up':>9}")
    for name, reference, chunked, inputs, options in cases:
        for backward in (False, True):
            sequential_ms = best_time_ms(reference, inputs, backward, 1)
            chunked_ms = best_time_ms(chunked, inputs, backward, args.repeats, **options)
            label = "fwd+bwd" if backward else "fwd"
            print(f"{name:<24} {label:<9} {sequential_ms:>14.0f} {chunked_ms:>11.0f} "
                  f"{sequential_ms / chunked_ms:>8.1f}x", flush=True)


if __name__ == "__main__":
    main()
