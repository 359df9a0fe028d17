"""File names of the checkpoint layouts that `mambaseq.pretrained` reads and writes."""
from __future__ import annotations

CONFIG_FILE = "config.json"
MAMBA_SSM_WEIGHTS_FILE = "pytorch_model.bin"
TRANSFORMERS_WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                             "pytorch_model.bin")
LIGHTNING_SUFFIX = ".ckpt"
EXPECTED_LAYOUT = (f"a folder with {CONFIG_FILE} + {MAMBA_SSM_WEIGHTS_FILE} (mamba-ssm format), a folder with "
                   f"{CONFIG_FILE} + model.safetensors (transformers format), or a Lightning {LIGHTNING_SUFFIX} file")
