"""DNA networks: a Mamba backbone over the 12-id DNA vocabulary, made bidirectional (BiMamba) and/or
reverse-complement equivariant (Caduceus-PS parameter sharing) per `DNAModelConfig`, with an LM head or a
sequence classifier on top.

| bidirectional | rc_equivariant | network | objectives |
| --- | --- | --- | --- |
| false | false | causal Mamba (HyenaDNA / Mamba DNA setup) | next-token, classification (last position) |
| true | false | BiMamba | masked, classification (mean pool) |
| false / true | true | RC-equivariant Mamba / Caduceus-PS | masked, classification (RC-invariant mean pool) |

State-dict keys of the causal LM are mamba-ssm's (`backbone.embedding.weight`, `backbone.layers.{i}...`,
`lm_head.weight`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from mambaseq.backbone import MambaBackbone
from mambaseq.config import BackboneConfig, LMConfig
from mambaseq.heads import LMHead, pool_sequence
from mambaseq.mixers.bidirectional import COMBINE_STRATEGIES, make_bidirectional
from mambaseq.rc import RCEquivariantLMHead, rc_equivariant_forward, rc_invariant_features
from mambaseq.tasks.dna.tokenizer import PAD_ID, VOCAB_SIZE, complement_ids

Pooling = Literal["auto", "last", "mean"]


@dataclass
class DNAModelConfig:
    """Backbone (`BackboneConfig` keys) + the DNA-specific wrapping. `bidirectional_strategy` combines the two
    directions ("add" or "ew_multiply"); `bidirectional_weight_tie` shares in/out projections between them."""

    backbone: BackboneConfig = field(default_factory=lambda: BackboneConfig(d_model=128, n_layer=6))
    bidirectional: bool = False
    bidirectional_strategy: Literal["add", "ew_multiply"] = "add"
    bidirectional_weight_tie: bool = True
    rc_equivariant: bool = False
    pad_vocab_size_multiple: int = 8

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = BackboneConfig.from_dict(self.backbone)
        if self.bidirectional_strategy not in COMBINE_STRATEGIES:
            raise ValueError(f"DNAModelConfig.bidirectional_strategy={self.bidirectional_strategy!r}: expected one "
                             f"of {COMBINE_STRATEGIES}")

    @property
    def causal(self) -> bool:
        """True when the output at position l depends only on positions <= l (no bidirectional or RC wrapping,
        no attention layer with `causal: false`)."""
        layers_causal = all(getattr(self.backbone.layer_mixer(i), "causal", True) for i in range(self.backbone.n_layer))
        return layers_causal and not (self.bidirectional or self.rc_equivariant)

    @property
    def padded_vocab_size(self) -> int:
        return LMConfig(backbone=self.backbone, vocab_size=VOCAB_SIZE,
                        pad_vocab_size_multiple=self.pad_vocab_size_multiple).padded_vocab_size

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["backbone"] = self.backbone.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DNAModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"DNAModelConfig: unknown key(s) {unknown}; expected keys from {sorted(known)}")
        return cls(**data)


class DNAEncoder(nn.Module):
    """input_ids (b, L) -> features (b, L, d_model), or (b, L, 2 d_model) when RC-equivariant. Keeps the backbone
    (with its mixers made bidirectional when configured) as `backbone`."""

    def __init__(self, config: DNAModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = MambaBackbone(config.backbone, vocab_size=config.padded_vocab_size)
        if config.bidirectional:
            make_bidirectional(self.backbone, config.bidirectional_strategy, config.bidirectional_weight_tie)
        complement = torch.from_numpy(complement_ids(config.padded_vocab_size))
        self.register_buffer("complement", complement, persistent=False)

    def forward_features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids (b, L) -> features (b, L, d_model or 2 d_model)."""
        if self.config.rc_equivariant:
            return rc_equivariant_forward(self.backbone, input_ids, self.complement)
        return self.backbone(input_ids)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.forward_features(input_ids)


class DNALanguageModel(DNAEncoder):
    """Features -> logits `(b, L, padded_vocab)` through the tied embedding (RC-equivariant head when
    `rc_equivariant`)."""

    def __init__(self, config: DNAModelConfig) -> None:
        super().__init__(config)
        embedding = self.backbone.embedding
        if config.rc_equivariant:
            self.lm_head = RCEquivariantLMHead(embedding.weight, self.complement)
        else:
            self.lm_head = LMHead(config.backbone.d_model, config.padded_vocab_size, tied_embedding=embedding)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.forward_features(input_ids))


def last_valid(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Features at the last valid position of each row (`mask: (b, L)`, padding on either side): (b, d)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), positions, -1).amax(dim=1).clamp(min=0)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class DNAClassifier(DNAEncoder):
    """Sequence classifier: `(b, L) -> (b, num_classes)`. Pooling "auto" is the last valid position for a causal
    network (HyenaDNA), the mean over valid positions otherwise; RC-equivariant networks pool the RC-invariant
    features (`rc_invariant_features`), so that their logits are invariant to reverse complementing the input."""

    def __init__(self, config: DNAModelConfig, num_classes: int, pooling: Pooling = "auto",
                 dropout: float = 0.0) -> None:
        super().__init__(config)
        if pooling == "auto":
            pooling = "last" if config.causal else "mean"
        if pooling not in ("last", "mean"):
            raise ValueError(f"DNAClassifier: pooling={pooling!r}, expected 'auto', 'last' or 'mean'")
        if config.rc_equivariant and pooling != "mean":
            raise ValueError("DNAClassifier: an RC-equivariant network needs pooling 'mean' (or 'auto') to stay "
                             "RC-invariant")
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.backbone.d_model, num_classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = input_ids != PAD_ID
        hidden = self.forward_features(input_ids)
        if self.config.rc_equivariant:
            hidden = rc_invariant_features(hidden)
        pooled = last_valid(hidden, mask) if self.pooling == "last" else pool_sequence(hidden, mask, "mean")
        return self.classifier(self.dropout(pooled.to(self.classifier.weight.dtype)))
