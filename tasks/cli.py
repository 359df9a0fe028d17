"""`mambaseq fit|validate|test --config configs/...yaml`: a LightningCLI over any `SequenceTask` and data module.

Configs name the task and data module by `class_path` (subclass mode), are read with OmegaConf
(`${...}` interpolation, plus the resolvers below), and are checked strictly: an unknown key is an error that names it.
`--print_config` shows the resolved config; any key can be overridden on the command line
(`--trainer.max_steps 100`, `--model.init_args.optimizer.lr 3e-4`).

Resolvers: `${mul:a,b,...}` product, `${div:a,b}` exact integer division (error when b does not divide a),
`${asset:data/lm/kjv_bible.jsonl.gz}` absolute path of a file bundled under `mambaseq/assets/`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningCLI
from omegaconf import OmegaConf

import mambaseq
from mambaseq.tasks.base import SequenceTask
from mambaseq.tasks.callbacks import AtomicModelCheckpoint

SUBCOMMANDS = ("fit", "validate", "test")
ASSETS = Path(mambaseq.__file__).resolve().parent / "assets"
TRAINER_DEFAULTS: dict[str, Any] = {"use_distributed_sampler": False}


def _as_int(value: Any, resolver: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).lstrip("-").isdigit():
        raise ValueError(f"${{{resolver}:...}} expects integers, got {value!r} ({type(value).__name__})")
    return int(value)


def _multiply(*values: Any) -> int:
    product = 1
    for value in values:
        product *= _as_int(value, "mul")
    return product


def _divide_exactly(numerator: Any, denominator: Any) -> int:
    numerator, denominator = _as_int(numerator, "div"), _as_int(denominator, "div")
    if denominator <= 0 or numerator % denominator:
        raise ValueError(f"${{div:{numerator},{denominator}}}: {denominator} does not divide {numerator} exactly")
    return numerator // denominator


def _asset_path(relative: str) -> str:
    path = ASSETS / relative
    if not path.exists():
        raise FileNotFoundError(f"${{asset:{relative}}}: {path} does not exist")
    return str(path)


def register_resolvers() -> None:
    """Register the `mul`, `div` and `asset` OmegaConf resolvers (idempotent)."""
    for name, function in (("mul", _multiply), ("div", _divide_exactly), ("asset", _asset_path)):
        if not OmegaConf.has_resolver(name):
            register = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver  # 2.4 / 2.3
            register(name, function)


class StepBudgetProgressBar(RichProgressBar):
    """Rich progress bar whose train label reads "Epoch E" (not Lightning's "Epoch E/-2") when training is bounded by
    `max_steps` alone (`max_epochs` -1)."""

    def _get_train_description(self, current_epoch: int) -> str:
        max_epochs = self.trainer.max_epochs
        description = f"Epoch {current_epoch}" + (f"/{max_epochs - 1}" if max_epochs is not None and max_epochs > 0
                                                  else "")
        return f"{description:{len(self.validation_description)}}"


class MambaCLI(LightningCLI):
    """LightningCLI with the atomic `checkpoint` callback (configurable under `checkpoint:`) and a rich progress bar."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_lightning_class_args(AtomicModelCheckpoint, "checkpoint")

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[pl.Callback]) -> pl.Trainer:
        configured = list(config.get("callbacks") or []) + list(callbacks)
        wants_bar = config.get("enable_progress_bar", True) is not False
        if wants_bar and not any(isinstance(callback, ProgressBar) for callback in configured):
            callbacks = [*callbacks, StepBudgetProgressBar()]
        return super()._instantiate_trainer(config, callbacks)


def build_cli(args: list[str] | None, run: bool = True) -> MambaCLI:
    """The CLI over `args` (`[subcommand, --config, file, ...]` when `run`, else the arguments of one task)."""
    register_resolvers()
    return MambaCLI(
        SequenceTask,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf"},
        save_config_kwargs={"overwrite": True},
        trainer_defaults=TRAINER_DEFAULTS,
        auto_configure_optimizers=False,
        args=args,
        run=run,
    )


def main(argv: list[str]) -> None:
    """Entry of `mambaseq fit|validate|test ...`; `argv[0]` is the subcommand."""
    if not argv or argv[0] not in SUBCOMMANDS:
        raise SystemExit(f"mambaseq.tasks.cli: expected one of {SUBCOMMANDS} as first argument, got {argv[:1]}")
    argv = list(argv)
    # LightningCLI warns when given `args` while the process also has command-line arguments: when `argv` *are* the
    # command-line arguments (the `mambaseq` console script), let it read them itself.
    build_cli(None if argv == sys.argv[1:] else argv)
