"""Scaling sweep building blocks: config validation, schedules, windows, measurement, report files."""
import math

import pytest
import torch

from mambaseq.tasks.scaling.config import ScalingConfig, SeqLenWarmupConfig
from mambaseq.tasks.scaling.measure import PeakMemory, StepTimer
from mambaseq.tasks.scaling.report import ScalingRecord, markdown_table, read_csv, write_report
from mambaseq.tasks.scaling.train import warmup_seq_len
from mambaseq.tasks.scaling.windows import TokenStream, train_batch, val_batches

BASE = {"name": "t", "output_dir": "out", "model": {"backbone": {"d_model": 8, "n_layer": 1}},
        "tokens_per_batch": 1024, "train_tokens": 4096, "val_tokens": 1024, "log2_range": [6, 10]}


def test_config_lengths_and_sections():
    config = ScalingConfig.from_dict({**BASE, "optimizer": {"lr": "1e-3", "min_lr": 0.0},
                                      "seqlen_warmup": {"start_length": 64}})
    assert config.context_lengths() == [64, 128, 256, 512, 1024]
    assert config.optimizer.lr == 1e-3 and config.optimizer.min_lr == 0.0
    assert config.seqlen_warmup.start_length == 64


@pytest.mark.parametrize("change, message", [
    ({"unknown_key": 1}, "unknown_key"),
    ({"optimizer": {"learning_rate": 1}}, "optimizer.*learning_rate"),
    ({"lengths": [64]}, "exactly one of"),
    ({"log2_range": [6, 11]}, "2048 must divide tokens_per_batch"),
    ({"model": {"vocab_size": 5}}, "model.vocab_size"),
    ({"data": {"source": "video"}}, "data.source='video'"),
])
def test_config_errors_name_the_key(change, message):
    with pytest.raises(ValueError, match=message):
        ScalingConfig.from_dict({**BASE, **change})


def test_missing_required_key_is_named():
    data = dict(BASE)
    del data["train_tokens"]
    with pytest.raises(ValueError, match="train_tokens"):
        ScalingConfig.from_dict(data)


def test_seqlen_warmup_doubles_then_holds():
    warmup = SeqLenWarmupConfig(start_length=128, fraction=0.3)
    lengths = [warmup_seq_len(step, 100, 1024, 4096, warmup) for step in range(100)]
    assert lengths[0] == 128
    assert sorted(set(lengths)) == [128, 256, 512, 1024]
    assert lengths == sorted(lengths)
    assert all(length == 1024 for length in lengths[30:])
    assert warmup_seq_len(0, 100, 128, 4096, SeqLenWarmupConfig(start_length=256)) == 128
    assert warmup_seq_len(0, 100, 1024, 4096, None) == 1024


def test_windows_are_shifted_and_deterministic():
    tokens = torch.arange(1000)
    stream = TokenStream.split(tokens, vocab_size=1000, val_fraction=0.2, source="test")
    assert stream.train.numel() == 800 and stream.val[0] == 800
    inputs, labels = train_batch(stream, 4, 16, torch.Generator().manual_seed(0))
    assert inputs.shape == labels.shape == (4, 16)
    assert torch.equal(labels, inputs + 1)
    again, _ = train_batch(stream, 4, 16, torch.Generator().manual_seed(0))
    assert torch.equal(inputs, again)
    batches = val_batches(stream, 3, 32, max_tokens=200)
    assert [b[0].shape[0] for b in batches] == [3, 3]
    assert batches[0][0][0, 0] == 800 and batches[0][0][1, 0] == 832
    with pytest.raises(ValueError, match="val part has 200 tokens"):
        stream.check_length(256, "test")


def test_peak_memory_and_timer_on_cpu():
    memory = PeakMemory(torch.device("cpu"))
    memory.start()
    block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB touched
    block += 1
    assert memory.stop() >= 64 * 1024 * 1024
    assert memory.kind.startswith("cpu_rss")
    timer = StepTimer(torch.device("cpu"), skip=1)
    for _ in range(3):
        timer.begin()
        timer.end(100)
    assert timer.tokens_per_second > 0 and len(timer.durations) == 3


def _record(seq_len, ppl, status="ok"):
    return ScalingRecord(seq_len=seq_len, batch_size=4096 // seq_len, steps=10, train_loss=1.5, val_loss=math.log(ppl),
                         val_perplexity=ppl, tokens_per_second=1e4, step_seconds=0.4, peak_memory_gib=0.5,
                         memory_kind="cpu_rss", chunk_size=0, status=status)


def test_report_files(tmp_path):
    records = [_record(1024, 3.9), _record(2048, 3.8), _record(4096, float("nan"), "oom")]
    paths = write_report(records, tmp_path, "demo")
    for key in ("perplexity", "memory", "time"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_csv(paths["csv"])[:2] == records[:2]
    table = markdown_table(records)
    assert "| 2^10 (1024) | 4 |" in table and "oom" in table
    assert paths["markdown"].read_text().startswith("# demo")


def test_shipped_configs_are_valid():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[3] / "configs" / "scaling"
    configs = {path.stem: ScalingConfig.from_yaml(path) for path in folder.glob("*.yaml")}
    assert {"quickstart", "dna_1m", "kjv_bytes_1m"} <= set(configs)
    assert configs["quickstart"].device == "auto" and max(configs["quickstart"].context_lengths()) <= 2**10
    assert max(configs["dna_1m"].context_lengths()) == 2**20
