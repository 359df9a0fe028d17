"""Stopping a DNA pretraining run mid-epoch and resuming from `last.ckpt` gives the uninterrupted run's weights."""
from pathlib import Path

import torch

from mambaseq.tasks.cli import build_cli

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "dna" / "quickstart.yaml"
COMMON = ["--config", str(CONFIG), "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false", "--trainer.val_check_interval", "3",
          "--trainer.num_sanity_val_steps", "0", "--trainer.limit_val_batches", "1",
          "--model.init_args.network.backbone.d_model", "16", "--data.init_args.seq_len", "64",
          "--data.init_args.batch_size", "4", "--data.init_args.train_samples_per_epoch", "16",
          "--model.init_args.optimizer.total_steps", "6"]


def test_resume_mid_epoch_matches_uninterrupted_run(tmp_path):
    uninterrupted = build_cli(["fit", *COMMON, "--trainer.max_steps", "6",
                               "--trainer.default_root_dir", str(tmp_path / "a")])
    build_cli(["fit", *COMMON, "--trainer.max_steps", "3", "--trainer.default_root_dir", str(tmp_path / "b")])
    resumed = build_cli(["fit", *COMMON, "--trainer.max_steps", "6", "--trainer.default_root_dir",
                         str(tmp_path / "b"), "--ckpt_path", "last"])
    assert resumed.trainer.global_step == 6
    expected, actual = uninterrupted.model.state_dict(), resumed.model.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=0, atol=0, msg=key)
    checkpoint = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["mambaseq_dna_model_config"]["backbone"]["d_model"] == 16
