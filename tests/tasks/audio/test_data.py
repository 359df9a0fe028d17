"""Splits (Speech Commands lists, by-file 88/6/6), autoregressive items, clip and recording data modules, and the
bundled spoken-digit set."""
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from mambaseq.tasks.audio.audio_io import AudioFileError
from mambaseq.tasks.audio.bundled import load_clip_bundle
from mambaseq.tasks.audio.datamodule import AudioDataModule
from mambaseq.tasks.audio.datasets import (
    IGNORE_INDEX, ClipDataset, RecordingWindows, autoregressive_pair, quantize_clip,
)
from mambaseq.tasks.audio.quantize import Quantizer
from mambaseq.tasks.audio.splits import speech_commands_split, split_by_file

SILENCE = 128


def test_split_by_file_is_deterministic_disjoint_and_88_6_6() -> None:
    names = [f"rec_{i:03d}.wav" for i in range(100)]
    splits = {s: split_by_file(names, s, seed=3) for s in ("train", "validation", "test")}
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [88, 6, 6]
    assert sorted(sum(splits.values(), [])) == names
    shuffled = random.Random(0).sample(names, len(names))
    assert all(split_by_file(shuffled, s, seed=3) == splits[s] for s in splits)  # listing order is irrelevant
    assert split_by_file(names, "validation", seed=4) != splits["validation"]


def test_split_by_file_gives_small_corpora_held_out_files() -> None:
    names = [f"track{i}.opus" for i in range(5)]
    assert [len(split_by_file(names, s)) for s in ("train", "validation", "test")] == [3, 1, 1]
    with pytest.raises(ValueError, match="split fractions"):
        split_by_file(names, "train", fractions=(0.5, 0.6, 0.1))
    with pytest.raises(ValueError, match="split='dev'"):
        split_by_file(names, "dev")


def test_speech_commands_split_lists() -> None:
    names = ["one/a_nohash_0.wav", "one/b_nohash_0.wav", "two/a_nohash_0.wav", "two/c_nohash_0.wav"]
    validation, testing = {"one/b_nohash_0.wav"}, {"two/c_nohash_0.wav"}
    assert speech_commands_split(names, validation, testing, "train") == ["one/a_nohash_0.wav", "two/a_nohash_0.wav"]
    assert speech_commands_split(names, validation, testing, "validation") == ["one/b_nohash_0.wav"]
    assert speech_commands_split(names, validation, testing, "test") == ["two/c_nohash_0.wav"]
    with pytest.raises(ValueError, match="in both"):
        speech_commands_split(names, validation, validation, "train")


def test_autoregressive_pair_shifts_by_one_and_pads() -> None:
    codes = torch.arange(10, 20, dtype=torch.uint8)
    first = autoregressive_pair(codes, 0, 4, SILENCE)
    assert first["input_ids"].tolist() == [SILENCE, 10, 11, 12] and first["labels"].tolist() == [10, 11, 12, 13]
    middle = autoregressive_pair(codes, 5, 3, SILENCE)
    assert middle["input_ids"].tolist() == [14, 15, 16] and middle["labels"].tolist() == [15, 16, 17]
    tail = autoregressive_pair(codes, 8, 4, SILENCE)
    assert tail["input_ids"].tolist() == [17, 18, SILENCE, SILENCE]
    assert tail["labels"].tolist() == [18, 19, IGNORE_INDEX, IGNORE_INDEX]


def test_clip_dataset_pads_trims_and_crops() -> None:
    waves = [torch.full((50,), 0.5), torch.full((200,), -0.5)]
    quantizer = Quantizer("mu-law", 8)
    dataset = ClipDataset.from_clip_codes([quantize_clip(w, 100, quantizer) for w in waves], quantizer.silence)
    assert dataset.codes.shape == (2, 100) and dataset.codes.dtype == torch.uint8
    assert dataset.codes[0, 60] == SILENCE and dataset.codes[1, 99] != SILENCE  # padded at the end / trimmed
    assert dataset[1]["labels"].shape == (100,)
    cropped = ClipDataset(dataset.codes, SILENCE, crop=16)
    item = cropped[0]
    assert item["input_ids"].shape == (16,) and torch.equal(item["input_ids"][1:], item["labels"][:-1])


def test_recording_windows_cover_recordings() -> None:
    recordings = [torch.arange(250) % 256, torch.arange(30)]
    dataset = RecordingWindows(recordings, window=100, silence=SILENCE)
    assert len(dataset) == 3  # 2 windows of the long recording, 1 padded window of the short one
    assert dataset[1]["labels"][0] == 100 and dataset[1]["input_ids"][0] == 99
    assert (dataset[2]["labels"] == IGNORE_INDEX).sum() == 70
    shifted = RecordingWindows(recordings, window=100, silence=SILENCE, random_offset=True)
    torch.manual_seed(0)
    starts = {int(shifted[0]["labels"][0]) for _ in range(30)}
    assert len(starts) > 1 and max(starts) <= 50


def _tone(rate: int, seconds: float, freq: float) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _speech_commands_folder(root: Path) -> None:
    noise = root / "_background_noise_" / "white_noise.wav"
    noise.parent.mkdir(parents=True)
    soundfile.write(str(noise), _tone(16000, 3.0, 1000), 16000)
    for word in ("zero", "one", "cat"):
        for speaker in ("aa", "bb", "cc"):
            path = root / word / f"{speaker}_nohash_0.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            seconds = 0.8 if speaker == "aa" else 1.2
            soundfile.write(str(path), _tone(22050, seconds, 200 + 50 * len(word)), 22050)
    (root / "validation_list.txt").write_text("zero/bb_nohash_0.wav\none/bb_nohash_0.wav\ncat/bb_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("zero/cc_nohash_0.wav\none/cc_nohash_0.wav\n")


def test_clip_folder_data_module(tmp_path: Path) -> None:
    _speech_commands_folder(tmp_path)
    data = AudioDataModule(source="clips", root=str(tmp_path), classes=["zero", "one"], batch_size=2)
    train = data.dataset("train")
    assert train.names == ["one/aa_nohash_0.wav", "zero/aa_nohash_0.wav"]
    assert train.codes.shape == (2, 16000)
    assert data.dataset("validation").names == ["one/bb_nohash_0.wav", "zero/bb_nohash_0.wav"]
    batch = next(iter(data.train_dataloader()))
    assert batch["input_ids"].shape == (2, 16000) and batch["input_ids"].dtype == torch.long
    baseline = data.unigram_baseline_bits()
    assert 0 < baseline["train_entropy"] <= 8 and baseline["validation_cross_entropy"] > 0


def test_clip_folder_bad_file_raises_or_is_skipped(tmp_path: Path) -> None:
    _speech_commands_folder(tmp_path)
    soundfile.write(str(tmp_path / "one" / "dd_nohash_0.wav"), np.zeros(16000, np.float32), 16000)
    with pytest.raises(AudioFileError, match="dd_nohash_0.wav: file is silent"):
        AudioDataModule(source="clips", root=str(tmp_path)).dataset("train")
    data = AudioDataModule(source="clips", root=str(tmp_path), on_bad_file="skip")
    assert len(data.dataset("train")) == 4 and data.skipped == {"silent": 1}  # {zero,one,cat}/aa, cat/cc


def test_missing_split_list_is_named(tmp_path: Path) -> None:
    _speech_commands_folder(tmp_path)
    (tmp_path / "testing_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match="testing_list.txt does not exist"):
        AudioDataModule(source="clips", root=str(tmp_path)).dataset("train")


def test_recordings_data_module_windows(tmp_path: Path) -> None:
    for index in range(6):
        soundfile.write(str(tmp_path / f"piece{index}.flac"), _tone(48000, 0.5 + 0.1 * index, 300), 48000)
    data = AudioDataModule(source="recordings", root=str(tmp_path), window_samples=4000, batch_size=2)
    sizes = {s: len(data.dataset(s).codes) for s in ("train", "validation", "test")}
    assert sizes == {"train": 4, "validation": 1, "test": 1}
    windows = data.dataset("train")
    assert len(windows) == sum(rec.numel() // 4000 for rec in windows.codes)
    assert next(iter(data.train_dataloader()))["labels"].shape == (2, 4000)
    with pytest.raises(ValueError, match="window_samples=0"):
        AudioDataModule(source="recordings", root=str(tmp_path), window_samples=0)


def test_bundled_spoken_digits() -> None:
    bundle = load_clip_bundle()
    assert bundle.codes.shape == (300, 16000) and bundle.codes.dtype == np.uint8
    assert bundle.sample_rate == 16000 and bundle.quantizer.kind == "mu-law" and bundle.quantizer.bits == 8
    words = {name.split("/")[0] for name in bundle.names}
    assert words == {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
    speakers = {split: {n.split("/")[1] for n in names}
                for split, names in (("validation", bundle.validation_list), ("test", bundle.testing_list))}
    assert not speakers["validation"] & speakers["test"]
    data = AudioDataModule(train_crop=2048)
    assert [len(data.dataset(s)) for s in ("train", "validation", "test")] == [240, 30, 30]
    assert data.dataset("train")[0]["input_ids"].shape == (2048,)
    baseline = data.unigram_baseline_bits()
    assert 3.0 < baseline["validation_cross_entropy"] < 6.0
