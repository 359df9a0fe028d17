"""Tiny model configs shared by the model tests (fp32, CPU, a few thousand parameters)."""
from __future__ import annotations

import torch

from mambaseq.config import AttentionConfig, BackboneConfig, LMConfig, Mamba1Config, Mamba2Config

VOCAB_SIZE = 61  # not a multiple of 8: the LM head has padded rows


def tiny_lm_config(kind: str, **backbone_overrides) -> LMConfig:
    """kind: "mamba1", "mamba2" (2 groups), "hybrid" (Mamba-2 + a GQA/RoPE/conv attention layer + MLP)."""
    mixers = {
        "mamba1": Mamba1Config(d_state=8),
        "mamba2": Mamba2Config(d_state=8, headdim=8, ngroups=2, chunk_size=4),
        "hybrid": Mamba2Config(d_state=8, headdim=16, chunk_size=4),
    }
    backbone = dict(d_model=32, n_layer=3, mixer=mixers[kind])
    if kind == "hybrid":
        backbone.update(attn_layer_idx=[1], d_intermediate=40,
                        attn=AttentionConfig(num_heads=4, num_heads_kv=2, rotary_emb_dim=4, d_conv=3))
    backbone.update(backbone_overrides)
    return LMConfig(backbone=BackboneConfig(**backbone), vocab_size=VOCAB_SIZE)


@torch.no_grad()
def perturb_(module: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Add noise to every parameter so that no term (norm weights, biases, D) is a no-op in a comparison."""
    generator = torch.Generator().manual_seed(seed)
    for parameter in module.parameters():
        parameter.add_(scale * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return module
