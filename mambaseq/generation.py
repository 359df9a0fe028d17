"""Autoregressive generation: one parallel forward over the prompt fills the recurrent state, then each new token
costs one O(1)-state `step`.

Logits are processed in transformers' order: repetition penalty, then (sampling only) temperature, top-k, top-p.
Only real vocabulary ids (< `model.config.vocab_size`) can be produced; padded vocabulary rows are cut off.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from mambaseq.generation_cuda_graph import cuda_graph_decoder, prefill


def apply_repetition_penalty(logits: torch.Tensor, sequences: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style penalty on every token already in `sequences: (b, T)`: positive logits are divided by `penalty`,
    negative ones multiplied. logits: (b, V) -> (b, V)."""
    if penalty == 1.0:
        return logits
    seen = logits.gather(1, sequences)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(1, sequences, seen)


def apply_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the `top_k` largest logits per row (ties with the k-th kept), the rest -inf. `top_k <= 0` keeps all."""
    if top_k <= 0 or top_k >= logits.shape[-1]:
        return logits
    kth_largest = torch.topk(logits, top_k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def apply_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability mass reaches `top_p`
    (at least one token), the rest -inf. logits: (b, V)."""
    if top_p >= 1.0:
        return logits
    sorted_logits, sorted_index = torch.sort(logits, dim=-1, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= 1.0 - top_p
    remove_sorted[..., -1] = False
    remove = remove_sorted.scatter(1, sorted_index, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def process_logits(
    logits: torch.Tensor,
    sequences: torch.Tensor,
    *,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
) -> torch.Tensor:
    """fp32 scores `(b, V)` from last-position `logits: (b, V)` given the sequences so far `(b, T)`: repetition
    penalty, then, when sampling, temperature, top-k and top-p (transformers' order)."""
    logits = apply_repetition_penalty(logits.float(), sequences, repetition_penalty)
    if not do_sample or temperature == 0:
        return logits
    if temperature != 1.0:
        logits = logits / temperature
    return apply_top_p(apply_top_k(logits, top_k), top_p)


def select_next_token(
    logits: torch.Tensor,
    sequences: torch.Tensor,
    *,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next token ids (b,) from last-position `logits: (b, V)` (already cut to the real vocabulary) given the
    sequences so far `(b, T)`. Greedy (argmax) when `do_sample` is False or `temperature == 0`."""
    greedy = not do_sample or temperature == 0
    scores = process_logits(logits, sequences, do_sample=not greedy, temperature=temperature, top_k=top_k,
                            top_p=top_p, repetition_penalty=repetition_penalty)
    if greedy:
        return scores.argmax(dim=-1)
    return torch.multinomial(scores.softmax(dim=-1), num_samples=1, generator=generator).squeeze(1)


def _check_arguments(temperature: float, top_k: int, top_p: float, repetition_penalty: float) -> None:
    if temperature < 0:
        raise ValueError(f"temperature={temperature} is invalid: expected >= 0 (0 means greedy)")
    if top_k < 0:
        raise ValueError(f"top_k={top_k} is invalid: expected >= 0 (0 disables top-k)")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p={top_p} is invalid: expected a value in (0, 1]")
    if repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty={repetition_penalty} is invalid: expected > 0")


@torch.no_grad()
def stream(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    do_sample: bool = True,
    generator: torch.Generator | None = None,
    cuda_graph: bool = False,
) -> Iterator[torch.Tensor]:
    """Yield the next token ids `(b,)` one step at a time for prompts `input_ids: (b, L)`.

    A row that has produced an `eos_token_id` yields `pad_token_id` (default: the first eos id, else 0) from then on;
    the stream ends after `max_new_tokens` or once every row has finished. `model` needs `allocate_cache(batch)`,
    `model(input_ids, cache=...)`, `model.step(input_ids, cache)` and `model.config.vocab_size`.
    `cuda_graph=True` replays each step from a CUDA graph (`generation_cuda_graph.CUDAGraphDecoder`; CUDA and
    Mamba-1/2 layers only); sampling stays outside the graph.
    """
    _check_arguments(temperature, top_k, top_p, repetition_penalty)
    if max_new_tokens <= 0:
        return
    eos_ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
    if pad_token_id is None:
        pad_token_id = eos_ids[0] if eos_ids else 0
    eos_ids_tensor = torch.tensor(eos_ids, dtype=torch.long, device=input_ids.device)
    vocab_size = model.config.vocab_size
    sampling = dict(do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                    repetition_penalty=repetition_penalty, generator=generator)

    if cuda_graph:
        logits, decoding = cuda_graph_decoder(model).start(input_ids)
        next_logits = decoding.step
    else:
        cache = model.allocate_cache(input_ids.shape[0])
        logits = prefill(model, input_ids, cache)

        def next_logits(tokens: torch.Tensor) -> torch.Tensor:
            return model.step(tokens[:, None], cache)[:, -1]
    logits = logits[:, :vocab_size]
    sequences = input_ids
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    for index in range(max_new_tokens):
        next_tokens = select_next_token(logits, sequences, **sampling)
        next_tokens = next_tokens.masked_fill(finished, pad_token_id)
        finished |= torch.isin(next_tokens, eos_ids_tensor)
        sequences = torch.cat([sequences, next_tokens[:, None]], dim=1)
        yield next_tokens
        if index == max_new_tokens - 1 or (eos_ids and bool(finished.all())):  # no host sync without eos
            return
        logits = next_logits(next_tokens)[:, :vocab_size]


def generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    do_sample: bool = True,
    generator: torch.Generator | None = None,
    cuda_graph: bool = False,
) -> torch.Tensor:
    """Prompt plus generated tokens, `(b, L + n)` with `n <= max_new_tokens` (shorter when every row hit eos).

    Arguments as in `stream`; greedy decoding when `temperature == 0` or `do_sample=False`.
    """
    new_tokens = list(stream(model, input_ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                             repetition_penalty=repetition_penalty, eos_token_id=eos_token_id,
                             pad_token_id=pad_token_id, do_sample=do_sample, generator=generator,
                             cuda_graph=cuda_graph))
    if not new_tokens:
        return input_ids
    return torch.cat([input_ids, torch.stack(new_tokens, dim=1)], dim=1)
