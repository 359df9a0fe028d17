"""Compute kernels: Mamba-1 selective scan, Mamba-2 SSD, depthwise causal conv; references, fast PyTorch versions,
decoding steps, and `dispatch` / `step_dispatch` to the Triton / CUDA backends.

The package-level `selective_scan`, `ssd`, `causal_conv1d` (= `causal_conv`) and the steps
`selective_state_update`, `ssd_state_update`, `causal_conv1d_update` and the fused Mamba-1 step pieces
`add_norm_in_proj_conv`, `mamba1_state_step`, `mamba1_state_step_out_proj` dispatch on `backend=`; the
per-backend kernels are importable from their modules (e.g. `mambaseq.kernels.causal_conv1d.causal_conv1d`).
"""
from ._common import residual_stream_dtype
from .dispatch import BACKENDS, causal_conv, selective_scan, ssd
from .selective_scan_chunked import selective_scan_chunked
from .selective_scan_reference import selective_scan_reference
from .ssd_chunked import ssd_chunked
from .ssd_reference import ssd_reference
from .step_dispatch import (
    add_norm_in_proj_conv,
    causal_conv1d_update,
    mamba1_state_step,
    mamba1_state_step_out_proj,
    selective_state_update,
    ssd_state_update,
)

causal_conv1d = causal_conv

__all__ = [
    "BACKENDS",
    "add_norm_in_proj_conv",
    "causal_conv",
    "causal_conv1d",
    "causal_conv1d_update",
    "mamba1_state_step",
    "mamba1_state_step_out_proj",
    "residual_stream_dtype",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_reference",
    "selective_state_update",
    "ssd",
    "ssd_chunked",
    "ssd_reference",
    "ssd_state_update",
]
