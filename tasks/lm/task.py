"""`LanguageModelTask`: next-token prediction with a `MambaLM` kept as `self.model`.

Checkpoints carry `checkpoint["mambaseq_lm_config"] = LMConfig.to_dict()` next to the `model.`-prefixed state dict,
which is what `mambaseq generate --model run.ckpt` reads.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info

from mambaseq.config import LMConfig
from mambaseq.lm import MambaLM
from mambaseq.losses import DEFAULT_CHUNK_SIZE, linear_cross_entropy
from mambaseq.tasks.base import SequenceTask, TaskOutput
from mambaseq.tasks.optim import OptimizerConfig

LM_CONFIG_KEY = "mambaseq_lm_config"
IGNORE_INDEX = -100


class LanguageModelTask(SequenceTask):
    """Causal LM. Batches: `{"input_ids": (b, L), "labels": (b, L)}` int64, labels = inputs shifted by one,
    `-100` where no loss is taken."""

    def __init__(self, lm: LMConfig = LMConfig(), optimizer: OptimizerConfig = OptimizerConfig(),
                 loss_chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        """`lm` and `optimizer` may also be dicts (as `load_from_checkpoint` passes the saved hparams) or None.
        `loss_chunk_size` > 0: the loss applies the LM head in chunks of that many rows (`linear_cross_entropy`, no
        full `(b*L, V)` logits; same value); 0: full logits then `F.cross_entropy`."""
        super().__init__(optimizer)
        if loss_chunk_size < 0:
            raise ValueError(f"LanguageModelTask: loss_chunk_size={loss_chunk_size}, expected >= 0 (0 = full logits)")
        self.loss_chunk_size = loss_chunk_size
        self.lm_config = LMConfig.from_dict(lm if isinstance(lm, dict) else (lm or LMConfig()).to_dict())
        self.model = MambaLM(self.lm_config)
        self.unigram_baseline: float | None = None
        self.save_hyperparameters({"lm": self.lm_config.to_dict(), "loss_chunk_size": loss_chunk_size,
                                  **self.plain_hparams()})

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids: (b, L) -> logits (b, L, padded_vocab)."""
        return self.model(input_ids)

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        input_ids, labels = batch["input_ids"], batch["labels"]
        if self.loss_chunk_size > 0:
            loss = linear_cross_entropy(self.model.hidden_states(input_ids), self.model.lm_head.weight, labels,
                                        chunk_size=self.loss_chunk_size, ignore_index=IGNORE_INDEX)
        else:
            logits = self.model(input_ids)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)
        num_targets = (labels != IGNORE_INDEX).sum()
        return TaskOutput(loss=loss, num_tokens=input_ids.numel(), num_targets=num_targets)

    def setup(self, stage: str) -> None:
        """Fail early when the data holds token ids the model's vocabulary cannot embed."""
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        max_token_id = getattr(datamodule, "max_token_id", None)
        if max_token_id is not None and max_token_id >= self.lm_config.vocab_size:
            raise ValueError(f"the data holds token id {max_token_id}, but model.init_args.lm.vocab_size="
                             f"{self.lm_config.vocab_size}: raise vocab_size or use the tokenizer the model was "
                             "built for")

    def on_fit_start(self) -> None:
        baseline = getattr(self._trainer.datamodule, "unigram_entropy", None)
        self.unigram_baseline = baseline("val") if callable(baseline) else None
        if self.unigram_baseline is not None:
            rank_zero_info(f"unigram baseline on the validation split: {self.unigram_baseline:.3f} nats/token "
                           "(the loss of predicting every token from its frequency alone)")

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.unigram_baseline is not None and not self.trainer.sanity_checking:
            self.log("val/unigram_entropy", self.unigram_baseline)

    def on_fit_end(self) -> None:
        """Print the final validation loss against the unigram baseline and how to sample from the checkpoint."""
        metrics = self.trainer.callback_metrics
        lines = []
        if "val/loss" in metrics:
            line = f"final val loss {float(metrics['val/loss']):.3f} nats/token"
            if self.unigram_baseline is not None:
                line += f" vs unigram baseline {self.unigram_baseline:.3f}"
            lines.append(line)
        checkpoint = self.trainer.checkpoint_callback
        path = checkpoint.last_model_path or checkpoint.best_model_path if checkpoint is not None else ""
        if path:
            lines.append(f"checkpoint: {path}\nsample from it: mambaseq generate --model {path} --prompt \"...\"")
        if lines:
            rank_zero_info("\n".join(lines))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[LM_CONFIG_KEY] = self.lm_config.to_dict()

