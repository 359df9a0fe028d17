"""Exact forward and backward over sequences too long for memory, chunk by chunk with carried recurrent states.

A Mamba layer's whole past is its conv state (last `d_conv - 1` inputs) and SSM state, so a sequence can be cut
into chunks that pass these states along. Training then needs only one chunk's activations at a time:

1. forward, no grad: run the chunks in order, keeping only the states at each chunk boundary;
2. backward, in reverse: recompute chunk k from its boundary state (a leaf that requires grad), and backpropagate
   the chunk's loss together with the gradient of the total loss w.r.t. the chunk's final state (handed back by
   chunk k + 1); the gradient reaching the leaf is what chunk k - 1 receives.

The gradients equal those of one unchunked forward/backward up to floating-point summation order. Memory is one
chunk's activations plus `2 x num_chunks` small state sets; compute is one extra forward pass.

The model side is a *segment function* `segment(chunk, states) -> (output, final_states)` with `states` a list of
tensors (or None for the zero state at the start); `StatefulLM` below provides one for `MambaLM`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mambaseq.mixers.mamba1 import Mamba1Mixer
from mambaseq.mixers.mamba2 import Mamba2Mixer
from mambaseq.precision import at_least_fp32

States = list[torch.Tensor]
SegmentFn = Callable[[torch.Tensor, "States | None"], "tuple[torch.Tensor, States]"]
ChunkLossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def split_chunks(length: int, chunk_size: int) -> list[slice]:
    """Slices `[0, chunk_size), [chunk_size, 2 chunk_size), ...` covering `length` positions."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size}: expected a positive number of positions")
    return [slice(start, min(start + chunk_size, length)) for start in range(0, length, chunk_size)]


@torch.no_grad()
def chunked_forward(
    segment: SegmentFn, inputs: torch.Tensor, chunk_size: int, states: States | None = None
) -> Iterator[tuple[torch.Tensor, States]]:
    """Runs `segment` over `inputs: (batch, seqlen, ...)` chunk by chunk without grad.

    Yields each chunk's `(output, final_states)`; only one chunk's output is alive at a time if the caller reduces
    it (e.g. keeps the last position's logits), so memory does not grow with `seqlen`.
    """
    for positions in split_chunks(inputs.shape[1], chunk_size):
        output, states = segment(inputs[:, positions], states)
        yield output, states


@dataclass
class ChunkedLoss:
    """Result of `chunked_loss_backward`: `loss` is the full-sequence loss (a float, already backpropagated)."""

    loss: float
    num_chunks: int


def _boundary_leaves(states: States | None) -> States | None:
    if states is None:
        return None
    return [state.detach().requires_grad_(True) for state in states]


def chunked_loss_backward(
    segment: SegmentFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int,
    chunk_loss: ChunkLossFn,
    loss_scale: float = 1.0,
    states: States | None = None,
) -> ChunkedLoss:
    """Backpropagates `loss_scale * sum_k chunk_loss(output_k, targets_k)` exactly, one chunk of activations at a time.

    `inputs: (batch, seqlen, ...)`, `targets: (batch, seqlen, ...)`; `chunk_loss` returns a scalar whose sum over
    chunks is the wanted loss (for a token mean: summed token losses divided by the full sequence's target count).
    Parameter gradients are accumulated into `.grad` as by `loss.backward()`.
    """
    chunks = split_chunks(inputs.shape[1], chunk_size)
    boundary: list[States | None] = [states]
    with torch.no_grad():
        for positions in chunks[:-1]:
            _, final_states = segment(inputs[:, positions], boundary[-1])
            boundary.append([state.detach() for state in final_states])

    total_loss = 0.0
    incoming_grads: States | None = None
    for index in reversed(range(len(chunks))):
        positions = chunks[index]
        leaves = _boundary_leaves(boundary[index]) if index > 0 else boundary[index]
        output, final_states = segment(inputs[:, positions], leaves)
        loss = chunk_loss(output, targets[:, positions]) * loss_scale
        total_loss += float(loss.detach())
        pairs = [(loss, torch.ones_like(loss))]
        if incoming_grads is not None:  # the later chunks' dependence on this chunk's final states
            pairs += list(zip(final_states, incoming_grads, strict=True))
        pairs = [(root, grad) for root, grad in pairs if root.requires_grad]
        if pairs:
            torch.autograd.backward([root for root, _ in pairs], [grad for _, grad in pairs])
        if index > 0:
            incoming_grads = [
                leaf.grad if leaf.grad is not None else torch.zeros_like(leaf) for leaf in leaves  # type: ignore[union-attr]
            ]
    return ChunkedLoss(loss=total_loss / loss_scale, num_chunks=len(chunks))


# --- MambaLM: per-layer conv + SSM states threaded through the model's own forward -------------------------------


@dataclass
class _StateSlot:
    """The states one patched mixer starts from (None: zeros) and the final states it leaves."""

    initial: tuple[torch.Tensor, torch.Tensor] | None = None
    final: tuple[torch.Tensor, torch.Tensor] | None = None


def _forward_recording_states(mixer: Mamba1Mixer | Mamba2Mixer, slot: _StateSlot, hidden: torch.Tensor) -> torch.Tensor:
    """The mixer's forward from `slot.initial`, recording its final (conv, SSM) states as differentiable outputs."""
    out, slot.final = mixer.forward_with_states(hidden, slot.initial)
    return out


_STATEFUL_MIXERS = (Mamba1Mixer, Mamba2Mixer)


class StatefulLM:
    """Context manager that lets a `MambaLM` run from given per-layer states and hand back its final states.

    Inside `with StatefulLM(model) as stateful:`, `stateful.segment(input_ids, states)` is a `SegmentFn`:
    `input_ids: (batch, chunk)` -> `(logits: (batch, chunk, vocab_padded), states)` with `states` the flat list
    `[conv_0, ssm_0, conv_1, ssm_1, ...]`. The model's own block/backbone code runs unchanged; only each mixer's
    `forward` is shadowed (an instance attribute, removed on exit), so gradient checkpointing's recomputation during
    backward sees the same states. Attention layers carry no fixed-size state and are rejected.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.mixers = [layer.mixer for layer in model.backbone.layers]
        unsupported = [f"layer {i}: {type(m).__name__}" for i, m in enumerate(self.mixers)
                       if type(m) not in _STATEFUL_MIXERS]
        if unsupported:
            raise TypeError(f"StatefulLM: chunked processing needs Mamba-1/Mamba-2 mixers in every layer, "
                            f"got {unsupported}")
        self.slots = [_StateSlot() for _ in self.mixers]

    def __enter__(self) -> StatefulLM:
        for mixer, slot in zip(self.mixers, self.slots, strict=True):
            mixer.forward = lambda hidden, cache=None, m=mixer, s=slot: _forward_recording_states(m, s, hidden)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for mixer in self.mixers:
            del mixer.forward

    def segment(self, input_ids: torch.Tensor, states: States | None) -> tuple[torch.Tensor, States]:
        for index, slot in enumerate(self.slots):
            slot.initial = None if states is None else (states[2 * index], states[2 * index + 1])
            slot.final = None
        logits = self.model(input_ids)
        return logits, [state for slot in self.slots for state in slot.final]  # type: ignore[union-attr]


def _token_loss_sum(normalizer: int, ignore_index: int) -> ChunkLossFn:
    def chunk_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        summed = F.cross_entropy(at_least_fp32(logits).flatten(0, 1), labels.flatten(), ignore_index=ignore_index,
                                 reduction="sum")
        return summed / normalizer

    return chunk_loss


def lm_loss_backward(
    model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor, chunk_size: int,
    ignore_index: int = -100, loss_scale: float = 1.0,
) -> ChunkedLoss:
    """Mean next-token cross-entropy of `model` over `input_ids, labels: (batch, seqlen)`, backpropagated exactly in
    chunks of `chunk_size` positions (labels are already shifted: `labels[:, t]` is predicted at position t)."""
    normalizer = max(int((labels != ignore_index).sum()), 1)
    with StatefulLM(model) as stateful:
        return chunked_loss_backward(stateful.segment, input_ids, labels, chunk_size,
                                     _token_loss_sum(normalizer, ignore_index), loss_scale)


def lm_chunk_logits(model: torch.nn.Module, input_ids: torch.Tensor, chunk_size: int) -> Iterator[torch.Tensor]:
    """Logits `(batch, chunk, vocab_padded)` of each chunk of `input_ids: (batch, seqlen)`, without grad, as from
    one forward over the whole sequence; memory stays that of one chunk when the caller reduces each chunk."""
    with StatefulLM(model) as stateful:
        for logits, _ in chunked_forward(stateful.segment, input_ids, chunk_size):
            yield logits
