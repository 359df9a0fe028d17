"""`SyntheticTask`: the LM task on a synthetic task's sequences, with accuracy at the answer positions."""
from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info

from mambaseq.tasks.base import TaskOutput
from mambaseq.tasks.lm.task import LanguageModelTask
from mambaseq.tasks.optim import OptimizerConfig
from mambaseq.tasks.synthetic.induction_heads import IGNORE_INDEX
from mambaseq.tasks.synthetic.metrics import target_loss


class SyntheticTask(LanguageModelTask):
    """Selective copying / induction heads: `lm.vocab_size` must match the data's `vocab_size`.

    Labels are `IGNORE_INDEX` except at the answer positions, so the loss is the answers' cross-entropy (perplexity
    and bits per token are not logged); `accuracy`, the fraction of answers right, is logged as `train/accuracy`
    and `val/accuracy`. Checkpoints carry the `LMConfig` like those of `LanguageModelTask`.
    """

    reports_token_nll = False

    def __init__(self, lm: dict[str, Any], optimizer: OptimizerConfig | None = None) -> None:
        # A plain dict for the CLI: jsonargparse reads `mixer: {kind: mamba2, ...}` under an `LMConfig` type hint as
        # the default Mamba1Config and rejects it; `LMConfig.from_dict` dispatches on `kind` itself.
        super().__init__(lm, optimizer)

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        input_ids, labels = batch["input_ids"], batch["labels"]
        logits = self.model(input_ids)
        is_target = labels != IGNORE_INDEX
        num_targets = is_target.sum()
        hits = ((logits.argmax(dim=-1) == labels) & is_target).sum()
        return TaskOutput(loss=target_loss(logits, labels), num_tokens=input_ids.numel(), num_targets=num_targets,
                          metrics={"accuracy": hits.float() / num_targets.clamp_min(1)})

    def on_fit_end(self) -> None:
        """Print the final validation accuracy and how to test length extrapolation from the checkpoint."""
        accuracy = self.trainer.callback_metrics.get("val/accuracy")
        lines = [] if accuracy is None else [f"final val accuracy {float(accuracy):.4f}"]
        checkpoint = self.trainer.checkpoint_callback
        path = (checkpoint.last_model_path or checkpoint.best_model_path) if checkpoint is not None else ""
        if path:
            lines.append(f"checkpoint: {path}\naccuracy at lengths 2^6 ... 2^20: "
                         f"python scripts/induction_extrapolation.py --checkpoint {path}")
        if lines:
            rank_zero_info("\n".join(lines))
