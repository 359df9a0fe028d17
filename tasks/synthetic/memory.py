"""How long a trained Mamba model's states last on typical tokens: per layer, the horizon of its slowest-decaying
state component.

A state component of channel (or head) `c` and state index `n` is multiplied by `exp(-dt_t * |A_cn|)` at step `t`.
The typical per-step decay of a component is `median_t(dt_t) * |A_cn|`; a layer's horizon is the inverse of its
smallest: the number of typical steps after which even its longest-lived component has decayed by a factor e.
The median, not the mean: a selective model takes large steps on a few tokens (the induction trigger) and near-zero
steps on distractors, and a mean over a short probe is dominated by the rare tokens (on the induction model in
BENCHMARKS.md it grew 4x from a 256- to a 4096-token probe). A long horizon is necessary, not sufficient, for
recall at long range: writes of distractors into the same component also limit it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mambaseq.mixers import Mamba1Mixer, Mamba2Mixer


@dataclass
class LayerMemory:
    """`layer` index, its slowest typical per-step decay rate `median_t(dt) * |A|` and `horizon = 1 / rate` in
    steps."""

    layer: int
    slowest_rate: float
    horizon: float


def typical_decay_rates(dt: torch.Tensor, A_magnitude: torch.Tensor) -> torch.Tensor:
    """`median_t(dt) * |A|` per state component. dt: (b, L, channels) step sizes; A_magnitude: (channels, d_state)
    (Mamba-1) or (heads,) (Mamba-2) -> same shape as A_magnitude."""
    typical_dt = dt.flatten(0, 1).median(dim=0).values  # over batch and time
    return typical_dt[:, None] * A_magnitude if A_magnitude.dim() == 2 else typical_dt * A_magnitude


def _step_sizes_hook(mixer: torch.nn.Module, found: dict[int, torch.Tensor], index: int):
    """A forward hook that stores the mixer's step sizes `dt: (b, L, channels or heads)` (after softplus)."""
    if isinstance(mixer, Mamba1Mixer):
        def hook(module, inputs, output):
            found[index] = mixer.step_sizes(inputs[0])
        return mixer.register_forward_hook(hook)

    def hook(module, inputs, output):
        found[index] = F.softplus(output[..., -mixer.nheads:].float() + mixer.dt_bias.float())
    return mixer.in_proj.register_forward_hook(hook)


@torch.no_grad()
def memory_horizons(model: torch.nn.Module, input_ids: torch.Tensor) -> list[LayerMemory]:
    """Run `model` (a `MambaLM`) on `input_ids: (b, L)` and report every Mamba layer's memory (attention layers are
    skipped). `dt_limit` clamps of Mamba-2 are not applied (they only bound the rate from below)."""
    found: dict[int, torch.Tensor] = {}
    handles = [_step_sizes_hook(layer.mixer, found, index) for index, layer in enumerate(model.backbone.layers)
               if isinstance(layer.mixer, (Mamba1Mixer, Mamba2Mixer))]
    try:
        model(input_ids)
    finally:
        for handle in handles:
            handle.remove()
    memories = []
    for index, dt in sorted(found.items()):
        mixer = model.backbone.layers[index].mixer
        A = torch.exp(mixer.A_log.float())  # |A|: (d_inner, d_state) for Mamba-1, (nheads,) for Mamba-2
        slowest = float(typical_decay_rates(dt, A).min())
        memories.append(LayerMemory(index, slowest, 1.0 / slowest if slowest > 0 else float("inf")))
    return memories
