"""DNA tasks: `DNAPretrainingTask` (next-token or masked-base prediction) and `DNAClassificationTask` (species).

`network` holds `DNAModelConfig` keys: `backbone` (`BackboneConfig` keys), `bidirectional`, `rc_equivariant`, ...
Checkpoints carry `checkpoint["mambaseq_dna_model_config"]` beside the `model.`-prefixed state dict.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from mambaseq.tasks.base import SequenceTask, TaskOutput
from mambaseq.tasks.dna.datasets import IGNORE_INDEX
from mambaseq.tasks.dna.model import DNAClassifier, DNALanguageModel, DNAModelConfig, Pooling
from mambaseq.tasks.dna.tokenizer import A_ID, MASK_ID, PAD_ID, T_ID, VOCAB_SIZE
from mambaseq.tasks.optim import OptimizerConfig

DNA_MODEL_CONFIG_KEY = "mambaseq_dna_model_config"
Objective = Literal["next_token", "masked"]
MASK_REPLACE_FRACTION = 0.8
RANDOM_REPLACE_FRACTION = 0.1
# Dataclass defaults are instances (not `None`), as `SequenceTask` asks; tasks copy them before use.
DEFAULT_NETWORK = DNAModelConfig()
DEFAULT_OPTIMIZER = OptimizerConfig()


def mask_bases(input_ids: torch.Tensor, probability: float) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT-style masking over non-[PAD] positions: each is chosen with `probability`; chosen positions become
    [MASK] (80 %), a random base A/C/G/T (10 %) or stay (10 %). Returns `(masked_ids, labels)`, labels -100 where
    not chosen. Uses the global torch RNG (saved in checkpoints)."""
    device = input_ids.device
    chosen = (torch.rand(input_ids.shape, device=device) < probability) & (input_ids != PAD_ID)
    labels = torch.where(chosen, input_ids, IGNORE_INDEX)
    draw = torch.rand(input_ids.shape, device=device)
    masked = torch.where(chosen & (draw < MASK_REPLACE_FRACTION), MASK_ID, input_ids)
    random_bases = torch.randint(A_ID, T_ID + 1, input_ids.shape, device=device)
    randomized = chosen & (draw >= MASK_REPLACE_FRACTION) & (draw < MASK_REPLACE_FRACTION + RANDOM_REPLACE_FRACTION)
    return torch.where(randomized, random_bases, masked), labels


def as_model_config(network: DNAModelConfig | dict[str, Any]) -> DNAModelConfig:
    """A private copy of the network config, from a config object or a plain dict (Python callers)."""
    return DNAModelConfig.from_dict(network.to_dict() if isinstance(network, DNAModelConfig) else dict(network))


class DNAPretrainingTask(SequenceTask):
    """Cross-entropy over the 12 DNA ids; logs loss, perplexity, bits per base and `accuracy`.

    objective "next_token" (HyenaDNA / Mamba) needs a causal network; "masked" (Caduceus) predicts the
    `mask_probability` chosen bases from both sides and works with any network. Batches: `{"input_ids",
    "labels"}: (b, L)` int64 (labels are only read for next-token).
    """

    def __init__(self, network: DNAModelConfig = DEFAULT_NETWORK, objective: Objective = "next_token",
                 mask_probability: float = 0.15, optimizer: OptimizerConfig = DEFAULT_OPTIMIZER) -> None:
        super().__init__(optimizer)
        self.network_config = as_model_config(network)
        if objective not in ("next_token", "masked"):
            raise ValueError(f"DNAPretrainingTask: objective={objective!r}, expected 'next_token' or 'masked'")
        if objective == "next_token" and not self.network_config.causal:
            raise ValueError("DNAPretrainingTask: objective 'next_token' needs a causal network, but "
                             "network.bidirectional / network.rc_equivariant is set, so every position sees the base "
                             "it predicts; use objective: masked")
        if not 0.0 < mask_probability < 1.0:
            raise ValueError(f"DNAPretrainingTask: mask_probability={mask_probability}, expected a value in (0, 1)")
        self.objective = objective
        self.mask_probability = mask_probability
        self.model = DNALanguageModel(self.network_config)
        self.save_hyperparameters({"network": self.network_config.to_dict(), "objective": objective,
                                   "mask_probability": mask_probability, **self.plain_hparams()})

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids: (b, L) -> logits over the DNA vocabulary (b, L, 12)."""
        return self.model(input_ids)[..., :VOCAB_SIZE]

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        input_ids = batch["input_ids"]
        if self.objective == "masked":
            input_ids, labels = mask_bases(input_ids, self.mask_probability)
        else:
            labels = batch["labels"]
        logits = self(input_ids)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)
        is_target = labels != IGNORE_INDEX
        num_targets = is_target.sum()
        hits = ((logits.argmax(-1) == labels) & is_target).sum()
        return TaskOutput(loss=loss, num_tokens=input_ids.numel(), num_targets=num_targets,
                          metrics={"accuracy": hits.float() / num_targets.clamp_min(1)})

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[DNA_MODEL_CONFIG_KEY] = self.network_config.to_dict()


class DNAClassificationTask(SequenceTask):
    """Sequence classification (species): cross-entropy and `accuracy`, averaged over sequences. Batches:
    `{"input_ids": (b, L), "labels": (b,)}` int64. `num_classes` must match the data module's."""

    reports_token_nll = False

    def __init__(self, num_classes: int, network: DNAModelConfig = DEFAULT_NETWORK, pooling: Pooling = "auto",
                 dropout: float = 0.0, optimizer: OptimizerConfig = DEFAULT_OPTIMIZER) -> None:
        super().__init__(optimizer)
        if num_classes < 2:
            raise ValueError(f"DNAClassificationTask: num_classes={num_classes}, expected at least 2")
        self.network_config = as_model_config(network)
        self.num_classes = num_classes
        self.model = DNAClassifier(self.network_config, num_classes, pooling=pooling, dropout=dropout)
        self.save_hyperparameters({"num_classes": num_classes, "network": self.network_config.to_dict(),
                                   "pooling": pooling, "dropout": dropout, **self.plain_hparams()})

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids: (b, L) -> class logits (b, num_classes)."""
        return self.model(input_ids)

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        input_ids, labels = batch["input_ids"], batch["labels"]
        logits = self(input_ids).float()
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(-1) == labels).float().mean()
        return TaskOutput(loss=loss, num_tokens=input_ids.numel(), num_targets=labels.numel(),
                          metrics={"accuracy": accuracy})

    def setup(self, stage: str) -> None:
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        classes = getattr(datamodule, "num_classes", None)
        if classes is not None and classes != self.num_classes:
            raise ValueError(f"model.init_args.num_classes={self.num_classes} but the data has {classes} classes "
                             f"({getattr(datamodule, 'species', '')})")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[DNA_MODEL_CONFIG_KEY] = self.network_config.to_dict()
