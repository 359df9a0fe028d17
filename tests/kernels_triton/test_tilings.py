"""Launch tilings of the decoding-step kernels: parsed from and written as the text that benchmark scripts take,
and bad text named in the error."""
from __future__ import annotations

import pytest

from mambaseq.kernels.triton.norm_in_proj_conv import (
    DEFAULT_FRONT_TILING,
    DEFAULT_FRONT_TILING_WITHOUT_X_PROJ,
    FrontTiling,
)
from mambaseq.kernels.triton.state_step_out_proj import DEFAULT_BACK_TILING, BackTiling


@pytest.mark.parametrize("tiling", [DEFAULT_FRONT_TILING, DEFAULT_FRONT_TILING_WITHOUT_X_PROJ, DEFAULT_BACK_TILING,
                                    FrontTiling(16, 32, 4), BackTiling(8, 16, 2)])
def test_tiling_text_round_trips(tiling) -> None:
    assert type(tiling).parse(str(tiling)) == tiling


@pytest.mark.parametrize("text", ["8,512", "8,512,4,3", "8,0,4", "8,-1,4", "8,x,4", ""])
def test_bad_tiling_text_is_named_with_the_expected_fields(text: str) -> None:
    with pytest.raises(ValueError, match=f"FrontTiling '{text}': expected 3 positive integers BLOCK_N,BLOCK_K,WARPS"):
        FrontTiling.parse(text)
