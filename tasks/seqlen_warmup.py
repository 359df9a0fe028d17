"""Sequence-length warmup (HyenaDNA, Mamba's DNA runs): train on short sequences first, doubling the length and
halving the batch at each stage so that the tokens per batch stay constant, up to the data module's own length.

`SequenceLengthWarmup` decides *when* (stage `k` of lengths `start, 2 start, ..., seq_len` begins at
`k * every` epochs or optimizer steps, or at `boundaries[k - 1]`); the data module decides *how*, through
`set_sequence_length(seq_len, batch_size)` (see `SupportsSequenceLengthWarmup`). The stage is a pure function of
`trainer.current_epoch` / `trainer.global_step`, so a resumed run continues at the right length.

`split_windows` is one way for a data module to follow the schedule without rebuilding its loaders: it cuts each
`(b, L)` batch into `(b * r, L / r)` consecutive pieces (next-token labels stay correct, per-sequence labels are
repeated), which keeps the tokens per batch exactly.
"""
from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch

Interval = Literal["epoch", "step"]


@runtime_checkable
class SupportsSequenceLengthWarmup(Protocol):
    """A data module whose training batches can be shortened: `seq_len` and `batch_size` are the target (final)
    shape; `set_sequence_length` changes the shape of the training batches from the next batch on."""

    seq_len: int
    batch_size: int

    def set_sequence_length(self, seq_len: int, batch_size: int) -> None: ...


def warmup_schedule(start_length: int, target_length: int, target_batch_size: int) -> list[tuple[int, int]]:
    """Stages `[(length, batch_size), ...]`: `start_length` doubled up to `target_length`, batch sizes keeping
    `target_length * target_batch_size` tokens per batch."""
    if start_length <= 0 or target_length % start_length or (target_length // start_length) & (
            target_length // start_length - 1):
        raise ValueError(f"SequenceLengthWarmup: start_length={start_length} must be the target length "
                         f"{target_length} divided by a power of two")
    stages, length = [], start_length
    while length <= target_length:
        stages.append((length, target_batch_size * (target_length // length)))
        length *= 2
    return stages


def stage_at(progress: int, num_stages: int, every: int, boundaries: list[int] | None) -> int:
    """Index of the stage in force after `progress` epochs/steps: `progress // every`, or the number of
    `boundaries` already reached; at most `num_stages - 1`."""
    if boundaries is not None:
        return sum(progress >= boundary for boundary in boundaries)
    return min(progress // every, num_stages - 1)


def split_windows(batch: dict[str, torch.Tensor], seq_len: int) -> dict[str, torch.Tensor]:
    """Cut every `(b, L, ...)` tensor of `batch` into `(b * L / seq_len, seq_len, ...)` consecutive pieces and
    repeat every `(b,)` tensor accordingly. `L` must be a multiple of `seq_len`."""
    lengths = {value.shape[1] for value in batch.values() if value.dim() >= 2}
    if len(lengths) != 1:
        raise ValueError(f"split_windows: expected one sequence length among the batch tensors, got {sorted(lengths)}")
    length = lengths.pop()
    if length % seq_len:
        raise ValueError(f"split_windows: batch length {length} is not a multiple of seq_len={seq_len}")
    pieces = length // seq_len
    if pieces == 1:
        return batch
    split = {}
    for key, value in batch.items():
        if value.dim() >= 2:
            split[key] = value.reshape(value.shape[0] * pieces, seq_len, *value.shape[2:])
        else:
            split[key] = value.repeat_interleave(pieces, dim=0)
    return split


class SequenceLengthWarmup(pl.Callback):
    """Train at `start_length`, doubling every `every` epochs (interval="epoch") or optimizer steps
    (interval="step") — or at the given `boundaries` (one per doubling) — up to the data module's `seq_len`,
    always at the data module's tokens per batch (`seq_len * batch_size`). Logs `train/seq_len`."""

    def __init__(self, start_length: int, interval: Interval = "epoch", every: int = 1,
                 boundaries: list[int] | None = None) -> None:
        if interval not in ("epoch", "step"):
            raise ValueError(f"SequenceLengthWarmup: interval={interval!r}, expected 'epoch' or 'step'")
        if every <= 0:
            raise ValueError(f"SequenceLengthWarmup: every={every}, expected a positive integer")
        if boundaries is not None and list(boundaries) != sorted(boundaries):
            raise ValueError(f"SequenceLengthWarmup: boundaries={boundaries} must be increasing")
        self.start_length = start_length
        self.interval = interval
        self.every = every
        self.boundaries = None if boundaries is None else list(boundaries)
        self.stages: list[tuple[int, int]] = []
        self.current: tuple[int, int] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        if not isinstance(datamodule, SupportsSequenceLengthWarmup):
            raise TypeError(f"SequenceLengthWarmup needs a data module with seq_len, batch_size and "
                            f"set_sequence_length(seq_len, batch_size); {type(datamodule).__name__} has not")
        self.stages = warmup_schedule(self.start_length, datamodule.seq_len, datamodule.batch_size)
        if self.boundaries is not None and len(self.boundaries) != len(self.stages) - 1:
            raise ValueError(f"SequenceLengthWarmup: {len(self.stages)} stages {[s[0] for s in self.stages]} need "
                             f"{len(self.stages) - 1} boundaries, got {self.boundaries}")

    def _progress(self, trainer: pl.Trainer) -> int:
        return trainer.current_epoch if self.interval == "epoch" else trainer.global_step

    def _apply(self, trainer: pl.Trainer) -> None:
        shape = self.stages[stage_at(self._progress(trainer), len(self.stages), self.every, self.boundaries)]
        if shape != self.current:
            trainer.datamodule.set_sequence_length(*shape)
            self.current = shape

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._apply(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._apply(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        pl_module.log("train/seq_len", float(self.current[0]))
        self._apply(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Leave the data module at its full length (for validation / testing after fit)."""
        trainer.datamodule.set_sequence_length(*self.stages[-1])
        self.current = None
