"""Exact resume: a run interrupted mid-epoch and resumed with `ckpt_path="last"` repeats the uninterrupted run's
per-step losses and batches; checkpoints are written atomically and carry the LM config."""
from __future__ import annotations

import hashlib

import lightning.pytorch as pl
import pytest
import torch

from mambaseq.tasks.callbacks import AtomicCheckpointIO, AtomicModelCheckpoint
from mambaseq.tasks.lm.datamodule import LMDataModule
from mambaseq.tasks.lm.task import LanguageModelTask
from mambaseq.tasks.optim import OptimizerConfig

TOTAL_STEPS = 24
INTERRUPT_AT = 13  # mid second epoch: the corpus below gives 7-11 batches per epoch


class Interrupted(RuntimeError):
    pass


class StepRecorder(pl.Callback):
    """Per optimizer step: (loss, hash of the batch)."""

    def __init__(self) -> None:
        self.steps: dict[int, tuple[float, str]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        digest = hashlib.sha1(batch["input_ids"].numpy().tobytes()).hexdigest()
        self.steps[trainer.global_step - 1] = (float(outputs["loss"]), digest)


class CrashAt(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise Interrupted(f"simulated crash before step {self.step}")


def _fit(root, corpus, tiny_lm, callbacks, ckpt_path=None):
    pl.seed_everything(7)
    task = LanguageModelTask(tiny_lm, OptimizerConfig(lr=3e-3, warmup_steps=3, total_steps=TOTAL_STEPS))
    data = LMDataModule(train=[str(corpus)], tokenizer="bytes", seq_len=32, batch_size=4, holdout_fraction=0.1,
                        eval_max_sequences=8, seed=3)
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=TOTAL_STEPS, val_check_interval=5, check_val_every_n_epoch=None,
        gradient_clip_val=1.0, logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=root, num_sanity_val_steps=0, use_distributed_sampler=False,
        callbacks=[*callbacks, AtomicModelCheckpoint(every_n_train_steps=1)],
    )
    trainer.fit(task, datamodule=data, ckpt_path=ckpt_path)
    return trainer, data


@pytest.fixture
def corpus(make_corpus):
    return make_corpus("small.jsonl", num_docs=14)


def test_interrupted_run_resumes_with_identical_losses(tmp_path, corpus, tiny_lm):
    reference = StepRecorder()
    trainer, data = _fit(tmp_path / "reference", corpus, tiny_lm, [reference])
    assert INTERRUPT_AT // 2 < len(data.datasets["train"]) // 4 < INTERRUPT_AT, "interrupt in the second epoch"
    assert sorted(reference.steps) == list(range(TOTAL_STEPS))
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)

    before = StepRecorder()
    with pytest.raises(Interrupted):
        _fit(tmp_path / "interrupted", corpus, tiny_lm, [before, CrashAt(INTERRUPT_AT)])
    assert sorted(before.steps) == list(range(INTERRUPT_AT))

    after = StepRecorder()
    _fit(tmp_path / "interrupted", corpus, tiny_lm, [after], ckpt_path="last")
    assert sorted(after.steps) == list(range(INTERRUPT_AT, TOTAL_STEPS))

    resumed = {**before.steps, **after.steps}
    for step in range(TOTAL_STEPS):
        assert resumed[step][1] == reference.steps[step][1], f"step {step}: different batch after resume"
        assert resumed[step][0] == pytest.approx(reference.steps[step][0], abs=1e-6), f"step {step}: loss differs"


def test_checkpoint_is_atomic_and_readable_with_weights_only(tmp_path, corpus, tiny_lm):
    with pytest.raises(Interrupted):
        _fit(tmp_path, corpus, tiny_lm, [CrashAt(4)])
    folder = tmp_path / "checkpoints"
    assert (folder / "last.ckpt").is_file()
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    checkpoint = torch.load(folder / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 4
    assert checkpoint["mambaseq_lm_config"] == tiny_lm.to_dict()
    assert "model.lm_head.weight" in checkpoint["state_dict"]
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["samples_consumed"] == 16
