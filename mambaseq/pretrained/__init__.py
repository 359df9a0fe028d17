"""Pretrained Mamba LMs: checkpoint formats (mamba-ssm, transformers, Lightning), hub download, tokenizer.

Names are imported lazily, so that importing the tokenizer does not load the model code.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "load_pretrained": "mambaseq.pretrained.loading",
    "save_pretrained": "mambaseq.pretrained.loading",
    "resolve_pretrained": "mambaseq.pretrained.hub",
    "load_tokenizer": "mambaseq.pretrained.tokenizer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mambaseq.pretrained' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
