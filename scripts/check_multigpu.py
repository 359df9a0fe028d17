"""Multi-GPU check (issue 9): DDP and FSDP through Lightning give the single-GPU run's losses for the same global
batch, and checkpoints move between world sizes.

    python scripts/check_multigpu.py [--steps 20] [--global-batch 8] [--tolerance 2e-3]

Runs (each in its own process; Lightning launches the ranks): 1 GPU, 2 GPUs DDP, 2 GPUs FSDP, all with the same
seed, the bundled King James Bible, a small Mamba-2 LM, fp32 and the same global batch (per-device batch halved on
2 GPUs; ranks take interleaved shares of one permutation, so the global batches are the same samples). Then:
the DDP checkpoint resumes training on 1 GPU and the 1-GPU checkpoint on 2 GPUs (DDP), each for the remaining
steps, and must reproduce the uninterrupted 1-GPU losses. Prints per-step losses (mean over the global batch)
and the largest relative difference of each run to the 1-GPU run; exits 1 when one is above --tolerance.
Needs 2 CUDA GPUs; `--accelerator cpu` runs the same on 2 CPU processes (gloo; DDP only).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import mambaseq

CORPUS = Path(mambaseq.__file__).resolve().parent / "assets" / "data" / "lm" / "kjv_bible.jsonl.gz"

RUNS = {  # name -> (devices, strategy, the run whose half-way checkpoint it resumes, or None)
    "1 device": (1, "auto", None),
    "2 devices DDP": (2, "ddp", None),
    "2 devices FSDP": (2, "fsdp", None),
    "DDP checkpoint resumed on 1 device": (1, "auto", "2 devices DDP"),
    "1-device checkpoint resumed on 2 devices (DDP)": (2, "ddp", "1 device"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--tolerance", type=float, default=2e-3, help="relative loss difference allowed per step")
    parser.add_argument("--accelerator", default="gpu", choices=["gpu", "cpu"])
    parser.add_argument("--runs", type=lambda text: text.split(","), default=list(RUNS))
    parser.add_argument("--workdir", default=None, help="where checkpoints and results go (default: a temp dir)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def worker(args: argparse.Namespace) -> None:
    """One Lightning run: record the global mean loss per step, save a checkpoint at the end (and at half way)."""
    import lightning as L
    import torch

    from mambaseq.config import BackboneConfig, LMConfig, Mamba2Config
    from mambaseq.tasks.lm.datamodule import LMDataModule
    from mambaseq.tasks.lm.task import LanguageModelTask
    from mambaseq.tasks.optim import OptimizerConfig

    devices, strategy, resume_from = RUNS[args.worker]
    workdir = Path(args.workdir)
    L.seed_everything(0, workers=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    lm = LMConfig(backbone=BackboneConfig(d_model=128, n_layer=2, mixer=Mamba2Config(headdim=32, d_state=32,
                                                                                        chunk_size=64)),
                  vocab_size=50277)
    task = LanguageModelTask(lm=lm, optimizer=OptimizerConfig(lr=3e-3, warmup_steps=5, total_steps=args.steps))
    data = LMDataModule(train=[str(CORPUS)], seq_len=args.seq_len,
                        batch_size=args.global_batch // devices, holdout_fraction=0.02, eval_max_sequences=32, seed=0)
    losses: dict[int, float] = {}

    class RecordGlobalLoss(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            loss = trainer.strategy.reduce(outputs["loss"].detach(), reduce_op="mean")
            losses[trainer.global_step] = float(loss)
            if trainer.global_step == args.steps // 2:
                trainer.save_checkpoint(workdir / f"{args.worker}.half.ckpt")

    trainer = L.Trainer(accelerator=args.accelerator, devices=devices, strategy=strategy, precision="32-true",
                        max_steps=args.steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        use_distributed_sampler=False, num_sanity_val_steps=0, limit_val_batches=0,
                        callbacks=[RecordGlobalLoss()], deterministic=False)
    ckpt_path = None if resume_from is None else str(workdir / f"{resume_from}.half.ckpt")
    trainer.fit(task, datamodule=data, ckpt_path=ckpt_path)
    if trainer.global_rank == 0:
        (workdir / f"{args.worker}.json").write_text(json.dumps({str(k): v for k, v in losses.items()}))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        worker(args)
        return 0
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mambaseq-multigpu-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[int, float]] = {}
    for name in args.runs:
        strategy = RUNS[name][1]
        if args.accelerator == "cpu" and strategy == "fsdp":
            print(f"skipping {name!r}: FSDP needs GPUs")
            continue
        print(f"--- {name}", flush=True)
        command = [sys.executable, __file__, "--worker", name, "--workdir", str(workdir), "--steps", str(args.steps),
                   "--global-batch", str(args.global_batch), "--seq-len", str(args.seq_len),
                   "--accelerator", args.accelerator]
        subprocess.run(command, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        results[name] = {int(k): v for k, v in json.loads((workdir / f"{name}.json").read_text()).items()}
    return report(results, args.tolerance)


def report(results: dict[str, dict[int, float]], tolerance: float) -> int:
    baseline = results["1 device"]
    names = list(results)
    print("\nstep | " + " | ".join(names))
    for step in sorted(baseline):
        print(f"{step:4d} | " + " | ".join(f"{results[n][step]:.5f}" if step in results[n] else "-" for n in names))
    failed = False
    print()
    for name in names[1:]:
        steps = sorted(set(results[name]) & set(baseline))
        worst = max(abs(results[name][s] - baseline[s]) / abs(baseline[s]) for s in steps)
        ok = worst <= tolerance
        failed |= not ok
        print(f"{name}: steps {steps[0]}-{steps[-1]}, max relative loss difference to 1 device {worst:.2e} "
              f"({'ok' if ok else 'ABOVE'} tolerance {tolerance:.0e})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
