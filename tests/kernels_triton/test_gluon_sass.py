"""Structure of the compiled Gluon scan loops, checked on CPU (Triton compiles for sm_90 and disassembles with its
bundled ptxas / nvdisasm; no GPU needed): time stays inside the lanes, so the loops shuffle only for the sums over
a channel's 4 state lanes. A scan lowered across lanes (e.g. `associative_scan(reverse=True)`, which flips through
warp shuffles) would multiply the shuffles."""
from __future__ import annotations

import pytest

from script_loader import load_script

pytest.importorskip("triton.experimental.gluon")


@pytest.fixture(scope="module")
def count_sass():
    from mambaseq.kernels.triton.compiled_resources import tools_available

    if not tools_available():
        pytest.skip("this Triton wheel ships no nvdisasm")
    return load_script("count_sass")


def test_script_counts_every_kernel(count_sass, capsys):
    """The script's cases pass every constexpr their kernels take (a new one left out fails its compilation)."""
    count_sass.main()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "Triton forward (1 channel, 32 steps, 1 warp)", "Triton backward (1 channel, 32 steps, 1 warp)",
        "Gluon forward (4 states x 8 steps per lane)", "Gluon backward (4 states x 8 steps per lane)"]
    assert all(float(line.split(": ")[1].split()[0]) > 0 for line in lines)


def test_gluon_loops_keep_time_inside_lanes(count_sass):
    from mambaseq.kernels.triton.gluon_math import channel_sum_layout, scan_layout
    from mambaseq.kernels.triton.selective_scan_bwd_gluon import selective_scan_bwd_gluon_kernel
    from mambaseq.kernels.triton.selective_scan_fwd_gluon import selective_scan_fwd_gluon_kernel

    tile = dict(LAYOUT=scan_layout(4, 4, 8, 2), BLOCK_D=16, BLOCK_N=16, STEPS=8, EVEN_D=True)
    forward = count_sass.loop_instructions(selective_scan_fwd_gluon_kernel, dict(
        count_sass.FEATURES, HAS_INITIAL_STATE=False, STORE_CHUNK_STATES=True, STATE_EVERY=1, **tile), 2)
    backward = count_sass.loop_instructions(selective_scan_bwd_gluon_kernel, dict(
        count_sass.FEATURES, HAS_DFINAL_STATE=False, SUM_LAYOUT=channel_sum_layout(16, 16, 8, 2), **tile), 2)
    # 2 butterfly rounds over 4 state lanes for each of 8 steps: 16 per sum over states (1 forward, 3 backward)
    assert forward["SHFL"] == 16
    assert backward["SHFL"] == 48
    assert backward["MUFU"] < 3 * 32  # one exp2 per element (32 per lane) plus per-step softplus/sigmoid terms
