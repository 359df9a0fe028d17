"""Every way a checkpoint can be wrong gives an error that names the file, key or value and what was expected."""
import json
import re

import huggingface_hub.constants
import pytest
import torch

from mambaseq.pretrained import load_pretrained
from mambaseq.pretrained.hub import is_hub_id
from checkpoint_builders import hf_mamba1, hf_mamba2, write_mamba_ssm_checkpoint


@pytest.fixture
def mamba_ssm_folder(tmp_path):
    return write_mamba_ssm_checkpoint(tmp_path / "mamba-ssm", hf_mamba1())


@pytest.fixture
def hf_folder(tmp_path):
    hf_mamba2().save_pretrained(tmp_path / "hf", max_shard_size="20KB")
    return tmp_path / "hf"


def edit_config(folder, **changes) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_missing_files_are_named(tmp_path, mamba_ssm_folder, hf_folder) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'nowhere'}/model.ckpt does not exist")):
        load_pretrained(tmp_path / "nowhere" / "model.ckpt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty has no config.json: expected a folder with config.json"):
        load_pretrained(tmp_path / "empty")
    (mamba_ssm_folder / "pytorch_model.bin").unlink()
    with pytest.raises(FileNotFoundError, match="holds a mamba-ssm config.json but no pytorch_model.bin"):
        load_pretrained(mamba_ssm_folder)
    (hf_folder / "model-00002-of-00004.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model.safetensors.index.json lists shard file\(s\) that do not "
                                                r"exist .*\['model-00002-of-00004.safetensors'\]"):
        load_pretrained(hf_folder)
    for weights in hf_folder.glob("model*"):
        weights.unlink()
    with pytest.raises(FileNotFoundError, match="holds a transformers config.json but none of the weight files "
                                                r"\['model.safetensors.index.json', 'model.safetensors'"):
        load_pretrained(hf_folder)


def test_corrupted_files_are_named(mamba_ssm_folder, hf_folder) -> None:
    weights = mamba_ssm_folder / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match=re.escape(f"{weights} is corrupted")):
        load_pretrained(mamba_ssm_folder)
    shard = hf_folder / "model-00003-of-00004.safetensors"
    shard.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match=re.escape(f"{shard} is corrupted")):
        load_pretrained(hf_folder)
    config = hf_folder / "config.json"
    config.write_text('{"model_type": "mamba2", ')
    with pytest.raises(ValueError, match=re.escape(f"{config} is corrupted: it is not valid JSON")):
        load_pretrained(hf_folder)


def test_unknown_architectures_are_refused(mamba_ssm_folder, hf_folder) -> None:
    edit_config(hf_folder, model_type="llama")
    with pytest.raises(ValueError, match="model_type='llama' is not a Mamba language model: expected one of "
                                         r"\['mamba', 'mamba2'\]"):
        load_pretrained(hf_folder)
    edit_config(mamba_ssm_folder, ssm_cfg={"layer": "Mamba3"})
    with pytest.raises(ValueError, match="config.json: mamba-ssm config: ssm_cfg.layer='Mamba3' is not supported"):
        load_pretrained(mamba_ssm_folder)
    (mamba_ssm_folder / "config.json").write_text(json.dumps({"hidden_dim": 4}))
    with pytest.raises(ValueError, match="is neither a transformers config .* nor a mamba-ssm config"):
        load_pretrained(mamba_ssm_folder)


def test_shape_mismatches_name_the_key_and_both_shapes(mamba_ssm_folder, hf_folder) -> None:
    edit_config(mamba_ssm_folder, ssm_cfg={"d_state": 8})
    with pytest.raises(ValueError, match=re.escape("backbone.layers.0.mixer.A_log: checkpoint "
                                                   f"{mamba_ssm_folder / 'pytorch_model.bin'} has shape (64, 16), "
                                                   "MambaLM expects (64, 8)")):
        load_pretrained(mamba_ssm_folder)
    edit_config(hf_folder, vocab_size=80)
    with pytest.raises(ValueError, match=r"backbone.embedding.weight: checkpoint .* has shape \(72, 32\), MambaLM "
                                         r"expects \(80, 32\)"):
        load_pretrained(hf_folder)


def test_lightning_checkpoint_without_config(tmp_path) -> None:
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"model.x": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="other.ckpt has no 'mambaseq_lm_config' entry"):
        load_pretrained(path)


def test_offline_hub_id_without_cache_says_so(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError) as error:
        load_pretrained("state-spaces/mamba-130m", revision="main")
    message = str(error.value)
    assert "cannot load 'state-spaces/mamba-130m' (revision main): HF_HUB_OFFLINE is set" in message
    assert f"not in the local hub cache {tmp_path / 'hub'}" in message
    assert "Pass a local path instead: a folder with config.json + pytorch_model.bin" in message


def test_local_paths_and_hub_ids_are_told_apart(tmp_path) -> None:
    assert is_hub_id("state-spaces/mamba-130m") and is_hub_id("gpt2")
    assert not any(is_hub_id(name) for name in ["./model", "runs/a/last.ckpt", "/abs/model", "model.ckpt", "a/b/c"])
    with pytest.raises(FileNotFoundError, match="runs/a/last.ckpt does not exist and is not a Hugging Face hub id"):
        load_pretrained("runs/a/last.ckpt")
    with pytest.raises(ValueError, match="revision='v1' applies to hub ids only"):
        load_pretrained(tmp_path, revision="v1")
