"""Synthetic sequences generated on the fly with deterministic seeds, and fixed validation sets.

Example `i` of a set is generated from `torch.Generator().manual_seed(example_seed(seed, i))`, so a run is
reproducible whatever the number of workers or ranks, resumes exactly (the dataset is map-style, see
`mambaseq.tasks.data.ResumableDataLoader`), and never repeats an example: the training set is as long as the run
(`max_steps x batch_size` examples), i.e. fresh data every step as in the paper.
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset

VALIDATION_SEED_OFFSET = 1_000_003


class SyntheticGenerator(Protocol):
    vocab_size: int

    @property
    def chance_accuracy(self) -> float: ...

    def generate(
        self, batch_size: int, seq_len: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def example_seed(seed: int, index: int) -> int:
    """Seed of example `index` of the set `seed` (a fixed mixing, stable across runs and platforms)."""
    return (seed * 6_364_136_223_846_793_005 + index * 1_442_695_040_888_963_407 + 1) % (2**63)


def validation_seed(seed: int, seq_len: int) -> int:
    """Seed of the validation set at `seq_len` of a run seeded `seed` (distinct from its training set)."""
    return seed + VALIDATION_SEED_OFFSET * seq_len


class SyntheticSequences(Dataset):
    """`num_examples` sequences of a synthetic task: item `i` is `{"input_ids": (seq_len,), "labels": (seq_len,)}`."""

    def __init__(self, task: SyntheticGenerator, seq_len: int, num_examples: int, seed: int) -> None:
        if num_examples < 1:
            raise ValueError(f"SyntheticSequences: num_examples={num_examples}, expected >= 1")
        self.task = task
        self.seq_len = seq_len
        self.num_examples = num_examples
        self.seed = seed

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.num_examples:
            raise IndexError(f"SyntheticSequences: index {index} outside [0, {self.num_examples})")
        generator = torch.Generator().manual_seed(example_seed(self.seed, index))
        inputs, targets = self.task.generate(1, self.seq_len, generator)
        return {"input_ids": inputs[0], "labels": targets[0]}


def validation_set(task: SyntheticGenerator, seq_len: int, num_examples: int, seed: int) -> SyntheticSequences:
    """The fixed validation set of a run seeded `seed` at `seq_len`."""
    return SyntheticSequences(task, seq_len, num_examples, validation_seed(seed, seq_len))


def sequential_loader(dataset: SyntheticSequences, batch_size: int, num_workers: int = 0) -> DataLoader:
    """Batches of `dataset` in index order (evaluation, and the plain training loop)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
