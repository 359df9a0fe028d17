"""`selective_scan_triton`: the Mamba-1 selective scan on Triton kernels, differentiable (torch.autograd.Function).

Same contract as `mambaseq.kernels.selective_scan_reference`, plus packed variable-length sequences (`seq_idx`).
When a gradient is needed, the forward pass also stores the state entering every chunk of the backward kernel
(fp32, batch * d_inner * d_state * L / chunk floats); the backward kernel walks those chunks in reverse, recomputes
each chunk's states and runs the adjoint recurrence. Everything is computed in fp32 whatever the input dtype.
On CUDA, wide problems that need a gradient run the Gluon kernels (explicit register layouts: time runs inside each
lane, chunk states every 8 steps); forwards without one, narrow problems and the CPU interpreter run the Triton
kernels (`launch.default_config`), cut along time into parallel segments when the sequence is long
(`ScanConfig.segments`).
"""
from __future__ import annotations

import torch

from . import launch
from .launch import ScanConfig
from .scan_inputs import ScanInputs, prepare_inputs


class SelectiveScanFunction(torch.autograd.Function):
    """forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, seq_idx, forward_config,
    backward_config) -> (y, final_state); backward returns a gradient for every tensor input."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, seq_idx, forward_config,
                backward_config):
        inputs = prepare_inputs(u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx)
        needs_grad = any(ctx.needs_input_grad)
        forward_config = forward_config or launch.default_config(inputs, backward=False, training=needs_grad)
        backward_config = backward_config or launch.default_config(inputs, backward=True)
        ctx.set_materialize_grads(False)  # an unused output (often the final state) gets no zero gradient
        y, final_state, chunk_states = launch.forward(inputs, delta_softplus, forward_config,
                                                      backward_config.chunk if needs_grad else None)
        if needs_grad:
            ctx.save_for_backward(inputs.u, inputs.delta, inputs.A, inputs.B, inputs.C, inputs.D, inputs.z,
                                  inputs.delta_bias, inputs.reset, chunk_states)
            ctx.meta = dict(delta_softplus=delta_softplus, config=backward_config,
                            channels_per_group=inputs.channels_per_group,
                            like={name: (None if tensor is None else (tensor.shape, tensor.dtype)) for name, tensor
                                  in dict(A=A, B=B, C=C, D=D, delta_bias=delta_bias,
                                          initial_state=initial_state).items()})
        return y, final_state

    @staticmethod
    def backward(ctx, dy, dfinal_state):
        u, delta, A, B, C, D, z, delta_bias, reset, chunk_states = ctx.saved_tensors
        meta = ctx.meta
        inputs = ScanInputs(u, delta, A, B, C, D, z, delta_bias, reset, None, meta["channels_per_group"])
        if dy is None:
            dy = torch.zeros_like(u)
        grads = launch.backward(inputs, meta["delta_softplus"], meta["config"], chunk_states, dy, dfinal_state)

        def like(name: str, gradient: torch.Tensor | None) -> torch.Tensor | None:
            """The gradient in the shape and dtype of the original argument (None for an absent argument)."""
            original = meta["like"][name]
            return None if original is None else gradient.reshape(original[0]).to(original[1])

        return (grads["du"], grads["ddelta"], like("A", grads["dA"]), like("B", grads["dB"]), like("C", grads["dC"]),
                like("D", grads["dD"]), grads["dz"], like("delta_bias", grads["ddelta_bias"]), None,
                like("initial_state", grads["dinitial_state"]), None, None, None)


def selective_scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
    *,
    seq_idx: torch.Tensor | None = None,
    config: ScanConfig | None = None,
    backward_config: ScanConfig | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Mamba-1 selective scan on Triton (mamba-ssm semantics; contract of `selective_scan_reference`).

    u, delta, z: (batch, d_inner, L) fp32/fp16/bf16; A: (d_inner, d_state); B, C: (batch, d_state, L) or
    (batch, groups, d_state, L); D, delta_bias: (d_inner,); initial_state: (batch, d_inner, d_state).
    seq_idx: optional (batch, L) integer document index of every position of a packed batch; the state is reset to
    zero before every position t > 0 whose seq_idx differs from position t - 1's (an initial_state, if given, feeds
    the first document), so documents never see each other. `config` / `backward_config` override the tilings of
    the forward / backward kernels (`ScanConfig`).
    Returns y (dtype of u), plus the final state (fp32) when `return_final_state`. Differentiable in every tensor.
    """
    y, final_state = SelectiveScanFunction.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
                                                 seq_idx, config, backward_config)
    return (y, final_state) if return_final_state else y
