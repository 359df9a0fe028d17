"""Timing for the benchmarks: the median time of a call, and where the time goes (the ops / kernels with the most
self time over a few calls, torch.profiler), printed by their `--profile` option beside the competing
implementations."""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile


def top_ops_table(run: Callable[[], object], calls: int, rows: int, device: torch.device) -> str:
    """Profile `calls` calls of `run` and return the table of the `rows` ops with the most self time (CUDA kernels,
    graph-replayed ones included, on a CUDA `device`; CPU ops otherwise), sorted by that time."""
    on_cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    with profile(activities=activities) as profiler:
        for _ in range(calls):
            run()
        if on_cuda:
            torch.cuda.synchronize(device)
    sort_by = "self_cuda_time_total" if on_cuda else "self_cpu_time_total"
    header = f"{calls} call(s), top {rows} by {sort_by}"
    return header + "\n" + profiler.key_averages().table(sort_by=sort_by, row_limit=rows, max_name_column_width=70)


def median_ms(run: Callable[[], object], repeats: int, warmup: int, cuda: bool) -> float:
    """Median time of `run()` in ms after `warmup` calls: CUDA events on the GPU, perf_counter on the CPU."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        if cuda:
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop))
        else:
            start_s = time.perf_counter()
            run()
            times.append((time.perf_counter() - start_s) * 1e3)
    return statistics.median(times)


def forward_backward(run: Callable[[dict], torch.Tensor], problem: dict[str, torch.Tensor]) -> Callable[[], None]:
    """One forward+backward call of `run(inputs)` with gradients of every input (fresh leaves of `problem`'s tensors,
    layouts kept) and a random output gradient shaped like `problem["x"]`."""
    leaves = {k: v.detach().requires_grad_() for k, v in problem.items()}
    grad_output = torch.randn_like(problem["x"])
    return lambda: run(leaves).backward(grad_output)


def parse_kernel_bench_args(parser: argparse.ArgumentParser, device_free: str | None = None) -> argparse.Namespace:
    """Adds a kernel benchmark's common options (--repeats, --warmup, --markdown, --tiny), parses the command line
    and checks the device (`check_tiny_or_cuda`) unless the option named `device_free` (a run without kernels) is
    set."""
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run under TRITON_INTERPRET=1 (no timings)")
    args = parser.parse_args()
    if device_free is None or not getattr(args, device_free):
        check_tiny_or_cuda(parser, args.tiny)
    return args


def check_tiny_or_cuda(parser: argparse.ArgumentParser, tiny: bool) -> None:
    """A Triton benchmark's device check: `--tiny` runs its kernels in Triton's CPU interpreter (TRITON_INTERPRET=1
    must be set before they are defined), anything else needs a CUDA GPU; exits through `parser.error` otherwise."""
    if tiny and os.environ.get("TRITON_INTERPRET") != "1":
        parser.error("--tiny runs the kernels in Triton's CPU interpreter: set TRITON_INTERPRET=1")
    if not tiny and not torch.cuda.is_available():
        parser.error("timing needs a CUDA GPU; without one, run --tiny under TRITON_INTERPRET=1")
