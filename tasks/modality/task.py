"""`ModalityTask`: input adapter -> shared `MambaBackbone` (fed `inputs_embeds`) -> head.

A new modality subclasses it, implements `compute_loss(batch) -> TaskOutput` and is registered by name with
`@register_modality` (see docs/new_modality.md). The backbone may start from a pretrained Mamba LM and be frozen
(`pretrained: {path, freeze}`); the weights are loaded in `setup("fit")`, so a `--ckpt_path` resume restores the
trained weights over them, and `load_from_checkpoint` (which skips `setup`) needs no pretrained file.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from mambaseq.backbone import MambaBackbone
from mambaseq.config import BackboneConfig
from mambaseq.heads import ClassificationHead, LMHead, Pooling, RegressionHead
from mambaseq.tasks.base import SequenceTask
from mambaseq.tasks.modality.adapters import AdapterConfig, build_adapter
from mambaseq.tasks.modality.pretrained import PretrainedConfig, freeze_backbone, load_pretrained_backbone
from mambaseq.tasks.optim import OptimizerConfig

HeadKind = Literal["lm", "classification", "regression"]


@dataclass
class HeadConfig:
    """`kind="lm"`: per-position logits over `num_outputs` tokens; "classification": `num_outputs` classes;
    "regression": `num_outputs` values. `pooling` (classification / regression) reduces the sequence first."""

    kind: HeadKind = "regression"
    num_outputs: int = 1
    pooling: Pooling = "mean"
    dropout: float = 0.0


def build_head(config: HeadConfig, d_model: int) -> nn.Module:
    """`(b, L, d_model)` -> `(b, L, vocab)` (lm), `(b, num_classes)` or `(b, num_outputs)` (pooled)."""
    if config.num_outputs <= 0:
        raise ValueError(f"head.num_outputs={config.num_outputs} must be positive")
    if config.kind == "lm":
        return LMHead(d_model, config.num_outputs)
    if config.kind == "classification":
        return ClassificationHead(d_model, config.num_outputs, config.pooling, config.dropout)
    if config.kind == "regression":
        return RegressionHead(d_model, config.num_outputs, config.pooling)
    raise ValueError(f"head.kind={config.kind!r} is unknown: expected one of lm, classification, regression")


def as_dataclass(cls: type, value: Any) -> Any:
    """A fresh `cls` from an instance, a dict (as `load_from_checkpoint` passes saved hparams) or None (default)."""
    if value is None:
        return cls()
    if hasattr(cls, "from_dict"):
        return cls.from_dict(value if isinstance(value, dict) else value.to_dict())
    return cls(**(value if isinstance(value, dict) else asdict(value)))


class ModalityTask(SequenceTask):
    """`self.adapter` -> `self.backbone` (a `MambaBackbone` without embedding) -> `self.head`.

    Subclasses call `super().__init__(adapter, backbone, head, pretrained, optimizer)`, then
    `self.save_hyperparameters({...their own init arguments as plain data..., **self.plain_hparams()})`.
    """

    reports_token_nll = False

    def __init__(
        self,
        adapter: AdapterConfig = AdapterConfig(),
        backbone: BackboneConfig = BackboneConfig(),
        head: HeadConfig = HeadConfig(),
        pretrained: PretrainedConfig = PretrainedConfig(),
        optimizer: OptimizerConfig = OptimizerConfig(),
    ) -> None:
        super().__init__(optimizer)
        self.adapter_config = as_dataclass(AdapterConfig, adapter)
        self.backbone_config = as_dataclass(BackboneConfig, backbone)
        self.head_config = as_dataclass(HeadConfig, head)
        self.pretrained_config = as_dataclass(PretrainedConfig, pretrained)
        d_model = self.backbone_config.d_model
        self.adapter = build_adapter(self.adapter_config, d_model)
        self.backbone = MambaBackbone(self.backbone_config, vocab_size=None)
        self.head = build_head(self.head_config, d_model)
        self._pretrained_applied = False

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        """Raw inputs (token ids `(b, L)` or features `(b, L, c)`) -> backbone output `(b, L', d_model)`."""
        return self.backbone(inputs_embeds=self.adapter(inputs))

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Raw inputs -> head output (see `build_head` for shapes). `mask: (b, L')` marks valid positions."""
        hidden = self.features(inputs)
        return self.head(hidden) if isinstance(self.head, LMHead) else self.head(hidden, mask)

    def setup(self, stage: str) -> None:
        """Load the pretrained backbone (fit only, once) and apply `pretrained.freeze` before the optimizer is built.
        A `--ckpt_path` resume loads it too (Lightning restores the checkpoint after `setup`), then overwrites it."""
        if stage != "fit" or self._pretrained_applied:
            return
        config = self.pretrained_config
        if config.path:
            load_pretrained_backbone(self.backbone, config.path, config.freeze)
        else:
            freeze_backbone(self.backbone, config.freeze)
        self._pretrained_applied = True

    def modality_hparams(self) -> dict[str, Any]:
        """Backbone and pretrained configs as plain data, for subclasses' `save_hyperparameters`."""
        return {"backbone": self.backbone_config.to_dict(), "pretrained": asdict(self.pretrained_config)}
