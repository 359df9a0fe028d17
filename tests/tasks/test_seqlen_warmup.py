"""Sequence-length warmup: schedule, batch splitting, and the callback driving a data module inside a Trainer."""
import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from mambaseq.tasks.seqlen_warmup import SequenceLengthWarmup, split_windows, stage_at, warmup_schedule


def test_warmup_schedule_keeps_tokens_per_batch():
    assert warmup_schedule(64, 512, 2) == [(64, 16), (128, 8), (256, 4), (512, 2)]
    assert warmup_schedule(512, 512, 2) == [(512, 2)]
    with pytest.raises(ValueError, match="power of two"):
        warmup_schedule(96, 512, 2)


def test_stage_at_every_and_boundaries():
    assert [stage_at(step, 4, 3, None) for step in range(12)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert [stage_at(step, 3, 1, [2, 5]) for step in range(7)] == [0, 0, 1, 1, 1, 2, 2]


def test_split_windows_keeps_next_token_pairs_and_repeats_sequence_labels():
    stream = torch.arange(4 * 33).reshape(4, 33)
    batch = {"input_ids": stream[:, :-1], "labels": stream[:, 1:], "species": torch.tensor([0, 1, 2, 3])}
    split = split_windows(batch, 8)
    assert split["input_ids"].shape == split["labels"].shape == (16, 8)
    assert torch.equal(split["labels"], split["input_ids"] + 1)
    assert split["species"].tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    with pytest.raises(ValueError, match="not a multiple of seq_len=5"):
        split_windows(batch, 5)


class ShapeRecorder(pl.LightningModule):
    """Records the shape of every training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.shapes: list[tuple[int, int]] = []

    def training_step(self, batch, batch_idx):
        self.shapes.append(tuple(batch["input_ids"].shape))
        return (self.weight - batch["input_ids"].float().mean()) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class CuttingDataModule(pl.LightningDataModule):
    """`(batch_size, seq_len)` batches cut into shorter pieces according to `set_sequence_length`."""

    def __init__(self, seq_len: int = 32, batch_size: int = 2) -> None:
        super().__init__()
        self.seq_len, self.batch_size, self.train_seq_len = seq_len, batch_size, seq_len

    def set_sequence_length(self, seq_len: int, batch_size: int) -> None:
        assert seq_len * batch_size == self.seq_len * self.batch_size
        self.train_seq_len = seq_len

    def train_dataloader(self):
        data = [{"input_ids": torch.arange(self.seq_len)} for _ in range(6 * self.batch_size)]
        return DataLoader(data, batch_size=self.batch_size)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        return split_windows(batch, self.train_seq_len) if self.trainer.training else batch


def fit(callback: SequenceLengthWarmup, max_steps: int) -> list[tuple[int, int]]:
    model, data = ShapeRecorder(), CuttingDataModule()
    trainer = pl.Trainer(max_steps=max_steps, callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, datamodule=data)
    return model.shapes


def test_callback_doubles_length_every_n_steps():
    shapes = fit(SequenceLengthWarmup(start_length=8, interval="step", every=2), max_steps=8)
    assert shapes == [(8, 8), (8, 8), (4, 16), (4, 16), (2, 32), (2, 32), (2, 32), (2, 32)]


def test_callback_follows_epoch_boundaries():
    shapes = fit(SequenceLengthWarmup(start_length=16, interval="epoch", boundaries=[1]), max_steps=12)
    assert shapes == [(4, 16)] * 6 + [(2, 32)] * 6


def test_callback_rejects_data_modules_without_the_protocol_and_bad_boundaries():
    with pytest.raises(ValueError, match="need 1 boundaries"):
        fit(SequenceLengthWarmup(start_length=16, boundaries=[1, 2]), max_steps=1)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[SequenceLengthWarmup(start_length=8)])
    with pytest.raises(TypeError, match="set_sequence_length"):
        trainer.fit(ShapeRecorder(), train_dataloaders=CuttingDataModule().train_dataloader())
