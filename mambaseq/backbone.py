"""`MambaBackbone`: token embedding → `n_layer` residual blocks → final norm, with mamba-ssm's initialization.

State-dict keys are mamba-ssm's `MixerModel` (`embedding.weight`, `layers.{i}.norm.weight`, `layers.{i}.mixer.*`,
`norm_f.weight`), so mamba-ssm backbones load without renaming.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from mambaseq.block import Block
from mambaseq.config import BackboneConfig
from mambaseq.inference import InferenceCache
from mambaseq.norm import make_norm

EMBEDDING_INIT_STD = 0.02
RESCALED_PARAMETERS = ("out_proj.weight", "fc2.weight")


class MambaBackbone(nn.Module):
    """Sequence backbone. `vocab_size=None` builds no embedding (callers pass `inputs_embeds`)."""

    def __init__(self, config: BackboneConfig, vocab_size: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.gradient_checkpointing = config.gradient_checkpointing
        self.embedding = nn.Embedding(vocab_size, config.d_model) if vocab_size else None
        self.layers = nn.ModuleList(Block(config, layer_idx) for layer_idx in range(config.n_layer))
        self.norm_f = make_norm(config.d_model, config.norm_eps, config.rms_norm)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """mamba-ssm's init: zero Linear biases (except those marked `_no_reinit`), embedding N(0, 0.02), and
        output projections (`out_proj`, `fc2`) rescaled by 1/sqrt(n_residuals_per_layer * n_layer) (GPT-2 scheme)."""
        if isinstance(module, nn.Linear) and module.bias is not None and not getattr(module.bias, "_no_reinit", False):
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=EMBEDDING_INIT_STD)
        residuals_per_layer = 2 if self.config.d_intermediate > 0 else 1
        for name, parameter in module.named_parameters(recurse=True):
            if name in RESCALED_PARAMETERS:
                nn.init.kaiming_uniform_(parameter, a=math.sqrt(5))
                with torch.no_grad():
                    parameter /= math.sqrt(residuals_per_layer * self.config.n_layer)

    def allocate_cache(self, batch: int, dtype: torch.dtype, device: torch.device | str) -> InferenceCache:
        """Empty decoding state for `batch` sequences (conv/KV states in `dtype`, SSM states in fp32)."""
        return InferenceCache(layers=[layer.allocate_cache(batch, dtype, device) for layer in self.layers])

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache: InferenceCache | None = None,
    ) -> torch.Tensor:
        """input_ids: (b, L) or inputs_embeds: (b, L, d_model) -> (b, L, d_model). With `cache`, continues from its
        states (prompt prefill) and leaves the final states in it."""
        hidden = self._embed(input_ids, inputs_embeds)
        residual = None
        checkpointed = self.gradient_checkpointing and self.training and cache is None and torch.is_grad_enabled()
        for index, layer in enumerate(self.layers):
            if checkpointed:
                hidden, residual = checkpoint(layer, hidden, residual, use_reentrant=False)
            else:
                hidden, residual = layer(hidden, residual, cache.layers[index] if cache is not None else None)
        if cache is not None:
            cache.seqlen_offset += hidden.shape[1]
        return self._final_norm(hidden, residual)

    def step(
        self, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None, *,
        cache: InferenceCache,
    ) -> torch.Tensor:
        """One recurrent step: input_ids (b, 1) or inputs_embeds (b, 1, d_model) -> (b, 1, d_model)."""
        hidden = self._embed(input_ids, inputs_embeds)
        if hidden.shape[1] != 1:
            raise ValueError(f"MambaBackbone.step takes one token per sequence, got shape {tuple(hidden.shape)}")
        residual = None
        for layer, layer_cache in zip(self.layers, cache.layers):
            hidden, residual = layer.step(hidden, residual, layer_cache)
        cache.seqlen_offset += 1
        return self._final_norm(hidden, residual)

    def _embed(self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None) -> torch.Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("MambaBackbone: pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is not None:
            return inputs_embeds
        if self.embedding is None:
            raise ValueError("MambaBackbone was built without an embedding (vocab_size=None): pass inputs_embeds")
        return self.embedding(input_ids)

    def _final_norm(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        residual = hidden + residual
        return self.norm_f(residual.to(self.norm_f.weight.dtype))
