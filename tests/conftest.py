"""Shared pytest set-up: `gpu`-marked tests skip without CUDA, fixed-seed fixtures, one intra-op thread.

The suite runs one pytest worker per core (`-n auto` style); tiny models are fastest with one intra-op thread each,
and several threads per worker on a 2-core machine slow them down many times over.
"""
from __future__ import annotations

import random
import sys
import zlib
from pathlib import Path

import pytest
import torch

# `python -m pytest` from the checkout puts its root on sys.path, where the `kernels/` source folder (installed as
# `mambaseq.kernels`) would shadow Hugging Face's `kernels` package that transformers imports.
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != REPO_ROOT]

if not torch.cuda.is_available():
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` skip on machines without CUDA (CI); they run on the device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """A fixed seed per test (derived from its node id), applied to torch and random; the test is reproducible."""
    value = zlib.crc32(request.node.nodeid.encode())
    torch.manual_seed(value)
    random.seed(value)
    return value


@pytest.fixture
def generator(seed: int) -> torch.Generator:
    """A CPU torch.Generator seeded with the test's fixed seed, for explicit `generator=` arguments."""
    return torch.Generator().manual_seed(seed)
