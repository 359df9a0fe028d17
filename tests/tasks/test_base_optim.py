"""AdamW parameter groups (which parameters decay) and the warmup + cosine learning-rate schedule."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mambaseq.config import AttentionConfig, BackboneConfig, LMConfig, Mamba2Config
from mambaseq.lm import MambaLM
from mambaseq.tasks.optim import (OptimizerConfig, build_adamw, build_warmup_cosine, warmup_cosine_lr,
                                  weight_decay_split)


def _no_decay_expected(name: str) -> bool:
    """Biases, Mamba's A_log / D / dt_bias, and the weights of norm modules (`norm`, `norm2`, `norm_f`, ...)."""
    owner, leaf = name.split(".")[-2:]
    return leaf in {"bias", "A_log", "D", "dt_bias"} or owner.startswith("norm")


@pytest.mark.parametrize("mixer", ["mamba1", "mamba2", "hybrid"])
def test_weight_decay_split_of_mamba_models(mixer):
    backbone = {"mamba1": BackboneConfig(d_model=32, n_layer=2),
                "mamba2": BackboneConfig(d_model=32, n_layer=2, mixer=Mamba2Config(headdim=16, d_state=16)),
                "hybrid": BackboneConfig(d_model=32, n_layer=2, attn_layer_idx=[1], d_intermediate=64,
                                         attn=AttentionConfig(num_heads=2))}[mixer]
    model = MambaLM(LMConfig(backbone=backbone, vocab_size=100))
    decay, no_decay = weight_decay_split(model)
    names = [name for name, _ in model.named_parameters()]
    assert sorted(decay + no_decay) == sorted(names)
    for name in names:
        assert (name in no_decay) == _no_decay_expected(name), name
    assert "backbone.embedding.weight" in decay  # tied with lm_head, listed once
    assert "lm_head.weight" not in names
    assert any(name.endswith("in_proj.weight") for name in decay)
    assert any(name.endswith("conv1d.weight") for name in decay)
    expected_flagged = {"mamba1": ("A_log", "D"), "mamba2": ("A_log", "D", "dt_bias"), "hybrid": ("A_log", "D")}
    for leaf in expected_flagged[mixer]:
        assert any(name.endswith("mixer." + leaf) for name in no_decay), leaf


def test_flagged_and_norm_parameters_are_not_decayed():
    class Toy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 4)
            self.layer_norm = nn.LayerNorm(4)
            self.scale = nn.Parameter(torch.ones(4))
            self.scale._no_weight_decay = True
            self.frozen = nn.Parameter(torch.ones(4, 4), requires_grad=False)

    decay, no_decay = weight_decay_split(Toy())
    assert decay == ["linear.weight"]
    assert sorted(no_decay) == ["layer_norm.bias", "layer_norm.weight", "linear.bias", "scale"]


def test_adamw_groups_carry_the_recipe():
    model = MambaLM(LMConfig(backbone=BackboneConfig(d_model=32, n_layer=1), vocab_size=64))
    optimizer = build_adamw(model, OptimizerConfig(lr=1e-3, weight_decay=0.1))
    decay_group, no_decay_group = optimizer.param_groups
    assert decay_group["weight_decay"] == 0.1 and no_decay_group["weight_decay"] == 0.0
    assert decay_group["betas"] == (0.9, 0.95)
    assert len(decay_group["params"]) + len(no_decay_group["params"]) == len(list(model.parameters()))


def test_schedule_values():
    kwargs = dict(lr=1e-3, min_lr=1e-5, warmup_steps=10, total_steps=110)
    assert warmup_cosine_lr(0, **kwargs) == pytest.approx(1e-4)
    assert warmup_cosine_lr(4, **kwargs) == pytest.approx(5e-4)
    assert warmup_cosine_lr(9, **kwargs) == pytest.approx(1e-3)
    assert warmup_cosine_lr(10, **kwargs) == pytest.approx(1e-3)
    assert warmup_cosine_lr(60, **kwargs) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))  # half way: mean
    assert warmup_cosine_lr(35, **kwargs) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi / 4)))
    assert warmup_cosine_lr(110, **kwargs) == pytest.approx(1e-5)
    assert warmup_cosine_lr(500, **kwargs) == pytest.approx(1e-5)
    values = [warmup_cosine_lr(step, **kwargs) for step in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_lambda_scheduler_follows_the_schedule():
    parameter = nn.Parameter(torch.zeros(2, 2))
    config = OptimizerConfig(lr=2e-3, min_lr=1e-4, warmup_fraction=0.1)
    optimizer = torch.optim.AdamW([parameter], lr=config.lr)
    scheduler = build_warmup_cosine(optimizer, config, total_steps=50)
    seen = []
    for _ in range(60):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [warmup_cosine_lr(step, lr=2e-3, min_lr=1e-4, warmup_steps=5, total_steps=50) for step in range(60)]
    assert seen == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("field,value", [("lr", 0.0), ("min_lr", 1.0), ("betas", (0.9, 1.0)), ("warmup_fraction", 1.0),
                                         ("weight_decay", -0.1), ("total_steps", 0)])
def test_invalid_optimizer_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"OptimizerConfig.{field}="):
        OptimizerConfig(**{field: value})
