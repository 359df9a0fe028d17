"""scripts/ssd_kernel_resources.py on CPU: the SSD launchers run on meta tensors, every launch compiles for sm_90 with
the knobs the launchers read at call time, and the report lists each kernel once per distinct compilation."""
from __future__ import annotations

import pytest
import torch
from triton.runtime.jit import JITFunction

from mambaseq.kernels.triton import ssd_bwd_launch, ssd_launch
from mambaseq.kernels.triton.compiled_resources import tools_available
from mambaseq.kernels.triton.ssd_launch import Tiling
from script_loader import load_script

KERNELS = {"chunk_cb_kernel", "chunk_state_kernel", "state_passing_kernel", "chunk_scan_kernel",
           "passed_state_grads_kernel", "chunk_scan_bwd_dx_kernel", "chunk_pairs_bwd_kernel",
           "chunk_scan_bwd_dC_kernel", "chunk_scan_bwd_dB_kernel"}


@pytest.fixture(scope="module")
def resources():
    if not tools_available():
        pytest.skip("this Triton wheel ships no cuobjdump")
    return load_script("ssd_kernel_resources")


def test_every_launch_compiles_with_the_knobs_in_force(resources, monkeypatch):
    monkeypatch.setattr(ssd_launch, "SEPARABLE_DECAYS", True)
    monkeypatch.setattr(ssd_bwd_launch, "DC_TILING", Tiling(block_m=32, block_k=16, warps=8, stages=2))
    rows = resources.resource_rows((1, 64, 2, 16, 16), 1, 32, torch.bfloat16)
    by_kernel = {}
    for name, flags, tiles, registers, spill, shared, instructions, exponentials in rows:
        by_kernel.setdefault(name, []).append((flags.split(","), tiles.split(",")))
        assert 0 < int(registers) <= 255 and int(instructions) > 0 and int(spill) >= 0 and int(shared) >= 0
    assert set(by_kernel) == KERNELS
    for name in ("chunk_scan_kernel", "chunk_scan_bwd_dx_kernel", "chunk_pairs_bwd_kernel"):
        assert all("SEPARABLE" in flags for flags, _ in by_kernel[name])
    [(_, dC_tiles)] = by_kernel["chunk_scan_bwd_dC_kernel"]
    assert {"M=32", "K=16", "num_warps=8", "num_stages=2"} <= set(dC_tiles)
    [(_, dB_tiles)] = by_kernel["chunk_scan_bwd_dB_kernel"]
    assert {"M=32", "K=32", "num_warps=8", "num_stages=3"} <= set(dB_tiles)  # defaults, capped at chunk 32
    assert len(by_kernel["chunk_state_kernel"]) == 2  # weighted to the chunk end and from its start
    assert all(isinstance(getattr(module, name), JITFunction)  # the recorders are gone again
               for module in (ssd_launch, ssd_bwd_launch) for name in KERNELS if hasattr(module, name))


def test_unknown_knob_is_named(resources):
    with pytest.raises(SystemExit, match="no launch knob named 'SCAN_TILLING'"):
        resources.apply_knob("SCAN_TILLING=64,64,64,64,4,3")
    with pytest.raises(SystemExit, match="a tiling takes 6 integers"):
        resources.apply_knob("SCAN_TILING=64,64")
