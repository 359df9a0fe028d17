"""Reading audio files into mono float waveforms at a target rate, with checks that name the offending file.

Decoding goes through soundfile (libsndfile: wav, flac, ogg/vorbis, opus, mp3, ...); when soundfile cannot read a
file, torchaudio is tried (it needs torchcodec). Multi-channel audio is mixed to mono by averaging channels, and
the result is resampled with `torchaudio.functional.resample` (windowed sinc) to the target rate.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio
import torchaudio.functional

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif")


class AudioFileError(ValueError):
    """A file that cannot be used as training audio; `path` names it and `reason` says why (a short key)."""

    def __init__(self, path: Path | str, reason: str, detail: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {detail}")


@dataclass(frozen=True)
class AudioChecks:
    """What a file must satisfy. `max_channels`: more channels than this is an error (then mixed to mono);
    `min_sample_rate`: lower native rates are rejected (upsampling them would invent the missing band);
    `silence_peak`: a file whose peak |amplitude| is below this is rejected as silent (0 disables the check)."""

    max_channels: int = 2
    min_sample_rate: int = 8000
    silence_peak: float = 1e-4


def find_audio_files(root: Path | str, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Path]:
    """All audio files under `root` (recursively), sorted by path so every listing is reproducible."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"audio directory {root} does not exist (or is not a directory)")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in extensions)


def read_audio(path: Path | str) -> tuple[np.ndarray, int]:
    """Decode `path` as it is stored: `(frames, channels)` float32 in [-1, 1] and its sample rate."""
    path = Path(path)
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise AudioFileError(path, "format", f"unsupported audio format {path.suffix!r}: expected one of "
                                             f"{', '.join(AUDIO_EXTENSIONS)}")
    if not path.is_file():
        raise AudioFileError(path, "missing", "file does not exist")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return data, int(rate)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as soundfile_error:
        return _read_with_torchaudio(path, soundfile_error)


def _read_with_torchaudio(path: Path, soundfile_error: Exception) -> tuple[np.ndarray, int]:
    try:
        waveform, rate = torchaudio.load(str(path))  # (channels, frames)
    except Exception as torchaudio_error:  # any decoder failure means the file is unreadable here
        raise AudioFileError(path, "decode", f"cannot decode audio: soundfile said {soundfile_error!s}; "
                                             f"torchaudio fallback said {torchaudio_error!s}") from torchaudio_error
    return waveform.t().contiguous().numpy().astype(np.float32), int(rate)


def check_audio(path: Path | str, data: np.ndarray, rate: int, checks: AudioChecks) -> None:
    """Raise `AudioFileError` when the decoded `data: (frames, channels)` breaks `checks`."""
    frames, channels = data.shape
    if frames == 0:
        raise AudioFileError(path, "empty", "file holds no audio frames")
    if channels < 1 or channels > checks.max_channels:
        raise AudioFileError(path, "channels", f"has {channels} channels: expected 1 to {checks.max_channels}")
    if rate < checks.min_sample_rate:
        raise AudioFileError(path, "sample_rate", f"sample rate {rate} Hz is unsupported: expected at least "
                                                  f"{checks.min_sample_rate} Hz")
    if not np.isfinite(data).all():
        raise AudioFileError(path, "decode", "decoded samples contain NaN or infinity")
    peak = float(np.abs(data).max())
    if peak < checks.silence_peak:
        raise AudioFileError(path, "silent", f"file is silent (peak amplitude {peak:.2e} < {checks.silence_peak:.0e})")


def to_mono(data: np.ndarray) -> torch.Tensor:
    """Average the channels of `data: (frames, channels)` into a `(frames,)` float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)).mean(dim=1)


def resample(waveform: torch.Tensor, orig_rate: int, target_rate: int) -> torch.Tensor:
    """Resample `waveform: (..., frames)` from `orig_rate` to `target_rate` (identity when equal)."""
    if orig_rate == target_rate:
        return waveform
    return torchaudio.functional.resample(waveform, orig_rate, target_rate)


def load_audio(path: Path | str, sample_rate: int = 16000, checks: AudioChecks | None = None) -> torch.Tensor:
    """Decode, check, mix to mono and resample one file: `(frames at sample_rate,)` float32 in about [-1, 1]."""
    data, rate = read_audio(path)
    check_audio(path, data, rate, checks or AudioChecks())
    return resample(to_mono(data), rate, sample_rate).clamp_(-1.0, 1.0)


def save_audio(path: Path | str, waveform: torch.Tensor | np.ndarray, sample_rate: int) -> Path:
    """Write a mono `waveform: (frames,)` in [-1, 1] as 16-bit PCM, format from the suffix (.wav, .flac);
    creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = waveform.detach().cpu().float().numpy() if isinstance(waveform, torch.Tensor) else waveform
    soundfile.write(str(path), np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16")
    return path
