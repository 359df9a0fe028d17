"""transformers format ("-hf" checkpoints: `MambaForCausalLM`, `Mamba2ForCausalLM`) <-> `LMConfig` / `MambaLM`.

Both sides use mamba-ssm's module names; only the embedding differs (`backbone.embeddings` in transformers,
`backbone.embedding` here). transformers stores the padded vocabulary as `vocab_size`, so a converted model keeps
every embedding row. Every conversion checks all parameter shapes and names the key and both shapes on mismatch.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import MambaConfig, MambaForCausalLM, Mamba2ForCausalLM, PreTrainedConfig, PreTrainedModel
from transformers import Mamba2Config as HFMamba2Config

from mambaseq.config import BackboneConfig, LMConfig, Mamba1Config, Mamba2Config
from mambaseq.lm import MambaLM

HF_EMBEDDING_PREFIX = "backbone.embeddings."
OUR_EMBEDDING_PREFIX = "backbone.embedding."
DEFAULT_VOCAB_MULTIPLE = 8


def _config_dict(hf_config: PreTrainedConfig | Mapping[str, Any]) -> dict[str, Any]:
    return hf_config.to_dict() if hasattr(hf_config, "to_dict") else dict(hf_config)


def lm_config_from_transformers(hf_config: PreTrainedConfig | Mapping[str, Any]) -> LMConfig:
    """`LMConfig` of a transformers `MambaConfig` / `Mamba2Config` (object or config.json dict)."""
    data = _config_dict(hf_config)
    model_type = data.get("model_type")
    if data.get("hidden_act", "silu") != "silu":
        raise ValueError(f"transformers config: hidden_act={data['hidden_act']!r} is not supported: expected 'silu'")
    if model_type == "mamba":
        dt_rank = data["time_step_rank"]
        if dt_rank == Mamba1Config().resolved_dt_rank(data["hidden_size"]):
            dt_rank = "auto"  # transformers stores the resolved rank; keep our configs comparable
        mixer = Mamba1Config(
            d_state=data["state_size"], d_conv=data["conv_kernel"], expand=data["expand"],
            dt_rank=dt_rank, dt_min=data["time_step_min"], dt_max=data["time_step_max"],
            dt_init=data["time_step_init_scheme"], dt_scale=data["time_step_scale"],
            dt_init_floor=data["time_step_floor"], conv_bias=data["use_conv_bias"], bias=data["use_bias"],
        )
    elif model_type == "mamba2":
        mixer = Mamba2Config(
            d_state=data["state_size"], d_conv=data["conv_kernel"], expand=data["expand"], headdim=data["head_dim"],
            ngroups=data["n_groups"], dt_min=data["time_step_min"], dt_max=data["time_step_max"],
            dt_init_floor=data["time_step_floor"], dt_limit=tuple(data["time_step_limit"]),
            chunk_size=data["chunk_size"], conv_bias=data["use_conv_bias"], bias=data["use_bias"],
        )
        heads = mixer.num_heads(data["hidden_size"])
        if heads != data["num_heads"]:
            raise ValueError(f"transformers config: num_heads={data['num_heads']} is inconsistent: expected "
                             f"expand * hidden_size / head_dim = {heads}")
    else:
        raise ValueError(f"transformers config: model_type={model_type!r} is not supported: expected 'mamba' or "
                         f"'mamba2'")
    backbone = BackboneConfig(d_model=data["hidden_size"], n_layer=data["num_hidden_layers"], mixer=mixer,
                              rms_norm=True, norm_eps=data["layer_norm_epsilon"],
                              residual_in_fp32=data["residual_in_fp32"])
    vocab_size = data["vocab_size"]
    multiple = DEFAULT_VOCAB_MULTIPLE if vocab_size % DEFAULT_VOCAB_MULTIPLE == 0 else 1
    return LMConfig(backbone=backbone, vocab_size=vocab_size, pad_vocab_size_multiple=multiple,
                    tie_embeddings=data["tie_word_embeddings"])


def lm_config_to_transformers(config: LMConfig) -> MambaConfig | HFMamba2Config:
    """transformers config of a model; raises for what transformers' Mamba classes cannot express."""
    backbone, mixer = config.backbone, config.backbone.mixer
    unsupported = {
        "attn_layer_idx (attention layers)": bool(backbone.attn_layer_idx),
        "d_intermediate (MLP sublayers)": backbone.d_intermediate > 0,
        "rms_norm=False (LayerNorm)": not backbone.rms_norm,
        "Mamba2Config.D_has_hdim": isinstance(mixer, Mamba2Config) and mixer.D_has_hdim,
        "Mamba2Config.rmsnorm=False": isinstance(mixer, Mamba2Config) and not mixer.rmsnorm,
        "Mamba2Config.norm_before_gate": isinstance(mixer, Mamba2Config) and mixer.norm_before_gate,
    }
    blocked = [name for name, present in unsupported.items() if present]
    if blocked:
        raise ValueError(f"LMConfig cannot be written in transformers format: {blocked} are not supported there")
    common = dict(vocab_size=config.padded_vocab_size, hidden_size=backbone.d_model, state_size=mixer.d_state,
                  num_hidden_layers=backbone.n_layer, layer_norm_epsilon=backbone.norm_eps, expand=mixer.expand,
                  conv_kernel=mixer.d_conv, use_bias=mixer.bias, use_conv_bias=mixer.conv_bias, hidden_act="silu",
                  residual_in_fp32=backbone.residual_in_fp32, time_step_min=mixer.dt_min,
                  time_step_max=mixer.dt_max, time_step_floor=mixer.dt_init_floor,
                  tie_word_embeddings=config.tie_embeddings)
    if isinstance(mixer, Mamba1Config):
        return MambaConfig(**common, time_step_rank=mixer.resolved_dt_rank(backbone.d_model),
                           time_step_scale=mixer.dt_scale, time_step_init_scheme=mixer.dt_init)
    if isinstance(mixer, Mamba2Config):
        return HFMamba2Config(**common, num_heads=mixer.num_heads(backbone.d_model), head_dim=mixer.headdim,
                              n_groups=mixer.ngroups, time_step_limit=list(mixer.dt_limit),
                              chunk_size=mixer.chunk_size)
    raise ValueError(f"LMConfig cannot be written in transformers format: mixer kind {mixer.kind!r} is not supported")


def _rename(state_dict: Mapping[str, torch.Tensor], old_prefix: str, new_prefix: str) -> dict[str, torch.Tensor]:
    return {(new_prefix + key[len(old_prefix):] if key.startswith(old_prefix) else key): value
            for key, value in state_dict.items()}


def state_dict_from_transformers(hf_state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename transformers keys to ours (`backbone.embeddings.*` -> `backbone.embedding.*`)."""
    return _rename(hf_state_dict, HF_EMBEDDING_PREFIX, OUR_EMBEDDING_PREFIX)


def state_dict_to_transformers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename our keys to transformers' (`backbone.embedding.*` -> `backbone.embeddings.*`)."""
    return _rename(state_dict, OUR_EMBEDDING_PREFIX, HF_EMBEDDING_PREFIX)


def check_state_dict(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], source_name: str,
                     target_name: str) -> None:
    """Raise a `ValueError` listing missing keys, unexpected keys and every shape mismatch between two state dicts."""
    problems = [f"missing in {source_name}: {key} (expected shape {tuple(target[key].shape)})"
                for key in target if key not in source]
    problems += [f"unexpected in {source_name}: {key} (shape {tuple(source[key].shape)}, no such key in {target_name})"
                 for key in source if key not in target]
    problems += [f"{key}: {source_name} has shape {tuple(source[key].shape)}, {target_name} expects "
                 f"{tuple(target[key].shape)}" for key in source
                 if key in target and tuple(source[key].shape) != tuple(target[key].shape)]
    if problems:
        raise ValueError(f"state dict {source_name} does not fit {target_name}:\n  " + "\n  ".join(problems))


def _fill_tied(state_dict: dict[str, torch.Tensor], embedding_key: str, tied: bool) -> dict[str, torch.Tensor]:
    if tied and "lm_head.weight" not in state_dict and embedding_key in state_dict:
        state_dict["lm_head.weight"] = state_dict[embedding_key]
    return state_dict


def load_transformers_state_dict(model: MambaLM, hf_state_dict: Mapping[str, torch.Tensor]) -> MambaLM:
    """Load a transformers-format state dict into `model` after checking every key and shape."""
    converted = _fill_tied(state_dict_from_transformers(hf_state_dict), OUR_EMBEDDING_PREFIX + "weight",
                           model.config.tie_embeddings)
    check_state_dict(converted, model.state_dict(), "transformers checkpoint", "MambaLM")
    model.load_state_dict(converted)
    return model


def from_transformers(hf_model: PreTrainedModel) -> MambaLM:
    """A `MambaLM` with the config and weights of a transformers `MambaForCausalLM` / `Mamba2ForCausalLM`."""
    model = MambaLM(lm_config_from_transformers(hf_model.config))
    model = load_transformers_state_dict(model, hf_model.state_dict())
    return model.to(next(hf_model.parameters()).dtype)


def to_transformers(model: MambaLM) -> MambaForCausalLM | Mamba2ForCausalLM:
    """A transformers `MambaForCausalLM` / `Mamba2ForCausalLM` with this model's config and weights."""
    hf_config = lm_config_to_transformers(model.config)
    model_class = MambaForCausalLM if hf_config.model_type == "mamba" else Mamba2ForCausalLM
    hf_model = model_class(hf_config)
    converted = _fill_tied(state_dict_to_transformers(model.state_dict()), HF_EMBEDDING_PREFIX + "weight",
                           model.config.tie_embeddings)
    check_state_dict(converted, hf_model.state_dict(), "MambaLM", model_class.__name__)
    hf_model.load_state_dict(converted)
    return hf_model.to(model.lm_head.weight.dtype)
