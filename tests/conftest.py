"""Shared pytest helpers: the `requires_cuda` skip marker and fixed-seed fixtures."""
from __future__ import annotations

import random
import zlib

import pytest
import torch

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


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
