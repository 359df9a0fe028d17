"""End to end on the CPU: a few optimizer steps of the quickstart config (tiny model), then `mambaseq generate-audio`
from its checkpoint writes valid WAV files and a spectrogram PNG."""
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import soundfile
import torch

from mambaseq.cli import main as mambaseq_main

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "audio" / "quickstart.yaml"
TINY = {
    "mamba": {"d_model": 8, "n_layer": 1, "mixer": {"d_state": 4}},
    "unet": {"d_model": 8, "pool": [2, 2], "n_layer": 1, "mixer": {"d_state": 4}},
}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`fitted(architecture)`: the run folder of a 3-step fit, made once per architecture."""
    runs: dict[str, Path] = {}

    def run_for(architecture: str) -> Path:
        if architecture not in runs:
            runs[architecture] = tmp_path_factory.mktemp(f"fit_{architecture}")
            _fit(runs[architecture], architecture)
        return runs[architecture]

    return run_for


def _fit(tmp_path: Path, architecture: str) -> Path:
    mambaseq_main([
        "fit", "--config", str(CONFIG),
        "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.logger.init_args.save_dir", str(tmp_path / "run"),
        "--trainer.max_steps", "3", "--trainer.val_check_interval", "3", "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false",
        "--model.init_args.architecture", architecture,
        "--model.init_args.network", json.dumps(TINY[architecture]),
        "--data.init_args.train_crop", "128", "--data.init_args.batch_size", "2",
        "--data.init_args.eval_batch_size", "1",
    ])
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    return checkpoint


@pytest.mark.parametrize("architecture", ["mamba", "unet"])
def test_fit_then_generate_audio(fitted: Callable[[str], Path], architecture: str, tmp_path: Path) -> None:
    run = fitted(architecture)
    checkpoint = run / "run" / "checkpoints" / "last.ckpt"
    metrics = next((run / "run").rglob("metrics.csv")).read_text()
    assert "val/bits_per_byte" in metrics and "val/unigram_bits_per_byte" in metrics

    out = tmp_path / "generated"
    mambaseq_main(["generate-audio", "--ckpt", str(checkpoint), "--seconds", "0.01", "--num-samples", "2",
                   "--temperature", "1.0", "--top-p", "0.9", "--out-dir", str(out), "--no-progress"])
    wavs = sorted(out.glob("*.wav"))
    assert [w.name for w in wavs] == ["sample_00.wav", "sample_01.wav"]
    for wav in wavs:
        info = soundfile.info(str(wav))
        assert info.samplerate == 16000 and info.channels == 1 and info.frames == 160
    png = out / "spectrogram.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_generate_audio_continues_a_prefix(fitted: Callable[[str], Path], tmp_path: Path) -> None:
    checkpoint = fitted("mamba") / "run" / "checkpoints" / "last.ckpt"
    prefix = tmp_path / "prefix.wav"
    soundfile.write(str(prefix), 0.3 * torch.sin(torch.arange(800) * 0.2).numpy(), 16000)
    out = tmp_path / "continued"
    mambaseq_main(["generate-audio", "--ckpt", str(checkpoint), "--seconds", "0.005", "--num-samples", "1",
                   "--prefix", str(prefix), "--temperature", "0", "--out-dir", str(out), "--no-progress"])
    audio, rate = soundfile.read(str(out / "sample_00.wav"))
    assert rate == 16000 and audio.shape == (800 + 80,)
    # the prefix is kept, up to 8-bit mu-law and 16-bit PCM rounding
    assert abs(audio[:800] - 0.3 * torch.sin(torch.arange(800) * 0.2).numpy()).max() < 0.02
    assert (out / "spectrogram.png").is_file()


def test_generate_audio_rejects_a_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.ckpt does not exist"):
        mambaseq_main(["generate-audio", "--ckpt", str(tmp_path / "nothing.ckpt"), "--out-dir", str(tmp_path)])
