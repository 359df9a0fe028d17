"""End to end: `mambaseq scale` on a tiny model and the bundled genome writes consistent results."""
import math

import yaml

from mambaseq.cli import main as mambaseq_main
from mambaseq.tasks.scaling.report import read_csv

TINY = {
    "name": "tiny",
    "seed": 0,
    "lengths": [16, 32, 64],
    "tokens_per_batch": 128,
    "train_tokens": 512,
    "val_tokens": 256,
    "chunk_size": 32,
    "device": "cpu",
    "model": {"backbone": {"d_model": 16, "n_layer": 1, "mixer": {"kind": "mamba1", "d_state": 4}}},
    "optimizer": {"lr": 3.0e-3, "warmup_steps": 1},
    "seqlen_warmup": {"start_length": 16, "fraction": 0.5},
    "data": {"source": "dna", "path": "bundled:lambda_phage"},
}


def test_scale_command_writes_table_csv_and_plots(tmp_path, capsys):
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "out")}))
    mambaseq_main(["scale", "--config", str(config_path)])

    records = read_csv(tmp_path / "out" / "results.csv")
    assert [r.seq_len for r in records] == [16, 32, 64]
    assert [r.batch_size for r in records] == [8, 4, 2]
    assert [r.chunk_size for r in records] == [0, 0, 32], "only contexts above chunk_size are chunked"
    for record in records:
        assert record.status == "ok" and record.steps == 4
        assert math.isclose(record.val_perplexity, math.exp(record.val_loss), rel_tol=1e-9)
        assert 1.0 < record.val_perplexity < 16.0, "near uniform over the 16 (padded) ids after 4 steps"
        assert record.tokens_per_second > 0 and record.peak_memory_gib > 0
    for name in ("perplexity_vs_context.png", "memory_vs_context.png", "time_vs_context.png", "results.md"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert "| 2^6 (64) | 2 | 4 |" in capsys.readouterr().out


def test_command_line_overrides(tmp_path):
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "unused")}))
    mambaseq_main(["scale", "--config", str(config_path), "--lengths", "32", "--train-tokens", "128",
                   "--output-dir", str(tmp_path / "override")])
    records = read_csv(tmp_path / "override" / "results.csv")
    assert [(r.seq_len, r.steps) for r in records] == [(32, 1)]
    assert not (tmp_path / "unused").exists()
