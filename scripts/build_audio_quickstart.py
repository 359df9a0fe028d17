"""Build the bundled SC09-like spoken-digit set `mambaseq/assets/data/audio/spoken_digits.npz`.

Every digit "zero".."nine" is synthesized by espeak-ng in several voices (language x voice variant x speed x
pitch), converted by sox to 16 kHz mono with silence trimmed and a random leading pause, cut or padded to 1 s,
and stored as 8-bit mu-law codes. Voices, not clips, are dealt to the splits (as Speech Commands deals speakers),
and the split lists follow Speech Commands' `validation_list.txt` / `testing_list.txt` convention.

Needs the Debian packages espeak-ng and sox (`apt-get install espeak-ng sox`). Deterministic for a given seed and
espeak-ng version. Usage: python scripts/build_audio_quickstart.py [--voices 30] [--out PATH]
"""
from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

from mambaseq.tasks.audio.audio_io import load_audio
from mambaseq.tasks.audio.bundled import BUNDLED_DIGITS_PATH, save_clip_bundle
from mambaseq.tasks.audio.metrics import code_histogram, unigram_entropy_bits
from mambaseq.tasks.audio.quantize import Quantizer

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LANGUAGES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
             "en-gb-x-gbcwmd")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
            "klatt4", "croak", "grandma", "grandpa", "edward", "linda", "quincy", "steph", "max")
SAMPLE_RATE = 16000
CLIP_SAMPLES = SAMPLE_RATE


def choose_voices(count: int, seed: int) -> list[tuple[str, str, int, int]]:
    """`count` distinct (language, variant, words per minute, pitch 0-99) voices."""
    rng = random.Random(seed)
    voices: set[tuple[str, str, int, int]] = set()
    while len(voices) < count:
        voices.add((rng.choice(LANGUAGES), rng.choice(VARIANTS), rng.randrange(120, 200, 10), rng.randrange(25, 80, 5)))
    return sorted(voices)


def voice_id(voice: tuple[str, str, int, int]) -> str:
    language, variant, speed, pitch = voice
    return f"{language}+{variant}-s{speed}-p{pitch}"


def synthesize(word: str, voice: tuple[str, str, int, int], lead_seconds: float, gain_db: float,
               work: Path) -> torch.Tensor:
    """One 1 s clip of `word`: (16000,) float32."""
    language, variant, speed, pitch = voice
    raw, clean = work / "raw.wav", work / "clean.wav"
    subprocess.run(["espeak-ng", "-v", f"{language}+{variant}", "-s", str(speed), "-p", str(pitch), "-w", str(raw),
                    word], check=True, capture_output=True)
    # resample, trim leading/trailing silence, normalize, then a leading pause and 1 s length; -D: no random dither
    subprocess.run(["sox", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", str(clean),
                    "silence", "1", "0.01", "0.5%", "reverse", "silence", "1", "0.01", "0.5%", "reverse",
                    "gain", "-n", f"{gain_db:.1f}", "pad", f"{lead_seconds:.3f}", "1",
                    "trim", "0", "1"], check=True, capture_output=True)
    waveform = load_audio(clean, SAMPLE_RATE)
    clip = torch.zeros(CLIP_SAMPLES)
    clip[: min(CLIP_SAMPLES, waveform.numel())] = waveform[:CLIP_SAMPLES]
    return clip


def deal_voices(voices: list[str], held_out: int, seed: int) -> tuple[set[str], set[str]]:
    """Validation and test voices (`held_out` each), the rest train."""
    shuffled = list(voices)
    random.Random(seed + 1).shuffle(shuffled)
    return set(shuffled[:held_out]), set(shuffled[held_out: 2 * held_out])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices", type=int, default=30, help="number of distinct voices (clips = 10 x voices)")
    parser.add_argument("--held-out-voices", type=int, default=3, help="voices in each of validation and test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=BUNDLED_DIGITS_PATH)
    args = parser.parse_args(argv)
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: run `apt-get install espeak-ng sox`")

    rng = random.Random(args.seed)
    voices = choose_voices(args.voices, args.seed)
    names, clips = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for voice in tqdm(voices, desc="voices"):
            for word in DIGITS:
                clip = synthesize(word, voice, lead_seconds=rng.uniform(0.0, 0.25), gain_db=-rng.uniform(1, 8),
                                  work=Path(tmp))
                names.append(f"{word}/{voice_id(voice)}_nohash_0.wav")
                clips.append(clip)
    validation_voices, test_voices = deal_voices([voice_id(v) for v in voices], args.held_out_voices, args.seed)
    speaker = [name.split("/")[1].split("_nohash_")[0] for name in names]
    validation = [n for n, s in zip(names, speaker) if s in validation_voices]
    testing = [n for n, s in zip(names, speaker) if s in test_voices]
    quantizer = Quantizer("mu-law", 8)
    codes = quantizer.encode(torch.stack(clips)).to(torch.uint8).numpy()
    save_clip_bundle(args.out, codes, names, validation, testing, SAMPLE_RATE, quantizer)
    size_kib = args.out.stat().st_size / 1024
    print(f"wrote {args.out}: {len(names)} clips ({len(names) - len(validation) - len(testing)} train, "
          f"{len(validation)} validation, {len(testing)} test), {size_kib:.0f} KiB; "
          f"unigram entropy of the codes {unigram_entropy_bits(code_histogram(torch.from_numpy(codes), 256)):.3f} bits")


if __name__ == "__main__":
    main()
