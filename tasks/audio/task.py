"""`AudioTask`: autoregressive next-sample prediction over quantized waveforms, with a plain Mamba stack or the
SaShiMi-style Mamba U-Net, scored in bits per byte (nats / ln 2 per 8-bit sample).

The unigram baseline (the validation codes' cross-entropy under the train code histogram) is printed when fitting
starts and logged beside the validation NLL as `val/unigram_bits_per_byte` (and in nats as `val/unigram_entropy`,
the key `LossCurvePlot` draws): a model that uses context must go below it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from mambaseq.config import BackboneConfig, LMConfig
from mambaseq.lm import MambaLM
from mambaseq.tasks.audio.datasets import IGNORE_INDEX
from mambaseq.tasks.audio.metrics import NATS_PER_BIT, nats_to_bits
from mambaseq.tasks.audio.quantize import QuantizationKind, Quantizer
from mambaseq.tasks.base import SequenceTask, TaskOutput
from mambaseq.tasks.optim import OptimizerConfig
from mambaseq.unet import UNetConfig, UNetLM

Architecture = Literal["mamba", "unet"]
ARCHITECTURES = ("mamba", "unet")
DEFAULT_NETWORK: dict[str, Any] = {"d_model": 64, "n_layer": 4}


def build_audio_model(architecture: Architecture, network: dict[str, Any], num_classes: int) -> nn.Module:
    """"mamba": `MambaLM` over `num_classes` codes, `network` = `BackboneConfig` keys; "unet": `UNetLM`,
    `network` = `UNetConfig` keys (without vocab_size). Both: `forward(input_ids, cache=None)`, `step`,
    `allocate_cache`, `config.vocab_size`."""
    if architecture == "mamba":
        return MambaLM(LMConfig(backbone=BackboneConfig.from_dict(dict(network)), vocab_size=num_classes))
    if architecture == "unet":
        if "vocab_size" in network:
            raise ValueError("AudioTask.network.vocab_size must not be set: it is 2**bits of the quantization")
        return UNetLM(UNetConfig.from_dict({**network, "vocab_size": num_classes}))
    raise ValueError(f"AudioTask.architecture={architecture!r} is unknown: expected one of {ARCHITECTURES}")


class AudioTask(SequenceTask):
    """Next-sample cross-entropy. Batches: `{"input_ids", "labels"}: (b, L)` int64, labels `IGNORE_INDEX` where
    there is no sample. `sample_rate` / `quantization` / `bits` describe the codes (kept in the checkpoint for
    `mambaseq generate-audio`) and must match the data module's."""

    def __init__(
        self,
        architecture: Architecture = "mamba",
        network: dict[str, Any] | None = None,
        sample_rate: int = 16000,
        quantization: QuantizationKind = "mu-law",
        bits: int = 8,
        optimizer: OptimizerConfig = OptimizerConfig(),
    ) -> None:
        super().__init__(optimizer)
        network = dict(DEFAULT_NETWORK if network is None else network)
        self.quantizer = Quantizer(quantization, bits)
        self.sample_rate = sample_rate
        self.model = build_audio_model(architecture, network, self.quantizer.num_classes)
        self.unigram_bits: float | None = None
        self.save_hyperparameters({"architecture": architecture, "network": network, "sample_rate": sample_rate,
                                   "quantization": quantization, "bits": bits, **self.plain_hparams()})

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids: (b, L) -> logits (b, L, num_classes)."""
        return self.model(input_ids)[..., : self.quantizer.num_classes]

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        input_ids, labels = batch["input_ids"], batch["labels"]
        logits = self(input_ids)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)
        targets = (labels != IGNORE_INDEX).sum()
        return TaskOutput(loss=loss, num_tokens=input_ids.numel(), num_targets=targets,
                          metrics={"bits_per_byte": nats_to_bits(loss.detach())})

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None or not hasattr(datamodule, "quantizer"):
            return
        if datamodule.quantizer != self.quantizer or datamodule.sample_rate != self.sample_rate:
            raise ValueError(
                f"model and data disagree on the codes: model.init_args has {self.quantizer.kind} "
                f"{self.quantizer.bits}-bit at {self.sample_rate} Hz, data.init_args has {datamodule.quantizer.kind} "
                f"{datamodule.quantizer.bits}-bit at {datamodule.sample_rate} Hz (keys quantization, bits, sample_rate)")

    def on_fit_start(self) -> None:
        baseline = getattr(self._trainer.datamodule, "unigram_baseline_bits", None)
        self.unigram_bits = baseline()["validation_cross_entropy"] if callable(baseline) else None
        if self.unigram_bits is not None:
            rank_zero_info(f"unigram baseline on the validation split: {self.unigram_bits:.3f} bits/byte "
                           "(coding every sample by the train code frequencies alone)")

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.unigram_bits is not None and not self.trainer.sanity_checking:
            self.log("val/unigram_bits_per_byte", self.unigram_bits)
            self.log("val/unigram_entropy", self.unigram_bits * NATS_PER_BIT)  # nats, beside val/loss

    def on_fit_end(self) -> None:
        """Print the final validation NLL against the unigram baseline and how to sample from the checkpoint."""
        metrics = self.trainer.callback_metrics
        lines = []
        if "val/loss" in metrics:
            line = f"final val NLL {float(nats_to_bits(metrics['val/loss'])):.3f} bits/byte"
            if self.unigram_bits is not None:
                line += f" vs unigram baseline {self.unigram_bits:.3f}"
            lines.append(line)
        checkpoint = self.trainer.checkpoint_callback
        path = (checkpoint.last_model_path or checkpoint.best_model_path) if checkpoint is not None else ""
        if path:
            lines.append(f"checkpoint: {path}\ngenerate audio: mambaseq generate-audio --ckpt {path} --seconds 1 "
                         f"--num-samples 4 --out-dir {Path(path).parent.parent / 'generated'}")
        if lines:
            rank_zero_info("\n".join(lines))
