"""`SequenceTask`: the LightningModule shared by every modality (language, DNA, audio, synthetic).

A subclass builds its network in `__init__` (as `self.model` for language models) and implements one method,
`compute_loss(batch) -> TaskOutput`. The base class owns the rest: AdamW with selective weight decay, the warmup +
cosine schedule, logging of loss / perplexity / bits per token / tokens per second / peak memory, token-weighted
validation and test averages, and the RNG state in checkpoints (for exact resume).
"""
from __future__ import annotations

import math
import random
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import lightning.pytorch as pl
import numpy as np
import torch

from mambaseq.tasks.optim import OptimizerConfig, build_adamw, build_warmup_cosine

RNG_STATE_KEY = "mambaseq_rng_state"
TOKENS_SEEN_KEY = "mambaseq_tokens_seen"


@dataclass
class TaskOutput:
    """Result of `SequenceTask.compute_loss` on one batch.

    loss: scalar, mean over the `num_targets` predicted positions (the tensor that is back-propagated).
    num_tokens: input positions processed (for throughput). num_targets: positions that carry a loss (for averaging);
    None = num_tokens. metrics: extra scalars (batch means), logged as `{stage}/{name}`.
    """

    loss: torch.Tensor
    num_tokens: int | torch.Tensor
    num_targets: int | torch.Tensor | None = None
    metrics: dict[str, torch.Tensor | float] = field(default_factory=dict)

    @property
    def targets(self) -> int | torch.Tensor:
        return self.num_tokens if self.num_targets is None else self.num_targets


class SequenceTask(pl.LightningModule):
    """Base task. Subclasses implement `compute_loss`; set `reports_token_nll = False` when the loss is not a
    per-token negative log-likelihood (then perplexity and bits per token are not logged).

    Config dataclass arguments take a dataclass instance as default (`lm: LMConfig = LMConfig()`), not
    `X | None = None`: jsonargparse 4.53 fails to re-validate Optional dataclasses holding a union field
    (`BackboneConfig.mixer`) when the task is instantiated. Each instance copies its config; dicts (as
    `load_from_checkpoint` passes saved hparams) and None (= default) are accepted too.
    """

    reports_token_nll: ClassVar[bool] = True

    def __init__(self, optimizer: OptimizerConfig = OptimizerConfig()) -> None:
        super().__init__()
        if optimizer is None:
            optimizer = OptimizerConfig()
        self.optimizer_config = OptimizerConfig(**(optimizer if isinstance(optimizer, dict) else asdict(optimizer)))
        self._eval_sums: dict[str, torch.Tensor] = {}
        self._last_batch_end: float | None = None
        self._tokens_seen = 0

    def compute_loss(self, batch: Any) -> TaskOutput:
        """Forward `batch` and return its loss and metrics. Implemented by each task."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_loss(batch) -> TaskOutput")

    # ----------------------------------------------------------------------------------------------- optimization
    def configure_optimizers(self) -> dict[str, Any]:
        config = self.optimizer_config
        total_steps = config.total_steps or int(self.trainer.estimated_stepping_batches)
        if not 0 < total_steps < 2**40:
            raise ValueError(f"{type(self).__name__}: cannot size the LR schedule (Trainer estimates {total_steps} "
                             "steps); set trainer.max_steps or model.init_args.optimizer.total_steps")
        optimizer = build_adamw(self, config)
        scheduler = build_warmup_cosine(optimizer, config, total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # ------------------------------------------------------------------------------------------------- training
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        output = self.compute_loss(batch)
        self.log("train/loss", output.loss, prog_bar=True)
        if self.reports_token_nll:
            self.log("train/ppl", torch.exp(output.loss.detach().float()))
            self.log("train/bits_per_token", output.loss.detach() / math.log(2))
        for name, value in output.metrics.items():
            self.log(f"train/{name}", value)
        self._log_throughput(int(output.num_tokens))
        return output.loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._last_batch_end is None:  # first batch, or the first after a validation: time it on its own
            self._last_batch_end = time.perf_counter()

    def on_validation_start(self) -> None:
        self._last_batch_end = None

    def _log_throughput(self, num_tokens: int) -> None:
        world_tokens = num_tokens * self.trainer.world_size
        self._tokens_seen += world_tokens
        now = time.perf_counter()
        if self._last_batch_end is not None and now > self._last_batch_end:
            self.log("train/tokens_per_s", world_tokens / (now - self._last_batch_end), prog_bar=True)
        self._last_batch_end = now
        self.log("train/tokens_seen", float(self._tokens_seen))
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        self.log("train/peak_mem_gib", peak_memory_gib(self.device))

    # ------------------------------------------------------------------------------------------ validation / test
    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("test", batch)

    def on_validation_epoch_end(self) -> None:
        self._log_eval_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval_epoch("test")

    def _eval_step(self, stage: str, batch: Any) -> None:
        output = self.compute_loss(batch)
        targets = torch.as_tensor(output.targets, device=self.device, dtype=torch.float64)
        sums = self._eval_sums.setdefault(stage, torch.zeros(2, dtype=torch.float64, device=self.device))
        sums += torch.stack([output.loss.detach().double() * targets, targets])
        batch_size = int(output.targets)
        for name, value in output.metrics.items():
            self.log(f"{stage}/{name}", value, batch_size=batch_size, sync_dist=True)

    def _log_eval_epoch(self, stage: str) -> None:
        """Token-weighted mean loss over the whole split (summed over ranks), then perplexity and bits per token."""
        sums = self._eval_sums.pop(stage, None)
        if sums is None:
            return
        sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        loss = (sums[0] / sums[1].clamp_min(1)).float()
        self.log(f"{stage}/loss", loss, prog_bar=True)
        if self.reports_token_nll:
            self.log(f"{stage}/ppl", torch.exp(loss))
            self.log(f"{stage}/bits_per_token", loss / math.log(2))

    # ------------------------------------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[RNG_STATE_KEY] = capture_rng_state()
        checkpoint[TOKENS_SEEN_KEY] = self._tokens_seen

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if RNG_STATE_KEY in checkpoint:
            restore_rng_state(checkpoint[RNG_STATE_KEY])
        self._tokens_seen = int(checkpoint.get(TOKENS_SEEN_KEY, 0))

    def plain_hparams(self) -> dict[str, Any]:
        """The class path and the optimizer config as plain data, for `save_hyperparameters` (checkpoints stay
        loadable with `torch.load(weights_only=True)`; LightningCLI reads `_class_path` for `--ckpt_path`)."""
        return {"_class_path": f"{type(self).__module__}.{type(self).__qualname__}",
                "optimizer": asdict(self.optimizer_config)}


def peak_memory_gib(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocator peak on GPU, resident-set peak on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    kib_or_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib_or_bytes / (2**30 if sys.platform == "darwin" else 2**20)


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states as tensors/ints (safe for `weights_only` loading)."""
    numpy_state = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(numpy_state[1].astype(np.int64)), "pos": int(numpy_state[2]),
                  "has_gauss": int(numpy_state[3]), "cached_gaussian": float(numpy_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
