"""Build a YouTubeMix-like corpus of long music recordings: 16 kHz mono 16-bit FLAC files in one folder, ready for
`AudioDataModule(source="recordings")` (configs/audio/youtubemix.yaml), which deals them 88/6/6 to the splits by file.

Default source: the Debian package warzone2100-music (about 4 hours of CC-BY-SA / GPL game music in 30 Opus tracks
at 48 kHz stereo; YouTubeMix is about 4 hours of piano), fetched with `apt-get download` and unpacked with
`dpkg-deb -x` (no installation). `--from-dir` converts any folder of audio files instead.
`--chunk-seconds 60` cuts tracks into 1-minute files like YouTubeMix's release (then one track's minutes can fall
in different splits); the default keeps whole tracks, so no music is shared between splits.

    python scripts/prepare_audio.py --out data/cache/audio/warzone_mix
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tqdm import tqdm

from mambaseq.tasks.audio.audio_io import AudioChecks, AudioFileError, find_audio_files, load_audio, save_audio

DEBIAN_PACKAGE = "warzone2100-music"


def fetch_debian_package(package: str, work: Path) -> Path:
    """Download `package`'s .deb into `work` and unpack it; returns the unpacked tree."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not available: use --from-dir with a folder of audio files instead")
    result = subprocess.run(["apt-get", "download", package], cwd=work, capture_output=True, text=True)
    debs = sorted(work.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not debs:
        raise SystemExit(f"apt-get download {package} failed (run `apt-get update` first?): {result.stderr.strip()}")
    tree = work / "tree"
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tree)], check=True)
    return tree


def convert(files: list[Path], source_root: Path, out: Path, sample_rate: int, chunk_seconds: float,
            on_bad_file: str) -> tuple[int, float, list[str]]:
    """Write every file (or its chunks) as mono FLAC at `sample_rate` under `out`, names flattened from the
    relative path. Returns (files written, seconds written, skipped files)."""
    written, seconds, skipped = 0, 0.0, []
    chunk = round(chunk_seconds * sample_rate) if chunk_seconds > 0 else None
    for path in tqdm(files, desc="convert", unit="file"):
        try:
            waveform = load_audio(path, sample_rate, AudioChecks())
        except AudioFileError as error:
            if on_bad_file == "raise":
                raise
            tqdm.write(f"skipping {error}")
            skipped.append(str(path))
            continue
        stem = "__".join(path.relative_to(source_root).with_suffix("").parts)
        pieces = [waveform] if chunk is None else list(waveform.split(chunk))
        for index, piece in enumerate(pieces):
            if chunk is not None and piece.numel() < sample_rate:
                continue  # drop a trailing scrap shorter than 1 s
            name = stem if chunk is None else f"{stem}__{index:03d}"
            save_audio(out / f"{name}.flac", piece, sample_rate)
            written += 1
            seconds += piece.numel() / sample_rate
    return written, seconds, skipped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/cache/audio/warzone_mix"))
    parser.add_argument("--from-dir", type=Path, default=None, help="convert this folder instead of the package")
    parser.add_argument("--package", default=DEBIAN_PACKAGE, help="Debian package holding the music")
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--chunk-seconds", type=float, default=0.0, help="cut into files of this length (0 = off)")
    parser.add_argument("--on-bad-file", choices=("raise", "skip"), default="skip")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = args.from_dir if args.from_dir is not None else fetch_debian_package(args.package, Path(tmp))
        files = find_audio_files(source)
        if not files:
            raise SystemExit(f"no audio files found under {source}")
        common_root = Path(os.path.commonpath([path.parent for path in files]))
        written, seconds, skipped = convert(files, common_root, args.out, args.sample_rate, args.chunk_seconds,
                                            args.on_bad_file)
    print(f"wrote {written} files, {seconds / 3600:.2f} h of {args.sample_rate} Hz mono audio to {args.out}"
          + (f"; skipped {len(skipped)} bad file(s)" if skipped else ""))


if __name__ == "__main__":
    main()
