"""Checkpoint formats of a Mamba LM, detected from what lies on disk:

- "mamba-ssm" (state-spaces/mamba-*, mamba2-*): `config.json` in mamba-ssm's `MambaConfig` schema (no
  `model_type`) + `pytorch_model.bin`, keys = ours.
- "hf" (transformers, `-hf` repos): `config.json` with `model_type` "mamba"/"mamba2" + `model.safetensors`,
  sharded `model.safetensors.index.json`, or `pytorch_model.bin`; keys differ by `backbone.embeddings.`.
- "lightning": a `.ckpt` of mambaseq's `LanguageModelTask` (`checkpoint["mambaseq_lm_config"]` =
  `LMConfig.to_dict()`, `state_dict` keys `model.<our key>`).

Readers return a `Checkpoint` (config + state dict with our key names); writers take a `MambaLM`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import save_torch_state_dict
from transformers import Mamba2Config as HFMamba2Config
from transformers import MambaConfig

from mambaseq.config import LMConfig
from mambaseq.pretrained.checkpoint_files import (
    read_json,
    read_torch_file,
    read_weights,
    state_dict_to_cpu,
    write_json,
)
from mambaseq.pretrained.layout import (
    CONFIG_FILE,
    EXPECTED_LAYOUT,
    LIGHTNING_SUFFIX,
    MAMBA_SSM_WEIGHTS_FILE,
    TRANSFORMERS_WEIGHT_FILES,
)
from mambaseq.pretrained.transformers_format import (
    lm_config_from_transformers,
    lm_config_to_transformers,
    state_dict_from_transformers,
    state_dict_to_transformers,
)

MAMBA_SSM = "mamba-ssm"
TRANSFORMERS = "hf"
LIGHTNING = "lightning"
WRITABLE_FORMATS = (MAMBA_SSM, TRANSFORMERS)

TRANSFORMERS_MODEL_TYPES = {"mamba": "MambaForCausalLM", "mamba2": "Mamba2ForCausalLM"}
TRANSFORMERS_CONFIG_CLASSES = {"mamba": MambaConfig, "mamba2": HFMamba2Config}
LIGHTNING_CONFIG_KEY = "mambaseq_lm_config"
LIGHTNING_MODEL_PREFIX = "model."
GPT_NEOX_END_OF_TEXT_ID = 0
# transformers stores only the padded vocabulary; these extra config.json keys keep the real one across exports.
VOCAB_SIZE_KEY = "mambaseq_vocab_size"
VOCAB_MULTIPLE_KEY = "mambaseq_pad_vocab_size_multiple"


@dataclass
class Checkpoint:
    """A model read from disk: `state_dict` uses MambaLM's keys; `source` names the file(s) for error messages."""

    config: LMConfig
    state_dict: dict[str, torch.Tensor]
    format: str
    source: Path

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype the weights are stored in."""
        floating = [t.dtype for t in self.state_dict.values() if t.is_floating_point()]
        return floating[0] if floating else torch.float32


def detect_format(path: Path) -> str:
    """"mamba-ssm", "hf" or "lightning" for a checkpoint folder or `.ckpt` file; raises naming what is missing."""
    if path.is_file():
        if path.suffix == LIGHTNING_SUFFIX:
            return LIGHTNING
        raise ValueError(f"{path} is not a checkpoint: expected {EXPECTED_LAYOUT}")
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{path} has no {CONFIG_FILE}: expected {EXPECTED_LAYOUT}")
    config = read_json(config_path)
    if "model_type" in config:
        if config["model_type"] not in TRANSFORMERS_MODEL_TYPES:
            raise ValueError(f"{config_path}: model_type={config['model_type']!r} is not a Mamba language model: "
                             f"expected one of {sorted(TRANSFORMERS_MODEL_TYPES)} (transformers format) or a "
                             "mamba-ssm config without model_type")
        return TRANSFORMERS
    if "d_model" in config and "n_layer" in config:
        return MAMBA_SSM
    raise ValueError(f"{config_path} is neither a transformers config (model_type 'mamba'/'mamba2') nor a mamba-ssm "
                     "config (d_model, n_layer, ssm_cfg, ...)")


def read_checkpoint(path: Path) -> Checkpoint:
    """Read the checkpoint at `path` (folder or `.ckpt`), whatever its format."""
    readers = {MAMBA_SSM: read_mamba_ssm, TRANSFORMERS: read_transformers, LIGHTNING: read_lightning}
    return readers[detect_format(path)](path)


def _config_error(config_path: Path, error: Exception) -> ValueError:
    return ValueError(f"{config_path}: {error}")


def read_mamba_ssm(folder: Path) -> Checkpoint:
    config_path, weights_path = folder / CONFIG_FILE, folder / MAMBA_SSM_WEIGHTS_FILE
    try:
        config = LMConfig.from_mamba_ssm_dict(read_json(config_path))
    except (ValueError, TypeError) as error:
        raise _config_error(config_path, error) from error
    if not weights_path.is_file():
        raise FileNotFoundError(f"{folder} holds a mamba-ssm {CONFIG_FILE} but no {MAMBA_SSM_WEIGHTS_FILE}")
    return Checkpoint(config, read_weights(weights_path), MAMBA_SSM, weights_path)


def _transformers_lm_config(config_path: Path) -> LMConfig:
    """Read through transformers' config class, which fills defaults and decodes its `{"__float__": "Infinity"}`."""
    config_class = TRANSFORMERS_CONFIG_CLASSES[read_json(config_path)["model_type"]]
    data = config_class.from_json_file(config_path).to_dict()
    config = lm_config_from_transformers(data)
    if VOCAB_SIZE_KEY in data:
        exact = LMConfig(backbone=config.backbone, vocab_size=data[VOCAB_SIZE_KEY],
                         pad_vocab_size_multiple=data.get(VOCAB_MULTIPLE_KEY, 1), tie_embeddings=config.tie_embeddings)
        if exact.padded_vocab_size != config.padded_vocab_size:
            raise ValueError(f"{VOCAB_SIZE_KEY}={data[VOCAB_SIZE_KEY]} padded to a multiple of "
                             f"{exact.pad_vocab_size_multiple} is {exact.padded_vocab_size}, but vocab_size is "
                             f"{config.padded_vocab_size}")
        config = exact
    return config


def read_transformers(folder: Path) -> Checkpoint:
    config_path = folder / CONFIG_FILE
    try:
        config = _transformers_lm_config(config_path)
    except (ValueError, TypeError, KeyError) as error:
        raise _config_error(config_path, error) from error
    weights_path = next((folder / name for name in TRANSFORMERS_WEIGHT_FILES if (folder / name).is_file()), None)
    if weights_path is None:
        raise FileNotFoundError(f"{folder} holds a transformers {CONFIG_FILE} but none of the weight files "
                                f"{list(TRANSFORMERS_WEIGHT_FILES)}")
    state_dict = state_dict_from_transformers(read_weights(weights_path))
    return Checkpoint(config, state_dict, TRANSFORMERS, weights_path)


def read_lightning(path: Path) -> Checkpoint:
    checkpoint = read_torch_file(path)
    if not isinstance(checkpoint, dict) or LIGHTNING_CONFIG_KEY not in checkpoint:
        raise ValueError(f"{path} has no {LIGHTNING_CONFIG_KEY!r} entry: expected a Lightning checkpoint written by "
                         "mambaseq's LanguageModelTask")
    try:
        config = LMConfig.from_dict(checkpoint[LIGHTNING_CONFIG_KEY])
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {LIGHTNING_CONFIG_KEY}: {error}") from error
    state_dict = {key[len(LIGHTNING_MODEL_PREFIX):]: value for key, value in checkpoint.get("state_dict", {}).items()
                  if key.startswith(LIGHTNING_MODEL_PREFIX)}
    if not state_dict:
        raise ValueError(f"{path}: its state_dict has no {LIGHTNING_MODEL_PREFIX!r}-prefixed (MambaLM) weights")
    return Checkpoint(config, state_dict, LIGHTNING, path)


def write_checkpoint(model: torch.nn.Module, folder: Path, format: str, max_shard_size: int | str = "5GB") -> None:
    """Write `model` (a `MambaLM`) to `folder` in "mamba-ssm" or "hf" format (safetensors, sharded above
    `max_shard_size`)."""
    if format not in WRITABLE_FORMATS:
        raise ValueError(f"checkpoint format {format!r} cannot be written: expected one of {WRITABLE_FORMATS}")
    if format == MAMBA_SSM:
        config = model.config.to_mamba_ssm_dict()  # raises before anything is written when the format cannot hold it
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / CONFIG_FILE, config)
        torch.save(state_dict_to_cpu(model.state_dict()), folder / MAMBA_SSM_WEIGHTS_FILE)
    else:
        _write_transformers(model, folder, max_shard_size)


def _write_transformers(model: torch.nn.Module, folder: Path, max_shard_size: int | str) -> None:
    config: LMConfig = model.config
    hf_config = lm_config_to_transformers(config)
    hf_config.architectures = [TRANSFORMERS_MODEL_TYPES[hf_config.model_type]]
    hf_config.dtype = model.lm_head.weight.dtype
    # <|endoftext|> (id 0) of GPT-NeoX-20B, the tokenizer of mamba-ssm's models (transformers' Mamba2 defaults differ)
    hf_config.bos_token_id = hf_config.eos_token_id = hf_config.pad_token_id = GPT_NEOX_END_OF_TEXT_ID
    setattr(hf_config, VOCAB_SIZE_KEY, config.vocab_size)
    setattr(hf_config, VOCAB_MULTIPLE_KEY, config.pad_vocab_size_multiple)
    folder.mkdir(parents=True, exist_ok=True)
    hf_config.save_pretrained(folder)
    hf_state_dict = state_dict_to_transformers(state_dict_to_cpu(model.state_dict()))
    if config.tie_embeddings:
        hf_state_dict.pop("lm_head.weight", None)  # transformers re-ties it from the embedding
    save_torch_state_dict(hf_state_dict, folder, max_shard_size=max_shard_size)
