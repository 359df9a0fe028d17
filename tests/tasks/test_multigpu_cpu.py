"""scripts/check_multigpu.py on 2 CPU processes (gloo): DDP over 2 ranks with half the per-rank batch trains like
1 process, and half-way checkpoints resume across world sizes (1 -> 2 and 2 -> 1) with the same losses."""
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_multigpu.py"
RUNS = "1 device,2 devices DDP,DDP checkpoint resumed on 1 device,1-device checkpoint resumed on 2 devices (DDP)"


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--accelerator", "cpu", "--steps", "4", "--seq-len", "32", "--global-batch", "4",
         "--tolerance", "1e-5", "--runs", RUNS, "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = [line for line in result.stdout.splitlines() if "max relative loss difference" in line]
    assert len(summary) == 3 and all("(ok tolerance" in line for line in summary), summary
