"""scripts/tune_ssd.py --tiny on CPU (Triton's interpreter, fp32): every variant of a knob runs, and its outputs and
gradients match the defaults' up to rounding; a knob that changes the arithmetic shows a nonzero difference."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from script_loader import load_script

from mambaseq.kernels.triton import ssd_bwd_launch

HERE = Path(__file__).parent
SCRIPT = HERE.parents[1] / "scripts" / "tune_ssd.py"
# interpret_runner patches Triton 3.6's interpreter for NumPy >= 2.4 before the script defines its kernels
LAUNCH = ("import interpret_runner, runpy, sys; sys.argv = [{script!r}, *sys.argv[1:]]; "
          "runpy.run_path({script!r}, run_name='__main__')")


def tables(stdout: str) -> dict[str, list[list[str]]]:
    """Knob name -> its table's rows (cells) from the script's output."""
    found, current = {}, None
    for line in stdout.splitlines():
        if line and line.split()[0] in ("SEPARABLE_DECAYS", "DB_TILING"):
            current = found.setdefault(line.split()[0], [])
        elif current is not None and line.startswith("| ") and not line.startswith("| variant"):
            current.append([cell.strip() for cell in line.strip("|").split("|")])
    return found


def test_tiny_sweep_matches_defaults():
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, "-c", LAUNCH.format(script=str(SCRIPT)), "--tiny", "--knobs",
                                "SEPARABLE_DECAYS,DB_TILING"], env=env, capture_output=True, text=True,
                               timeout=300, cwd=HERE)
    assert completed.returncode == 0, completed.stderr[-4000:]
    rows = tables(completed.stdout)
    _, db_variants = load_script("tune_ssd").KNOBS["DB_TILING"]
    db_rows = 1 + sum(variant != ssd_bwd_launch.DB_TILING for variant in db_variants)  # the default comes first
    assert [len(rows["SEPARABLE_DECAYS"]), len(rows["DB_TILING"])] == [2, db_rows], completed.stdout
    differences = {knob: [float(row[3]) for row in knob_rows] for knob, knob_rows in rows.items()}
    assert all(d < 1e-5 for knob in differences.values() for d in knob), completed.stdout
    assert differences["SEPARABLE_DECAYS"][0] == 0.0 < differences["SEPARABLE_DECAYS"][1], completed.stdout


def test_tiny_needs_the_interpreter():
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    completed = subprocess.run([sys.executable, str(SCRIPT), "--tiny"], env=env, capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode != 0 and "set TRITON_INTERPRET=1" in completed.stderr
