"""How the default Triton scan configuration cuts long, narrow sequences into segments (sequence parallelism)."""
from __future__ import annotations

import pytest
import torch

from mambaseq.kernels.triton import ScanConfig
from mambaseq.kernels.triton.launch import MIN_SEGMENT_CHUNKS, TARGET_PROGRAMS, default_config, segment_count
from mambaseq.kernels.triton.scan_inputs import prepare_inputs


def _inputs(batch: int, d_inner: int, seqlen: int):
    u = torch.zeros(batch, d_inner, seqlen)
    B = torch.zeros(batch, 16, seqlen)
    return prepare_inputs(u, u, torch.zeros(d_inner, 16), B, B, None, None, None, None, None)


def test_long_narrow_sequences_are_cut_into_segments():
    config = default_config(_inputs(1, 64, 1 << 16), backward=True)
    assert config.segments == TARGET_PROGRAMS // 64
    assert (1 << 16) // (config.chunk * config.segments) >= MIN_SEGMENT_CHUNKS


@pytest.mark.parametrize("programs, seqlen, chunk, expected", [
    (256, 65536, 64, 16), (256, 2048, 64, 4), (256, 100, 64, 1), (8192, 65536, 32, 1), (1, 1 << 20, 32, 4096),
])
def test_segment_count(programs, seqlen, chunk, expected):
    assert segment_count(programs, seqlen, chunk) == expected


def test_config_rejects_zero_segments():
    with pytest.raises(ValueError, match="segments=0"):
        ScanConfig(4, 64, 2, 0)
