"""Tiny checkpoints on disk for the pretrained tests: transformers models saved with their own `save_pretrained`,
and the same weights written the way mamba-ssm's `MambaLMHeadModel.save_pretrained` writes them."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers

HF_VOCAB_SIZE = 72  # transformers' vocab_size is the padded one
MAMBA_SSM_VOCAB_SIZE = 70  # padded to 72 by pad_vocab_size_multiple=8


@torch.no_grad()
def randomize_(module: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Add noise to every parameter, so that no term (norm weights, biases, D) is a no-op in a comparison."""
    generator = torch.Generator().manual_seed(seed)
    for parameter in module.parameters():
        parameter.add_(scale * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return module


def hf_mamba1(tie: bool = True) -> transformers.MambaForCausalLM:
    """Mamba-1 with mamba-ssm's default mixer settings (d_state 16, dt_rank ceil(d_model / 16), no bias)."""
    config = transformers.MambaConfig(vocab_size=HF_VOCAB_SIZE, hidden_size=32, num_hidden_layers=2,
                                      tie_word_embeddings=tie)
    return randomize_(transformers.MambaForCausalLM(config)).eval()


def hf_mamba2(tie: bool = False) -> transformers.Mamba2ForCausalLM:
    config = transformers.Mamba2Config(vocab_size=HF_VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, state_size=8,
                                       num_heads=8, head_dim=8, n_groups=2, chunk_size=4, tie_word_embeddings=tie)
    return randomize_(transformers.Mamba2ForCausalLM(config)).eval()


def mamba_ssm_config_of(hf_model: transformers.PreTrainedModel) -> dict:
    """mamba-ssm's `MambaConfig` fields for a transformers model built by `hf_mamba1` / `hf_mamba2`."""
    hf_config = hf_model.config
    if hf_config.model_type == "mamba":
        ssm_cfg = {}  # as in state-spaces/mamba-*: mamba-ssm's Mamba defaults
    else:
        ssm_cfg = {"layer": "Mamba2", "d_state": hf_config.state_size, "headdim": hf_config.head_dim,
                   "ngroups": hf_config.n_groups, "chunk_size": hf_config.chunk_size}
    return {"d_model": hf_config.hidden_size, "d_intermediate": 0, "n_layer": hf_config.num_hidden_layers,
            "vocab_size": MAMBA_SSM_VOCAB_SIZE, "ssm_cfg": ssm_cfg, "attn_layer_idx": [], "attn_cfg": {},
            "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8,
            "tie_embeddings": hf_config.tie_word_embeddings}


def write_mamba_ssm_checkpoint(folder: Path, hf_model: transformers.PreTrainedModel) -> Path:
    """`config.json` (json.dump of the config fields, indent 4) + `pytorch_model.bin` (`torch.save` of the full
    state dict, mamba-ssm key names, lm_head included even when tied), as mamba-ssm's `save_pretrained` does."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "config.json", "w") as file:
        json.dump(mamba_ssm_config_of(hf_model), file, indent=4)
    state_dict = {key.replace("backbone.embeddings.", "backbone.embedding."): value
                  for key, value in hf_model.state_dict().items()}
    torch.save(state_dict, folder / "pytorch_model.bin")
    return folder


def write_hf_pytorch_bin_checkpoint(folder: Path, hf_model: transformers.PreTrainedModel) -> Path:
    """transformers' pre-safetensors layout: `config.json` + `pytorch_model.bin` with transformers' key names."""
    folder.mkdir(parents=True, exist_ok=True)
    hf_model.config.save_pretrained(folder)
    torch.save(hf_model.state_dict(), folder / "pytorch_model.bin")
    return folder
