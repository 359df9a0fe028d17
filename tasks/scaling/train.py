"""One sweep point: train a fresh model at one context length, measure speed and memory, validate.

Sequences longer than `chunk_size` go through the exact chunked processor (`mambaseq.long_sequence`), so that one
chunk's activations bound memory; results are the same as one forward/backward over the whole sequence.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mambaseq.config import LMConfig
from mambaseq.lm import MambaLM
from mambaseq.long_sequence import lm_chunk_logits, lm_loss_backward
from mambaseq.precision import at_least_fp32
from mambaseq.tasks.optim import build_adamw, build_warmup_cosine
from mambaseq.tasks.scaling.config import ScalingConfig, SeqLenWarmupConfig
from mambaseq.tasks.scaling.measure import PeakMemory, StepTimer
from mambaseq.tasks.scaling.report import ScalingRecord
from mambaseq.tasks.scaling.windows import TokenStream, train_batch, val_batches
from mambaseq.tasks.seqlen_warmup import stage_at, warmup_schedule

GIB = 1024**3


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA for `precision` "auto"/"bf16" (on the CPU only for "bf16"); fp32 otherwise."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def warmup_seq_len(step: int, total_steps: int, seq_len: int, tokens_per_batch: int,
                   warmup: SeqLenWarmupConfig | None) -> int:
    """Training length at `step`: the stages `start_length, 2 start_length, ..., seq_len` of
    `mambaseq.tasks.seqlen_warmup`, in equal parts of the first `warmup.fraction` of the steps."""
    if warmup is None or warmup.start_length >= seq_len:
        return seq_len
    stages = warmup_schedule(warmup.start_length, seq_len, tokens_per_batch // seq_len)
    every = max(1, int(warmup.fraction * total_steps) // (len(stages) - 1))
    return stages[stage_at(step, len(stages), every, None)][0]


def loss_and_backward(
    model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor, chunk_size: int | None
) -> float:
    """Mean next-token loss, backpropagated; chunked when the sequence is longer than `chunk_size`."""
    if chunk_size is not None and input_ids.shape[1] > chunk_size:
        return lm_loss_backward(model, input_ids, labels, chunk_size).loss
    logits = model(input_ids)
    loss = F.cross_entropy(at_least_fp32(logits).flatten(0, 1), labels.flatten())
    loss.backward()
    return float(loss.detach())


def _chunk_logits(model: torch.nn.Module, input_ids: torch.Tensor, chunk_size: int | None):
    if chunk_size is not None and input_ids.shape[1] > chunk_size:
        yield from lm_chunk_logits(model, input_ids, chunk_size)
    else:
        yield model(input_ids)


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device,
    chunk_size: int | None, autocast: contextlib.AbstractContextManager,
) -> float:
    """Mean next-token loss over all validation tokens (chunked like training for long sequences)."""
    total, count = 0.0, 0
    for input_ids, labels in batches:
        input_ids, labels = input_ids.to(device), labels.to(device)
        start = 0
        with autocast:
            for logits in _chunk_logits(model, input_ids, chunk_size):
                chunk_labels = labels[:, start : start + logits.shape[1]]
                total += float(F.cross_entropy(at_least_fp32(logits).flatten(0, 1), chunk_labels.flatten(), reduction="sum"))
                count += chunk_labels.numel()
                start += logits.shape[1]
    return total / count


def train_at_length(
    config: ScalingConfig, stream: TokenStream, seq_len: int, device: torch.device, position: str = ""
) -> ScalingRecord:
    """Trains `config.model` from seed `config.seed` at `seq_len` for `train_tokens`, then validates."""
    torch.manual_seed(config.seed)
    model_config = LMConfig.from_dict({**config.model, "vocab_size": stream.vocab_size})
    model = MambaLM(model_config).to(device).train()
    total_steps = config.train_tokens // config.tokens_per_batch
    optimizer = build_adamw(model, config.optimizer)
    scheduler = build_warmup_cosine(optimizer, config.optimizer, total_steps)
    autocast = autocast_context(device, config.precision)
    generator = torch.Generator().manual_seed(config.seed)
    timer, memory = StepTimer(device), PeakMemory(device)
    losses: list[float] = []

    progress = tqdm(range(total_steps), desc=f"{position}context {seq_len}", unit="step", leave=False)
    for step in progress:
        step_len = warmup_seq_len(step, total_steps, seq_len, config.tokens_per_batch, config.seqlen_warmup)
        batch_size = config.tokens_per_batch // step_len
        input_ids, labels = (t.to(device) for t in train_batch(stream, batch_size, step_len, generator))
        measured = step_len == seq_len
        if measured and not timer.durations:
            memory.start()
        if measured:
            timer.begin()
        with autocast:
            loss = loss_and_backward(model, input_ids, labels, config.chunk_size)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if measured:
            timer.end(input_ids.numel())
        losses.append(loss)
        progress.set_postfix(loss=f"{loss:.3f}", len=step_len)
    memory.stop()

    model.eval()
    val_loss = validation_loss(model, val_batches(stream, config.tokens_per_batch // seq_len, seq_len,
                                                  config.val_tokens), device, config.chunk_size, autocast)
    tail = losses[-max(1, len(losses) // 10):]
    return ScalingRecord(
        seq_len=seq_len, batch_size=config.tokens_per_batch // seq_len, steps=total_steps,
        train_loss=sum(tail) / len(tail), val_loss=val_loss, val_perplexity=math.exp(val_loss),
        tokens_per_second=timer.tokens_per_second, step_seconds=timer.mean_step_seconds,
        peak_memory_gib=memory.peak_bytes / GIB, memory_kind=memory.kind,
        chunk_size=config.chunk_size if config.chunk_size and seq_len > config.chunk_size else 0,
    )
