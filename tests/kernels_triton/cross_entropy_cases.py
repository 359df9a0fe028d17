"""Random logits blocks for the cross-entropy row-kernel tests, and their fp64 expected outputs."""
from __future__ import annotations

import torch

# name -> (rows, vocabulary, logits dtype); vocabularies cover one partial tile, several tiles and a ragged last one
CASES = {
    "fp32_one_tile": (5, 300, torch.float32),
    "fp32_ragged_tiles": (4, 2 * 2048 + 77, torch.float32),
    "fp16_two_tiles": (3, 4096, torch.float16),
}


def row_inputs(rows: int, vocab: int, dtype: torch.dtype, generator: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits (rows, V) in `dtype`, targets (rows,) int64, row scales (rows,) fp32, one of them 0 as for an ignored
    row). Logits spread over +-8 so the softmax is far from uniform."""
    logits = (4 * torch.randn(rows, vocab, generator=generator)).to(dtype)
    targets = torch.randint(0, vocab, (rows,), generator=generator)
    row_scale = torch.rand(rows, generator=generator) + 0.5
    row_scale[-1] = 0.0
    return logits, targets, row_scale


def expected_outputs(logits: torch.Tensor, targets: torch.Tensor, row_scale: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """fp64 logsumexp (rows,) and gradient `(softmax - onehot) * row_scale` (rows, V) of the same rounded logits."""
    exact = logits.double()
    lse = torch.logsumexp(exact, dim=-1)
    grad = torch.softmax(exact, dim=-1)
    grad[torch.arange(len(targets)), targets] -= 1.0
    return lse, grad * row_scale.double()[:, None]
