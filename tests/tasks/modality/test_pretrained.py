"""Pretrained backbones in a modality task: exact copy of layers/norm_f, mismatches named, freezing honoured by
the optimizer."""
import lightning.pytorch as pl
import pytest
import torch

from mambaseq.config import BackboneConfig, LMConfig
from mambaseq.lm import MambaLM
from mambaseq.tasks.lm.task import LanguageModelTask
from mambaseq.tasks.modality.pretrained import load_pretrained_backbone
from mambaseq.tasks.optim import OptimizerConfig, build_adamw, weight_decay_split
from mambaseq.tasks.timeseries.forecasting import ForecastingTask


def backbone_config(**overrides) -> dict:
    config = {"d_model": 16, "n_layer": 2, "mixer": {"kind": "mamba1", "d_state": 4}}
    return {**config, **overrides}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    model = MambaLM(LMConfig(backbone=BackboneConfig.from_dict(backbone_config()), vocab_size=32))
    path = tmp_path_factory.mktemp("lm") / "tiny_mamba"
    model.save_pretrained(str(path))
    return path, model


def forecasting_task(path="", freeze="none", **backbone) -> ForecastingTask:
    task = ForecastingTask(channels=3, horizon=2, backbone=backbone_config(**backbone),
                           pretrained={"path": str(path), "freeze": freeze})
    task.setup("fit")
    return task


def test_layers_and_final_norm_are_copied_exactly(checkpoint):
    path, model = checkpoint
    task = forecasting_task(path)
    source = model.backbone.state_dict()
    copied = task.backbone.state_dict()
    assert task.backbone.embedding is None
    assert set(copied) == {name for name in source if not name.startswith("embedding.")}
    for name, tensor in copied.items():
        assert torch.equal(tensor, source[name]), name
    assert float(task.head.proj.weight.detach().abs().sum()) == 0  # the head is the task's own, not the LM head


@pytest.mark.parametrize(("override", "message"), [
    ({"d_model": 32}, "d_model: checkpoint has 16, task config has 32"),
    ({"n_layer": 3}, "n_layer: checkpoint has 2, task config has 3"),
    ({"mixer": {"kind": "mamba1", "d_state": 8}}, "mixer.d_state: checkpoint has 4, task config has 8"),
    ({"mixer": {"kind": "mamba2", "d_state": 4, "headdim": 8}}, "mixer.kind: checkpoint has mamba1, task config "
                                                                "has mamba2"),
])
def test_mismatch_is_rejected_naming_both_values(checkpoint, override, message):
    with pytest.raises(ValueError, match=message):
        forecasting_task(checkpoint[0], **override)


def test_init_only_mixer_settings_do_not_block_loading(checkpoint):
    task = forecasting_task(checkpoint[0], mixer={"kind": "mamba1", "d_state": 4, "dt_max": 0.2})
    assert torch.equal(task.backbone.layers[0].mixer.A_log, checkpoint[1].backbone.layers[0].mixer.A_log)


def test_unknown_freeze_mode(checkpoint):
    with pytest.raises(ValueError, match="freeze='layers' is unknown"):
        load_pretrained_backbone(forecasting_task().backbone, checkpoint[0], freeze="layers")


@pytest.mark.parametrize("freeze", ["none", "backbone", "all_but_norms"])
def test_frozen_weights_stay_unchanged_after_an_optimizer_step(checkpoint, freeze):
    torch.manual_seed(0)
    task = forecasting_task(checkpoint[0], freeze=freeze)
    trainable = {name for name, p in task.named_parameters() if p.requires_grad}
    norm_names = {name for name in trainable if ".norm" in name}
    if freeze == "backbone":
        assert not any(name.startswith("backbone.") for name in trainable)
    elif freeze == "all_but_norms":
        assert {n for n in trainable if n.startswith("backbone.")} == norm_names and norm_names
    decay, no_decay = weight_decay_split(task)
    assert set(decay) | set(no_decay) == trainable
    optimizer = build_adamw(task, OptimizerConfig(lr=1e-2, weight_decay=0.1))
    before = {name: p.detach().clone() for name, p in task.named_parameters()}
    batch = {"context": torch.randn(4, 8, 3), "target": torch.randn(4, 2, 3)}
    for _ in range(2):  # two steps: the zero-initialized head passes gradients to the backbone from step 2 on
        optimizer.zero_grad()
        task.compute_loss(batch).loss.backward()
        optimizer.step()
    for name, parameter in task.named_parameters():
        changed = not torch.equal(parameter, before[name])
        assert changed == (name in trainable), (name, freeze)


def test_transformers_format_checkpoint_loads_too(checkpoint, tmp_path):
    checkpoint[1].save_pretrained(str(tmp_path / "hf"), format="hf")
    task = forecasting_task(tmp_path / "hf")
    source = checkpoint[1].backbone.state_dict()
    for name, tensor in task.backbone.state_dict().items():
        assert torch.equal(tensor, source[name]), name


def test_lightning_checkpoint_of_the_lm_task_loads_too(checkpoint, tmp_path):
    """A `.ckpt` written by Lightning for `LanguageModelTask` (as `mambaseq fit --config configs/lm/...` saves)."""
    lm_task = LanguageModelTask(lm=LMConfig(backbone=BackboneConfig.from_dict(backbone_config()), vocab_size=32))
    lm_task.model.load_state_dict(checkpoint[1].state_dict())
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(lm_task)
    trainer.save_checkpoint(tmp_path / "lm.ckpt")
    task = forecasting_task(tmp_path / "lm.ckpt")
    source = checkpoint[1].backbone.state_dict()
    for name, tensor in task.backbone.state_dict().items():
        assert torch.equal(tensor, source[name]), name
