"""Multichannel time-series forecasting: `context_len` past steps of `c` channels -> the next `horizon` steps.

The worked example of docs/new_modality.md: a data module over a CSV of channels and a `ModalityTask` registered as
"timeseries_forecasting" (linear or patch adapter -> Mamba backbone -> regression head on the last position).

Data: the rows are split in time order (default 70/15/15 %); each channel is standardized with the mean and std of
the training rows only. A window's targets lie inside its split; its context may reach back into the previous split
(the past is known when forecasting). The network predicts the change from the last context value (the input is
the context minus that value), so an untrained network starts as the naive last-value forecast, whose MSE and MAE on
the same validation windows are printed when fitting starts and logged as `val/naive_mse` and `val/naive_mae`.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from torch import nn
from torch.utils.data import Dataset

import mambaseq
from mambaseq.config import BackboneConfig
from mambaseq.tasks.base import TaskOutput
from mambaseq.tasks.data import ResumableDataLoader
from mambaseq.tasks.modality.adapters import AdapterConfig
from mambaseq.tasks.modality.pretrained import PretrainedConfig
from mambaseq.tasks.modality.registry import register_modality
from mambaseq.tasks.modality.task import HeadConfig, ModalityTask
from mambaseq.tasks.optim import OptimizerConfig

SPLITS = ("train", "val", "test")
MACRODATA = Path(mambaseq.__file__).resolve().parent / "assets" / "data" / "timeseries" / "macrodata.csv"


def read_channels(path: str | Path, time_columns: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """CSV with a header row -> `(values (T, c) float32, channel names)`, dropping `time_columns`."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    keep = [i for i, name in enumerate(header) if name not in time_columns]
    try:
        values = np.array([[float(row[i]) for i in keep] for row in body], dtype=np.float32)
    except (ValueError, IndexError) as error:
        raise ValueError(f"{path}: expected numeric columns {[header[i] for i in keep]} in every row ({error})")
    return values, [header[i] for i in keep]


class ForecastWindows(Dataset):
    """`{"context": (context_len, c), "target": (horizon, c)}` float32 windows whose targets start in `starts`."""

    def __init__(self, series: np.ndarray, starts: range, context_len: int, horizon: int) -> None:
        self.series = torch.from_numpy(series)
        self.starts = starts
        self.context_len, self.horizon = context_len, horizon

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        start = self.starts[index]
        return {"context": self.series[start - self.context_len:start],
                "target": self.series[start:start + self.horizon]}


class ForecastingDataModule(pl.LightningDataModule):
    """Windows over the channels of `path` (default: the bundled US macro data, 203 quarters x 12 channels)."""

    def __init__(self, path: str = str(MACRODATA), time_columns: tuple[str, ...] = ("year", "quarter"),
                 context_len: int = 16, horizon: int = 4,
                 split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), batch_size: int = 32,
                 seed: int = 0) -> None:
        """`path`: CSV with a header row; `time_columns` are dropped, every other column is a channel.
        `split_fractions`: train/val/test shares of the rows, in time order. `seed`: training shuffle order."""
        super().__init__()
        values, self.channel_names = read_channels(path, tuple(time_columns))
        if abs(sum(split_fractions) - 1) > 1e-6:
            raise ValueError(f"split_fractions={split_fractions} must sum to 1")
        total = len(values)
        train_end = round(split_fractions[0] * total)
        val_end = round((split_fractions[0] + split_fractions[1]) * total)
        self.bounds = {"train": (context_len, train_end), "val": (train_end, val_end), "test": (val_end, total)}
        for split, (begin, end) in self.bounds.items():
            if end - begin < horizon:
                raise ValueError(f"{path}: the {split} split (rows {begin}-{end}) is shorter than horizon={horizon} "
                                 f"after context_len={context_len}; use more rows or shorter windows")
        self.mean = values[:train_end].mean(0)
        self.std = values[:train_end].std(0) + 1e-6
        self.series = (values - self.mean) / self.std
        self.context_len, self.horizon = context_len, horizon
        self.batch_size, self.seed = batch_size, seed

    @property
    def num_channels(self) -> int:
        return self.series.shape[1]

    def windows(self, split: str, stride: int = 1) -> ForecastWindows:
        begin, end = self.bounds[split]
        return ForecastWindows(self.series, range(begin, end - self.horizon + 1, stride), self.context_len,
                               self.horizon)

    def naive_errors(self, split: str) -> dict[str, float]:
        """`{"mse", "mae"}` (standardized units) of repeating the last context value over the horizon, averaged
        over `split`'s windows."""
        windows = self.windows(split)
        errors = torch.stack([windows[i]["target"] - windows[i]["context"][-1:] for i in range(len(windows))])
        return {"mse": float((errors ** 2).mean()), "mae": float(errors.abs().mean())}

    def _loader(self, split: str) -> ResumableDataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        train = split == "train"
        return ResumableDataLoader(self.windows(split), self.batch_size, shuffle=train, seed=self.seed, rank=rank,
                                   world_size=world, drop_last=train)

    def train_dataloader(self) -> ResumableDataLoader:
        return self._loader("train")

    def val_dataloader(self) -> ResumableDataLoader:
        return self._loader("val")

    def test_dataloader(self) -> ResumableDataLoader:
        return self._loader("test")


@register_modality("timeseries_forecasting")
class ForecastingTask(ModalityTask):
    """Batches `{"context": (b, context_len, c), "target": (b, horizon, c)}` -> MSE loss, MAE metric.
    `adapter="linear"` makes one backbone token per step, `"patch"` one per `patch_len` steps."""

    def __init__(self, channels: int = 12, horizon: int = 4, adapter: Literal["linear", "patch"] = "linear",
                 patch_len: int = 4, backbone: BackboneConfig = BackboneConfig(),
                 pretrained: PretrainedConfig = PretrainedConfig(), optimizer: OptimizerConfig = OptimizerConfig(),
                 plot_channels: int = 4) -> None:
        super().__init__(
            adapter=AdapterConfig(kind=adapter, in_features=channels, patch_len=patch_len),
            backbone=backbone,
            head=HeadConfig(kind="regression", num_outputs=horizon * channels, pooling="last"),
            pretrained=pretrained,
            optimizer=optimizer,
        )
        self.channels, self.horizon, self.plot_channels = channels, horizon, plot_channels
        nn.init.zeros_(self.head.proj.weight)  # the untrained network forecasts the last context value
        nn.init.zeros_(self.head.proj.bias)
        self.naive: dict[str, float] = {}
        self.save_hyperparameters({"channels": channels, "horizon": horizon, "adapter": adapter,
                                   "patch_len": patch_len, "plot_channels": plot_channels, **self.modality_hparams(),
                                   **self.plain_hparams()})

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """context: (b, context_len, c) -> forecast (b, horizon, c), as a change from the last context value."""
        last = context[:, -1:]
        change = super().forward(context - last)
        return last + change.view(context.shape[0], self.horizon, self.channels)

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        context, target = batch["context"], batch["target"]
        forecast = self(context).float()
        loss = F.mse_loss(forecast, target)
        return TaskOutput(loss=loss, num_tokens=context.shape[0] * context.shape[1], num_targets=target.numel(),
                          metrics={"mae": F.l1_loss(forecast.detach(), target)})

    def on_fit_start(self) -> None:
        if self.trainer.datamodule.num_channels != self.channels:
            raise ValueError(f"the data has {self.trainer.datamodule.num_channels} channels, but "
                             f"model.init_args.channels={self.channels}")
        self.naive = self.trainer.datamodule.naive_errors("val")
        rank_zero_info(f"naive last-value forecast on the validation windows: MSE {self.naive['mse']:.4f}, MAE "
                       f"{self.naive['mae']:.4f} (standardized units); val/loss (MSE) below it beats it")

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.naive and not self.trainer.sanity_checking:
            for name, value in self.naive.items():
                self.log(f"val/naive_{name}", value, sync_dist=True)

    def on_fit_end(self) -> None:
        """Print the final validation MSE against the naive forecast; write `<log_dir>/forecast.png` (rank 0)."""
        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir)  # a collective under DDP: all ranks
        self._report(folder / "forecast.png")

    @rank_zero_only
    def _report(self, path: Path) -> None:
        metrics = self.trainer.callback_metrics
        if "val/loss" in metrics and "val/mae" in metrics and self.naive:
            rank_zero_info(f"final validation MSE {float(metrics['val/loss']):.4f}, MAE {float(metrics['val/mae']):.4f}"
                           f" vs naive last-value MSE {self.naive['mse']:.4f}, MAE {self.naive['mae']:.4f}")
        plot_forecast(self, self.trainer.datamodule, path)
        rank_zero_info(f"forecast vs truth on the validation split: {path}")

    @torch.no_grad()
    def forecast_split(self, datamodule: ForecastingDataModule, split: str) -> tuple[np.ndarray, np.ndarray, int]:
        """Back-to-back forecasts over `split` in original units: `(truth (T, c), forecast (T, c), first row)`."""
        windows = datamodule.windows(split, stride=self.horizon)
        contexts = torch.stack([windows[i]["context"] for i in range(len(windows))]).to(self.device)
        was_training = self.training
        self.eval()
        forecast = self(contexts).float().cpu().numpy().reshape(-1, self.channels)
        self.train(was_training)
        first = windows.starts[0]
        truth = datamodule.series[first:first + len(forecast)]
        return truth * datamodule.std + datamodule.mean, forecast * datamodule.std + datamodule.mean, first


def plot_forecast(task: ForecastingTask, datamodule: ForecastingDataModule, path: Path, split: str = "val") -> None:
    """PNG of the first `task.plot_channels` channels: truth (with the preceding context) and forecasts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth, forecast, first = task.forecast_split(datamodule, split)
    history = datamodule.series[max(0, first - 2 * task.horizon * 4):first] * datamodule.std + datamodule.mean
    count = min(task.plot_channels, task.channels)
    figure, axes = plt.subplots(count, 1, figsize=(8, 2.2 * count), sharex=True, squeeze=False)
    steps = np.arange(first, first + len(truth))
    for channel, axis in enumerate(axes[:, 0]):
        axis.plot(np.arange(first - len(history), first), history[:, channel], color="gray", label="context")
        axis.plot(steps, truth[:, channel], color="black", label="truth")
        for start in range(0, len(forecast), task.horizon):
            block = slice(start, start + task.horizon)
            axis.plot(steps[block], forecast[block, channel], color="tab:red",
                      label="forecast" if start == 0 else None)
        axis.set_ylabel(datamodule.channel_names[channel])
        axis.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper left")
    axes[0, 0].set_title(f"{split} split: {task.horizon}-step forecasts from {datamodule.context_len}-step contexts")
    axes[-1, 0].set_xlabel("row (time step)")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
