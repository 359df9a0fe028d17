"""Sampling quantized audio from an autoregressive model: one parallel pass over the prompt fills the recurrent
state, then one O(1)-state `step` per new sample (per-stage buffers for the U-Net), with a tqdm progress bar."""
from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from mambaseq.generation import select_next_token


@torch.no_grad()
def sample_codes(model: nn.Module, prompt: torch.Tensor, num_new: int, *, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, generator: torch.Generator | None = None, progress: bool = True) -> torch.Tensor:
    """New codes `(b, num_new)` int64 continuing `prompt: (b, P)` (P >= 1; the silence code alone for unconditional
    audio). `model` needs `allocate_cache(batch)`, `model(ids, cache=)`, `model.step(ids, cache)` and
    `model.config.vocab_size`; `temperature == 0` is greedy."""
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt must be (batch, length >= 1) codes, got shape {tuple(prompt.shape)}")
    vocab_size = model.config.vocab_size
    cache = model.allocate_cache(prompt.shape[0])
    logits = model(prompt, cache=cache)[:, -1, :vocab_size]
    codes = torch.empty(prompt.shape[0], num_new, dtype=torch.long, device=prompt.device)
    for index in tqdm(range(num_new), desc="generate", unit="sample", disable=not progress, mininterval=0.5):
        next_codes = select_next_token(logits, prompt, do_sample=temperature > 0, temperature=temperature,
                                       top_k=top_k, top_p=top_p, generator=generator)
        codes[:, index] = next_codes
        if index + 1 < num_new:
            logits = model.step(next_codes[:, None], cache)[:, -1, :vocab_size]
    return codes
