"""The task CLI: OmegaConf interpolation and resolvers, command-line overrides, strict keys, --print_config."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.callbacks import RichProgressBar

from mambaseq.tasks.callbacks import AtomicModelCheckpoint
from mambaseq.tasks.cli import _divide_exactly, build_cli, main

CONFIG = """
seed_everything: 5
trainer:
  accelerator: cpu
  devices: 1
  max_steps: ${div:${mul:64,${trainer.devices}},${data.init_args.batch_size}}
  logger: false
  default_root_dir: {root}
model:
  class_path: mambaseq.tasks.lm.task.LanguageModelTask
  init_args:
    lm:
      backbone: {d_model: 16, n_layer: 1}
      vocab_size: 257
    optimizer:
      lr: 1.0e-3
      total_steps: ${trainer.max_steps}
data:
  class_path: mambaseq.tasks.lm.datamodule.LMDataModule
  init_args:
    train: [{corpus}]
    tokenizer: bytes
    seq_len: 16
    batch_size: 4
    seed: ${seed_everything}
checkpoint:
  every_n_train_steps: ${div:${trainer.max_steps},4}
"""


CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "lm"


@pytest.fixture
def config_file(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"document {i} " * 20}) + "\n" for i in range(10)))
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.replace("{root}", str(tmp_path / "run")).replace("{corpus}", str(corpus)))
    return path


def test_interpolation_resolvers_and_instantiation(config_file):
    cli = build_cli(["--config", str(config_file)], run=False)
    assert cli.trainer.max_steps == 16  # 64 * 1 / 4
    assert cli.model.optimizer_config.total_steps == 16
    assert cli.model.optimizer_config.lr == 1e-3
    assert cli.model.lm_config.backbone.d_model == 16
    assert cli.datamodule.seed == 5 and cli.datamodule.batch_size == 4
    checkpoints = [c for c in cli.trainer.callbacks if isinstance(c, AtomicModelCheckpoint)]
    assert len(checkpoints) == 1 and checkpoints[0]._every_n_train_steps == 4
    assert any(isinstance(c, RichProgressBar) for c in cli.trainer.callbacks)
    assert cli.trainer._accelerator_connector.use_distributed_sampler is False


def test_progress_bar_label_has_no_negative_epoch_bound_under_a_step_budget(config_file):
    cli = build_cli(["--config", str(config_file)], run=False)
    bar = next(c for c in cli.trainer.callbacks if isinstance(c, RichProgressBar))
    bar._trainer = cli.trainer  # as `setup` does at fit time
    for unbounded in (None, -1):  # Lightning sets -1 at fit time when max_steps alone bounds training
        cli.trainer.fit_loop.max_epochs = unbounded
        assert bar._get_train_description(3).strip() == "Epoch 3"
    cli = build_cli(["--config", str(config_file), "--trainer.max_epochs", "5"], run=False)
    bar = next(c for c in cli.trainer.callbacks if isinstance(c, RichProgressBar))
    bar._trainer = cli.trainer
    assert bar._get_train_description(3).strip() == "Epoch 3/4"


def test_command_line_overrides(config_file):
    cli = build_cli(["--config", str(config_file), "--model.init_args.lm.backbone.n_layer", "3",
                     "--data.init_args.seq_len", "8", "--trainer.enable_progress_bar", "false"], run=False)
    assert cli.model.lm_config.backbone.n_layer == 3
    assert len(cli.model.model.backbone.layers) == 3
    assert cli.datamodule.seq_len == 8
    assert not any(isinstance(c, RichProgressBar) for c in cli.trainer.callbacks)


def test_unknown_key_is_an_error_naming_it(config_file, capsys):
    text = config_file.read_text().replace("seq_len: 16", "seq_len: 16\n    seq_length: 16")
    config_file.write_text(text)
    with pytest.raises(SystemExit):
        build_cli(["--config", str(config_file)], run=False)
    assert "seq_length" in capsys.readouterr().err


def test_unknown_model_config_key_is_an_error_naming_it(config_file, capsys):
    config_file.write_text(config_file.read_text().replace("d_model: 16", "d_modle: 16"))
    with pytest.raises(SystemExit):
        build_cli(["--config", str(config_file)], run=False)
    assert "d_modle" in capsys.readouterr().err


def test_print_config_shows_resolved_values(config_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config_file), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["max_steps"] == 16
    assert printed["model"]["init_args"]["optimizer"]["total_steps"] == 16
    assert printed["checkpoint"]["every_n_train_steps"] == 4


def test_division_must_be_exact():
    assert _divide_exactly(524288, "16384") == 32
    with pytest.raises(ValueError, match="does not divide"):
        _divide_exactly(10, 4)
    with pytest.raises(ValueError, match="integers"):
        _divide_exactly("auto", 4)


def test_wrong_subcommand_is_rejected():
    with pytest.raises(SystemExit, match="expected one of"):
        main(["train"])


PAPER = {"130m": (24, 768, 6e-4, 2), "370m": (48, 1024, 3e-4, 4), "790m": (48, 1536, 2.5e-4, 4),
         "1.4b": (48, 2048, 2e-4, 8), "2.8b": (64, 2560, 1.6e-4, 8)}


@pytest.mark.parametrize("size", sorted(PAPER))
def test_paper_size_configs(size, capsys):
    """Depth, width and lr of the paper; every optimizer step sees 2^19 = 524288 tokens of 2048-token sequences."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIGS / f"mamba-{size}.yaml"), "--print_config"])
    assert exit_info.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    trainer, model, data = config["trainer"], config["model"]["init_args"], config["data"]["init_args"]
    n_layer, d_model, lr, accumulate = PAPER[size]
    assert (model["lm"]["backbone"]["n_layer"], model["lm"]["backbone"]["d_model"]) == (n_layer, d_model)
    assert model["optimizer"]["lr"] == lr and model["optimizer"]["min_lr"] == 1e-5
    assert model["lm"]["vocab_size"] == 50277 and data["seq_len"] == 2048
    assert trainer["accumulate_grad_batches"] == accumulate
    assert trainer["devices"] * trainer["num_nodes"] * data["batch_size"] * data["seq_len"] * accumulate == 2**19
    assert trainer["precision"] == "bf16-mixed" and trainer["gradient_clip_val"] == 1.0


def test_quickstart_config_resolves(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(CONFIGS / "quickstart.yaml"), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    assert Path(config["data"]["init_args"]["train"][0]).is_file()  # ${asset:...} points into the package
