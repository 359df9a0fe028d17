"""`mambaseq generate-audio`: sample raw audio from a trained `AudioTask` checkpoint into WAV files, plus a PNG of
spectrograms of the generated audio next to real audio.

    mambaseq generate-audio --ckpt runs/audio_quickstart/checkpoints/last.ckpt --seconds 1 --num-samples 4 \
        --temperature 1.0 --top-p 0.95 --out-dir generated/ [--prefix start.wav]

Without `--prefix` generation starts from the silence code (as every training clip does); with it, the WAVs hold the
prefix followed by its continuation. The real audio of the PNG is `--reference` files, else the prefix, else the
first clips of the validation split that the checkpoint was trained with.
"""
from __future__ import annotations

import argparse
import inspect
import logging
from pathlib import Path
from typing import Any

import torch

from mambaseq.tasks.audio.audio_io import AudioFileError, load_audio, save_audio
from mambaseq.tasks.audio.datamodule import AudioDataModule
from mambaseq.tasks.audio.sampling import sample_codes
from mambaseq.tasks.audio.spectrogram import plot_spectrograms
from mambaseq.tasks.audio.task import AudioTask

log = logging.getLogger(__name__)
SPECTROGRAM_NAME = "spectrogram.png"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mambaseq generate-audio", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True, help="Lightning checkpoint of an AudioTask")
    parser.add_argument("--seconds", type=float, default=1.0, help="audio to generate per sample (after the prefix)")
    parser.add_argument("--num-samples", type=int, default=4, help="how many waveforms (one batch)")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 = greedy")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    parser.add_argument("--top-k", type=int, default=0, help="keep the k most likely codes (0 = off)")
    parser.add_argument("--prefix", type=Path, default=None, help="audio file to continue")
    parser.add_argument("--reference", type=Path, nargs="*", default=None, help="real audio files for the PNG")
    parser.add_argument("--out-dir", type=Path, default=Path("generated_audio"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads; one step's work is too small to split, so 1 is usually fastest")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.num_samples < 1:
        parser.error(f"--seconds ({args.seconds}) must be > 0 and --num-samples ({args.num_samples}) >= 1")
    return args


def load_checkpoint(path: Path, device: str) -> tuple[AudioTask, dict[str, Any] | None]:
    """The task (eval mode, on `device`) and the data module's hyper-parameters, when the checkpoint has them."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "hyper_parameters" not in checkpoint or "state_dict" not in checkpoint:
        raise ValueError(f"checkpoint {path} is not a Lightning AudioTask checkpoint (no hyper_parameters/state_dict)")
    task = AudioTask(**_known_arguments(AudioTask, checkpoint["hyper_parameters"]))
    task.load_state_dict(checkpoint["state_dict"])
    return task.to(device).eval(), checkpoint.get("datamodule_hyper_parameters")


def _known_arguments(cls: type, hparams: dict[str, Any]) -> dict[str, Any]:
    """The saved hyper-parameters that are arguments of `cls` (LightningCLI also stores `_class_path`, ...)."""
    known = inspect.signature(cls).parameters
    return {key: value for key, value in hparams.items() if key in known}


def reference_audio(args: argparse.Namespace, task: AudioTask, data_hparams: dict[str, Any] | None,
                    samples: int) -> list[torch.Tensor]:
    """Real waveforms to compare with: `--reference`, else the prefix, else validation clips of the training data."""
    if args.reference:
        return [load_audio(path, task.sample_rate) for path in args.reference]
    if args.prefix is not None:
        return [load_audio(args.prefix, task.sample_rate)]
    if data_hparams is None:
        log.warning("checkpoint has no data module settings: the spectrogram shows generated audio only")
        return []
    try:
        validation = AudioDataModule(**_known_arguments(AudioDataModule, data_hparams)).dataset("validation")
    except (FileNotFoundError, AudioFileError, ValueError) as error:
        log.warning("cannot load the training data's validation split for the spectrogram (%s)", error)
        return []
    count = min(args.num_samples, len(validation))
    return [task.quantizer.decode(validation[i]["labels"][:samples].clamp_min(0)) for i in range(count)]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    task, data_hparams = load_checkpoint(args.ckpt, args.device)
    quantizer, sample_rate = task.quantizer, task.sample_rate
    prompt = torch.tensor([quantizer.silence])
    if args.prefix is not None:
        prompt = torch.cat([prompt, quantizer.encode(load_audio(args.prefix, sample_rate))])
    prompt = prompt.to(args.device).repeat(args.num_samples, 1)
    new_samples = max(1, round(args.seconds * sample_rate))
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    codes = sample_codes(task.model, prompt, new_samples, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, generator=generator, progress=not args.no_progress)
    waveforms = quantizer.decode(torch.cat([prompt[:, 1:], codes], dim=1).cpu())
    for index, waveform in enumerate(waveforms):
        log.info("wrote %s", save_audio(args.out_dir / f"sample_{index:02d}.wav", waveform, sample_rate))
    real = reference_audio(args, task, data_hparams, waveforms.shape[1])
    png = plot_spectrograms({"generated": list(waveforms), "real": real}, sample_rate, args.out_dir / SPECTROGRAM_NAME)
    log.info("wrote %s", png)


if __name__ == "__main__":
    main()
