"""Accuracy of a trained model on a synthetic task at many sequence lengths (length extrapolation).

Mamba models are run through the exact chunked forward (`mambaseq.long_sequence`), so memory is that of one chunk
whatever the length (2^20 fits easily); other models (attention) run in one pass and report "oom" where they run out.
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from mambaseq.long_sequence import StatefulLM, lm_chunk_logits
from mambaseq.tasks.synthetic.data import SyntheticGenerator, sequential_loader, validation_set
from mambaseq.tasks.synthetic.metrics import TargetAccuracy


@dataclass
class LengthAccuracy:
    """Accuracy at one evaluation length; `status` is "ok" or "oom"."""

    seq_len: int
    accuracy: float
    sequence_accuracy: float
    num_examples: int
    seconds: float
    peak_memory_gib: float
    status: str = "ok"


def supports_chunking(model: torch.nn.Module) -> bool:
    try:
        StatefulLM(model)
    except TypeError:
        return False
    return True


def _predictions(model: torch.nn.Module, input_ids: torch.Tensor, chunk_size: int | None) -> Iterator[torch.Tensor]:
    if chunk_size is not None and input_ids.shape[1] > chunk_size:
        for logits in lm_chunk_logits(model, input_ids, chunk_size):
            yield logits.argmax(dim=-1)
    else:
        yield model(input_ids).argmax(dim=-1)


@torch.no_grad()
def evaluate_length(
    model: torch.nn.Module, task: SyntheticGenerator, seq_len: int, num_examples: int, seed: int,
    device: torch.device, chunk_size: int | None = 65536, max_batch_tokens: int = 2**20,
    autocast: contextlib.AbstractContextManager | None = None,
) -> LengthAccuracy:
    """Accuracy on the fixed validation set of `task` at `seq_len` (seed `seed`), `max_batch_tokens` per batch."""
    model.eval()
    chunk_size = chunk_size if supports_chunking(model) else None
    batch_size = max(1, min(num_examples, max_batch_tokens // seq_len))
    metric = TargetAccuracy()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    try:
        for batch in sequential_loader(validation_set(task, seq_len, num_examples, seed), batch_size):
            with autocast or contextlib.nullcontext():
                chunks = list(_predictions(model, batch["input_ids"].to(device), chunk_size))
            metric.update(torch.cat(chunks, dim=1).cpu(), batch["labels"])
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return LengthAccuracy(seq_len, float("nan"), float("nan"), 0, time.perf_counter() - started, float("nan"),
                              status="oom")
    peak = torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else float("nan")
    return LengthAccuracy(seq_len, metric.accuracy, metric.sequence_accuracy, metric.sequences,
                          time.perf_counter() - started, peak)


def accuracy_table(results: list[LengthAccuracy], title: str) -> str:
    """Markdown table of `results`, one row per length."""
    lines = [f"**{title}**", "", "| length | accuracy | seq. accuracy | examples | seconds | peak GPU mem (GiB) |",
             "|---|---|---|---|---|---|"]
    for r in results:
        exponent = r.seq_len.bit_length() - 1
        name = f"2^{exponent}" if r.seq_len == 2**exponent else str(r.seq_len)
        if r.status != "ok":
            lines.append(f"| {name} | {r.status} | | | {r.seconds:.1f} | |")
        else:
            memory = "-" if math.isnan(r.peak_memory_gib) else f"{r.peak_memory_gib:.2f}"
            lines.append(f"| {name} | {r.accuracy:.4f} | {r.sequence_accuracy:.4f} | {r.num_examples} | "
                         f"{r.seconds:.1f} | {memory} |")
    return "\n".join(lines)
