"""Start a modality's backbone from a pretrained Mamba language model, with its layers frozen or not.

Only `layers.*` and `norm_f` are copied: the LM's token embedding and LM head are replaced by the modality's own
adapter and head. Any format `mambaseq.pretrained.loading.load_pretrained` reads works (mamba-ssm or transformers
checkpoint folders, Lightning `.ckpt` of `LanguageModelTask`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from mambaseq.backbone import MambaBackbone
from mambaseq.config import BackboneConfig
from mambaseq.pretrained.loading import load_pretrained
from mambaseq.tasks.optim import is_norm_module

FreezeMode = Literal["none", "backbone", "all_but_norms"]
FREEZE_MODES = ("none", "backbone", "all_but_norms")
COPIED_PREFIXES = ("layers.", "norm_f.")
# Mixer settings that only shape the random initialization or the kernel's chunking, not the trained function.
INIT_ONLY_MIXER_FIELDS = {"dt_min", "dt_max", "dt_init", "dt_scale", "dt_init_floor", "A_init_range", "conv_init",
                          "chunk_size"}


@dataclass
class PretrainedConfig:
    """`path`: pretrained MambaLM to start the backbone from ("" = random init). `freeze`: "none" trains everything,
    "backbone" freezes every backbone parameter, "all_but_norms" freezes all but the normalization weights."""

    path: str = ""
    freeze: FreezeMode = "none"


def load_pretrained_backbone(backbone: MambaBackbone, path: str | Path, freeze: FreezeMode = "none") -> None:
    """Copy `layers.*` and `norm_f.*` of the MambaLM at `path` into `backbone` (in place, in its dtype and device),
    then apply `freeze`. Raises ValueError naming each mismatching setting (d_model, n_layer, mixer, ...)."""
    if freeze not in FREEZE_MODES:
        raise ValueError(f"freeze={freeze!r} is unknown: expected one of {FREEZE_MODES}")
    source = load_pretrained(path).backbone
    check_compatible(source.config, backbone.config, str(path))
    source_state = source.state_dict()
    with torch.no_grad():
        for name, tensor in backbone.state_dict().items():
            if not name.startswith(COPIED_PREFIXES):
                continue
            if name not in source_state or source_state[name].shape != tensor.shape:
                found = tuple(source_state[name].shape) if name in source_state else "missing"
                raise ValueError(f"pretrained backbone {path}: tensor {name} is {found}, expected "
                                 f"{tuple(tensor.shape)}")
            tensor.copy_(source_state[name])
    freeze_backbone(backbone, freeze)


def check_compatible(source: BackboneConfig, target: BackboneConfig, path: str) -> None:
    """Raise if the pretrained backbone's layers cannot be loaded into one built from `target`."""
    settings = {
        "d_model": (source.d_model, target.d_model),
        "n_layer": (source.n_layer, target.n_layer),
        **_mixer_settings(source.mixer.to_dict(), target.mixer.to_dict()),
        "attn_layer_idx": (source.attn_layer_idx, target.attn_layer_idx),
        "attn": (source.attn and source.attn.to_dict(), target.attn and target.attn.to_dict()),
        "d_intermediate": (source.d_intermediate, target.d_intermediate),
        "rms_norm": (source.rms_norm, target.rms_norm),
    }
    mismatches = [f"{name}: checkpoint has {found}, task config has {expected}"
                  for name, (found, expected) in settings.items() if found != expected]
    if mismatches:
        raise ValueError(f"pretrained backbone {path} does not match model.init_args.backbone: "
                         + "; ".join(mismatches))


def _mixer_settings(source: dict, target: dict) -> dict[str, tuple[object, object]]:
    """`{"mixer.<field>": (checkpoint value, config value)}` over the fields that change the layers' weights or
    function (`mixer.kind` alone when the kinds differ)."""
    if source.get("kind") != target.get("kind"):
        return {"mixer.kind": (source.get("kind"), target.get("kind"))}
    fields = (set(source) | set(target)) - INIT_ONLY_MIXER_FIELDS
    return {f"mixer.{name}": (source.get(name), target.get(name)) for name in sorted(fields)}


def freeze_backbone(backbone: MambaBackbone, freeze: FreezeMode) -> None:
    """Set `requires_grad` on every backbone parameter per `freeze` (frozen parameters are left out of AdamW)."""
    if freeze not in FREEZE_MODES:
        raise ValueError(f"freeze={freeze!r} is unknown: expected one of {FREEZE_MODES}")
    for module in backbone.modules():
        trainable = freeze == "none" or (freeze == "all_but_norms" and is_norm_module(module))
        for parameter in module.parameters(recurse=False):
            parameter.requires_grad_(trainable)
