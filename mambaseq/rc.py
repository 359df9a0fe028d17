"""Reverse-complement (RC) equivariance by parameter sharing (Caduceus-PS style) for DNA models.

For token ids `x: (b, L)` let `rc(x)` reverse the sequence and complement each base (`complement: (vocab,)` maps
ids). For features `h: (b, L, 2d)` let `RC(h) = h.flip(L, channels)`. `rc_equivariant_forward` runs one backbone
`f` (same weights) on both strands and returns `H(x) = [f(x), RC(f(rc(x)))]`, so that `H(rc(x)) = RC(H(x))`
exactly: both sides compute `f` on the very same inputs. On top of it:
- `RCEquivariantLMHead`: logits of the forward half plus the complement-permuted logits of the channel-flipped
  reverse half, so that `logits(rc(x)) = complement(flip(logits(x)))` (for masked-LM pretraining);
- `rc_invariant_features`: `z = h_fwd + flip_channels(h_rc)`, which satisfies `z(rc(x)) = flip_L(z(x))`, so any
  pooling over positions (mean) gives an RC-invariant sequence embedding (for classification).
The backbone's per-strand width is its `d_model`; the features have `2 * d_model` channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def reverse_complement_ids(input_ids: torch.Tensor, complement: torch.Tensor) -> torch.Tensor:
    """`(b, L)` ids -> ids of the reverse-complement strand (`complement: (vocab,)` id map)."""
    return complement[input_ids].flip(-1)


def reverse_complement_features(hidden: torch.Tensor) -> torch.Tensor:
    """RC action on RC-equivariant features `(b, L, 2d)`: reverse positions and channels."""
    return hidden.flip(-2, -1)


def rc_equivariant_forward(backbone: nn.Module, input_ids: torch.Tensor, complement: torch.Tensor) -> torch.Tensor:
    """`backbone(input_ids) -> (b, L, d)` applied to both strands with shared weights, as one batch of `2b`
    sequences: `(b, L) -> H(x) = [f(x), RC(f(rc(x)))]: (b, L, 2d)`."""
    both = backbone(torch.cat([input_ids, reverse_complement_ids(input_ids, complement)]))
    forward_strand, reverse_strand = both.chunk(2, dim=0)
    return torch.cat([forward_strand, reverse_complement_features(reverse_strand)], dim=-1)


class RCEquivariantLMHead(nn.Module):
    """`(b, L, 2d) -> (b, L, vocab)` logits with `logits(RC(h))[l] = logits(h)[L-1-l][complement]`.
    `weight: (vocab, d)` is shared with the embedding when tied."""

    def __init__(self, weight: nn.Parameter, complement: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight
        self.register_buffer("complement", complement.long().clone(), persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        forward_half, reverse_half = hidden.to(self.weight.dtype).chunk(2, dim=-1)
        forward_logits = F.linear(forward_half, self.weight)
        reverse_logits = F.linear(reverse_half.flip(-1), self.weight)
        return forward_logits + reverse_logits[..., self.complement]


def rc_invariant_features(hidden: torch.Tensor) -> torch.Tensor:
    """`(b, L, 2d) -> (b, L, d)`: `h_fwd + flip_channels(h_rc)`; reversing the sequence is its only RC effect."""
    forward_half, reverse_half = hidden.chunk(2, dim=-1)
    return forward_half + reverse_half.flip(-1)
