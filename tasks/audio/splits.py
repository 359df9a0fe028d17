"""Deterministic train/validation/test splits: Speech Commands' list files (SC09) and by-file fractions (long
recordings such as YouTubeMix)."""
from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

SPLITS = ("train", "validation", "test")
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"


def read_split_list(path: Path) -> set[str]:
    """Relative paths (`word/speaker_nohash_k.wav`) listed one per line in a Speech Commands split file."""
    if not path.is_file():
        raise FileNotFoundError(f"split list {path} does not exist: clip datasets need {VALIDATION_LIST} and "
                                f"{TESTING_LIST} beside the class folders (Speech Commands convention)")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def speech_commands_split(names: Sequence[str], validation: set[str], testing: set[str], split: str) -> list[str]:
    """The `names` (relative paths with "/" separators) that belong to `split`: listed in the validation or the
    testing list, or in neither (train). Order of `names` is kept."""
    check_split(split)
    overlap = validation & testing
    if overlap:
        raise ValueError(f"{len(overlap)} clip(s) are in both {VALIDATION_LIST} and {TESTING_LIST}, e.g. "
                         f"{sorted(overlap)[0]!r}")
    if split == "validation":
        return [n for n in names if n in validation]
    if split == "test":
        return [n for n in names if n in testing]
    return [n for n in names if n not in validation and n not in testing]


def split_by_file(names: Sequence[str], split: str, fractions: Sequence[float] = (0.88, 0.06, 0.06),
                  seed: int = 0) -> list[str]:
    """The `names` of `split` when files are dealt 88/6/6 (by default) after a seeded shuffle of the sorted names.

    Depends only on the set of names and the seed, not on listing order. Validation and test each get at least one
    file whenever there are three or more files.
    """
    check_split(split)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions={list(fractions)} are invalid: expected three non-negative numbers "
                         f"summing to 1 (train, validation, test)")
    shuffled = sorted(set(names))
    random.Random(seed).shuffle(shuffled)
    count = len(shuffled)
    minimum = 1 if count >= 3 else 0
    n_val = max(minimum if fractions[1] > 0 else 0, round(fractions[1] * count))
    n_test = max(minimum if fractions[2] > 0 else 0, round(fractions[2] * count))
    bounds = {"validation": (0, n_val), "test": (n_val, n_val + n_test), "train": (n_val + n_test, count)}
    start, end = bounds[split]
    return sorted(shuffled[start:end])


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown: expected one of {SPLITS}")
