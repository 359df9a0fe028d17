"""Run a Triton test runner under the CPU interpreter in a subprocess and read back its per-case errors.

TRITON_INTERPRET=1 is read when kernels are defined, so it must not leak into the other tests of the session: each
runner script starts torch and Triton once, runs every named case and prints one JSON line
`{case: {output_or_gradient_name: relative_error, ...}, ...}`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

TIMEOUT_S = 300


def run_interpreted(runner: Path, cases: Iterable[str]) -> dict[str, dict[str, float]]:
    """Errors of every case in `cases` from `runner` (a script beside the tests) run with TRITON_INTERPRET=1."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, str(runner), *cases], env=env, capture_output=True, text=True,
                               timeout=TIMEOUT_S, cwd=runner.parent)
    if completed.returncode != 0:
        pytest.fail(f"{runner.name} failed (exit {completed.returncode}):\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_tiny_bench(script: Path, *arguments: str) -> str:
    """Standard output of `script --tiny *arguments` run under the interpreter (fails the test if it fails)."""
    launch = (f"import interpret_runner, runpy, sys; sys.argv = [{str(script)!r}, '--tiny', *{list(arguments)!r}]; "
              f"runpy.run_path({str(script)!r}, run_name='__main__')")
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, "-c", launch], env=env, capture_output=True, text=True,
                               timeout=TIMEOUT_S, cwd=Path(__file__).parent)
    if completed.returncode != 0:
        pytest.fail(f"{script.name} --tiny failed (exit {completed.returncode}):\n{completed.stderr[-4000:]}")
    return completed.stdout
