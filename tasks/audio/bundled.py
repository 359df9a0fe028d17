"""Clip bundles: a whole SC09-style clip set in one compressed `.npz` (codes + names + split lists).

Keys: `codes: (N, clip_samples) uint8|int32`, `names: (N,) str` (Speech Commands relative paths
`word/speaker_nohash_k.wav`), `validation_list`, `testing_list: str arrays`, `sample_rate: int`,
`quantization: str`, `bits: int`. The bundled spoken-digit set (`BUNDLED_DIGITS_PATH`) is one of these.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import mambaseq
from mambaseq.tasks.audio.quantize import Quantizer

BUNDLED_DIGITS_PATH = Path(mambaseq.__file__).parent / "assets" / "data" / "audio" / "spoken_digits.npz"
BUNDLE_KEYS = ("codes", "names", "validation_list", "testing_list", "sample_rate", "quantization", "bits")


@dataclass
class ClipBundle:
    codes: np.ndarray
    names: list[str]
    validation_list: set[str]
    testing_list: set[str]
    sample_rate: int
    quantizer: Quantizer


def save_clip_bundle(path: Path, codes: np.ndarray, names: list[str], validation_list: list[str],
                     testing_list: list[str], sample_rate: int, quantizer: Quantizer) -> None:
    """Write a bundle; `codes: (N, clip_samples)` must match `names: (N,)`."""
    if codes.shape[0] != len(names):
        raise ValueError(f"clip bundle {path}: {codes.shape[0]} code rows but {len(names)} names")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, codes=codes, names=np.array(names), validation_list=np.array(sorted(validation_list)),
                        testing_list=np.array(sorted(testing_list)), sample_rate=np.int64(sample_rate),
                        quantization=np.array(quantizer.kind), bits=np.int64(quantizer.bits))


def load_clip_bundle(path: Path | str = BUNDLED_DIGITS_PATH) -> ClipBundle:
    """Read a bundle written by `save_clip_bundle`; errors name the file and the missing keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"clip bundle {path} does not exist")
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in BUNDLE_KEYS if key not in data.files]
        if missing:
            raise ValueError(f"clip bundle {path} lacks key(s) {missing}: expected {list(BUNDLE_KEYS)}")
        return ClipBundle(
            codes=data["codes"], names=[str(n) for n in data["names"]],
            validation_list={str(n) for n in data["validation_list"]},
            testing_list={str(n) for n in data["testing_list"]}, sample_rate=int(data["sample_rate"]),
            quantizer=Quantizer(str(data["quantization"]), int(data["bits"])),
        )
