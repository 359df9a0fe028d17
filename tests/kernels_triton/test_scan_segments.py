"""The default Triton scan configuration: how it cuts long, narrow sequences into segments (sequence parallelism),
and which tiles forwards that store no states get."""
from __future__ import annotations

import pytest
import torch

from mambaseq.kernels.triton import ScanConfig
from mambaseq.kernels.triton.launch import (
    MIN_SEGMENT_CHUNKS,
    NARROW_CONFIG,
    TARGET_PROGRAMS,
    WIDE_CHANNELS,
    WIDE_CONFIG,
    default_config,
    segment_count,
)
from mambaseq.kernels.triton.scan_inputs import prepare_inputs


def _inputs(batch: int, d_inner: int, seqlen: int):
    u = torch.zeros(batch, d_inner, seqlen)
    B = torch.zeros(batch, 16, seqlen)
    return prepare_inputs(u, u, torch.zeros(d_inner, 16), B, B, None, None, None, None, None)


def test_long_narrow_forwards_are_cut_into_segments_and_backwards_are_not():
    inputs = _inputs(1, 64, 1 << 20)
    config = default_config(inputs, backward=False)
    assert config.segments == min(TARGET_PROGRAMS // (64 // config.block_d), (1 << 20) // (32 * MIN_SEGMENT_CHUNKS))
    assert config.segments > 1
    assert default_config(inputs, backward=True).segments == 1
    assert default_config(_inputs(1, 64, 1 << 12), backward=False).segments == 1


def test_wide_forwards_that_store_no_states_run_two_channel_tiles():
    wide = _inputs(64, 128, 256)
    assert 64 * 128 >= WIDE_CHANNELS
    assert default_config(wide, backward=False, training=False) == NARROW_CONFIG
    assert default_config(wide, backward=False, training=True) == WIDE_CONFIG  # on CPU: no Gluon kernels
    odd_groups = _inputs(64, 127, 256)  # 2-channel tiles need an even number of channels per B/C group
    assert default_config(odd_groups, backward=False, training=False).block_d == 1


@pytest.mark.parametrize("programs, seqlen, chunk, expected", [
    (512, 65536, 32, 16), (256, 65536, 64, 8), (256, 2048, 64, 1), (256, 100, 64, 1), (32, 1 << 20, 32, 256),
    (8192, 1 << 20, 32, 8),
])
def test_segment_count(programs, seqlen, chunk, expected):
    assert segment_count(programs, seqlen, chunk) == expected


def test_config_rejects_zero_segments():
    with pytest.raises(ValueError, match="segments=0"):
        ScanConfig(4, 64, 2, 0)
