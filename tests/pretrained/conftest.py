"""The pretrained tests run tiny models, for which one intra-op thread is fastest (no thread hand-offs per op, which
cost most on a busy 2-core machine). Scoped to these tests: the previous setting is restored afterwards."""
import pytest
import torch


@pytest.fixture(autouse=True)
def single_intra_op_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
