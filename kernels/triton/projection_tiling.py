"""Launch parameters of the decoding-step kernels that stream a projection's weight (the fused front, the GEMV)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProjectionTiling:
    """`block_n` output features per program, `block_k` input features per step of the product (powers of 2),
    `num_warps`, `num_stages`."""

    block_n: int
    block_k: int
    num_warps: int
    num_stages: int

    @classmethod
    def parse(cls, text: str) -> "ProjectionTiling":
        """`"BLOCK_N,BLOCK_K,WARPS,STAGES"`, e.g. `"8,512,4,3"`."""
        fields = text.split(",")
        if len(fields) != 4 or not all(f.isdigit() and int(f) > 0 for f in fields):
            raise ValueError(f"tiling {text!r}: expected four positive integers BLOCK_N,BLOCK_K,WARPS,STAGES")
        return cls(*(int(f) for f in fields))

    def __str__(self) -> str:
        return f"{self.block_n},{self.block_k},{self.num_warps},{self.num_stages}"
