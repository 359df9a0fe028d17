"""Log-magnitude spectrograms of generated and real audio side by side, as a PNG (matplotlib, Agg backend)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after selecting the headless backend)
import torch  # noqa: E402

N_FFT = 512
HOP = 128


def log_spectrogram(waveform: torch.Tensor, n_fft: int = N_FFT, hop: int = HOP) -> torch.Tensor:
    """`waveform: (frames,)` -> dB magnitude `(n_fft // 2 + 1, n_windows)` (Hann window, floor at -100 dB)."""
    waveform = waveform.float()
    if waveform.numel() < n_fft:
        waveform = torch.nn.functional.pad(waveform, (0, n_fft - waveform.numel()))
    spectrum = torch.stft(waveform, n_fft, hop_length=hop, window=torch.hann_window(n_fft), return_complex=True)
    return 20 * torch.log10(spectrum.abs().clamp_min(1e-5))


def plot_spectrograms(rows: dict[str, Sequence[torch.Tensor]], sample_rate: int, path: Path | str,
                      max_columns: int = 4) -> Path:
    """One row per entry of `rows` (e.g. {"generated": [...], "real": [...]}), up to `max_columns` waveforms each;
    frequency axis in kHz, time in seconds. Returns the PNG path."""
    rows = {label: list(waves)[:max_columns] for label, waves in rows.items() if len(waves)}
    if not rows:
        raise ValueError("plot_spectrograms: nothing to plot (every row is empty)")
    columns = max(len(waves) for waves in rows.values())
    figure, axes = plt.subplots(len(rows), columns, figsize=(3.2 * columns, 2.6 * len(rows)), squeeze=False)
    for row_index, (label, waves) in enumerate(rows.items()):
        for column in range(columns):
            axis = axes[row_index][column]
            if column >= len(waves):
                axis.axis("off")
                continue
            decibels = log_spectrogram(waves[column])
            seconds = waves[column].numel() / sample_rate
            axis.imshow(decibels.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=-100, vmax=20,
                        extent=(0.0, seconds, 0.0, sample_rate / 2000))
            axis.set_title(f"{label} {column}", fontsize=9)
            axis.set_xlabel("s", fontsize=8)
            axis.set_ylabel("kHz", fontsize=8)
            axis.tick_params(labelsize=7)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
