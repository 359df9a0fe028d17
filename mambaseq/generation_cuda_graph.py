"""Fast decoding: a prompt prefill that keeps only the last position's logits, and `CUDAGraphDecoder`, which captures
one `model.step(input_ids (b, 1), cache)` per batch size in a `torch.cuda.CUDAGraph` and replays it per token.

A decoding step of a 48-layer model is about a thousand small kernels; launched one by one from Python, their launch
cost dominates at small batch. A graph launches them all with one call. Replay needs every tensor the step touches
at a fixed address: the input ids and the logits are static buffers, the `InferenceCache` is allocated once per batch
size and reused by every generation (reset, then filled by the prefill), and every Mamba step path updates its conv
and SSM states in place (`copy_`). Attention layers (a KV cache that grows and is sliced by a host-side length) and
models without a `MambaBackbone` (e.g. `UNetLM`, whose pooling counters live on the host) cannot be captured.
"""
from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from mambaseq.backbone import MambaBackbone
from mambaseq.inference import InferenceCache, SSMLayerCache
from mambaseq.mixers.mamba1 import Mamba1Mixer
from mambaseq.mixers.mamba2 import Mamba2Mixer

CAPTURABLE_MIXERS = (Mamba1Mixer, Mamba2Mixer)
WARMUP_STEPS = 2


def graph_capture_problem(model: nn.Module) -> str:
    """Why `model.step` cannot be captured in a CUDA graph ("" if it can)."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, MambaBackbone) or not hasattr(model, "lm_head"):
        return f"{type(model).__name__} is not a backbone + lm_head LM (MambaLM); its step keeps state on the host"
    unsupported = [f"layer {index}: {type(layer.mixer).__name__}" for index, layer in enumerate(backbone.layers)
                   if not isinstance(layer.mixer, CAPTURABLE_MIXERS)]
    if unsupported:
        return (f"CUDA-graph decoding needs Mamba-1/Mamba-2 mixers in every layer (their states are updated in "
                f"place); attention's KV cache grows and is sliced on the host: {', '.join(unsupported)}")
    return ""


def _forward_from_zero_states(mixer: Mamba1Mixer | Mamba2Mixer, hidden: torch.Tensor,
                              cache: SSMLayerCache | None = None) -> torch.Tensor:
    """A fresh cache's mixer forward: start from zero states (None, which mamba-ssm's scan kernel can take) and
    write the final states into `cache`."""
    out, (conv_state, ssm_state) = mixer.forward_with_states(hidden)
    cache.conv_state.copy_(conv_state)
    cache.ssm_state.copy_(ssm_state)
    return out


@contextmanager
def _mixers_from_zero_states(mixers: list[nn.Module]) -> Iterator[None]:
    """Shadow each Mamba mixer's `forward` (an instance attribute, removed on exit) with `_forward_from_zero_states`."""
    for mixer in mixers:
        mixer.forward = partial(_forward_from_zero_states, mixer)
    try:
        yield
    finally:
        for mixer in mixers:
            del mixer.forward


@torch.no_grad()
def prefill(model: nn.Module, input_ids: torch.Tensor, cache: InferenceCache) -> torch.Tensor:
    """Run the prompt `input_ids: (b, L)` through `model`, leaving the final states in `cache`; returns the last
    position's logits `(b, padded_vocab)`. For a `MambaLM` only the last position goes through the LM head (the
    full `(b, L, vocab)` logits of a long prompt are gigabytes), and a fresh cache (`seqlen_offset == 0`) runs the
    Mamba layers from zero states rather than from the cached (zero) tensors, so that the CUDA scan kernel applies."""
    if not isinstance(getattr(model, "backbone", None), MambaBackbone) or not hasattr(model, "lm_head"):
        return model(input_ids, cache=cache)[:, -1]
    mixers = [layer.mixer for layer in model.backbone.layers if isinstance(layer.mixer, CAPTURABLE_MIXERS)]
    if cache.seqlen_offset == 0:
        with _mixers_from_zero_states(mixers):
            hidden = model.backbone(input_ids, cache=cache)
    else:
        hidden = model.backbone(input_ids, cache=cache)
    return model.lm_head(hidden[:, -1])


@dataclass
class _StaticStep:
    """One batch size's static buffers: `input_ids: (b, 1)` int64, `logits: (b, padded_vocab)`, the cache, and the
    captured graph (None: run `model.step` eagerly into the same buffers)."""

    input_ids: torch.Tensor
    logits: torch.Tensor | None
    cache: InferenceCache
    graph: torch.cuda.CUDAGraph | None
    generation: int = 0


class Decoding:
    """One generation's handle on a `_StaticStep`: `step(tokens)` advances it. Starting another generation with the
    same decoder and batch size invalidates this one (they share the static cache)."""

    def __init__(self, decoder: CUDAGraphDecoder, static: _StaticStep) -> None:
        self._decoder = decoder
        self._static = static
        self._generation = static.generation

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (b,) int -> next logits `(b, padded_vocab)`, a view of the static output buffer that the next
        `step` overwrites (consume it first)."""
        static = self._static
        if static.generation != self._generation:
            raise RuntimeError("CUDA-graph decoding: another generation with the same model and batch size started "
                               "since this one; interleaved cuda_graph generations of one batch size are not supported")
        static.input_ids.copy_(tokens.view(-1, 1))
        if static.graph is None:
            static.logits.copy_(self._decoder.run_step(static))
        else:
            static.graph.replay()
        static.cache.seqlen_offset += 1  # the host-side counter is not part of the step (nor of the graph)
        return static.logits


def layers_step(model: nn.Module, input_ids: torch.Tensor, layers: list) -> torch.Tensor:
    """`model.step` over the layer caches `layers`, through a throwaway `InferenceCache` so that the step (compiled or
    captured) never reads the host-side `seqlen_offset`. input_ids: (b, 1) -> logits (b, padded_vocab)."""
    return model.step(input_ids, InferenceCache(layers=layers))[:, -1]


class CUDAGraphDecoder:
    """Static-buffer decoding for one model: per batch size, a cache allocated once and the step captured in a CUDA
    graph (captured on first use, after `WARMUP_STEPS` eager steps on a side stream). `capture=False` runs the same
    static buffers eagerly (any device; used to test the bookkeeping on CPU). `compile=True` (or a `torch.compile`
    mode name, e.g. "max-autotune-no-cudagraphs") runs the step through `torch.compile` (fullgraph; compiled in the
    warmup, once per batch size) before capturing it: inductor fuses the norms, casts and state updates into a few
    kernels per layer (inside it the decoding steps use their PyTorch versions, see `kernels/step_dispatch.py`).

    Usage: `logits, decoding = decoder.start(input_ids)` (logits of the last prompt position), then
    `logits = decoding.step(next_tokens)` per token. The model's parameters must stay where they are; if they move
    (`.to()`, `.half()`), the graphs are captured again.
    """

    def __init__(self, model: nn.Module, *, capture: bool = True, compile: bool | str = False) -> None:
        problem = graph_capture_problem(model)
        if problem:
            raise TypeError(f"cuda_graph decoding of {type(model).__name__}: {problem}")
        self._model = weakref.ref(model)
        self.capture = capture
        self._check_device(model)
        self.compile = compile
        self._step = layers_step
        if compile:
            mode = None if compile is True else compile
            self._step = torch.compile(layers_step, fullgraph=True, dynamic=False, mode=mode)
        self._static: dict[int, _StaticStep] = {}
        self._signature = _parameter_signature(model)

    @property
    def model(self) -> nn.Module:
        model = self._model()
        if model is None:
            raise RuntimeError("CUDAGraphDecoder: its model was deleted")
        return model

    @torch.no_grad()
    def start(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, Decoding]:
        """Prefill the prompt `input_ids: (b, L)` into the batch size's static cache; returns the last position's
        logits `(b, padded_vocab)` and the `Decoding` to step."""
        model = self.model
        signature = _parameter_signature(model)
        if signature != self._signature:
            self._check_device(model)
            self._static.clear()
            self._signature = signature
        batch = input_ids.shape[0]
        if batch not in self._static:
            self._static[batch] = self._allocate(batch)
        static = self._static[batch]
        static.generation += 1
        static.cache.reset()
        logits = prefill(model, input_ids, static.cache)
        return logits, Decoding(self, static)

    def _check_device(self, model: nn.Module) -> None:
        device = model.lm_head.weight.device
        if self.capture and (device.type != "cuda" or not torch.cuda.is_available()):
            raise RuntimeError(f"cuda_graph=True needs the model on a CUDA device, got {device}; "
                               f"use cuda_graph=False (eager decoding) on CPU")

    def run_step(self, static: _StaticStep) -> torch.Tensor:
        """One step of the model on the static buffers (eager or compiled, not replayed): logits (b, padded_vocab)."""
        return self._step(self.model, static.input_ids, static.cache.layers)

    @torch.inference_mode(False)
    @torch.no_grad()  # inside: inference_mode(False) turns grad mode on
    def _allocate(self, batch: int) -> _StaticStep:
        """Static buffers for `batch` (normal tensors even under inference mode: later generations, inside inference
        mode or not, update them in place), the graph captured after warmup steps on a side stream."""
        model = self.model
        cache = model.allocate_cache(batch)
        device = model.lm_head.weight.device
        input_ids = torch.zeros(batch, 1, dtype=torch.long, device=device)
        static = _StaticStep(input_ids, logits=None, cache=cache, graph=None)
        if not self.capture:
            static.logits = self.run_step(static).clone()
            return static
        side_stream = torch.cuda.Stream(device)
        side_stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side_stream):
            for _ in range(WARMUP_STEPS):
                self.run_step(static)
        torch.cuda.current_stream(device).wait_stream(side_stream)
        static.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(static.graph):
            static.logits = self.run_step(static)
        return static


def _parameter_signature(model: nn.Module) -> tuple[tuple[int, torch.dtype], ...]:
    """Address and dtype of every parameter and buffer: a captured graph reads them at these addresses."""
    return tuple((t.data_ptr(), t.dtype) for t in (*model.parameters(), *model.buffers()))


_DECODERS: weakref.WeakKeyDictionary[nn.Module, CUDAGraphDecoder] = weakref.WeakKeyDictionary()


def cuda_graph_decoder(model: nn.Module, compile: bool | str | None = None) -> CUDAGraphDecoder:
    """The model's `CUDAGraphDecoder`, kept while the model lives; `generate(..., cuda_graph=True)` uses it.
    `compile=None` takes the existing one (else a new one without compile); another value replaces one that
    differs (see `CUDAGraphDecoder`)."""
    decoder = _DECODERS.get(model)
    if decoder is None or (compile is not None and decoder.compile != compile):
        decoder = _DECODERS[model] = CUDAGraphDecoder(model, compile=compile or False)
    return decoder


def release_cuda_graphs(model: nn.Module) -> None:
    """Drop the model's captured graphs and static caches (their GPU memory is freed once unreferenced)."""
    _DECODERS.pop(model, None)
