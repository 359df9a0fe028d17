"""Triton kernels (issue 8): the Mamba-1 selective scan, forward and backward, JIT-compiled at first use; the
Mamba-2 SSD as Inductor-generated Triton (`torch.compile` of the chunked decomposition).

Checked on CPU with `TRITON_INTERPRET=1` (tests/kernels_triton) and on CUDA against the fp64 reference.
"""
from .launch import ScanConfig
from .selective_scan import selective_scan_triton
from .ssd import ssd_triton

__all__ = ["ScanConfig", "selective_scan_triton", "ssd_triton"]
