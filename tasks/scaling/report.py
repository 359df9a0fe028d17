"""Results of a context-length sweep: one `ScalingRecord` per length, written as CSV, markdown and PNG plots."""
from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)


@dataclass
class ScalingRecord:
    """Measurements at one context length (`status` is `"ok"`, `"oom"` or `"skipped"`)."""

    seq_len: int
    batch_size: int
    steps: int
    train_loss: float
    val_loss: float
    val_perplexity: float
    tokens_per_second: float
    step_seconds: float
    peak_memory_gib: float
    memory_kind: str
    chunk_size: int
    status: str = "ok"


def write_csv(records: list[ScalingRecord], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[field.name for field in fields(ScalingRecord)])
        writer.writeheader()
        for record in records:
            writer.writerow(asdict(record))


def read_csv(path: Path) -> list[ScalingRecord]:
    types = {field.name: field.type for field in fields(ScalingRecord)}
    converters = {"int": int, "float": float, "str": str}
    with path.open(newline="") as handle:
        return [
            ScalingRecord(**{key: converters[types[key]](value) for key, value in row.items()})
            for row in csv.DictReader(handle)
        ]


def _format_length(seq_len: int) -> str:
    exponent = math.log2(seq_len)
    return f"2^{int(exponent)}" if exponent.is_integer() else str(seq_len)


def markdown_table(records: list[ScalingRecord]) -> str:
    header = (
        "| context | batch | steps | train loss | val loss | val ppl | tokens/s | step (s) | peak mem (GiB) | chunk | status |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [
        f"| {_format_length(r.seq_len)} ({r.seq_len}) | {r.batch_size} | {r.steps} | {r.train_loss:.4f} | "
        f"{r.val_loss:.4f} | {r.val_perplexity:.3f} | {r.tokens_per_second:,.0f} | {r.step_seconds:.3f} | "
        f"{r.peak_memory_gib:.2f} ({r.memory_kind}) | {r.chunk_size or '-'} | {r.status} |"
        for r in records
    ]
    return "\n".join([header, *rows])


def _plot(records: list[ScalingRecord], attribute: str, ylabel: str, title: str, path: Path, logy: bool) -> None:
    finished = [r for r in records if r.status == "ok"]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot([r.seq_len for r in finished], [getattr(r, attribute) for r in finished], marker="o")
    axes.set_xscale("log", base=2)
    if logy:
        axes.set_yscale("log")
    axes.set_xlabel("context length (tokens)")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(records: list[ScalingRecord], output_dir: Path, title: str) -> dict[str, Path]:
    """Writes `results.csv`, `results.md` and the three plots into `output_dir`; returns their paths by name."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": output_dir / "results.csv",
        "markdown": output_dir / "results.md",
        "perplexity": output_dir / "perplexity_vs_context.png",
        "memory": output_dir / "memory_vs_context.png",
        "time": output_dir / "time_vs_context.png",
    }
    write_csv(records, paths["csv"])
    paths["markdown"].write_text(f"# {title}\n\n{markdown_table(records)}\n")
    _plot(records, "val_perplexity", "validation perplexity", f"{title}: perplexity", paths["perplexity"], False)
    _plot(records, "peak_memory_gib", "peak memory (GiB)", f"{title}: memory", paths["memory"], True)
    _plot(records, "step_seconds", "seconds per training step", f"{title}: step time", paths["time"], True)
    return paths
