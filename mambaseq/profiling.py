"""Where the time goes: the ops / kernels with the most self time over a few calls of a function (torch.profiler),
printed by the benchmarks' `--profile` option beside the competing implementations."""
from __future__ import annotations

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
