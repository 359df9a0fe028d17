"""Random inputs of single decoding steps (Mamba-1 and SSD head layouts, causal conv) for the Triton step-kernel
tests."""
from __future__ import annotations

import math

import torch

# name -> (layout, options of step_inputs)
CASES = {
    "mamba1_full": ("mamba1", dict(d_inner=40, d_state=16)),
    "mamba1_groups_odd_state": ("mamba1", dict(d_inner=24, d_state=5, groups=3)),
    "mamba1_plain": ("mamba1", dict(d_inner=16, d_state=8, with_D=False, with_z=False, with_bias=False,
                                   softplus=False)),
    "ssd_full": ("ssd", dict(nheads=4, headdim=8, d_state=16, groups=2)),
    "ssd_D_hdim_limit": ("ssd", dict(nheads=6, headdim=5, d_state=12, groups=3, D_has_hdim=True,
                                     dt_limit=(0.01, 0.2))),
    "ssd_no_z_strided_x": ("ssd", dict(nheads=2, headdim=16, d_state=32, with_z=False, strided=True)),
    "conv_width4_silu": ("conv", dict(d_inner=200, width=4)),
    "conv_width3_no_bias_linear": ("conv", dict(d_inner=24, width=3, with_bias=False, softplus=False)),
    "conv_width2_strided": ("conv", dict(d_inner=40, width=2, strided=True)),
    "mamba1_params_low_rank_dt": ("mamba1_params", dict(d_inner=40, d_state=16, dt_rank=6)),
    "mamba1_params_groups_strided": ("mamba1_params", dict(d_inner=24, d_state=5, groups=3, dt_rank=3,
                                                           strided=True, with_D=False)),
    "mamba1_params_dt_gemm_batch": ("mamba1_params", dict(batch=20, d_inner=24, d_state=5, groups=3, dt_rank=3)),
    "front_residual_biases": ("front", dict(d_model=40, d_inner=72, width=4)),
    "front_first_layer_width3": ("front", dict(batch=1, d_model=136, d_inner=48, width=3, with_residual=False,
                                                with_bias=False)),
    "front_seventy_rows_half_residual": ("front", dict(batch=70, d_model=16, d_inner=16, width=2,
                                                         residual_dtype=torch.float16)),
    "front_three_rows_masked": ("front", dict(d_model=40, d_inner=21, width=4)),
    "front_one_row_small_tiles": ("front", dict(batch=1, d_model=72, d_inner=24, width=4)),
    "front_x_proj": ("front", dict(d_model=40, d_inner=72, width=4, x_proj_width=12)),
    "front_x_proj_straddling_tiles": ("front", dict(batch=1, d_model=72, d_inner=24, width=4, x_proj_width=9)),
    "back_biases": ("back", dict(d_inner=40, d_state=16, dt_rank=6, d_model=24)),
    "back_one_row_odd_state_small_tiles": ("back", dict(batch=1, d_inner=24, d_state=5, dt_rank=3, d_model=40,
                                                        with_D=False, with_bias=False)),
}
# case -> tiling text (FrontTiling / BackTiling.parse), for cases that test a tiling other than the default
TILINGS = {"front_three_rows_masked": "8,16,4", "front_one_row_small_tiles": "16,32,4",
           "front_x_proj_straddling_tiles": "16,32,4", "back_one_row_odd_state_small_tiles": "8,16,2",
           "back_biases": "16,8,4"}


def step_inputs(layout: str, generator: torch.Generator, batch: int = 3, d_inner: int = 16, d_state: int = 8,
                groups: int = 1, nheads: int = 4, headdim: int = 8, with_D: bool = True, with_z: bool = True,
                with_bias: bool = True, softplus: bool = True, D_has_hdim: bool = False,
                dt_limit: tuple[float, float] = (0.0, math.inf), strided: bool = False, width: int = 4,
                dt_rank: int = 4, d_model: int = 16, with_residual: bool = True,
                residual_dtype: torch.dtype = torch.float32, x_proj_width: int = 0) -> dict:
    """Keyword arguments of one step (fp32; `strided` makes x a non-contiguous view, as after a split). Layout
    "conv": a causal-conv step over `d_inner` channels of `width` taps, SiLU when `softplus`, bias when `with_bias`
    (`strided` also makes the conv state a view of a wider buffer). Layout "mamba1_params": a Mamba-1 step from the
    mixer's parameters (low-rank dt of `dt_rank`, A_log). Layout "front": residual add + RMSNorm + in_proj + conv
    step of a `d_model` block (biases when `with_bias`, the residual stream stored in `residual_dtype`), summing
    x_proj into zeroed fp32 sums of `x_proj_width` when nonzero. Layout "back": the state step from x_proj sums and
    out_proj added into an fp32 residual stream (dt_bias, D and out_proj's bias when `with_bias` / `with_D`)."""
    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    if layout == "front":
        inputs = dict(hidden=randn(batch, d_model), residual=randn(batch, d_model) if with_residual else None,
                      norm_weight=randn(d_model) * 0.3 + 1.0, eps=1e-5, residual_dtype=residual_dtype,
                      proj_weight=randn(2 * d_inner, d_model) * d_model**-0.5,
                      proj_bias=randn(2 * d_inner) if with_bias else None,
                      conv_state=randn(batch, d_inner, width - 1), conv_weight=randn(d_inner, width) * 0.5,
                      conv_bias=randn(d_inner) if with_bias else None)
        if x_proj_width:
            inputs.update(x_proj_weight=randn(x_proj_width, d_inner) * d_inner**-0.5,
                          x_proj_sums=torch.zeros(batch, x_proj_width))
        return inputs
    if layout == "back":
        return dict(state=randn(batch, d_inner, d_state), xz=randn(batch, 2 * d_inner),
                    x_proj_sums=randn(batch, dt_rank + 2 * d_state), arrivals=torch.zeros(batch, 1 + d_inner, dtype=torch.int32),
                    dt_proj_weight=randn(d_inner, dt_rank) * dt_rank**-0.5,
                    dt_bias=randn(d_inner) - 1.0 if with_bias else None,
                    A_log=torch.log(torch.rand(d_inner, d_state, generator=generator) * 4 + 0.2),
                    D=randn(d_inner) if with_D else None, out_proj_weight=randn(d_model, d_inner) * d_inner**-0.5,
                    out_proj_bias=randn(d_model) if with_bias else None, residual=randn(batch, d_model))
    if layout == "mamba1_params":
        inputs = step_inputs("mamba1", generator, batch=batch, d_inner=d_inner, d_state=d_state, groups=groups,
                             with_D=with_D, with_z=with_z, strided=strided)
        del inputs["dt"], inputs["A"], inputs["dt_softplus"]
        dt_low = randn(batch, 3 * dt_rank)[:, ::3] if strided else randn(batch, dt_rank)
        return dict(inputs, dt_low=dt_low, dt_proj_weight=randn(d_inner, dt_rank) * dt_rank**-0.5,
                    A_log=torch.log(torch.rand(d_inner, d_state, generator=generator) * 4 + 0.2))

    if layout == "conv":
        x = randn(batch, 2 * d_inner)[:, ::2] if strided else randn(batch, d_inner)
        conv_state = randn(batch, d_inner, width + 1)[..., 2:] if strided else randn(batch, d_inner, width - 1)
        return dict(x=x, conv_state=conv_state, weight=randn(d_inner, width),
                    bias=randn(d_inner) if with_bias else None, activation="silu" if softplus else None)

    if layout == "mamba1":
        channels = (d_inner,)
        bc_shape = (batch, d_state) if groups == 1 else (batch, groups, d_state)
        A = -torch.rand(d_inner, d_state, generator=generator) - 0.2
        D = randn(d_inner) if with_D else None
        bias = randn(d_inner) - 1.0 if with_bias else None
        dt = randn(batch, d_inner) if softplus else torch.rand(batch, d_inner, generator=generator) * 0.3
        inputs = dict(state=randn(batch, d_inner, d_state))
    else:
        channels = (nheads, headdim)
        bc_shape = (batch, groups, d_state)
        A = -torch.rand(nheads, generator=generator) - 0.2
        D = (randn(nheads, headdim) if D_has_hdim else randn(nheads)) if with_D else None
        bias = randn(nheads) - 1.0 if with_bias else None
        dt = randn(batch, nheads)
        inputs = dict(state=randn(batch, nheads, headdim, d_state), dt_limit=dt_limit)
    x = randn(batch, *channels[:-1], 2 * channels[-1])[..., ::2] if strided else randn(batch, *channels)
    inputs.update(x=x, dt=dt, A=A, B=randn(*bc_shape), C=randn(*bc_shape), D=D,
                  z=randn(batch, *channels) if with_z else None, dt_bias=bias, dt_softplus=softplus)
    return inputs
