"""`mambaseq fit` for 5 steps through the CLI; `--ckpt_path last` continues; vocabulary mismatches fail early."""
from __future__ import annotations

import csv

import lightning.pytorch as pl
import pytest
import torch

from mambaseq.cli import main as mambaseq_main
from mambaseq.tasks.lm.datamodule import LMDataModule
from mambaseq.tasks.lm.task import LanguageModelTask

CONFIG = """
seed_everything: 11
trainer:
  accelerator: cpu
  max_steps: 5
  val_check_interval: 5
  check_val_every_n_epoch: null
  num_sanity_val_steps: 0
  gradient_clip_val: 1.0
  log_every_n_steps: 1
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {root}
  logger:
    class_path: lightning.pytorch.loggers.CSVLogger
    init_args:
      save_dir: ${{trainer.default_root_dir}}
      version: 0
model:
  class_path: mambaseq.tasks.lm.task.LanguageModelTask
  init_args:
    lm:
      backbone: {{d_model: 32, n_layer: 2}}
      vocab_size: 257
    optimizer: {{lr: 3.0e-3, warmup_steps: 2}}
data:
  class_path: mambaseq.tasks.lm.datamodule.LMDataModule
  init_args:
    train: [{corpus}]
    holdout_fraction: 0.1
    tokenizer: bytes
    seq_len: 32
    batch_size: 4
    eval_max_sequences: 8
"""


def _metrics(path):
    with open(path) as file:
        return list(csv.DictReader(file))


def test_fit_five_steps_then_resume_and_validate(tmp_path, corpus, caplog):
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(root=tmp_path / "run", corpus=corpus))
    mambaseq_main(["fit", "--config", str(config)])

    checkpoint_path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    assert checkpoint["global_step"] == 5
    assert checkpoint["mambaseq_lm_config"]["vocab_size"] == 257
    assert checkpoint["hyper_parameters"]["optimizer"]["lr"] == 3e-3

    rows = _metrics(tmp_path / "run" / "lightning_logs" / "version_0" / "metrics.csv")
    train = [row for row in rows if row.get("train/loss")]
    assert len(train) == 5
    for key in ("train/ppl", "train/bits_per_token", "train/tokens_per_s", "train/peak_mem_gib", "train/lr"):
        assert all(row[key] for row in train[1:]), key
    assert float(train[-1]["train/tokens_seen"]) == 5 * 4 * 32
    validation = [row for row in rows if row.get("val/loss")]
    assert len(validation) == 1 and float(validation[0]["val/unigram_entropy"]) > 0
    val_loss = float(validation[0]["val/loss"])
    assert float(validation[0]["val/ppl"]) == pytest.approx(torch.exp(torch.tensor(val_loss)).item(), rel=1e-5)
    assert float(train[-1]["train/loss"]) < float(train[0]["train/loss"])
    assert f"mambaseq generate --model {checkpoint_path}" in caplog.text

    mambaseq_main(["fit", "--config", str(config), "--trainer.max_steps", "7", "--ckpt_path", "last"])
    assert torch.load(checkpoint_path, weights_only=True)["global_step"] == 7
    resumed = [row for row in _metrics(tmp_path / "run" / "lightning_logs" / "version_0" / "metrics.csv")
               if row.get("train/loss")]
    assert [int(row["step"]) for row in resumed] == [5, 6]
    assert float(resumed[-1]["train/tokens_seen"]) == 7 * 4 * 32

    mambaseq_main(["validate", "--config", str(config), "--ckpt_path", str(checkpoint_path)])
    mambaseq_main(["test", "--config", str(config), "--ckpt_path", str(checkpoint_path)])


def test_token_ids_beyond_the_model_vocabulary_fail_before_training(corpus):
    task = LanguageModelTask({"backbone": {"d_model": 16, "n_layer": 1}, "vocab_size": 200})
    data = LMDataModule(train=[str(corpus)], val=[str(corpus)], tokenizer="bytes", seq_len=16, batch_size=2)
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False)
    with pytest.raises(ValueError, match="token id 256.*vocab_size=200"):
        trainer.fit(task, datamodule=data)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_mixed_training_keeps_fp32_parameters(corpus):
    task = LanguageModelTask({"backbone": {"d_model": 64, "n_layer": 2}, "vocab_size": 257})
    data = LMDataModule(train=[str(corpus)], val=[str(corpus)], tokenizer="bytes", seq_len=64, batch_size=4)
    trainer = pl.Trainer(accelerator="gpu", devices=1, precision="bf16-mixed", max_steps=3, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=2,
                         use_distributed_sampler=False)
    trainer.fit(task, datamodule=data)
    assert all(parameter.dtype == torch.float32 for parameter in task.parameters())
    assert torch.isfinite(trainer.callback_metrics["val/loss"])
    assert float(trainer.callback_metrics["train/peak_mem_gib"]) > 0
