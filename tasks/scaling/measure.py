"""Peak-memory and throughput measurement for one sweep point.

Peak memory is CUDA `max_memory_allocated` on a GPU and the process's peak resident set size (Linux `VmHWM`, reset
through `/proc/self/clear_refs`) on the CPU; where the reset is not allowed the CPU figure is the lifetime peak.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _read_status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_cpu_peak() -> bool:
    """Resets the peak RSS counter (Linux >= 4.0 accepts "5" in clear_refs); False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


@dataclass
class PeakMemory:
    """Measures peak memory between `start()` and `stop()` on `device`.

    `kind` is `"cuda"` (bytes allocated by PyTorch), `"cpu_rss"` (peak RSS since start) or `"cpu_rss_lifetime"`.
    """

    device: torch.device
    kind: str = ""
    peak_bytes: int = 0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "cuda"
        else:
            self.kind = "cpu_rss" if _reset_cpu_peak() else "cpu_rss_lifetime"

    def stop(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            peak_kib = _read_status_kib("VmHWM") or _read_status_kib("VmRSS") or 0
            self.peak_bytes = peak_kib * 1024
        return self.peak_bytes


class StepTimer:
    """Wall-clock timer of training steps that synchronizes CUDA so the times are the device's.

    The first `skip` steps (compilation, autotuning, allocator warm-up) are left out of the average.
    """

    def __init__(self, device: torch.device, skip: int = 1) -> None:
        self.device = device
        self.skip = skip
        self.durations: list[float] = []
        self.tokens: list[int] = []
        self._started = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def begin(self) -> None:
        self._sync()
        self._started = time.perf_counter()

    def end(self, num_tokens: int) -> float:
        self._sync()
        duration = time.perf_counter() - self._started
        self.durations.append(duration)
        self.tokens.append(num_tokens)
        return duration

    def _measured(self) -> tuple[list[float], list[int]]:
        if len(self.durations) > self.skip:
            return self.durations[self.skip :], self.tokens[self.skip :]
        return self.durations, self.tokens

    @property
    def mean_step_seconds(self) -> float:
        durations, _ = self._measured()
        return sum(durations) / max(len(durations), 1)

    @property
    def tokens_per_second(self) -> float:
        durations, tokens = self._measured()
        total = sum(durations)
        return sum(tokens) / total if total > 0 else 0.0
