"""Reading and writing the files of a checkpoint: JSON configs, PyTorch pickles (`weights_only`) and safetensors
(single file or sharded with an index). Every error names the file and what was expected of it."""
from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from tqdm import tqdm

INDEX_SUFFIX = ".index.json"


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object stored in `path`."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is corrupted: it is not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a checkpoint config: expected a JSON object, got {type(data).__name__}")
    return data


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def read_torch_file(path: Path) -> Any:
    """`torch.load(path, weights_only=True)` onto the CPU, memory-mapped when the file is in the zip format."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is corrupted or not a PyTorch checkpoint that loads with weights_only=True: "
                         f"{error}") from error


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is corrupted or not a safetensors file: {error}") from error


def read_tensor_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from one `.safetensors` or PyTorch (`.bin`, `.pt`) file."""
    state_dict = read_safetensors(path) if path.suffix == ".safetensors" else read_torch_file(path)
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path} is not a state dict: expected a mapping of parameter names to tensors")
    return state_dict


def read_sharded(index_path: Path) -> dict[str, torch.Tensor]:
    """The state dict spread over the shards named by a `*.index.json` (`weight_map: {key: shard file}`)."""
    weight_map = read_json(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index_path} is corrupted: expected a non-empty 'weight_map' of parameter names to files")
    shard_names = sorted(set(weight_map.values()))
    missing = [name for name in shard_names if not (index_path.parent / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{index_path} lists shard file(s) that do not exist in {index_path.parent}: {missing}")
    state_dict: dict[str, torch.Tensor] = {}
    for name in tqdm(shard_names, desc=f"Loading {index_path.parent.name}", unit="shard", disable=len(shard_names) < 2):
        state_dict.update(read_tensor_file(index_path.parent / name))
    absent = sorted(set(weight_map) - set(state_dict))
    if absent:
        raise ValueError(f"{index_path}: tensors {absent[:5]} (of {len(absent)}) are missing from their shard files")
    return state_dict


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a single weight file or from a shard index."""
    return read_sharded(path) if path.name.endswith(INDEX_SUFFIX) else read_tensor_file(path)


def state_dict_to_cpu(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached CPU copies; tensors that share storage (tied embeddings) stay shared, so files hold them once."""
    copies: dict[tuple[Any, ...], torch.Tensor] = {}
    result = {}
    for key, tensor in state_dict.items():
        identity = (tensor.data_ptr(), tensor.device, tensor.dtype, tuple(tensor.shape))
        if identity not in copies:
            copies[identity] = tensor.detach().to("cpu").contiguous()
        result[key] = copies[identity]
    return result
