"""Proof that a Triton path ran: count the calls of an autograd Function's `apply` inside a block."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def counting_applies(function: type[torch.autograd.Function]) -> Iterator[list[tuple]]:
    """Yields the list that collects the arguments of every `function.apply` call made inside the block (so a test
    can tell the Triton kernels from a PyTorch fallback); `apply` is restored on exit."""
    calls: list[tuple] = []
    original = function.apply

    def counting(*args):
        calls.append(args)
        return original(*args)

    function.apply = counting
    try:
        yield calls
    finally:
        function.apply = original
