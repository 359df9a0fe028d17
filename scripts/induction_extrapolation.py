"""Induction-heads length extrapolation (Mamba paper, table 11): train at one length (or load a checkpoint), then
measure accuracy at every length 2^6 ... 2^20 and print a markdown table.

Model, data and optimizer come from a `mambaseq fit` config (default: the paper's setting). Evaluation runs Mamba
models through the exact chunked forward, so memory stays that of one chunk at any length (a GPU makes 2^20 quick).

    python scripts/induction_extrapolation.py --steps 3000 --max-log2 16          # CPU: train, then 2^6 ... 2^16
    python scripts/induction_extrapolation.py --checkpoint runs/synthetic/induction_heads/checkpoints/last.ckpt
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from omegaconf import OmegaConf

from mambaseq.config import LMConfig
from mambaseq.lm import MambaLM
from mambaseq.tasks.lm.task import LM_CONFIG_KEY
from mambaseq.tasks.synthetic.datamodule import build_task
from mambaseq.tasks.synthetic.data import validation_set
from mambaseq.tasks.synthetic.evaluate import accuracy_table, evaluate_length
from mambaseq.tasks.synthetic.memory import memory_horizons
from mambaseq.tasks.synthetic.train import SyntheticTrainConfig, train_synthetic

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "synthetic" / "induction_heads.yaml"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="a `mambaseq fit` synthetic-task config")
    parser.add_argument("--checkpoint", help="evaluate this Lightning checkpoint (or --save file) instead of training")
    parser.add_argument("--steps", type=int, help="training steps (default: the config's trainer.max_steps)")
    parser.add_argument("--max-minutes", type=float, help="stop training after this many minutes")
    parser.add_argument("--stop-accuracy", type=float, default=None,
                        help="stop training once validation accuracy at the training length reaches this")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--save", help="write the trained weights and LMConfig here (torch.save)")
    parser.add_argument("--min-log2", type=int, default=6)
    parser.add_argument("--max-log2", type=int, default=20)
    parser.add_argument("--eval-examples", type=int, default=256, help="validation sequences per length")
    parser.add_argument("--max-batch-tokens", type=int, default=2**20, help="tokens per evaluation batch")
    parser.add_argument("--chunk-size", type=int, default=65536, help="chunk of the exact chunked forward")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", help="also write the markdown table to this file")
    return parser.parse_args()


def read_fit_config(path: str) -> tuple[dict, dict, dict, int]:
    """(lm config, data init_args, optimizer init_args, trainer.max_steps) of a `mambaseq fit` config."""
    config = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    try:
        model_args = config["model"]["init_args"]
        return (model_args["lm"], config["data"]["init_args"], model_args.get("optimizer", {}),
                int(config["trainer"]["max_steps"]))
    except KeyError as missing:
        raise KeyError(f"{path}: expected model.init_args.lm, data.init_args and trainer.max_steps "
                       f"(a `mambaseq fit` synthetic config); missing {missing}") from None


def load_checkpoint(path: str) -> MambaLM:
    """A `mambaseq fit` checkpoint (weights under `model.`) or a file written by `--save`."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if LM_CONFIG_KEY not in checkpoint:
        raise KeyError(f"{path}: no {LM_CONFIG_KEY!r} entry; expected a SyntheticTask checkpoint or a --save file")
    model = MambaLM(LMConfig.from_dict(checkpoint[LM_CONFIG_KEY]))
    state = checkpoint["state_dict"]
    model.load_state_dict({key.removeprefix("model."): value for key, value in state.items()})
    return model


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    lm_config, data_args, optimizer_args, max_steps = read_fit_config(args.config)
    task = build_task(data_args.get("task", "induction_heads"), data_args.get("vocab_size", 16),
                      data_args.get("num_memorize", 16))
    seed = int(data_args.get("seed", 0))
    train_len = int(data_args.get("seq_len", 256))
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint)
        print(f"loaded {args.checkpoint}")
    else:
        torch.manual_seed(seed)
        model = MambaLM(LMConfig.from_dict(lm_config))
        train_config = SyntheticTrainConfig(
            seq_len=train_len, batch_size=int(data_args.get("batch_size", 8)), steps=args.steps or max_steps,
            lr=float(optimizer_args.get("lr", 1e-3)), betas=tuple(optimizer_args.get("betas", (0.9, 0.999))),
            seed=seed, eval_every=args.eval_every, stop_accuracy=args.stop_accuracy, max_minutes=args.max_minutes)
        history = train_synthetic(model, task, train_config, device)
        print(f"trained {history.steps[-1]} steps in {history.seconds:.0f} s ({history.stopped}); "
              f"val accuracy at {train_len}: {history.accuracies[-1]:.4f}")
        if args.save:
            torch.save({LM_CONFIG_KEY: model.config.to_dict(),
                        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, args.save)
    model.to(device).eval()
    probe = validation_set(task, train_len, 8, seed)
    memories = memory_horizons(model, torch.stack([probe[i]["input_ids"] for i in range(len(probe))]).to(device))
    memory_lines = [f"layer {m.layer}: slowest decay {m.slowest_rate:.2e} per step, memory horizon {m.horizon:,.0f} "
                    f"steps" for m in memories]
    print("\n".join(memory_lines), flush=True)
    results = []
    for exponent in range(args.min_log2, args.max_log2 + 1):
        result = evaluate_length(model, task, 2**exponent, args.eval_examples, seed, device,
                                 chunk_size=args.chunk_size, max_batch_tokens=args.max_batch_tokens)
        results.append(result)
        print(f"length 2^{exponent}: accuracy {result.accuracy:.4f} ({result.status}, {result.seconds:.1f} s)",
              flush=True)
    mixer = model.config.backbone.mixer.kind
    table = accuracy_table(results, f"Induction heads, {mixer}, trained at length {train_len}")
    table += "\n\nMemory horizons (1 / slowest typical per-step decay, `mambaseq.tasks.synthetic.memory`):\n" + \
        "\n".join(f"- {line}" for line in memory_lines)
    print("\n" + table)
    if args.output:
        Path(args.output).write_text(table + "\n")


if __name__ == "__main__":
    main()
