"""scripts/check_multigpu.py: DDP over 2 ranks with half the per-rank batch trains like 1 process (same global
batch), and checkpoints reload and resume across world sizes (1 -> 2, 2 -> 1) with the same losses.
On CPU: 2 gloo processes, DDP only (Lightning's FSDP needs GPUs); on 2 GPUs: the full check with FSDP."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "check_multigpu.py"


def run_check(arguments: list[str], workdir: Path, timeout: int) -> list[str]:
    """The script's check lines (`[ok] ...` / `[FAILED] ...`) after asserting it passed."""
    result = subprocess.run([sys.executable, str(SCRIPT), *arguments, "--workdir", str(workdir)],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return [line for line in result.stdout.splitlines() if line.startswith(("[ok]", "[FAILED]"))]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path):
    checks = run_check(["--accelerator", "cpu", "--steps", "4", "--seq-len", "32", "--global-batch", "4",
                        "--tokenizer", "bytes", "--tolerance", "1e-5", "--reload-tolerance", "1e-6"], tmp_path, 300)
    # 2 DDP runs from scratch / resumed, 1 resumed on 1 device: training + validation loss each; 2 reloads
    assert len(checks) == 8 and all(line.startswith("[ok]") for line in checks), checks
    assert sum("validated on" in line for line in checks) == 2


@pytest.mark.gpu
@pytest.mark.multigpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_ddp_and_fsdp_on_two_gpus_match_one_gpu(tmp_path):
    checks = run_check([], tmp_path, 600)
    assert len(checks) == 11 and any("FSDP" in line for line in checks), checks
