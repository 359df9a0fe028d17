"""BiMamba (Caduceus): a mixer run forward over the sequence and a second one over the reversed sequence.

`BidirectionalMixer(hidden) = combine(mamba_fwd(hidden), flip(mamba_rev(flip(hidden))))` with `combine` = add or
element-wise product. With `weight_tie` (Caduceus' default) the reverse mixer shares `in_proj` and `out_proj` with
the forward one, so a BiMamba layer costs only the extra conv / dt / B / C / A / D parameters. The output at a
position depends on the whole sequence, so there is no recurrent `step`; such a backbone is for masked-LM
pretraining and sequence-level tasks. Submodule names (`mamba_fwd`, `mamba_rev`) are Caduceus'.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mambaseq.backbone import MambaBackbone
from mambaseq.mixers import build_mixer

Combine = Literal["add", "ew_multiply"]
COMBINE_STRATEGIES = ("add", "ew_multiply")
TIED_PROJECTIONS = ("in_proj", "out_proj")


class BidirectionalMixer(nn.Module):
    """Forward + reverse mixer. hidden: (b, L, d_model) -> (b, L, d_model)."""

    def __init__(self, forward_mixer: nn.Module, reverse_mixer: nn.Module, strategy: Combine = "add",
                 weight_tie: bool = True) -> None:
        super().__init__()
        if strategy not in COMBINE_STRATEGIES:
            raise ValueError(f"BidirectionalMixer: strategy={strategy!r}, expected one of {COMBINE_STRATEGIES}")
        self.strategy = strategy
        self.mamba_fwd = forward_mixer
        self.mamba_rev = reverse_mixer
        if weight_tie:
            for name in TIED_PROJECTIONS:
                shared, tied = getattr(forward_mixer, name), getattr(reverse_mixer, name)
                tied.weight = shared.weight
                if shared.bias is not None:
                    tied.bias = shared.bias

    def forward(self, hidden: torch.Tensor, cache: object | None = None) -> torch.Tensor:
        if cache is not None:
            raise ValueError("BidirectionalMixer sees the whole sequence: it cannot continue from a decoding cache")
        forward_out = self.mamba_fwd(hidden)
        reverse_out = self.mamba_rev(hidden.flip(1)).flip(1)
        if self.strategy == "add":
            return forward_out + reverse_out
        return forward_out * reverse_out

    def step(self, hidden: torch.Tensor, cache: object) -> torch.Tensor:
        raise ValueError("BidirectionalMixer has no recurrent step: the output depends on future positions")

    def allocate_cache(self, batch: int, dtype: torch.dtype, device: torch.device | str) -> object:
        raise ValueError("BidirectionalMixer has no decoding cache: the output depends on future positions")


def make_bidirectional(backbone: MambaBackbone, strategy: Combine = "add", weight_tie: bool = True
                       ) -> MambaBackbone:
    """Turn every mixer of `backbone` into a `BidirectionalMixer` (in place; returns `backbone`). The reverse
    mixers are built from the same config and initialized as the backbone initializes its own (mamba-ssm's scheme),
    before their projections are tied to the forward ones."""
    config = backbone.config
    for layer in backbone.layers:
        reverse = build_mixer(config.d_model, config.layer_mixer(layer.layer_idx), config.kernel_backend,
                              config.norm_eps)
        reverse.to(device=layer.mixer.out_proj.weight.device, dtype=layer.mixer.out_proj.weight.dtype)
        reverse.apply(backbone._init_weights)
        layer.mixer = BidirectionalMixer(layer.mixer, reverse, strategy=strategy, weight_tie=weight_tie)
    return backbone
