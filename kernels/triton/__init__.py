"""Triton kernels (issue 8): the Mamba-1 selective scan, forward and backward, JIT-compiled at first use (Triton
kernels, plus Gluon kernels with explicit layouts for wide training problems on CUDA: `GluonScanConfig`); the
Mamba-2 SSD, forward and backward in Triton kernels (where they cannot run, its PyTorch block decomposition
`ssd_blocks`); the depthwise causal conv, the fused residual add + RMSNorm and Mamba-2's gated RMSNorm (forward and
backward); the decoding steps (`state_update`, `conv_update`) and the row kernels of the chunked LM loss
(`cross_entropy`), imported where used.

Checked on CPU with `TRITON_INTERPRET=1` (tests/kernels_triton) and on CUDA against the fp64 reference.
"""
from .add_rms_norm import add_rms_norm_triton
from .causal_conv1d import causal_conv1d_triton
from .gated_rms_norm import gated_rms_norm_triton
from .launch import GluonScanConfig, ScanConfig
from .selective_scan import selective_scan_triton
from .ssd import ssd_triton

__all__ = ["GluonScanConfig", "ScanConfig", "add_rms_norm_triton", "causal_conv1d_triton", "gated_rms_norm_triton",
           "selective_scan_triton", "ssd_triton"]
