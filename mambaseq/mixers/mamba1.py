"""Mamba-1 mixer: in_proj → depthwise causal conv + SiLU → input-dependent (dt, B, C) → selective scan → SiLU gate
→ out_proj. Parameter names and initialization are mamba-ssm's `Mamba`, so its checkpoints load unchanged."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mambaseq.config import Mamba1Config
from mambaseq.inference import FusedStepBuffers, SSMLayerCache
from mambaseq.kernels import (
    add_norm_in_proj_conv,
    causal_conv1d,
    causal_conv1d_update,
    mamba1_state_step,
    mamba1_state_step_out_proj,
    residual_stream_dtype,
    selective_scan,
)
from mambaseq.mixers.channels_first import channels_first_linear, channels_first_to_last_linear
from mambaseq.norm import RMSNorm, add_rms_norm
from mambaseq.precision import at_least_fp32

FUSED_FRONT_BACKENDS = ("auto", "triton")  # backends whose decoding step fuses add + norm + in_proj + conv
# the fused front's Triton GEMV streams in_proj's weight slower than cuBLAS: at batch 1 the two launches it saves
# make up for that (15.8 vs 16.4 us a layer, 1.4B on H200), from batch 2 on they don't (23.6 vs 16.2 us)
FUSED_FRONT_MAX_BATCH = 1


def inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    """`y` with `softplus(y) == x` for `x > 0`, stable for small `x`."""
    return x + torch.log(-torch.expm1(-x))


def sample_dt(count: int, dt_min: float, dt_max: float, dt_init_floor: float) -> torch.Tensor:
    """`count` step sizes log-uniform in [dt_min, dt_max], floored at `dt_init_floor`: (count,) fp32."""
    log_dt = torch.rand(count) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
    return torch.exp(log_dt).clamp(min=dt_init_floor)


class Mamba1Mixer(nn.Module):
    """Selective SSM block of Mamba-1. hidden: (b, L, d_model) -> (b, L, d_model)."""

    def __init__(self, d_model: int, config: Mamba1Config, kernel_backend: str = "auto") -> None:
        super().__init__()
        self.config = config
        self.kernel_backend = kernel_backend
        self.d_model = d_model
        self.d_inner = config.expand * d_model
        self.d_state = config.d_state
        self.d_conv = config.d_conv
        self.dt_rank = config.resolved_dt_rank(d_model)

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=config.bias)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=config.d_conv, groups=self.d_inner,
                                padding=config.d_conv - 1, bias=config.conv_bias)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * config.d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, config.d_state))
        self.D = nn.Parameter(torch.empty(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=config.bias)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """Mamba's init: dt_proj weight U(±dt_rank^-0.5 * dt_scale) (or constant), softplus(dt_proj.bias) log-uniform
        in [dt_min, dt_max]; S4D-real `A = -(1..d_state)`; `D = 1`. A_log and D carry `_no_weight_decay`, and
        dt_proj.bias `_no_reinit` so that the backbone's bias zeroing leaves it alone."""
        config = self.config
        dt_init_std = self.dt_rank**-0.5 * config.dt_scale
        if config.dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, dt_init_std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        dt = sample_dt(self.d_inner, config.dt_min, config.dt_max, config.dt_init_floor)
        self.dt_proj.bias.copy_(inverse_softplus(dt))
        self.dt_proj.bias._no_reinit = True
        state_index = torch.arange(1, self.d_state + 1, dtype=torch.float32)
        self.A_log.copy_(torch.log(state_index).expand(self.d_inner, -1))
        self.D.fill_(1.0)
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True

    def allocate_cache(self, batch: int, dtype: torch.dtype, device: torch.device | str) -> SSMLayerCache:
        fused_step = FusedStepBuffers(
            x_proj_sums=torch.zeros(batch, self.x_proj.out_features, dtype=torch.float32, device=device),
            arrivals=torch.zeros(batch, 1 + self.d_inner, dtype=torch.int32, device=device),
            zero_output=torch.zeros(batch, 1, self.d_model, dtype=dtype, device=device),
        )
        return SSMLayerCache(
            conv_state=torch.zeros(batch, self.d_inner, self.d_conv - 1, dtype=dtype, device=device),
            ssm_state=torch.zeros(batch, self.d_inner, self.d_state, dtype=torch.float32, device=device),
            fused_step=fused_step,
        )

    def forward(self, hidden: torch.Tensor, cache: SSMLayerCache | None = None) -> torch.Tensor:
        """Parallel pass over `hidden: (b, L, d_model)`; with `cache`, starts from its states and leaves the final
        states in it (prompt prefill, or continuing a prefix chunk by chunk)."""
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
        conv_initial, ssm_initial = initial_states if initial_states is not None else (None, None)
        x, z, dt, B, C, conv_final = self._scan_inputs(hidden, conv_initial, return_final_states)
        scan_out = selective_scan(
            x, dt, self._A(), B, C, D=at_least_fp32(self.D), z=z,
            delta_bias=at_least_fp32(self.dt_proj.bias), delta_softplus=True, initial_state=ssm_initial,
            return_final_state=return_final_states, backend=self.kernel_backend,
        )
        y, ssm_final = scan_out if return_final_states else (scan_out, None)
        if torch.is_grad_enabled():  # a channels-first GEMM hands the scan's backward a channels-first gradient
            out = channels_first_linear(y, self.out_proj.weight, self.out_proj.bias).transpose(1, 2)
        else:  # a (b, L, d_model) output the next norm reads without a transposing copy (1 ms a layer at b64 L2048)
            out = channels_first_to_last_linear(y, self.out_proj.weight, self.out_proj.bias)
        return out, ((conv_final, ssm_final) if return_final_states else None)

    def _scan_inputs(
        self, hidden: torch.Tensor, conv_initial: torch.Tensor | None, return_conv_state: bool
    ) -> tuple[torch.Tensor, ...]:
        """(x, z, dt, B, C, final conv state or None) of `hidden: (b, L, d_model)`, channels-first (b, channels, L)
        with unit stride along L, as the scan and conv kernels read them; dt before its bias and softplus."""
        xz = channels_first_linear(hidden.transpose(1, 2), self.in_proj.weight, self.in_proj.bias)
        x, z = xz.chunk(2, dim=1)  # (b, d_inner, L) each
        conv_out = causal_conv1d(x, self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu",
                                 initial_state=conv_initial, return_final_state=return_conv_state,
                                 backend=self.kernel_backend)
        x, conv_final = conv_out if return_conv_state else (conv_out, None)
        dt, B, C = channels_first_linear(x, self.x_proj.weight).split(
            [self.dt_rank, self.d_state, self.d_state], dim=1)  # (b, dt_rank | d_state | d_state, L)
        dt = channels_first_linear(dt, self.dt_proj.weight)  # (b, d_inner, L)
        return x, z, dt, B, C, conv_final

    def step_sizes(self, hidden: torch.Tensor) -> torch.Tensor:
        """The scan's step sizes `softplus(dt + dt_bias)` on `hidden: (b, L, d_model)` from zero states:
        (b, L, d_inner) fp32 (for analysis, e.g. `tasks.synthetic.memory`)."""
        dt = self._scan_inputs(hidden, None, False)[2]
        return F.softplus(dt.transpose(1, 2).float() + self.dt_proj.bias.float())

    def step(self, hidden: torch.Tensor, cache: SSMLayerCache) -> torch.Tensor:
        """One recurrent step: `hidden: (b, 1, d_model) -> (b, 1, d_model)`, states in `cache` updated in place."""
        x, z = self.in_proj(hidden[:, 0]).chunk(2, dim=-1)  # (b, d_inner) each
        x = causal_conv1d_update(x, cache.conv_state, self.conv1d.weight.squeeze(1), self.conv1d.bias, "silu",
                                 backend=self.kernel_backend)
        return self._state_step(x, z, cache)

    def step_with_norm(
        self, hidden: torch.Tensor, residual: torch.Tensor | None, norm: nn.Module, residual_in_fp32: bool,
        cache: SSMLayerCache,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's residual add + `norm`, then `step`: `(out, residual_new)`, all (b, 1, d_model); residual None
        for the first layer. With an `RMSNorm` on the "auto"/"triton" backends the add, the norm, in_proj and the
        conv step run as one kernel on CUDA (`kernels.add_norm_in_proj_conv`) up to `FUSED_FRONT_MAX_BATCH` rows.
        With an fp32 residual stream (and `torch.use_deterministic_algorithms` off) that kernel also sums x_proj,
        and a second one (`kernels.mamba1_state_step_out_proj`) steps the states and adds out_proj straight into
        the stream: two launches per layer, and `out` is then zeros."""
        fused = (isinstance(norm, RMSNorm) and self.kernel_backend in FUSED_FRONT_BACKENDS
                 and hidden.shape[0] <= FUSED_FRONT_MAX_BATCH)
        if not fused:
            normed, residual = add_rms_norm(hidden, residual, norm, residual_in_fp32, self.kernel_backend)
            return self.step(normed, cache), residual
        residual_dtype = residual_stream_dtype(hidden, residual, residual_in_fp32)
        buffers = cache.fused_step
        two_kernels = (buffers is not None and residual_dtype == torch.float32
                       and buffers.x_proj_sums.shape[0] == hidden.shape[0]
                       and not torch.are_deterministic_algorithms_enabled())
        xz, residual = add_norm_in_proj_conv(
            hidden[:, 0], None if residual is None else residual[:, 0], norm.weight, norm.eps, residual_dtype,
            self.in_proj.weight, self.in_proj.bias, cache.conv_state, self.conv1d.weight.squeeze(1),
            self.conv1d.bias, *((self.x_proj.weight, buffers.x_proj_sums) if two_kernels else ()),
            backend=self.kernel_backend,
        )
        if two_kernels:
            mamba1_state_step_out_proj(
                cache.ssm_state, xz, buffers.x_proj_sums, buffers.arrivals, self.dt_proj.weight, self.dt_proj.bias,
                self.A_log, self.D, self.out_proj.weight, self.out_proj.bias, residual, backend=self.kernel_backend)
            return buffers.zero_output, residual.unsqueeze(1)
        x, z = xz.chunk(2, dim=-1)  # (b, d_inner) each
        return self._state_step(x, z, cache), residual.unsqueeze(1)

    def _state_step(self, x: torch.Tensor, z: torch.Tensor, cache: SSMLayerCache) -> torch.Tensor:
        """The step after the conv: x, z: (b, d_inner) -> (b, 1, d_model), the SSM state updated in place. dt's
        projection and `A = -exp(A_log)` happen inside the step kernel (three launches per layer and token fewer);
        D and dt_bias go in their own dtype, as every step backend computes in fp32 (fp64 for fp64 inputs)."""
        dt_low, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        y = mamba1_state_step(cache.ssm_state, x, dt_low, self.dt_proj.weight, self.A_log, B, C, D=self.D, z=z,
                              dt_bias=self.dt_proj.bias, backend=self.kernel_backend)
        return self.out_proj(y).unsqueeze(1)

    def _A(self) -> torch.Tensor:
        return -torch.exp(at_least_fp32(self.A_log))  # (d_inner, d_state)
