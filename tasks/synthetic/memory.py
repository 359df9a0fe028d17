"""How far back a trained Mamba model can remember: per layer, the memory horizon of its slowest-decaying state.

A state component of channel (or head) `c` and state index `n` is multiplied by `exp(-dt_t * |A_cn|)` at each step
`t`, so over `T` steps it keeps `exp(-T * mean_t(dt_t) * |A_cn|)` of itself. The horizon of a layer is
`1 / min_cn(mean_t(dt_t) * |A_cn|)`: the number of steps after which even its longest-lived component has decayed
by a factor e. Induction heads at length `T` need a horizon well above `T`, so this number explains how far a
model trained at 256 extrapolates (the learned `dt` on distractor tokens sets it).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mambaseq.mixers import Mamba1Mixer, Mamba2Mixer


@dataclass
class LayerMemory:
    """`layer` index, its slowest per-step decay rate `mean_t(dt) * |A|` and `horizon = 1 / rate` in steps."""

    layer: int
    slowest_rate: float
    horizon: float


def _step_sizes_hook(mixer: torch.nn.Module, found: dict[int, torch.Tensor], index: int):
    """A forward hook that stores the mixer's step sizes `dt: (b, L, channels or heads)` (after softplus)."""
    if isinstance(mixer, Mamba1Mixer):
        def hook(module, inputs, output):
            raw = output[..., :mixer.dt_rank] @ mixer.dt_proj.weight.t() + mixer.dt_proj.bias
            found[index] = F.softplus(raw.float())
        return mixer.x_proj.register_forward_hook(hook)

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
        mean_dt = dt.mean(dim=(0, 1))
        rates = mean_dt[:, None] * A if A.dim() == 2 else mean_dt * A
        slowest = float(rates.min())
        memories.append(LayerMemory(index, slowest, 1.0 / slowest if slowest > 0 else float("inf")))
    return memories
