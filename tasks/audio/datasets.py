"""Datasets of quantized audio: fixed-length clips (SC09) and windows over long recordings (YouTubeMix).

Every item is an autoregressive pair over `length` samples: `labels = codes[s : s + length]` and
`input_ids = codes[s - 1 : s + length - 1]`, where the sample before the first one is the silence code; so a
model fed the silence code alone predicts the first sample of a clip, exactly what unconditional generation does.
Positions past the end of a short recording carry label `IGNORE_INDEX`.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from mambaseq.tasks.audio.audio_io import AudioChecks, AudioFileError, load_audio
from mambaseq.tasks.audio.quantize import Quantizer

IGNORE_INDEX = -100
BadFilePolicy = Literal["raise", "skip"]
BAD_FILE_POLICIES = ("raise", "skip")

log = logging.getLogger(__name__)


def decode_files(paths: Sequence[Path], sample_rate: int, checks: AudioChecks, on_bad_file: BadFilePolicy,
                 desc: str, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 ) -> tuple[list[Path], list[torch.Tensor], Counter[str]]:
    """Load every file as a mono float waveform at `sample_rate`, passed through `transform` at once (e.g. to
    quantize, so that only codes stay in memory). A bad file raises `AudioFileError` (naming it) with
    `on_bad_file="raise"`, or is logged and skipped with "skip". Returns kept paths, their (transformed)
    waveforms, and the count of skipped files per reason."""
    if on_bad_file not in BAD_FILE_POLICIES:
        raise ValueError(f"on_bad_file={on_bad_file!r} is unknown: expected one of {BAD_FILE_POLICIES}")
    kept, waveforms, skipped = [], [], Counter()
    for path in tqdm(paths, desc=desc, unit="file", leave=False, disable=len(paths) < 50):
        try:
            waveform = load_audio(path, sample_rate, checks)
        except AudioFileError as error:
            if on_bad_file == "raise":
                raise
            log.warning("skipping bad audio file: %s", error)
            skipped[error.reason] += 1
            continue
        waveforms.append(waveform if transform is None else transform(waveform))
        kept.append(path)
    if skipped:
        log.warning("%s: skipped %d of %d files (%s)", desc, sum(skipped.values()), len(paths),
                    ", ".join(f"{reason}: {count}" for reason, count in sorted(skipped.items())))
    return kept, waveforms, skipped


def fit_length(waveform: torch.Tensor, samples: int) -> torch.Tensor:
    """Trim `waveform: (frames,)` to `samples`, or pad it with zeros at the end: (samples,)."""
    if waveform.numel() >= samples:
        return waveform[:samples]
    return torch.nn.functional.pad(waveform, (0, samples - waveform.numel()))


def quantize_clip(waveform: torch.Tensor, clip_samples: int, quantizer: Quantizer) -> torch.Tensor:
    """Pad/trim `waveform: (frames,)` to `clip_samples` and quantize: (clip_samples,) codes."""
    return quantize_recording(fit_length(waveform, clip_samples), quantizer)


def quantize_recording(waveform: torch.Tensor, quantizer: Quantizer) -> torch.Tensor:
    """`waveform: (frames,)` -> codes in the quantizer's smallest dtype (uint8 for 8 bits)."""
    return quantizer.encode(waveform).to(quantizer.code_dtype)


def autoregressive_pair(codes: torch.Tensor, start: int, length: int, silence: int) -> dict[str, torch.Tensor]:
    """`{"input_ids", "labels"}: (length,) int64` for positions `start .. start + length - 1` of `codes: (T,)`."""
    labels = torch.full((length,), IGNORE_INDEX, dtype=torch.long)
    available = codes[start: start + length].long()
    labels[: available.numel()] = available
    previous = codes[start - 1: start].long() if start > 0 else torch.tensor([silence])
    input_ids = torch.full((length,), silence, dtype=torch.long)
    input_ids[0] = previous[0]
    input_ids[1: available.numel()] = available[:-1]
    return {"input_ids": input_ids, "labels": labels}


class ClipDataset(Dataset):
    """Fixed-length clips `codes: (N, clip_samples)` (uint8/int32). With `crop`, each item is a random window of
    `crop` samples of its clip (training on short windows); otherwise the whole clip."""

    def __init__(self, codes: torch.Tensor, silence: int, crop: int | None = None,
                 names: Sequence[str] | None = None) -> None:
        if codes.ndim != 2:
            raise ValueError(f"ClipDataset: codes must be (clips, samples), got shape {tuple(codes.shape)}")
        if crop is not None and not 0 < crop <= codes.shape[1]:
            raise ValueError(f"ClipDataset: crop={crop} must be in [1, clip length {codes.shape[1]}]")
        self.codes = codes
        self.silence = silence
        self.crop = crop
        self.names = list(names) if names is not None else [str(i) for i in range(codes.shape[0])]

    def __len__(self) -> int:
        return self.codes.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip = self.codes[index]
        if self.crop is None:
            return autoregressive_pair(clip, 0, clip.numel(), self.silence)
        start = int(torch.randint(0, clip.numel() - self.crop + 1, ()))
        return autoregressive_pair(clip, start, self.crop, self.silence)

    @classmethod
    def from_clip_codes(cls, clips: Sequence[torch.Tensor], silence: int, crop: int | None = None,
                        names: Sequence[str] | None = None) -> ClipDataset:
        """Stack equal-length code vectors (see `quantize_clip`)."""
        if not clips:
            raise ValueError("ClipDataset: no clips (all files missing or skipped?)")
        return cls(torch.stack(list(clips)), silence, crop, names)


class RecordingWindows(Dataset):
    """Windows of `window` samples over long recordings (`codes`: list of (T_i,) tensors, one per file).

    A recording yields `max(1, T_i // window)` windows; one shorter than a window gives a single window whose tail
    labels are `IGNORE_INDEX`. With `random_offset` (training) each window start moves by a random amount up to the
    recording's leftover `T_i - count * window`, so epochs see shifted windows.
    """

    def __init__(self, codes: Sequence[torch.Tensor], window: int, silence: int, random_offset: bool = False,
                 names: Sequence[str] | None = None) -> None:
        if window < 1:
            raise ValueError(f"RecordingWindows: window={window} must be positive")
        if not codes:
            raise ValueError("RecordingWindows: no recordings (all files missing or skipped?)")
        self.codes = list(codes)
        self.window = window
        self.silence = silence
        self.random_offset = random_offset
        self.names = list(names) if names is not None else [str(i) for i in range(len(self.codes))]
        self.index = [(r, k) for r, rec in enumerate(self.codes) for k in range(max(1, rec.numel() // window))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        recording, k = self.index[item]
        codes = self.codes[recording]
        start = k * self.window
        slack = codes.numel() - max(1, codes.numel() // self.window) * self.window
        if self.random_offset and slack > 0:
            start += int(torch.randint(0, slack + 1, ()))
        return autoregressive_pair(codes, start, self.window, self.silence)

    @property
    def total_samples(self) -> int:
        return sum(rec.numel() for rec in self.codes)
