"""`load_pretrained` / `save_pretrained`: what `MambaLM.from_pretrained` and `MambaLM.save_pretrained` delegate to."""
from __future__ import annotations

from pathlib import Path

import torch

from mambaseq.lm import EMBEDDING_KEY, LM_HEAD_KEY, MambaLM
from mambaseq.pretrained.formats import MAMBA_SSM, Checkpoint, read_checkpoint, write_checkpoint
from mambaseq.pretrained.hub import resolve_pretrained
from mambaseq.pretrained.transformers_format import check_state_dict

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """A torch dtype from a name ("bfloat16", "bf16", ...); None and "auto" mean "as stored"."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return None
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported: expected 'auto' or one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def load_pretrained(
    name_or_path: str | Path,
    revision: str | None = None,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> MambaLM:
    """A `MambaLM` in eval mode from a hub id, a checkpoint folder (mamba-ssm or transformers format) or a Lightning
    `.ckpt`. `dtype` None keeps the stored dtype; `device` defaults to the CPU."""
    checkpoint = read_checkpoint(resolve_pretrained(name_or_path, revision))
    return model_from_checkpoint(checkpoint, dtype=dtype, device=device)


def model_from_checkpoint(
    checkpoint: Checkpoint, dtype: str | torch.dtype | None = None, device: str | torch.device | None = None
) -> MambaLM:
    """Build the model of `checkpoint.config` on `device` and load its weights after checking every key and shape."""
    dtype = parse_dtype(dtype) or checkpoint.dtype
    with torch.device(device or "cpu"):
        model = MambaLM(checkpoint.config)
    state_dict = dict(checkpoint.state_dict)
    if checkpoint.config.tie_embeddings:  # a tied checkpoint may hold one of the two shared matrices
        if LM_HEAD_KEY not in state_dict and EMBEDDING_KEY in state_dict:
            state_dict[LM_HEAD_KEY] = state_dict[EMBEDDING_KEY]
        elif EMBEDDING_KEY not in state_dict and LM_HEAD_KEY in state_dict:
            state_dict[EMBEDDING_KEY] = state_dict[LM_HEAD_KEY]
    check_state_dict(state_dict, model.state_dict(), f"checkpoint {checkpoint.source}", "MambaLM")
    model.load_state_dict(state_dict)
    return model.to(dtype).eval()


def save_pretrained(
    model: MambaLM, path: str | Path, format: str = MAMBA_SSM, max_shard_size: int | str = "5GB"
) -> None:
    """Write `model` to folder `path` in "mamba-ssm" format (`config.json` + `pytorch_model.bin`) or "hf" format
    (transformers `config.json` + safetensors, sharded above `max_shard_size`)."""
    write_checkpoint(model, Path(path), format, max_shard_size=max_shard_size)
