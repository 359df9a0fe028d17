"""`mambaseq scale --config configs/scaling/<name>.yaml`: a context-length scaling sweep.

For each context length the same model is trained from the same seed on the same number of tokens, at constant
tokens per batch (batch = tokens_per_batch / length), optionally with sequence-length warmup; validation loss /
perplexity, throughput and peak memory are recorded. Results go to `output_dir` as `results.csv`, `results.md` and
PNG plots (perplexity, memory and step time against context, log2 x-axis), rewritten after every length.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from rich.console import Console

from mambaseq.tasks.scaling.config import ScalingConfig
from mambaseq.tasks.scaling.report import ScalingRecord, markdown_table, write_report
from mambaseq.tasks.scaling.sources import load_token_stream
from mambaseq.tasks.scaling.train import train_at_length


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("scaling config asks for device 'cuda' but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _failed_record(seq_len: int, config: ScalingConfig, status: str) -> ScalingRecord:
    nan = float("nan")
    return ScalingRecord(seq_len=seq_len, batch_size=config.tokens_per_batch // seq_len, steps=0, train_loss=nan,
                         val_loss=nan, val_perplexity=nan, tokens_per_second=nan, step_seconds=nan,
                         peak_memory_gib=nan, memory_kind="", chunk_size=config.chunk_size or 0, status=status)


def run_sweep(config: ScalingConfig, console: Console | None = None) -> list[ScalingRecord]:
    """Runs every context length of `config`; a CUDA out-of-memory error is recorded as status "oom"."""
    console = console or Console()
    device = resolve_device(config.device)
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    stream = load_token_stream(config.data)
    lengths = config.context_lengths()
    for seq_len in lengths:
        stream.check_length(seq_len, f"data source {config.data.source!r}")
    output_dir = Path(config.output_dir)
    console.print(f"[bold]{config.name}[/]: lengths {lengths} on {device}, {config.tokens_per_batch} tokens/batch, "
                  f"{config.train_tokens} training tokens each -> {output_dir}")
    records: list[ScalingRecord] = []
    for index, seq_len in enumerate(lengths):
        try:
            record = train_at_length(config, stream, seq_len, device, position=f"[{index + 1}/{len(lengths)}] ")
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            record = _failed_record(seq_len, config, "oom")
        records.append(record)
        console.print(f"context {seq_len}: val loss {record.val_loss:.4f}, ppl {record.val_perplexity:.3f}, "
                      f"{record.tokens_per_second:,.0f} tok/s, peak {record.peak_memory_gib:.2f} GiB "
                      f"({record.status})")
        write_report(records, output_dir, config.name)
    return records


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mambaseq scale", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML sweep config, e.g. configs/scaling/quickstart.yaml")
    parser.add_argument("--output-dir", help="override the config's output_dir")
    parser.add_argument("--lengths", type=int, nargs="+", help="override the config's context lengths")
    parser.add_argument("--train-tokens", type=int, help="override the config's train_tokens per length")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override the config's device")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[ScalingRecord]:
    args = parse_args(argv)
    config = ScalingConfig.from_yaml(args.config)
    overrides = {"output_dir": args.output_dir, "train_tokens": args.train_tokens, "device": args.device}
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, value)
    if args.lengths:
        config.lengths, config.log2_range = args.lengths, []
    config.validate(f"{args.config} (with command-line overrides)")
    records = run_sweep(config)
    print(markdown_table(records))
    return records


if __name__ == "__main__":
    main()
