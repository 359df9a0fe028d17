"""Pre-norm residual block (mamba-ssm `Block`): Add → Norm → mixer [→ Add → Norm → gated MLP].

The block takes and returns the pair (sublayer output, residual stream) so that the residual add is fused with the
next norm, as in mamba-ssm; the stream is kept in fp32 when `residual_in_fp32`.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mambaseq.config import BackboneConfig
from mambaseq.inference import LayerCache
from mambaseq.mixers import build_mixer
from mambaseq.norm import add_rms_norm, make_norm

MLP_WIDTH_MULTIPLE = 128


class GatedMLP(nn.Module):
    """SwiGLU MLP (mamba-ssm `GatedMLP`): `fc2(a * silu(g))` with `[a, g] = fc1(x)`; width rounded up to 128.

    x: (..., d_model) -> (..., d_model)
    """

    def __init__(self, d_model: int, d_intermediate: int) -> None:
        super().__init__()
        hidden = (d_intermediate + MLP_WIDTH_MULTIPLE - 1) // MLP_WIDTH_MULTIPLE * MLP_WIDTH_MULTIPLE
        self.fc1 = nn.Linear(d_model, 2 * hidden, bias=False)
        self.fc2 = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(value * F.silu(gate))


class Block(nn.Module):
    """Layer `layer_idx` of a backbone: norm + mixer (Mamba-1/2 or attention per the config) [+ norm2 + mlp]."""

    def __init__(self, config: BackboneConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.residual_in_fp32 = config.residual_in_fp32
        self.kernel_backend = config.kernel_backend  # "auto"/"triton": fused add + RMSNorm kernel on CUDA
        self.norm = make_norm(config.d_model, config.norm_eps, config.rms_norm)
        self.mixer = build_mixer(config.d_model, config.layer_mixer(layer_idx), config.kernel_backend,
                                 config.norm_eps)
        if config.d_intermediate > 0:
            self.norm2 = make_norm(config.d_model, config.norm_eps, config.rms_norm)
            self.mlp = GatedMLP(config.d_model, config.d_intermediate)
        else:
            self.mlp = None

    def allocate_cache(self, batch: int, dtype: torch.dtype, device: torch.device | str) -> LayerCache:
        return self.mixer.allocate_cache(batch, dtype, device)

    def forward(
        self, hidden: torch.Tensor, residual: torch.Tensor | None, cache: LayerCache | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Parallel pass. hidden, residual: (b, L, d_model) (residual None for the first layer)."""
        return self._run_sublayers(hidden, residual, lambda normed: self.mixer(normed, cache))

    def step(
        self, hidden: torch.Tensor, residual: torch.Tensor | None, cache: LayerCache
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoding step. hidden, residual: (b, 1, d_model). A mixer with `step_with_norm` (Mamba-1) takes the
        residual add and the norm into its step, which can then fuse them with its input projection."""
        step_with_norm = getattr(self.mixer, "step_with_norm", None)
        if step_with_norm is None:
            return self._run_sublayers(hidden, residual, lambda normed: self.mixer.step(normed, cache))
        hidden, residual = step_with_norm(hidden, residual, self.norm, self.residual_in_fp32, cache)
        return self._run_mlp(hidden, residual)

    def _run_sublayers(
        self, hidden: torch.Tensor, residual: torch.Tensor | None, mix: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        normed, residual = add_rms_norm(hidden, residual, self.norm, self.residual_in_fp32, self.kernel_backend)
        return self._run_mlp(mix(normed), residual)

    def _run_mlp(self, hidden: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The optional second sublayer (norm2 + gated MLP) on the mixer's output `hidden`."""
        if self.mlp is None:
            return hidden, residual
        normed, residual = add_rms_norm(hidden, residual, self.norm2, self.residual_in_fp32, self.kernel_backend)
        return self.mlp(normed), residual
