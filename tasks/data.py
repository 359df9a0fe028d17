"""Resumable data loading shared by all tasks: a seeded, rank-sharded sampler and a DataLoader with `state_dict`.

Lightning saves the `state_dict()` of stateful training loaders in checkpoints and restores it on `--ckpt_path`,
so a run interrupted mid-epoch continues with exactly the batch it would have seen next. Because the loader has a
length, Lightning does not prefetch, and the count of batches handed out equals the count trained on.
Data modules shard across ranks themselves (the CLI sets `trainer.use_distributed_sampler: false`).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler


class ResumableSampler(Sampler[int]):
    """Indices of one epoch: a permutation seeded by `(seed, epoch)` (or 0..n-1 without shuffle), this rank's
    share `order[rank::world_size]` (truncated to equal length across ranks), starting at `start`."""

    def __init__(self, num_samples: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if num_samples <= 0:
            raise ValueError(f"ResumableSampler: the dataset is empty (num_samples={num_samples})")
        if not 0 <= rank < world_size:
            raise ValueError(f"ResumableSampler: rank={rank} must be in [0, world_size={world_size})")
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at each epoch start. A restored position belongs to its own epoch: moving to another
        epoch starts it from the beginning (a checkpoint taken after an epoch's last batch resumes in the next)."""
        if epoch != self.epoch:
            self.start = 0
        self.epoch = epoch

    def per_rank(self) -> int:
        return self.num_samples // self.world_size

    def __len__(self) -> int:
        """The full epoch on this rank (also when resuming mid-epoch: Lightning counts the batches already done)."""
        return self.per_rank()

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        mine = order[self.rank::self.world_size][: self.per_rank()]
        start, self.start = self.start, 0
        yield from (int(i) for i in mine[start:])


class ResumableDataLoader(DataLoader):
    """DataLoader over a map-style dataset whose position (epoch, samples consumed) is saved and restored.

    state_dict: `{"epoch", "samples_consumed" (on this rank), "world_size", "seed", "num_samples"}`; loading it makes
    the next iteration start at that sample of that epoch's order. Ranks take interleaved shares of one permutation,
    so the position is the same on any world size that divides the samples consumed over all ranks: a checkpoint
    of a 2-GPU run resumes on 1 GPU (or 4) with the same global batches. Extra keyword arguments go to `DataLoader`.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        **kwargs: Any,
    ) -> None:
        sampler = ResumableSampler(len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size)
        if drop_last and sampler.per_rank() < batch_size:
            raise ValueError(f"ResumableDataLoader: {len(dataset)} samples over {world_size} rank(s) do not fill one "
                             f"batch of {batch_size}; lower the batch size or add data")
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **kwargs)
        self.resumable_sampler = sampler
        self._samples_consumed = 0

    def __iter__(self) -> Iterator[Any]:
        self._samples_consumed = self.resumable_sampler.start
        for batch in super().__iter__():
            self._samples_consumed += self.batch_size
            yield batch
        self._samples_consumed = 0

    def state_dict(self) -> dict[str, int]:
        sampler = self.resumable_sampler
        return {"epoch": sampler.epoch, "samples_consumed": self._samples_consumed, "world_size": sampler.world_size,
                "seed": sampler.seed, "num_samples": sampler.num_samples}

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler = self.resumable_sampler
        if state["num_samples"] != sampler.num_samples or state["seed"] != sampler.seed:
            raise ValueError(f"ResumableDataLoader: the checkpoint was taken on {state['num_samples']} samples with "
                             f"seed {state['seed']}, but this loader has {sampler.num_samples} samples and seed "
                             f"{sampler.seed}; resume with the same data and seed")
        consumed_globally = state["samples_consumed"] * state.get("world_size", 1)
        if consumed_globally % sampler.world_size:
            raise ValueError(f"ResumableDataLoader: the checkpoint stopped after {consumed_globally} samples over "
                             f"{state.get('world_size', 1)} rank(s), which {sampler.world_size} ranks cannot split "
                             f"evenly; resume on a world size that divides {consumed_globally}")
        sampler.epoch = state["epoch"]
        sampler.start = consumed_globally // sampler.world_size
        self._samples_consumed = sampler.start
