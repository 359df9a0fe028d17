"""mambaseq: Mamba selective state space models for language, raw audio and DNA.

Public names are imported lazily (PEP 562), so that `mambaseq.cli` starts without loading torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "AttentionConfig": "mambaseq.config",
    "BackboneConfig": "mambaseq.config",
    "LMConfig": "mambaseq.config",
    "Mamba1Config": "mambaseq.config",
    "Mamba2Config": "mambaseq.config",
    "MambaBackbone": "mambaseq.backbone",
    "MambaLM": "mambaseq.lm",
    "InferenceCache": "mambaseq.inference",
    "generate": "mambaseq.generation",
    "stream": "mambaseq.generation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mambaseq' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
