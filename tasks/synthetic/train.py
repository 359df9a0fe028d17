"""A plain training loop for the synthetic tasks (the paper's protocol: fresh random batches every step, Adam
without weight decay at a constant learning rate), with periodic validation at the training length.

`mambaseq fit --config configs/synthetic/<name>.yaml` trains the same thing through Lightning; this loop is what
`scripts/induction_extrapolation.py` uses, for speed on the CPU and exact control of the steps.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from mambaseq.tasks.synthetic.data import SyntheticGenerator, SyntheticSequences, sequential_loader
from mambaseq.tasks.synthetic.evaluate import evaluate_length
from mambaseq.tasks.synthetic.metrics import target_loss


@dataclass
class SyntheticTrainConfig:
    """Paper (appendix E.1, induction heads): batch 8, lr 1e-3 for Mamba (2e-4 for attention), 8192 steps per
    "epoch", 25 epochs. `stop_accuracy` / `max_minutes` end a run early (CPU demonstrations)."""

    seq_len: int = 256
    batch_size: int = 8
    steps: int = 8192 * 25
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    grad_clip: float | None = None
    seed: int = 0
    eval_every: int = 500
    eval_examples: int = 256
    stop_accuracy: float | None = None
    max_minutes: float | None = None


@dataclass
class TrainingHistory:
    """Validation accuracy at the training length after each evaluation, and how the run ended."""

    steps: list[int] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str = "steps"


def train_synthetic(
    model: torch.nn.Module, task: SyntheticGenerator, config: SyntheticTrainConfig, device: torch.device,
    autocast: contextlib.AbstractContextManager | None = None,
) -> TrainingHistory:
    """Trains `model` (an LM over `task.vocab_size` tokens) on fresh batches from seed `config.seed`."""
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas, weight_decay=0.0)
    batches = iter(sequential_loader(
        SyntheticSequences(task, config.seq_len, config.steps * config.batch_size, config.seed), config.batch_size))
    history = TrainingHistory()
    started = time.perf_counter()
    progress = tqdm(range(1, config.steps + 1), desc=f"train {type(task).__name__} L={config.seq_len}", unit="step")
    running_loss = None
    for step in progress:
        batch = next(batches)
        if config.warmup_steps:
            for group in optimizer.param_groups:
                group["lr"] = config.lr * min(1.0, step / config.warmup_steps)
        with autocast or contextlib.nullcontext():
            loss = target_loss(model(batch["input_ids"].to(device)), batch["labels"].to(device))
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        running_loss = value if running_loss is None else 0.98 * running_loss + 0.02 * value
        minutes = (time.perf_counter() - started) / 60
        out_of_time = config.max_minutes is not None and minutes >= config.max_minutes
        if step % config.eval_every == 0 or step == config.steps or out_of_time:
            result = evaluate_length(model, task, config.seq_len, config.eval_examples, config.seed, device,
                                     autocast=autocast)
            model.train()
            history.steps.append(step)
            history.accuracies.append(result.accuracy)
            history.losses.append(running_loss)
            progress.set_postfix(loss=f"{running_loss:.3f}", val_acc=f"{result.accuracy:.3f}")
            if config.stop_accuracy is not None and result.accuracy >= config.stop_accuracy:
                history.stopped = "accuracy"
                break
            if out_of_time:
                history.stopped = "time"
                break
    history.seconds = time.perf_counter() - started
    return history
