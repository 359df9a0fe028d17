"""`AudioDataModule`: quantized raw audio from the bundled spoken digits, an SC09-style clip folder, or a folder of
long recordings (YouTubeMix-style).

Sources:
- "bundled": a clip bundle `.npz` (default: the spoken digits shipped in `mambaseq/assets/data/audio/`).
- "clips": `root/<word>/<file>` audio files plus `validation_list.txt` / `testing_list.txt` (Speech Commands
  layout; SC09 = `classes: [zero, ..., nine]`), each clip padded/trimmed to `clip_seconds`.
- "recordings": every audio file under `root`, dealt to splits by file (88/6/6 by default), cut into windows of
  `window_samples` (up to ~2**20).
Files are decoded once per split on first use; bad files raise an error naming them, or are skipped and counted
(`on_bad_file: skip`, counts in `skipped`).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import torch
from torch.utils.data import Dataset

from mambaseq.tasks.audio.audio_io import AudioChecks, find_audio_files
from mambaseq.tasks.audio.bundled import BUNDLED_DIGITS_PATH, load_clip_bundle
from mambaseq.tasks.audio.datasets import (
    BadFilePolicy, ClipDataset, RecordingWindows, decode_files, quantize_clip, quantize_recording,
)
from mambaseq.tasks.audio.metrics import code_histogram, unigram_cross_entropy_bits, unigram_entropy_bits
from mambaseq.tasks.audio.quantize import QuantizationKind, Quantizer
from mambaseq.tasks.audio.splits import (
    SPLITS, TESTING_LIST, VALIDATION_LIST, read_split_list, speech_commands_split, split_by_file,
)
from mambaseq.tasks.data import ResumableDataLoader

AudioSource = Literal["bundled", "clips", "recordings"]
MAX_WINDOW_SAMPLES = 2**21


class AudioDataModule(pl.LightningDataModule):
    """Batches `{"input_ids", "labels"}: (batch, length) int64` of quantized samples (see `datasets.py`)."""

    def __init__(
        self,
        source: AudioSource = "bundled",
        root: str | None = None,
        sample_rate: int = 16000,
        quantization: QuantizationKind = "mu-law",
        bits: int = 8,
        clip_seconds: float = 1.0,
        classes: list[str] | None = None,
        window_samples: int = 16000,
        split_fractions: tuple[float, float, float] = (0.88, 0.06, 0.06),
        split_seed: int = 0,
        train_crop: int | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        on_bad_file: BadFilePolicy = "raise",
        max_channels: int = 2,
        min_sample_rate: int = 8000,
        silence_peak: float = 1e-4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if source not in ("bundled", "clips", "recordings"):
            raise ValueError(f"AudioDataModule.source={source!r} is unknown: expected bundled, clips or recordings")
        if source != "bundled" and root is None:
            raise ValueError(f"AudioDataModule.root is required for source={source!r} (a folder of audio files)")
        if not 0 < window_samples <= MAX_WINDOW_SAMPLES:
            raise ValueError(f"AudioDataModule.window_samples={window_samples} is invalid: expected 1 to "
                             f"{MAX_WINDOW_SAMPLES}")
        self.source = source
        self.root = Path(root) if root is not None else BUNDLED_DIGITS_PATH
        self.sample_rate = sample_rate
        self.quantizer = Quantizer(quantization, bits)
        self.clip_samples = round(clip_seconds * sample_rate)
        self.classes = classes
        self.window_samples = window_samples
        self.split_fractions = tuple(split_fractions)
        self.split_seed = split_seed
        self.train_crop = train_crop
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.on_bad_file = on_bad_file
        self.checks = AudioChecks(max_channels=max_channels, min_sample_rate=min_sample_rate,
                                  silence_peak=silence_peak)
        self.skipped: Counter[str] = Counter()
        self._unigram_bits: dict[str, float] | None = None
        self._datasets: dict[str, ClipDataset | RecordingWindows] = {}

    # ------------------------------------------------------------------------------------------------- datasets
    def dataset(self, split: str) -> ClipDataset | RecordingWindows:
        """The dataset of `split` ("train" | "validation" | "test"), decoded on first use."""
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is unknown: expected one of {SPLITS}")
        if split not in self._datasets:
            build = {"bundled": self._bundled, "clips": self._clips, "recordings": self._recordings}[self.source]
            self._datasets[split] = build(split)
        return self._datasets[split]

    def _crop(self, split: str) -> int | None:
        return self.train_crop if split == "train" else None

    def _bundled(self, split: str) -> ClipDataset:
        bundle = load_clip_bundle(self.root)
        if bundle.sample_rate != self.sample_rate or bundle.quantizer != self.quantizer:
            raise ValueError(f"clip bundle {self.root} holds {bundle.quantizer.kind} {bundle.quantizer.bits}-bit codes "
                             f"at {bundle.sample_rate} Hz, but the data module asks for {self.quantizer.kind} "
                             f"{self.quantizer.bits}-bit at {self.sample_rate} Hz")
        names = speech_commands_split(bundle.names, bundle.validation_list, bundle.testing_list, split)
        row = {name: index for index, name in enumerate(bundle.names)}
        codes = torch.from_numpy(bundle.codes[[row[name] for name in names]])
        return ClipDataset(codes, self.quantizer.silence, self._crop(split), names)

    def _clips(self, split: str) -> ClipDataset:
        # word folders only: files at the top level and Speech Commands' `_background_noise_` are not clips
        files = [path for path in find_audio_files(self.root)
                 if path.parent != self.root and not path.relative_to(self.root).parts[0].startswith("_")]
        if self.classes is not None:
            files = [path for path in files if path.relative_to(self.root).parts[0] in set(self.classes)]
        names = [path.relative_to(self.root).as_posix() for path in files]
        validation = read_split_list(self.root / VALIDATION_LIST)
        testing = read_split_list(self.root / TESTING_LIST)
        chosen = speech_commands_split(names, validation, testing, split)
        kept, clips, skipped = decode_files([self.root / name for name in chosen], self.sample_rate, self.checks,
                                            self.on_bad_file, f"decode {split} clips",
                                            lambda waveform: quantize_clip(waveform, self.clip_samples, self.quantizer))
        self.skipped.update(skipped)
        return ClipDataset.from_clip_codes(clips, self.quantizer.silence, self._crop(split),
                                           [path.relative_to(self.root).as_posix() for path in kept])

    def _recordings(self, split: str) -> RecordingWindows:
        files = find_audio_files(self.root)
        names = [path.relative_to(self.root).as_posix() for path in files]
        chosen = split_by_file(names, split, self.split_fractions, self.split_seed)
        if not chosen:
            raise ValueError(f"{self.root}: no recordings fall in the {split} split ({len(names)} files, fractions "
                             f"{list(self.split_fractions)}); add files or change split_fractions")
        kept, recordings, skipped = decode_files([self.root / name for name in chosen], self.sample_rate, self.checks,
                                                 self.on_bad_file, f"decode {split} recordings",
                                                 lambda waveform: quantize_recording(waveform, self.quantizer))
        if not recordings:
            raise ValueError(f"{self.root}: every recording of the {split} split was skipped as bad")
        self.skipped.update(skipped)
        return RecordingWindows(recordings, self.window_samples, self.quantizer.silence,
                                random_offset=split == "train",
                                names=[path.relative_to(self.root).as_posix() for path in kept])

    # ---------------------------------------------------------------------------------------------- baselines
    def unigram_baseline_bits(self) -> dict[str, float]:
        """Bits per sample of the unigram baselines: entropy of the train histogram, and the cross-entropy of the
        validation codes under it (add-one smoothed) — a context-free model's best held-out score."""
        if self._unigram_bits is None:
            train = code_histogram(_all_codes(self.dataset("train")), self.quantizer.num_classes)
            validation = code_histogram(_all_codes(self.dataset("validation")), self.quantizer.num_classes)
            self._unigram_bits = {"train_entropy": unigram_entropy_bits(train),
                                  "validation_cross_entropy": unigram_cross_entropy_bits(train, validation)}
        return self._unigram_bits

    # ---------------------------------------------------------------------------------------------- loaders
    def train_dataloader(self) -> ResumableDataLoader:
        return self._loader("train", self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> ResumableDataLoader:
        return self._loader("validation", self.eval_batch_size, shuffle=False, drop_last=False)

    def test_dataloader(self) -> ResumableDataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False, drop_last=False)

    def _loader(self, split: str, batch_size: int, *, shuffle: bool, drop_last: bool) -> ResumableDataLoader:
        rank, world_size = 0, 1
        if self.trainer is not None:
            rank, world_size = self.trainer.global_rank, self.trainer.world_size
        return ResumableDataLoader(self.dataset(split), batch_size, shuffle=shuffle, seed=self.seed, rank=rank,
                                   world_size=world_size, drop_last=drop_last, num_workers=self.num_workers,
                                   persistent_workers=self.num_workers > 0)


def _all_codes(dataset: Dataset) -> torch.Tensor:
    if isinstance(dataset, ClipDataset):
        return dataset.codes
    return torch.cat([codes.reshape(-1) for codes in dataset.codes])
