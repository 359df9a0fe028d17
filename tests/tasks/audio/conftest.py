"""Audio tests run tiny models, whose ops are too small to split across threads: one intra-op thread avoids the
synchronization cost (and the stalls when the 2-core machine is shared)."""
from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
