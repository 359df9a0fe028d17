"""Short `mambaseq fit` runs of the DNA quickstart configs (shrunk), and the generated HG38 configs."""
from pathlib import Path

import pytest

from mambaseq.tasks.cli import build_cli
from mambaseq.tasks.dna import configs as hg38_configs
from mambaseq.tasks.seqlen_warmup import SequenceLengthWarmup

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs" / "dna"
TINY = ["--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "2",
        "--trainer.num_sanity_val_steps", "0", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--model.init_args.network.backbone.d_model", "16", "--data.init_args.seq_len", "64",
        "--data.init_args.batch_size", "4"]


def fit(config: str, root: Path, *extra: str):
    cli = build_cli(["fit", "--config", str(CONFIGS / config), *TINY, "--trainer.default_root_dir", str(root),
                     *extra])
    return cli.trainer


def test_quickstart_pretraining_fits_with_length_warmup_and_checkpoints(tmp_path):
    warmup = tmp_path / "warmup.yaml"
    warmup.write_text("trainer:\n  callbacks:\n  - class_path: mambaseq.tasks.seqlen_warmup.SequenceLengthWarmup\n"
                      "    init_args: {start_length: 16, interval: step, every: 1}\n")
    trainer = fit("quickstart.yaml", tmp_path, "--config", str(warmup))
    metrics = trainer.callback_metrics
    assert trainer.global_step == 4
    assert {"train/loss", "train/accuracy", "val/loss", "val/ppl", "val/accuracy"} <= set(metrics)
    assert 0.5 < float(metrics["val/loss"]) < 3.0
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    callback = next(c for c in trainer.callbacks if isinstance(c, SequenceLengthWarmup))
    assert [stage[0] for stage in callback.stages] == [16, 32, 64]
    assert float(metrics["train/seq_len"]) == 64.0
    assert trainer.datamodule.train_seq_len == 64


def test_species_quickstart_fits(tmp_path):
    trainer = fit("species_quickstart.yaml", tmp_path, "--data.init_args.eval_samples", "8")
    metrics = trainer.callback_metrics
    assert {"train/loss", "val/loss", "val/accuracy"} <= set(metrics)
    assert "val/ppl" not in metrics
    assert 0.0 <= float(metrics["val/accuracy"]) <= 1.0


def test_caduceus_quickstart_fits_masked_objective(tmp_path):
    trainer = fit("caduceus_quickstart.yaml", tmp_path, "--trainer.max_steps", "2")
    assert trainer.global_step == 2
    assert trainer.lightning_module.network_config.rc_equivariant
    assert "val/accuracy" in trainer.callback_metrics


def test_hg38_configs_are_generated_from_base_and_load(capsys):
    assert hg38_configs.main(["--config-dir", str(CONFIGS / "hg38"), "--check"]) == 0
    for name, seq_len in (("context/context_1024.yaml", 1024), ("context/context_1048576.yaml", 2**20)):
        cli = build_cli(["--config", str(CONFIGS / "hg38" / name), "--trainer.accelerator", "cpu",
                         "--trainer.precision", "32-true", "--trainer.logger", "false"], run=False)
        assert cli.datamodule.seq_len == seq_len and cli.datamodule.batch_size == 2**20 // seq_len
        assert cli.model.network_config.backbone.d_model == 128 and cli.model.network_config.backbone.n_layer == 6
        warmups = [c for c in cli.trainer.callbacks if isinstance(c, SequenceLengthWarmup)]
        assert len(warmups) == (seq_len > 1024)


@pytest.mark.parametrize("name", ["p_falciparum.yaml", "species_bacteria.yaml"])
def test_configs_for_prepared_genomes_load(name):
    cli = build_cli(["--config", str(CONFIGS / name), "--trainer.accelerator", "cpu", "--trainer.logger", "false"],
                    run=False)
    assert cli.datamodule.seq_len in (4096, 8192)


@pytest.mark.parametrize("override, message", [
    (["--model.init_args.network.bidirectional", "true"], "needs a causal network"),
    (["--data.init_args.fasta", "missing.fa"], "missing.fa does not exist"),
])
def test_bad_settings_fail_with_clear_errors(tmp_path, override, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        fit("quickstart.yaml", tmp_path, *override)
