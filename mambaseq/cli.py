"""`mambaseq` command line: one subcommand per job, each implemented by a module's `main(argv)`.

Subcommands are imported lazily so that `mambaseq generate` does not pay for Lightning's import and vice versa.
"""
from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("mambaseq.tasks.cli", "Train a task from a YAML config (LightningCLI)."),
    "validate": ("mambaseq.tasks.cli", "Validate a task from a YAML config."),
    "test": ("mambaseq.tasks.cli", "Test a task from a YAML config."),
    "generate": ("mambaseq.pretrained.generate_cli", "Generate text from a pretrained or trained LM."),
    "convert": ("mambaseq.pretrained.convert_cli", "Convert checkpoints between mamba-ssm and transformers formats."),
    "prepare": ("mambaseq.tasks.lm.prepare", "Tokenize text into uint16 memmap shards."),
    "scale": ("mambaseq.tasks.scaling.sweep", "Run a context-length scaling sweep."),
    "generate-audio": ("mambaseq.tasks.audio.generate", "Generate raw audio from a trained audio model to WAV."),
}


def _usage() -> str:
    lines = ["usage: mambaseq <command> [options]", "", "commands:"]
    lines += [f"  {name:<15} {help_text}" for name, (_, help_text) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `mambaseq` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        raise SystemExit(f"mambaseq: unknown command {command!r}\n\n{_usage()}")
    module = importlib.import_module(SUBCOMMANDS[command][0])
    if module.__name__ == "mambaseq.tasks.cli":
        module.main([command, *rest])
    else:
        module.main(rest)


if __name__ == "__main__":
    main()
