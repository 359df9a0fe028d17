"""Genomic intervals: BED files with a split column (HyenaDNA / Basenji HG38 setup), widening to a context length,
and the per-chromosome train/valid/test regions used when no BED file is given.

Coordinates are 0-based, end-exclusive (BED's). Split names: `train`, `valid` (also `val`, `validation`), `test`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "valid": "valid", "val": "valid", "validation": "valid",
                 "test": "test"}


class BedFormatError(ValueError):
    """A BED line is malformed or names a chromosome / range the genome does not have."""


@dataclass(frozen=True)
class Interval:
    """`[start, end)` of chromosome `chrom`, in split `split`."""

    chrom: str
    start: int
    end: int
    split: str = "train"

    @property
    def length(self) -> int:
        return self.end - self.start


def normalize_split(name: str, where: str) -> str:
    split = SPLIT_ALIASES.get(name.strip().lower())
    if split is None:
        raise ValueError(f"{where}: split {name!r} is unknown; expected one of {sorted(SPLIT_ALIASES)}")
    return split


def read_bed(path: str | os.PathLike, chrom_lengths: dict[str, int], default_split: str | None = None
             ) -> list[Interval]:
    """Intervals of a BED file `chrom start end [split]` (tab or space separated; `#`, `track` and `browser` lines
    and blank lines skipped). The fourth column is the split unless `default_split` is given, in which case every
    interval belongs to it. Each interval is checked against `chrom_lengths`; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BED file {path} does not exist")
    intervals = []
    with open(path) as file:
        for line_number, line in enumerate(file, start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#") or fields[0] in ("track", "browser"):
                continue
            intervals.append(_parse_bed_line(fields, f"{path}:{line_number}", chrom_lengths, default_split))
    if not intervals:
        raise BedFormatError(f"BED file {path} holds no intervals: expected lines 'chrom start end split'")
    return intervals


def _parse_bed_line(fields: list[str], where: str, chrom_lengths: dict[str, int], default_split: str | None
                    ) -> Interval:
    needed = 3 if default_split else 4
    if len(fields) < needed:
        raise BedFormatError(f"{where}: expected {needed} columns (chrom start end{' split' * (needed == 4)}), got "
                             f"{len(fields)}: {' '.join(fields)!r}")
    chrom = fields[0]
    try:
        start, end = int(fields[1]), int(fields[2])
    except ValueError:
        raise BedFormatError(f"{where}: start and end must be integers, got {fields[1]!r} and {fields[2]!r}") from None
    if chrom not in chrom_lengths:
        known = ", ".join(list(chrom_lengths)[:8]) + (", ..." if len(chrom_lengths) > 8 else "")
        raise BedFormatError(f"{where}: chromosome {chrom!r} is not in the FASTA file (it has {known})")
    if not 0 <= start < end:
        raise BedFormatError(f"{where}: interval [{start}, {end}) is empty or negative: expected 0 <= start < end")
    if end > chrom_lengths[chrom]:
        raise BedFormatError(f"{where}: end {end} is beyond the end of {chrom} (length {chrom_lengths[chrom]})")
    try:
        split = default_split or normalize_split(fields[3], where)
    except ValueError as error:
        raise BedFormatError(str(error)) from None
    return Interval(chrom, start, end, split)


def widen_interval(start: int, end: int, chrom_length: int, length: int) -> tuple[int, int]:
    """The window of `length` bases centred on `[start, end)` (narrowed the same way when the interval is longer),
    shifted to lie inside the chromosome. When the chromosome is shorter than `length`, the whole chromosome is
    returned and the caller pads the rest. Returns `(window_start, window_end)`."""
    if length <= 0:
        raise ValueError(f"widen_interval: length={length}, expected a positive integer")
    if length >= chrom_length:
        return 0, chrom_length
    window_start = start - (length - (end - start)) // 2
    window_start = min(max(window_start, 0), chrom_length - length)
    return window_start, window_start + length


def split_regions(chrom_lengths: dict[str, int], valid_fraction: float, test_fraction: float
                  ) -> dict[str, list[Interval]]:
    """Per-chromosome regions for whole-genome sampling: each chromosome's first `1 - valid - test` of bases is
    train, the next `valid_fraction` valid and the last `test_fraction` test. Empty regions are left out."""
    if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError(f"split fractions valid={valid_fraction}, test={test_fraction}: expected each in [0, 1) and "
                         "their sum < 1")
    regions: dict[str, list[Interval]] = {split: [] for split in SPLITS}
    for chrom, length in chrom_lengths.items():
        valid_start = round(length * (1 - valid_fraction - test_fraction))
        test_start = round(length * (1 - test_fraction))
        bounds = {"train": (0, valid_start), "valid": (valid_start, test_start), "test": (test_start, length)}
        for split, (start, end) in bounds.items():
            if end > start:
                regions[split].append(Interval(chrom, start, end, split))
    return regions
