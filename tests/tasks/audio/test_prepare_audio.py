"""scripts/prepare_audio.py on a folder of files: 16 kHz mono FLAC out, optional chunking, bad files skipped."""
from pathlib import Path

import numpy as np
import soundfile

from script_loader import load_script


def test_prepare_from_dir_converts_chunks_and_skips(tmp_path: Path, capsys) -> None:
    source = tmp_path / "music" / "album"
    source.mkdir(parents=True)
    t = np.arange(48000 * 5) / 48000
    stereo = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], axis=1).astype(np.float32) * 0.3
    soundfile.write(str(source / "track1.ogg"), stereo, 48000, format="OGG", subtype="OPUS")
    soundfile.write(str(source / "track2.flac"), stereo[: 48000 * 2], 48000)
    (source / "broken.wav").write_bytes(b"RIFF0000WAVEfmt ")
    out = tmp_path / "corpus"
    load_script("prepare_audio").main(["--from-dir", str(tmp_path / "music"), "--out", str(out),
                                       "--chunk-seconds", "2"])
    files = sorted(p.name for p in out.glob("*.flac"))
    # 5 s -> 2 s + 2 s (+ 1 s kept: not shorter than 1 s); 2 s -> one chunk
    assert files == ["track1__000.flac", "track1__001.flac", "track1__002.flac", "track2__000.flac"]
    info = soundfile.info(str(out / "track1__000.flac"))
    assert info.samplerate == 16000 and info.channels == 1 and info.frames == 32000
    assert "skipped 1 bad file(s)" in capsys.readouterr().out
