"""Resumable loader and sampler (seeded order, rank sharding, mid-epoch state), atomic writes, RNG state round trip."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from mambaseq.tasks import callbacks
from mambaseq.tasks.base import capture_rng_state, restore_rng_state
from mambaseq.tasks.data import ResumableDataLoader, ResumableSampler


class Numbers(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def _epoch(loader):
    return [batch.tolist() for batch in loader]


def test_sampler_is_a_seeded_permutation_per_epoch():
    sampler = ResumableSampler(50, shuffle=True, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(50)) and first != list(range(50))
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert list(ResumableSampler(50, shuffle=False)) == list(range(50))


def test_ranks_partition_the_epoch():
    shares = [list(ResumableSampler(23, shuffle=True, seed=0, rank=r, world_size=3)) for r in range(3)]
    assert all(len(share) == 23 // 3 for share in shares)
    flat = [i for share in shares for i in share]
    assert len(set(flat)) == len(flat)


def test_loader_state_resumes_mid_epoch():
    reference = ResumableDataLoader(Numbers(40), batch_size=4, shuffle=True, seed=1)
    reference.resumable_sampler.set_epoch(2)
    full = _epoch(reference)

    interrupted = ResumableDataLoader(Numbers(40), batch_size=4, shuffle=True, seed=1)
    interrupted.resumable_sampler.set_epoch(2)
    iterator = iter(interrupted)
    head = [next(iterator).tolist() for _ in range(3)]
    state = interrupted.state_dict()
    assert state == {"epoch": 2, "samples_consumed": 12, "world_size": 1, "seed": 1, "num_samples": 40}

    resumed = ResumableDataLoader(Numbers(40), batch_size=4, shuffle=True, seed=1)
    resumed.load_state_dict(state)
    assert len(resumed) == 10  # the full epoch: Lightning counts the finished batches itself
    tail = _epoch(resumed)
    assert head + tail == full
    assert resumed.state_dict()["samples_consumed"] == 0  # the epoch is finished
    resumed.resumable_sampler.set_epoch(3)
    assert len(_epoch(resumed)) == 10  # the next epoch starts from its beginning


def test_state_saved_after_an_epochs_last_batch_resumes_in_the_next_epoch_from_its_start():
    """A checkpoint after the last full batch (here 9 of 10 samples consumed, drop_last) is restored, then Lightning
    starts the next epoch: that epoch is complete, not cut by the old position (which once skipped a whole epoch)."""
    reference = ResumableDataLoader(Numbers(10), batch_size=3, shuffle=True, seed=4)
    reference.resumable_sampler.set_epoch(1)
    next_epoch = _epoch(reference)
    interrupted = ResumableDataLoader(Numbers(10), batch_size=3, shuffle=True, seed=4)
    iterator = iter(interrupted)
    for _ in range(3):
        next(iterator)
    state = interrupted.state_dict()
    assert state["epoch"] == 0 and state["samples_consumed"] == 9
    resumed = ResumableDataLoader(Numbers(10), batch_size=3, shuffle=True, seed=4)
    resumed.load_state_dict(state)
    resumed.resumable_sampler.set_epoch(1)
    assert _epoch(resumed) == next_epoch and len(next_epoch) == 3


def test_loader_state_resumes_on_another_world_size():
    """2 ranks x batch 2 for 3 steps (12 samples), resumed on 1 rank x batch 4: the same global batches follow."""
    single = ResumableDataLoader(Numbers(40), batch_size=4, shuffle=True, seed=1)
    full = _epoch(single)
    ranks = [ResumableDataLoader(Numbers(40), batch_size=2, shuffle=True, seed=1, rank=r, world_size=2)
             for r in range(2)]
    iterators = [iter(loader) for loader in ranks]
    head = [sorted(next(iterators[0]).tolist() + next(iterators[1]).tolist()) for _ in range(3)]
    assert head == [sorted(batch) for batch in full[:3]]
    resumed = ResumableDataLoader(Numbers(40), batch_size=4, shuffle=True, seed=1)
    resumed.load_state_dict(ranks[0].state_dict())
    assert _epoch(resumed) == full[3:]
    odd = ResumableDataLoader(Numbers(40), batch_size=1, shuffle=True, seed=1, rank=0, world_size=5)
    with pytest.raises(ValueError, match="12 samples over 2 rank"):
        odd.load_state_dict(ranks[0].state_dict())


def test_loader_state_from_other_data_is_rejected():
    loader = ResumableDataLoader(Numbers(40), batch_size=4, shuffle=True, seed=1)
    with pytest.raises(ValueError, match="40 samples"):
        ResumableDataLoader(Numbers(41), batch_size=4, shuffle=True, seed=1).load_state_dict(loader.state_dict())


def test_empty_or_too_small_data_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        ResumableDataLoader(Numbers(0), batch_size=4, shuffle=True)
    with pytest.raises(ValueError, match="do not fill one batch"):
        ResumableDataLoader(Numbers(3), batch_size=4, shuffle=True)


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    callbacks.atomic_torch_save({"step": 1}, path)
    assert torch.load(path) == {"step": 1}

    def failing_save(obj, file):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(callbacks.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        callbacks.atomic_torch_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_rng_state_round_trip_is_weights_only_safe(tmp_path):
    state = capture_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    first = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])
