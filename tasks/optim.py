"""AdamW with the Mamba / GPT-3 recipe: selective weight decay, linear warmup, cosine decay to `min_lr`.

Weight decay applies to matrices and embeddings only. Biases, the weights of normalization layers and parameters
flagged `_no_weight_decay` (Mamba's `A_log`, `D`, Mamba-2's `dt_bias`) are not decayed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class OptimizerConfig:
    """AdamW and learning-rate schedule of a task.

    The schedule warms up linearly over `warmup_steps` optimizer steps (or `warmup_fraction` of `total_steps` when
    `warmup_steps` is None), then follows a cosine from `lr` down to `min_lr` at `total_steps`, and stays there.
    `total_steps=None` takes the Trainer's estimate (`max_steps`, or `max_epochs` x steps per epoch).
    """

    lr: float = 6e-4
    min_lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    warmup_steps: int | None = None
    warmup_fraction: float = 0.01
    total_steps: int | None = None

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        checks = {
            "lr": self.lr > 0,
            "min_lr": 0 <= self.min_lr <= self.lr,
            "betas": len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "weight_decay": self.weight_decay >= 0,
            "warmup_steps": self.warmup_steps is None or self.warmup_steps >= 0,
            "warmup_fraction": 0 <= self.warmup_fraction < 1,
            "total_steps": self.total_steps is None or self.total_steps > 0,
        }
        expected = {
            "lr": "> 0", "min_lr": f"in [0, lr={self.lr}]", "betas": "two values in [0, 1)",
            "weight_decay": ">= 0", "warmup_steps": "None or >= 0", "warmup_fraction": "in [0, 1)",
            "total_steps": "None or > 0",
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"OptimizerConfig.{name}={getattr(self, name)!r} is invalid: "
                                 f"expected {expected[name]}")

    def resolved_warmup_steps(self, total_steps: int) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return int(round(self.warmup_fraction * total_steps))


def is_norm_module(module: nn.Module) -> bool:
    """LayerNorm, RMSNorm, GatedRMSNorm, GroupNorm, BatchNorm, ...: any module whose class name contains "Norm"."""
    return "Norm" in type(module).__name__


def weight_decay_split(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the trainable parameters that get weight decay, and of those that do not (each parameter once)."""
    no_decay_ids: set[int] = set()
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if name == "bias" or is_norm_module(module) or getattr(parameter, "_no_weight_decay", False):
                no_decay_ids.add(id(parameter))
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if id(parameter) in no_decay_ids else decay).append(name)
    return decay, no_decay


def build_adamw(model: nn.Module, config: OptimizerConfig) -> torch.optim.AdamW:
    """AdamW over two parameter groups: `decay` (weight_decay=config.weight_decay) and `no_decay` (0)."""
    decay, no_decay = weight_decay_split(model)
    parameters = dict(model.named_parameters())
    groups = [
        {"params": [parameters[n] for n in decay], "weight_decay": config.weight_decay, "name": "decay"},
        {"params": [parameters[n] for n in no_decay], "weight_decay": 0.0, "name": "no_decay"},
    ]
    fused = all(p.is_cuda for p in parameters.values()) or None
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, fused=fused)


def warmup_cosine_lr(step: int, *, lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate after `step` optimizer steps: `lr * (step + 1) / warmup_steps` during warmup, then a cosine from
    `lr` to `min_lr` reached at `total_steps`, then `min_lr`."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def build_warmup_cosine(
    optimizer: torch.optim.Optimizer, config: OptimizerConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LambdaLR following `warmup_cosine_lr` (the multiplier is relative to `config.lr`)."""
    warmup_steps = config.resolved_warmup_steps(total_steps)

    def multiplier(step: int) -> float:
        return warmup_cosine_lr(step, lr=config.lr, min_lr=config.min_lr, warmup_steps=warmup_steps,
                                total_steps=total_steps) / config.lr

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
