"""`LossCurvePlot`: training and validation loss against optimizer steps, saved as a PNG when fitting ends.

Horizontal reference lines are drawn for logged baselines (e.g. `val/unigram_entropy` of the LM task).
"""
from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only


class LossCurvePlot(pl.Callback):
    """Collects `train_key` each step and `val_key` after each validation; writes `<log_dir>/<filename>`."""

    def __init__(self, filename: str = "loss.png", train_key: str = "train/loss", val_key: str = "val/loss",
                 baseline_keys: tuple[str, ...] = ("val/unigram_entropy",)) -> None:
        self.filename = filename
        self.train_key, self.val_key = train_key, val_key
        self.baseline_keys = tuple(baseline_keys)
        self.train: list[tuple[int, float]] = []
        self.val: list[tuple[int, float]] = []
        self.baselines: dict[str, float] = {}

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        value = trainer.callback_metrics.get(self.train_key)
        if value is not None:
            self.train.append((trainer.global_step, float(value)))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        if self.val_key in metrics:
            self.val.append((trainer.global_step, float(metrics[self.val_key])))
        self.baselines.update({key: float(metrics[key]) for key in self.baseline_keys if key in metrics})

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(Path(trainer.log_dir or trainer.default_root_dir))  # log_dir is a collective under DDP: all ranks

    @rank_zero_only
    def _save(self, folder: Path) -> None:
        if not self.train and not self.val:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(7, 4))
        if self.train:
            axes.plot(*zip(*self.train), label=self.train_key, alpha=0.6, linewidth=1)
        if self.val:
            axes.plot(*zip(*self.val), "o-", label=self.val_key)
        for key, value in self.baselines.items():
            axes.axhline(value, linestyle="--", color="gray", label=f"{key} = {value:.3f}")
        axes.set_xlabel("optimizer step")
        axes.set_ylabel("loss (nats/token)")
        axes.legend()
        axes.grid(alpha=0.3)
        os.makedirs(folder, exist_ok=True)
        figure.tight_layout()
        figure.savefig(folder / self.filename, dpi=120)
        plt.close(figure)
        rank_zero_info(f"loss curve: {folder / self.filename}")
