"""Multi-GPU check (issue 9): DDP and FSDP through Lightning strategies train like one GPU for the same global
batch, and checkpoints move between world sizes.

    python scripts/check_multigpu.py                      # on a machine with 2 CUDA GPUs; exits 1 on failure
    python scripts/check_multigpu.py --accelerator cpu    # the same on 2 CPU processes (gloo), without FSDP

What runs (each line one `python scripts/check_multigpu.py --worker NAME` process; Lightning launches the second
rank itself, no torchrun), all with seed 0, the bundled King James Bible, a small Mamba-2 LM in fp32 (TF32 off)
and the same global batch (`--global-batch`, per-device batch halved on 2 devices: the ranks take interleaved
shares of one permutation, so each global batch holds the same sequences):
  fit       "1 device", "2 devices DDP", "2 devices FSDP": `--steps` optimizer steps, a checkpoint at half way and
            at the end, then the validation loss of the final weights (32 held-out sequences, split over the ranks).
  resume    the DDP half-way checkpoint on 1 device, the 1-device one on 2 devices (DDP): the remaining steps.
  validate  the final DDP and FSDP checkpoints on 1 device, the final 1-device checkpoint on 2 devices (DDP).
Checks: the per-step training loss (mean over the global batch) and the final validation loss of every fit and
resume run are within `--tolerance` (relative) of the 1-device run; a validated checkpoint gives the validation loss
its own run measured within `--reload-tolerance`. Prints a table of per-step losses and the largest differences.
Needs only torch, lightning and mambaseq (no omegaconf/jsonargparse).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mambaseq

CORPUS = Path(mambaseq.__file__).resolve().parent / "assets" / "data" / "lm" / "kjv_bible.jsonl.gz"


@dataclass(frozen=True)
class Run:
    devices: int
    strategy: str
    kind: str  # "fit" | "resume" (from `source`'s half-way checkpoint) | "validate" (`source`'s final checkpoint)
    source: str | None = None


RUNS = {
    "1 device": Run(1, "auto", "fit"),
    "2 devices DDP": Run(2, "ddp", "fit"),
    "2 devices FSDP": Run(2, "fsdp", "fit"),
    "DDP half-way checkpoint resumed on 1 device": Run(1, "auto", "resume", "2 devices DDP"),
    "1-device half-way checkpoint resumed on 2 devices (DDP)": Run(2, "ddp", "resume", "1 device"),
    "DDP final checkpoint validated on 1 device": Run(1, "auto", "validate", "2 devices DDP"),
    "FSDP final checkpoint validated on 1 device": Run(1, "auto", "validate", "2 devices FSDP"),
    "1-device final checkpoint validated on 2 devices (DDP)": Run(2, "ddp", "validate", "1 device"),
}
BASELINE = "1 device"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps of each fit run (even)")
    parser.add_argument("--global-batch", type=int, default=8, help="sequences per optimizer step over all devices")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--tokenizer", default="gpt-neox-20b", help='"gpt-neox-20b" (bundled) or "bytes"')
    parser.add_argument("--tolerance", type=float, default=2e-3,
                        help="relative difference allowed between a run's losses and the 1-device run's")
    parser.add_argument("--reload-tolerance", type=float, default=1e-5,
                        help="relative difference allowed between the validation loss of a checkpoint measured "
                             "by its own run and after reloading it on another world size")
    parser.add_argument("--accelerator", default="gpu", choices=["gpu", "cpu"])
    parser.add_argument("--runs", type=lambda text: text.split(","), default=list(RUNS),
                        help=f"comma-separated subset of: {', '.join(RUNS)}")
    parser.add_argument("--workdir", default=None, help="where checkpoints and results go (default: a temp dir)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [name for name in args.runs if name not in RUNS]
    if unknown:
        parser.error(f"--runs: unknown run(s) {unknown}; expected names from: {list(RUNS)}")
    if args.steps < 2 or args.steps % 2 or args.global_batch % 2:
        parser.error(f"--steps={args.steps} and --global-batch={args.global_batch} must be even (steps >= 2)")
    return args


def worker(args: argparse.Namespace) -> None:
    """One run (`args.worker`) on every rank; rank 0 writes `<workdir>/<name>.json`:
    `{"losses": {step: global mean loss}, "val_loss": float}`."""
    import lightning as L
    import torch

    from mambaseq.config import BackboneConfig, LMConfig, Mamba2Config
    from mambaseq.tasks.lm.datamodule import LMDataModule
    from mambaseq.tasks.lm.task import LanguageModelTask
    from mambaseq.tasks.optim import OptimizerConfig

    run = RUNS[args.worker]
    workdir = Path(args.workdir)
    L.seed_everything(0, workers=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    vocab_size = 257 if args.tokenizer == "bytes" else 50277
    backbone = BackboneConfig(d_model=128, n_layer=2, mixer=Mamba2Config(headdim=32, d_state=32, chunk_size=64))
    task = LanguageModelTask(lm=LMConfig(backbone=backbone, vocab_size=vocab_size),
                             optimizer=OptimizerConfig(lr=3e-3, warmup_steps=5, total_steps=args.steps))
    data = LMDataModule(train=[str(CORPUS)], tokenizer=args.tokenizer, seq_len=args.seq_len,
                        batch_size=args.global_batch // run.devices, holdout_fraction=0.02, eval_max_sequences=32,
                        seed=0)
    losses: dict[int, float] = {}

    class RecordGlobalLoss(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            losses[trainer.global_step] = float(trainer.strategy.reduce(outputs["loss"].detach(), reduce_op="mean"))
            if trainer.global_step == args.steps // 2:  # a collective under FSDP: every rank calls it
                trainer.save_checkpoint(workdir / f"{args.worker}.half.ckpt")

    trainer = L.Trainer(accelerator=args.accelerator, devices=run.devices, strategy=run.strategy,
                        precision="32-true", max_steps=args.steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
                        num_sanity_val_steps=0, check_val_every_n_epoch=10**6, callbacks=[RecordGlobalLoss()])
    if run.kind == "validate":
        results = trainer.validate(task, datamodule=data, ckpt_path=str(workdir / f"{run.source}.final.ckpt"),
                                   verbose=False)
    else:
        resume = None if run.kind == "fit" else str(workdir / f"{run.source}.half.ckpt")
        trainer.fit(task, datamodule=data, ckpt_path=resume)
        trainer.save_checkpoint(workdir / f"{args.worker}.final.ckpt")
        results = trainer.validate(task, datamodule=data, verbose=False)
    if trainer.global_rank == 0:
        record = {"losses": {str(k): v for k, v in losses.items()}, "val_loss": float(results[0]["val/loss"])}
        (workdir / f"{args.worker}.json").write_text(json.dumps(record))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        worker(args)
        return 0
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mambaseq-multigpu-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"checkpoints and results in {workdir}; accelerator {args.accelerator}, {args.steps} steps, global batch "
          f"{args.global_batch} x {args.seq_len} tokens", flush=True)
    results: dict[str, dict] = {}
    for name in args.runs:
        run = RUNS[name]
        if run.strategy == "fsdp" and args.accelerator == "cpu":
            print(f"--- skipping {name!r}: Lightning's FSDP needs GPUs", flush=True)
            continue
        if run.source is not None and run.source not in results:
            print(f"--- skipping {name!r}: it needs the run {run.source!r}", flush=True)
            continue
        print(f"--- {name}: {run.kind} on {run.devices} {args.accelerator} device(s), strategy {run.strategy}",
              flush=True)
        command = [sys.executable, __file__, "--worker", name, "--workdir", str(workdir), "--steps", str(args.steps),
                   "--global-batch", str(args.global_batch), "--seq-len", str(args.seq_len),
                   "--tokenizer", args.tokenizer, "--accelerator", args.accelerator]
        subprocess.run(command, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        record = json.loads((workdir / f"{name}.json").read_text())
        results[name] = {"losses": {int(k): v for k, v in record["losses"].items()}, "val_loss": record["val_loss"]}
    return report(results, args.tolerance, args.reload_tolerance)


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def report(results: dict[str, dict], tolerance: float, reload_tolerance: float) -> int:
    """Print the per-step loss table and each check; returns 1 when a check fails (or there is nothing to check)."""
    if BASELINE not in results:
        print(f"FAILED: the {BASELINE!r} run is needed as the reference")
        return 1
    training = [name for name in results if RUNS[name].kind != "validate"]
    baseline = results[BASELINE]
    print("\nper-step training loss (mean over the global batch)")
    print("step | " + " | ".join(training))
    for step in sorted(baseline["losses"]):
        cells = [f"{results[n]['losses'][step]:.6f}" if step in results[n]["losses"] else "-" for n in training]
        print(f"{step:4d} | " + " | ".join(cells))
    checks: list[tuple[str, float, float]] = []  # (description, relative difference, tolerance)
    for name in training:
        if name == BASELINE:
            continue
        steps = sorted(set(results[name]["losses"]) & set(baseline["losses"]))
        worst = max(relative(results[name]["losses"][s], baseline["losses"][s]) for s in steps)
        checks.append((f"{name}: training loss, steps {steps[0]}-{steps[-1]}, max vs {BASELINE}", worst, tolerance))
        checks.append((f"{name}: final validation loss {results[name]['val_loss']:.6f} vs {BASELINE} "
                       f"{baseline['val_loss']:.6f}", relative(results[name]["val_loss"], baseline["val_loss"]),
                       tolerance))
    for name in results:
        if RUNS[name].kind != "validate":
            continue
        reloaded, measured = results[name]["val_loss"], results[RUNS[name].source]["val_loss"]
        checks.append((f"{name}: validation loss {reloaded:.7f} vs {measured:.7f} measured by "
                       f"{RUNS[name].source!r}", relative(reloaded, measured), reload_tolerance))
    print()
    failed = False
    for description, difference, allowed in checks:
        ok = difference <= allowed
        failed |= not ok
        print(f"[{'ok' if ok else 'FAILED'}] {description}: relative difference {difference:.2e} "
              f"(tolerance {allowed:.0e})")
    print(f"\n{'FAILED' if failed or not checks else 'PASSED'}: {len(checks)} checks")
    return 1 if failed or not checks else 0


if __name__ == "__main__":
    sys.exit(main())
