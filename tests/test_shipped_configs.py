"""Every YAML under configs/ parses and validates: `mambaseq fit` configs through the CLI's `--print_config` (class
paths, init-arg names and types, interpolation; nothing is instantiated, so paper-size models cost nothing), the
multi-GPU overlays layered over the time-series quickstart, and `mambaseq scale` sweeps through `ScalingConfig`
(plus their model section as an `LMConfig`)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mambaseq.config import LMConfig
from mambaseq.tasks.cli import build_cli
from mambaseq.tasks.scaling.config import ScalingConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SCALING = sorted((CONFIGS / "scaling").glob("*.yaml"))
OVERLAYS = [CONFIGS / "timeseries" / "ddp.yaml", CONFIGS / "timeseries" / "fsdp.yaml"]
FIT = sorted(path for path in CONFIGS.rglob("*.yaml") if path not in SCALING and path not in OVERLAYS)


def _print_config(capsys, *config_files: Path) -> dict:
    args = ["fit"] + [arg for path in config_files for arg in ("--config", str(path))] + ["--print_config"]
    with pytest.raises(SystemExit) as exit_info:
        build_cli(args)
    assert exit_info.value.code in (0, None), capsys.readouterr().err[-3000:]
    return yaml.safe_load(capsys.readouterr().out)


def test_the_config_folders_are_all_covered():
    assert len(FIT) >= 30 and SCALING and len(OVERLAYS) == 2


@pytest.mark.parametrize("path", FIT, ids=lambda path: str(path.relative_to(CONFIGS)))
def test_fit_config_parses(path, capsys):
    printed = _print_config(capsys, path)
    assert printed["model"]["class_path"].startswith("mambaseq.tasks.")
    assert printed["data"]["class_path"].startswith("mambaseq.tasks.")


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda path: path.name)
def test_multi_gpu_overlay_layers_over_a_task_config(overlay, capsys):
    printed = _print_config(capsys, CONFIGS / "timeseries" / "quickstart.yaml", overlay)
    assert printed["trainer"]["devices"] == 2
    assert overlay.stem in str(printed["trainer"]["strategy"]).lower()


@pytest.mark.parametrize("path", SCALING, ids=lambda path: path.name)
def test_scaling_config_validates(path):
    config = ScalingConfig.from_yaml(path)
    config.validate(str(path))
    assert config.context_lengths()
    LMConfig.from_dict({**config.model, "vocab_size": 16})
