"""Time-series forecasting example: chronological splits, train-only normalization, the naive baseline, a tiny
Lightning fit on a fixed batch, the quickstart YAML through the CLI, and exact resume."""
import csv
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from mambaseq.tasks.cli import build_cli, main as cli_main
from mambaseq.tasks.timeseries.forecasting import MACRODATA, ForecastingDataModule, ForecastingTask, read_channels

QUICKSTART = Path(__file__).resolve().parents[3] / "configs" / "timeseries" / "quickstart.yaml"


def test_bundled_macrodata_has_12_channels():
    values, names = read_channels(MACRODATA, ("year", "quarter"))
    assert values.shape == (203, 12)
    assert names[:3] == ["realgdp", "realcons", "realinv"] and "year" not in names


def test_splits_are_chronological_and_normalized_on_train_only():
    data = ForecastingDataModule(context_len=16, horizon=4)
    assert data.bounds == {"train": (16, 142), "val": (142, 173), "test": (173, 203)}
    np.testing.assert_allclose(data.series[:142].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(data.series[:142].std(0), 1, atol=1e-4)
    assert data.series[173:, 0].mean() > 2  # real GDP grows: the test rows are far above the training mean
    for split, (begin, end) in data.bounds.items():
        windows = data.windows(split)
        assert windows.starts[0] == begin and windows.starts[-1] + 4 == end
        first = windows[0]
        assert first["context"].shape == (16, 12) and first["target"].shape == (4, 12)
        torch.testing.assert_close(first["target"], torch.from_numpy(data.series[begin:begin + 4]))


def test_naive_errors_are_the_last_value_forecast_errors():
    data = ForecastingDataModule(context_len=8, horizon=2)
    begin, end = data.bounds["val"]
    errors = np.stack([data.series[t:t + 2] - data.series[t - 1] for t in range(begin, end - 1)]).astype(np.float64)
    naive = data.naive_errors("val")
    np.testing.assert_allclose(naive["mse"], np.mean(errors ** 2), rtol=1e-5)
    np.testing.assert_allclose(naive["mae"], np.mean(np.abs(errors)), rtol=1e-5)


def test_untrained_task_is_the_naive_forecast():
    task = ForecastingTask(channels=12, horizon=4, backbone={"d_model": 16, "n_layer": 1, "mixer": {"d_state": 4}})
    context = torch.randn(3, 16, 12)
    torch.testing.assert_close(task(context), context[:, -1:].expand(3, 4, 12))


class FixedBatch(ForecastingDataModule):
    """Trains on the same 16 windows every step (one batch per epoch)."""

    def train_dataloader(self) -> DataLoader:
        return DataLoader(Subset(self.windows("train"), range(16)), batch_size=16)


class LossRecorder(pl.Callback):
    def __init__(self) -> None:
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def test_tiny_fit_lowers_the_loss_on_a_fixed_batch(tmp_path):
    pl.seed_everything(0)
    task = ForecastingTask(channels=12, horizon=4, adapter="patch", patch_len=4,
                           backbone={"d_model": 16, "n_layer": 1, "mixer": {"d_state": 4}},
                           optimizer={"lr": 3e-3, "warmup_steps": 0, "weight_decay": 0.0})
    recorder = LossRecorder()
    trainer = pl.Trainer(accelerator="cpu", max_steps=12, logger=pl.loggers.CSVLogger(tmp_path), callbacks=[recorder],
                         enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                         default_root_dir=tmp_path, check_val_every_n_epoch=6, num_sanity_val_steps=0)
    trainer.fit(task, datamodule=FixedBatch(context_len=16, horizon=4, batch_size=16))
    losses = recorder.losses
    assert len(losses) == 12 and np.isfinite(losses).all()
    assert losses[-1] < 0.8 * losses[0], losses
    assert {"val/naive_mse", "val/naive_mae", "val/mae"} <= set(trainer.callback_metrics)
    assert (Path(trainer.log_dir) / "forecast.png").stat().st_size > 10_000


def test_quickstart_config_runs_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli_main(["fit", "--config", str(QUICKSTART), "--trainer.max_steps", "6", "--trainer.check_val_every_n_epoch",
              "2", "--trainer.enable_progress_bar", "false"])
    log_dir = tmp_path / "runs" / "timeseries_quickstart" / "lightning_logs" / "version_0"
    assert (log_dir / "forecast.png").exists() and (log_dir / "loss.png").exists()
    with open(log_dir / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val/loss")]
    assert rows and float(rows[-1]["val/naive_mse"]) > 0 and np.isfinite(float(rows[-1]["val/loss"]))


def test_resume_after_an_epochs_last_batch_matches_uninterrupted_run(tmp_path, monkeypatch):
    """The modality gets the base task's exact resume: stopped after 6 steps (the last batch of the second epoch of
    3) and resumed from `last.ckpt` to 10, the weights equal those of an uninterrupted 10-step run."""
    monkeypatch.chdir(tmp_path)
    common = ["--config", str(QUICKSTART), "--trainer.logger", "false", "--trainer.callbacks", "[]",
              "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
              "--trainer.check_val_every_n_epoch", "2", "--checkpoint.every_n_train_steps", "1",
              "--model.init_args.optimizer.total_steps", "10"]
    uninterrupted = build_cli(["fit", *common, "--trainer.max_steps", "10", "--trainer.default_root_dir", "a"])
    build_cli(["fit", *common, "--trainer.max_steps", "6", "--trainer.default_root_dir", "b"])
    resumed = build_cli(["fit", *common, "--trainer.max_steps", "10", "--trainer.default_root_dir", "b",
                         "--ckpt_path", "last"])
    assert resumed.trainer.global_step == 10
    expected, actual = uninterrupted.model.state_dict(), resumed.model.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=0, atol=0, msg=key)
