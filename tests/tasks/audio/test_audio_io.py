"""Audio decoding: resampling, mono mixdown, and bad files rejected with errors that name them (or skipped and
counted)."""
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from mambaseq.tasks.audio.audio_io import AudioChecks, AudioFileError, load_audio, read_audio, resample, save_audio
from mambaseq.tasks.audio.datasets import decode_files


def _sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amplitude * np.sin(2 * math.pi * freq * t)).astype(np.float32)


def _peak_hz(waveform: torch.Tensor, rate: int) -> float:
    spectrum = torch.fft.rfft(waveform.double()).abs()
    return float(spectrum.argmax()) * rate / waveform.numel()


@pytest.mark.parametrize(("suffix", "subtype"), [(".wav", None), (".flac", None), (".ogg", None), (".opus", "OPUS")])
def test_resample_48k_to_16k_keeps_pitch_and_duration(tmp_path: Path, suffix: str, subtype: str | None) -> None:
    path = tmp_path / f"tone{suffix}"
    soundfile.write(str(path), _sine(440.0, 48000, 1.0), 48000, format="OGG" if subtype else None, subtype=subtype)
    waveform = load_audio(path, 16000)
    assert waveform.dtype == torch.float32 and waveform.ndim == 1
    assert abs(waveform.numel() - 16000) <= 1
    assert abs(_peak_hz(waveform, 16000) - 440.0) <= 2.0
    assert 0.4 < float(waveform.abs().max()) < 0.6


def test_resample_removes_content_above_new_nyquist() -> None:
    tone = torch.from_numpy(_sine(12000.0, 48000, 0.5))
    interior = resample(tone, 48000, 16000)[50:-50]  # away from the edge transients
    assert float(interior.abs().max()) < 0.02  # 12 kHz is above the new 8 kHz Nyquist


def test_stereo_is_mixed_to_mono(tmp_path: Path) -> None:
    left, right = _sine(300.0, 16000, 0.5), _sine(500.0, 16000, 0.5, amplitude=0.25)
    path = tmp_path / "stereo.wav"
    soundfile.write(str(path), np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    waveform = load_audio(path, 16000)
    assert torch.allclose(waveform, torch.from_numpy((left + right) / 2), atol=1e-6)


def test_save_audio_round_trip(tmp_path: Path) -> None:
    tone = torch.from_numpy(_sine(1000.0, 16000, 0.25))
    path = save_audio(tmp_path / "out" / "tone.wav", tone, 16000)
    data, rate = read_audio(path)
    assert rate == 16000 and data.shape == (4000, 1)
    assert np.abs(data[:, 0] - tone.numpy()).max() < 1e-4  # 16-bit PCM


def test_corrupt_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    with pytest.raises(AudioFileError, match="broken.wav: cannot decode audio") as caught:
        load_audio(path)
    assert caught.value.path == path and caught.value.reason == "decode"


@pytest.mark.parametrize(
    ("name", "data", "rate", "reason", "message"),
    [
        ("silent.wav", np.zeros((8000, 1), np.float32), 16000, "silent", "is silent"),
        ("surround.wav", np.full((8000, 6), 0.1, np.float32), 16000, "channels", "has 6 channels: expected 1 to 2"),
        ("phone.wav", np.full((4000, 1), 0.1, np.float32), 4000, "sample_rate", "4000 Hz is unsupported"),
        ("empty.wav", np.zeros((0, 1), np.float32), 16000, "empty", "no audio frames"),
    ],
)
def test_bad_content_is_rejected_by_name(tmp_path: Path, name: str, data: np.ndarray, rate: int, reason: str,
                                         message: str) -> None:
    path = tmp_path / name
    soundfile.write(str(path), data, rate, subtype="FLOAT")
    with pytest.raises(AudioFileError, match=message) as caught:
        load_audio(path, 16000)
    assert name in str(caught.value) and caught.value.reason == reason


def test_unsupported_format_and_missing_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not audio")
    with pytest.raises(AudioFileError, match=r"notes.txt: unsupported audio format '.txt'"):
        load_audio(text)
    with pytest.raises(AudioFileError, match="gone.wav: file does not exist"):
        load_audio(tmp_path / "gone.wav")


def test_checks_are_configurable(tmp_path: Path) -> None:
    path = tmp_path / "quiet.wav"
    soundfile.write(str(path), np.zeros((1000, 1), np.float32), 16000)
    assert load_audio(path, 16000, AudioChecks(silence_peak=0.0)).abs().max() == 0


def test_decode_files_skips_and_counts_or_raises(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    soundfile.write(str(good), _sine(200.0, 16000, 0.1), 16000)
    silent = tmp_path / "silent.wav"
    soundfile.write(str(silent), np.zeros(1600, np.float32), 16000)
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"fLaC" + b"\x00" * 50)
    paths = [good, silent, broken]
    kept, waveforms, skipped = decode_files(paths, 16000, AudioChecks(), "skip", "test")
    assert kept == [good] and len(waveforms) == 1
    assert skipped == {"silent": 1, "decode": 1}
    with pytest.raises(AudioFileError, match="silent.wav"):
        decode_files(paths, 16000, AudioChecks(), "raise", "test")
    with pytest.raises(ValueError, match="on_bad_file='ignore'"):
        decode_files(paths, 16000, AudioChecks(), "ignore", "test")
