"""`mambaseq fit` on a synthetic task (tiny, a few steps), the shipped configs, training and evaluation helpers."""
import math
from pathlib import Path

import pytest
import torch
import yaml

from mambaseq.config import BackboneConfig, LMConfig, Mamba1Config, mixer_config_from_dict
from mambaseq.lm import MambaLM
from mambaseq.tasks.cli import build_cli
from mambaseq.tasks.synthetic.evaluate import accuracy_table, evaluate_length
from mambaseq.tasks.synthetic.induction_heads import InductionHeads
from mambaseq.tasks.synthetic.selective_copying import SelectiveCopying
from mambaseq.tasks.synthetic.train import SyntheticTrainConfig, train_synthetic
from script_loader import load_script

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "synthetic"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_parse(name):
    cli = build_cli(["--config", str(CONFIGS / name), "--trainer.logger", "false"], run=False)
    model, data = cli.model, cli.datamodule
    assert model.lm_config.vocab_size == data.task.vocab_size == 16
    assert model.lm_config.backbone.d_model == 64 and model.lm_config.backbone.n_layer == 2
    written = yaml.safe_load((CONFIGS / name).read_text())["model"]["init_args"]["lm"]["backbone"]["mixer"]
    assert model.lm_config.backbone.mixer == mixer_config_from_dict(written), "no defaults of another mixer kind"


def _tiny_fit_config(tmp_path: Path) -> Path:
    config = yaml.safe_load((CONFIGS / "induction_heads_cpu.yaml").read_text())
    config["model"]["init_args"]["lm"]["backbone"].update(d_model=16)
    config["model"]["init_args"]["lm"]["backbone"]["mixer"]["d_state"] = 4
    config["data"]["init_args"].update(seq_len=16, val_examples=16)
    config["trainer"].update(max_steps=6, val_check_interval=3, default_root_dir=str(tmp_path), logger=False)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_fit_logs_accuracy_and_the_checkpoint_loads_in_the_extrapolation_script(tmp_path):
    cli = build_cli(["fit", "--config", str(_tiny_fit_config(tmp_path))])
    metrics = cli.trainer.callback_metrics
    assert 0.0 <= float(metrics["val/accuracy"]) <= 1.0
    assert math.isfinite(float(metrics["val/loss"]))
    assert "val/ppl" not in metrics, "the answer-only loss is not a per-token likelihood"

    script = load_script("induction_extrapolation")
    model = script.load_checkpoint(str(tmp_path / "checkpoints" / "last.ckpt"))
    trained = cli.model.model.state_dict()
    assert all(torch.equal(value, trained[key]) for key, value in model.state_dict().items())


def _tiny_model(vocab_size=16):
    torch.manual_seed(0)
    backbone = BackboneConfig(d_model=16, n_layer=2, mixer=Mamba1Config(d_state=4))
    return MambaLM(LMConfig(backbone=backbone, vocab_size=vocab_size))


def test_evaluation_is_the_same_chunked_or_not():
    model, task = _tiny_model(), SelectiveCopying(num_memorize=4)
    whole = evaluate_length(model, task, 64, 12, seed=0, device=torch.device("cpu"), chunk_size=None)
    chunked = evaluate_length(model, task, 64, 12, seed=0, device=torch.device("cpu"), chunk_size=20,
                              max_batch_tokens=200)
    assert whole.accuracy == chunked.accuracy and whole.sequence_accuracy == chunked.sequence_accuracy
    assert whole.num_examples == chunked.num_examples == 12
    assert "| 2^6 |" in accuracy_table([whole], "t")


def test_training_reduces_the_loss_and_stops_on_time():
    history = train_synthetic(_tiny_model(), InductionHeads(), SyntheticTrainConfig(
        seq_len=16, batch_size=16, steps=60, lr=3e-3, eval_every=30, eval_examples=32), torch.device("cpu"))
    assert history.steps == [30, 60] and history.stopped == "steps"
    assert history.losses[-1] < math.log(16), "below the loss of a uniform guess over the vocabulary"
    stopped = train_synthetic(_tiny_model(), InductionHeads(), SyntheticTrainConfig(
        seq_len=16, batch_size=4, steps=1000, eval_every=500, eval_examples=8, max_minutes=0.0), torch.device("cpu"))
    assert stopped.stopped == "time" and stopped.steps == [1]
