"""Synthetic task generators: structure of the sequences, targets, determinism of the seeded streams."""
import pytest
import torch

from mambaseq.tasks.synthetic.data import SyntheticSequences, sequential_loader, validation_set
from mambaseq.tasks.synthetic.induction_heads import IGNORE_INDEX, InductionHeads
from mambaseq.tasks.synthetic.selective_copying import SelectiveCopying


@pytest.mark.parametrize("seq_len", [4, 64, 257])
def test_induction_heads_structure(seq_len):
    task = InductionHeads(vocab_size=16)
    inputs, targets = task.generate(32, seq_len, torch.Generator().manual_seed(seq_len))
    assert inputs.shape == targets.shape == (32, seq_len)
    assert (inputs[:, -1] == task.trigger_token).all()
    trigger_counts = (inputs == task.trigger_token).sum(dim=1)
    assert (trigger_counts == 2).all(), "exactly one trigger inside the sequence plus the final one"
    first_trigger = (inputs == task.trigger_token).int().argmax(dim=1)
    assert (first_trigger <= seq_len - 3).all()
    answers = inputs[torch.arange(32), first_trigger + 1]
    assert (answers < task.num_symbols).all()
    assert torch.equal(targets[:, -1], answers)
    assert (targets[:, :-1] == IGNORE_INDEX).all()


def test_induction_heads_trigger_positions_cover_range():
    task = InductionHeads(vocab_size=16)
    inputs, _ = task.generate(4096, 8, torch.Generator().manual_seed(0))
    first_trigger = (inputs == task.trigger_token).int().argmax(dim=1)
    assert set(first_trigger.tolist()) == set(range(6))


def test_selective_copying_structure():
    task = SelectiveCopying(vocab_size=16, num_memorize=16)
    seq_len = 300
    inputs, targets = task.generate(8, seq_len, torch.Generator().manual_seed(1))
    content = inputs[:, : seq_len - 16]
    assert (inputs[:, seq_len - 16 :] == task.marker_token).all()
    assert ((content == task.noise_token).sum(dim=1) == seq_len - 32).all()
    for row in range(8):
        data_in_order = content[row][content[row] != task.noise_token]
        assert torch.equal(targets[row, seq_len - 16 :], data_in_order)
        assert ((data_in_order >= 1) & (data_in_order <= 14)).all()
    assert (targets[:, : seq_len - 16] == IGNORE_INDEX).all()
    positions = (content != task.noise_token).nonzero()[:, 1]
    assert positions.float().std() > 20, "data tokens are spread over the sequence, not bunched"


def test_invalid_settings_name_the_field():
    with pytest.raises(ValueError, match="vocab_size"):
        InductionHeads(vocab_size=2)
    with pytest.raises(ValueError, match="num_memorize"):
        SelectiveCopying(num_memorize=16).generate(1, 20, torch.Generator())


def test_sets_are_deterministic_and_distinct():
    task = InductionHeads()
    first = SyntheticSequences(task, 32, 10, seed=3)[5]
    assert torch.equal(first["input_ids"], SyntheticSequences(task, 32, 10, seed=3)[5]["input_ids"])
    assert not torch.equal(first["input_ids"], SyntheticSequences(task, 32, 10, seed=3)[6]["input_ids"])
    assert not torch.equal(first["input_ids"], SyntheticSequences(task, 32, 10, seed=4)[5]["input_ids"])
    assert first["labels"][-1] != IGNORE_INDEX
    with pytest.raises(IndexError, match="index 10 outside"):
        SyntheticSequences(task, 32, 10, seed=3)[10]


def test_worker_processes_give_the_same_batches():
    dataset = SyntheticSequences(SelectiveCopying(num_memorize=4), 16, 12, seed=7)
    single = [b["input_ids"] for b in sequential_loader(dataset, 4)]
    workers = [b["input_ids"] for b in sequential_loader(dataset, 4, num_workers=2)]
    assert len(single) == 3
    assert all(torch.equal(a, b) for a, b in zip(single, workers, strict=True))


def test_validation_set_is_fixed_and_not_the_training_set():
    task = InductionHeads()
    val = validation_set(task, 64, 20, seed=0)
    assert len(val) == 20
    assert torch.equal(val[0]["input_ids"], validation_set(task, 64, 20, seed=0)[0]["input_ids"])
    train = SyntheticSequences(task, 64, 100, seed=0)
    assert not any(torch.equal(train[i]["input_ids"], val[0]["input_ids"]) for i in range(100))
