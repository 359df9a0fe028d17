"""Small FASTA files written into each test's temporary folder (fixtures only: test modules import nothing here)."""
import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


def _random_bases(length: int, seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), size=length))


def _write_fasta(path: Path, records: dict[str, str], width: int = 60) -> Path:
    lines = []
    for name, sequence in records.items():
        lines.append(f">{name} test record")
        lines += [sequence[i:i + width] for i in range(0, len(sequence), width)]
    data = ("\n".join(lines) + "\n").encode()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as file:
            file.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def random_bases() -> Callable[[int, int], str]:
    """`random_bases(length, seed)`: uniform A/C/G/T string."""
    return _random_bases


@pytest.fixture
def write_fasta() -> Callable[..., Path]:
    """`write_fasta(path, {name: sequence})`: plain or gzip (by suffix) FASTA wrapped at 60 columns."""
    return _write_fasta


@pytest.fixture
def genome_records() -> dict[str, str]:
    return {"chr1": _random_bases(3000, 1), "chr2": _random_bases(1000, 2), "chrM": _random_bases(50, 3)}


@pytest.fixture
def fasta_path(tmp_path: Path, genome_records: dict[str, str]) -> Path:
    return _write_fasta(tmp_path / "genome.fa", genome_records)
