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

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mambaseq.kernels import causal_conv1d, selective_scan, ssd
from mambaseq.mixers.mamba1 import Mamba1Mixer
from mambaseq.mixers.mamba2 import Mamba2Mixer

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


@functools.lru_cache(maxsize=1)
def _mamba_ssm_selective_scan() -> Callable | None:
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # noqa: BLE001 - absent or broken optional install
        return None
    return selective_scan_fn


def zero_state_kernel_for(u: torch.Tensor, backend: str) -> Callable | None:
    """mamba-ssm's `selective_scan_fn` where the dispatch would run it (CUDA tensor, backend "auto"/"cuda"), else
    None. Its final state must not be used as is: its gradient would be dropped (see below)."""
    if u.is_cuda and backend in ("auto", "cuda"):
        return _mamba_ssm_selective_scan()
    return None


def selective_scan_from_zero_state_kernel(
    scan_fn: Callable, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor, z: torch.Tensor, delta_bias: torch.Tensor, initial_state: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba-1 scan from `initial_state` with a differentiable final state, on a kernel that has neither.

    mamba-ssm's `selective_scan_fn` always starts from zeros and ignores the gradient of the last state it returns.
    Both are supplied with extra positions around the sequence: a prefix of `d_state` steps whose one-hot B writes
    `initial_state` into the state (inputs pre-scaled so that the prefix's own decay is undone), and a suffix of
    `d_state` steps with zero step size and one-hot C, whose outputs are the final state's components, so the
    kernel's backward carries their gradient. Inputs are cast to fp32 so the state is not rounded on the way.
    u, delta, z: (batch, d_inner, L); A: (d_inner, d_state); B, C: (batch, d_state, L); D, delta_bias: (d_inner,);
    initial_state: (batch, d_inner, d_state) or None. Returns y (dtype of u) and the final state (fp32/fp64).
    """
    if B.dim() != 3 or C.dim() != 3:
        raise ValueError(f"selective_scan_from_zero_state_kernel: B, C must be (batch, d_state, L), got "
                         f"{tuple(B.shape)}, {tuple(C.shape)}")
    dtype = torch.promote_types(u.dtype, torch.float32)
    batch, d_inner, seqlen = u.shape
    d_state = A.shape[1]
    A = A.to(dtype)
    step = F.softplus(delta.to(dtype) + delta_bias.to(dtype)[:, None])
    identity = torch.eye(d_state, dtype=dtype, device=u.device).expand(batch, d_state, d_state)
    zeros_state = u.new_zeros(batch, d_state, d_state, dtype=dtype)
    zeros_channels = u.new_zeros(batch, d_inner, d_state, dtype=dtype)
    parts_u, parts_step, parts_B, parts_C = [u.to(dtype)], [step], [B.to(dtype)], [C.to(dtype)]
    prefix = 0
    if initial_state is not None:
        # Prefix step k writes component k, which then decays over the d_state - 1 - k later prefix steps;
        # the step size keeps |A| * step * d_state <= 1, so the undoing factor stays small.
        prefix_step = 1.0 / (A.detach().abs().amax(dim=1).clamp_min(1e-6) * d_state)  # (d_inner,)
        later_steps = torch.arange(d_state - 1, -1, -1, dtype=dtype, device=u.device)  # (d_state,)
        undo_decay = torch.exp(-A * prefix_step[:, None] * later_steps)  # (d_inner, d_state)
        parts_u.insert(0, initial_state.to(dtype) * undo_decay / prefix_step[:, None])
        parts_step.insert(0, prefix_step[None, :, None].expand(batch, d_inner, d_state))
        parts_B.insert(0, identity)
        parts_C.insert(0, zeros_state)
        prefix = d_state
    parts_u.append(zeros_channels)
    parts_step.append(zeros_channels)
    parts_B.append(zeros_state)
    parts_C.append(identity)
    y, last_state = scan_fn(torch.cat(parts_u, dim=-1), torch.cat(parts_step, dim=-1), A,
                            torch.cat(parts_B, dim=-1).contiguous(), torch.cat(parts_C, dim=-1).contiguous(),
                            D.to(dtype), None, None, False, return_last_state=True)
    readout = y[..., prefix + seqlen :]  # (batch, d_inner, d_state): the final state, with its gradient path
    final_state = last_state.to(dtype).detach() + (readout - readout.detach())
    y = y[..., prefix : prefix + seqlen] * F.silu(z.to(dtype))
    return y.to(u.dtype), final_state


def _scan_with_states(mixer: Mamba1Mixer, *args: torch.Tensor, initial_state: torch.Tensor | None):
    """`selective_scan` from `initial_state` returning a final state that carries its gradient; on CUDA with
    mamba-ssm installed (backend "auto"/"cuda") through `selective_scan_from_zero_state_kernel`."""
    scan_fn = zero_state_kernel_for(args[0], mixer.kernel_backend)
    if scan_fn is not None:
        return selective_scan_from_zero_state_kernel(scan_fn, *args, initial_state=initial_state)
    u, delta, A, B, C, D, z, delta_bias = args
    return selective_scan(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=True,
                          initial_state=initial_state, return_final_state=True, backend=mixer.kernel_backend)


def _mamba1_forward_with_states(mixer: Mamba1Mixer, slot: _StateSlot, hidden: torch.Tensor) -> torch.Tensor:
    """`Mamba1Mixer.forward` from `slot.initial`, recording the final (conv, SSM) states as differentiable outputs."""
    conv_initial, ssm_initial = slot.initial if slot.initial is not None else (None, None)
    x, z = mixer.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # (b, d_inner, L) each
    x, conv_final = causal_conv1d(x, mixer.conv1d.weight.squeeze(1), mixer.conv1d.bias, activation="silu",
                                  initial_state=conv_initial, return_final_state=True, backend=mixer.kernel_backend)
    dt, B, C = mixer.x_proj(x.transpose(1, 2)).split([mixer.dt_rank, mixer.d_state, mixer.d_state], dim=-1)
    dt = (dt @ mixer.dt_proj.weight.t()).transpose(1, 2)
    y, ssm_final = _scan_with_states(mixer, x, dt, mixer._A(), B.transpose(1, 2), C.transpose(1, 2), mixer.D.float(),
                                     z, mixer.dt_proj.bias.float(), initial_state=ssm_initial)
    slot.final = (conv_final, ssm_final)
    return mixer.out_proj(y.transpose(1, 2))


def _mamba2_forward_with_states(mixer: Mamba2Mixer, slot: _StateSlot, hidden: torch.Tensor) -> torch.Tensor:
    """`Mamba2Mixer.forward` from `slot.initial`, recording the final (conv, SSM) states as differentiable outputs."""
    conv_initial, ssm_initial = slot.initial if slot.initial is not None else (None, None)
    batch, seqlen, _ = hidden.shape
    z, xBC, dt = mixer.in_proj(hidden).split([mixer.d_inner, mixer.conv_channels, mixer.nheads], dim=-1)
    xBC, conv_final = causal_conv1d(xBC.transpose(1, 2), mixer.conv1d.weight.squeeze(1), mixer.conv1d.bias,
                                    activation="silu", initial_state=conv_initial, return_final_state=True,
                                    backend=mixer.kernel_backend)
    group_width = mixer.ngroups * mixer.d_state
    x, B, C = xBC.transpose(1, 2).split([mixer.d_inner, group_width, group_width], dim=-1)
    dt, dt_bias, dt_softplus = mixer._dt_arguments(dt)
    y, ssm_final = ssd(
        x.reshape(batch, seqlen, mixer.nheads, mixer.headdim), dt, mixer._A(),
        B.reshape(batch, seqlen, mixer.ngroups, mixer.d_state), C.reshape(batch, seqlen, mixer.ngroups, mixer.d_state),
        D=mixer._D(), dt_bias=dt_bias, dt_softplus=dt_softplus, initial_state=ssm_initial, return_final_state=True,
        chunk_size=mixer.config.chunk_size, backend=mixer.kernel_backend,
    )
    slot.final = (conv_final, ssm_final)
    return mixer.out_proj(mixer._gate(y.reshape(batch, seqlen, mixer.d_inner), z))


_STATEFUL_FORWARDS = {Mamba1Mixer: _mamba1_forward_with_states, Mamba2Mixer: _mamba2_forward_with_states}


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
                       if type(m) not in _STATEFUL_FORWARDS]
        if unsupported:
            raise TypeError(f"StatefulLM: chunked processing needs Mamba-1/Mamba-2 mixers in every layer, "
                            f"got {unsupported}")
        self.slots = [_StateSlot() for _ in self.mixers]

    def __enter__(self) -> StatefulLM:
        for mixer, slot in zip(self.mixers, self.slots, strict=True):
            stateful_forward = _STATEFUL_FORWARDS[type(mixer)]
            mixer.forward = lambda hidden, cache=None, m=mixer, s=slot, f=stateful_forward: f(m, s, hidden)
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


def at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` in fp32, or kept in fp64 (losses of fp64 test models stay exact)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


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
