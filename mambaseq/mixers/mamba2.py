"""Mamba-2 mixer: in_proj → [z, xBC, dt] → depthwise causal conv + SiLU over xBC → SSD (scalar A per head, B/C
shared per group) → gated RMSNorm(y, z) → out_proj. Parameter names and initialization are mamba-ssm's `Mamba2`."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mambaseq.config import Mamba2Config
from mambaseq.inference import SSMLayerCache
from mambaseq.kernels import causal_conv1d, causal_conv1d_update, ssd, ssd_state_update
from mambaseq.mixers.mamba1 import inverse_softplus, sample_dt
from mambaseq.norm import GatedRMSNorm
from mambaseq.precision import at_least_fp32


class Mamba2Mixer(nn.Module):
    """SSD block of Mamba-2. hidden: (b, L, d_model) -> (b, L, d_model).

    `norm_eps` is the gated norm's epsilon (mamba-ssm fixes it to 1e-5; transformers uses the model's norm epsilon).
    """

    def __init__(self, d_model: int, config: Mamba2Config, kernel_backend: str = "auto", norm_eps: float = 1e-5):
        super().__init__()
        self.config = config
        self.kernel_backend = kernel_backend
        self.d_model = d_model
        self.d_inner = config.expand * d_model
        self.d_state = config.d_state
        self.d_conv = config.d_conv
        self.headdim = config.headdim
        self.ngroups = config.ngroups
        self.nheads = config.num_heads(d_model)
        self.conv_channels = self.d_inner + 2 * self.ngroups * self.d_state

        self.in_proj = nn.Linear(d_model, self.d_inner + self.conv_channels + self.nheads, bias=config.bias)
        self.conv1d = nn.Conv1d(self.conv_channels, self.conv_channels, kernel_size=config.d_conv,
                                groups=self.conv_channels, padding=config.d_conv - 1, bias=config.conv_bias)
        self.dt_bias = nn.Parameter(torch.empty(self.nheads))
        self.A_log = nn.Parameter(torch.empty(self.nheads))
        self.D = nn.Parameter(torch.empty(self.d_inner if config.D_has_hdim else self.nheads))
        if config.rmsnorm:
            self.norm = GatedRMSNorm(self.d_inner, group_size=self.d_inner // self.ngroups, eps=norm_eps,
                                     norm_before_gate=config.norm_before_gate, kernel_backend=kernel_backend)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=config.bias)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """Mamba-2's init: softplus(dt_bias) log-uniform in [dt_min, dt_max]; A uniform in `A_init_range`; D = 1;
        conv weight U(±conv_init) when set. dt_bias, A_log and D carry `_no_weight_decay`."""
        config = self.config
        self.dt_bias.copy_(inverse_softplus(sample_dt(self.nheads, config.dt_min, config.dt_max, config.dt_init_floor)))
        self.A_log.copy_(torch.log(torch.empty(self.nheads).uniform_(*config.A_init_range)))
        self.D.fill_(1.0)
        if config.conv_init is not None:
            nn.init.uniform_(self.conv1d.weight, -config.conv_init, config.conv_init)
        for parameter in (self.dt_bias, self.A_log, self.D):
            parameter._no_weight_decay = True

    def allocate_cache(self, batch: int, dtype: torch.dtype, device: torch.device | str) -> SSMLayerCache:
        return SSMLayerCache(
            conv_state=torch.zeros(batch, self.conv_channels, self.d_conv - 1, dtype=dtype, device=device),
            ssm_state=torch.zeros(batch, self.nheads, self.headdim, self.d_state, dtype=torch.float32, device=device),
        )

    def forward(self, hidden: torch.Tensor, cache: SSMLayerCache | None = None) -> torch.Tensor:
        """Parallel (chunked SSD) pass over `hidden: (b, L, d_model)`; with `cache`, starts from its states and leaves
        the final states in it."""
        if cache is None:
            return self._mix(hidden, None, return_final_states=False)[0]
        out, (conv_state, ssm_state) = self._mix(hidden, (cache.conv_state, cache.ssm_state), return_final_states=True)
        cache.conv_state.copy_(conv_state)
        cache.ssm_state.copy_(ssm_state)
        return out

    def forward_with_states(
        self, hidden: torch.Tensor, initial_states: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Differentiable in the states: `(out, (conv_state, ssm_state))` from `initial_states` (None = zeros), states
        shaped as in `SSMLayerCache`. For training on sequences cut into chunks that carry states."""
        return self._mix(hidden, initial_states, return_final_states=True)

    def _mix(
        self, hidden: torch.Tensor, initial_states: tuple[torch.Tensor, torch.Tensor] | None, return_final_states: bool
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        batch, seqlen, _ = hidden.shape
        conv_initial, ssm_initial = initial_states if initial_states is not None else (None, None)
        z, xBC, dt = self.in_proj(hidden).split([self.d_inner, self.conv_channels, self.nheads], dim=-1)
        conv_out = causal_conv1d(xBC.transpose(1, 2), self.conv1d.weight.squeeze(1), self.conv1d.bias,
                                 activation="silu", initial_state=conv_initial, return_final_state=return_final_states,
                                 backend=self.kernel_backend)
        xBC, conv_final = conv_out if return_final_states else (conv_out, None)
        group_width = self.ngroups * self.d_state
        x, B, C = xBC.transpose(1, 2).split([self.d_inner, group_width, group_width], dim=-1)
        dt, dt_bias, dt_softplus = self._dt_arguments(dt)
        scan_out = ssd(
            x.reshape(batch, seqlen, self.nheads, self.headdim), dt, self._A(),
            B.reshape(batch, seqlen, self.ngroups, self.d_state), C.reshape(batch, seqlen, self.ngroups, self.d_state),
            D=self._D(), dt_bias=dt_bias, dt_softplus=dt_softplus, initial_state=ssm_initial,
            return_final_state=return_final_states, chunk_size=self.config.chunk_size, backend=self.kernel_backend,
        )
        y, ssm_final = scan_out if return_final_states else (scan_out, None)
        out = self.out_proj(self._gate(y.reshape(batch, seqlen, self.d_inner), z))
        return out, ((conv_final, ssm_final) if return_final_states else None)

    def step(self, hidden: torch.Tensor, cache: SSMLayerCache) -> torch.Tensor:
        """One recurrent step: `hidden: (b, 1, d_model) -> (b, 1, d_model)`, states in `cache` updated in place."""
        batch = hidden.shape[0]
        z, xBC, dt = self.in_proj(hidden[:, 0]).split([self.d_inner, self.conv_channels, self.nheads], dim=-1)
        xBC = causal_conv1d_update(xBC, cache.conv_state, self.conv1d.weight.squeeze(1), self.conv1d.bias, "silu",
                                   backend=self.kernel_backend)
        x, B, C = xBC.split([self.d_inner, self.ngroups * self.d_state, self.ngroups * self.d_state], dim=-1)
        dt, dt_bias, dt_softplus = self._dt_arguments(dt)
        y = ssd_state_update(
            cache.ssm_state, x.reshape(batch, self.nheads, self.headdim), dt, self._A(),
            B.reshape(batch, self.ngroups, self.d_state), C.reshape(batch, self.ngroups, self.d_state),
            D=self._D(), dt_bias=dt_bias, dt_softplus=dt_softplus, backend=self.kernel_backend,
        )
        return self.out_proj(self._gate(y.reshape(batch, self.d_inner), z)).unsqueeze(1)

    def _dt_arguments(self, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        """(dt, dt_bias, dt_softplus) for the kernels; a finite `dt_limit` is applied here, after the softplus, so
        that the parallel pass and the recurrent step clamp alike."""
        low, high = self.config.dt_limit
        if low == 0.0 and math.isinf(high):
            return dt, at_least_fp32(self.dt_bias), True
        return F.softplus(at_least_fp32(dt) + at_least_fp32(self.dt_bias)).clamp(low, high), None, False

    def _gate(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Gated RMSNorm of the SSD output, or a plain SiLU gate when `rmsnorm` is off. y, z: (..., d_inner)."""
        if self.config.rmsnorm:
            return self.norm(y, z)
        return y * F.silu(z)

    def _A(self) -> torch.Tensor:
        return -torch.exp(at_least_fp32(self.A_log))  # (nheads,)

    def _D(self) -> torch.Tensor:
        D = at_least_fp32(self.D)
        return D.reshape(self.nheads, self.headdim) if self.config.D_has_hdim else D
