"""YAML config of a context-length sweep (`mambaseq scale --config configs/scaling/<name>.yaml`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mambaseq.tasks.optim import OptimizerConfig

_FLOAT_OPTIMIZER_KEYS = ("lr", "min_lr", "eps", "weight_decay", "warmup_fraction")


def _check_keys(cls: type, data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}: {data!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected keys from {sorted(known)}")


@dataclass
class SeqLenWarmupConfig:
    """Sequence-length warmup (HyenaDNA / Mamba DNA, `mambaseq.tasks.seqlen_warmup`): train at `start_length`,
    doubling in equal stages up to the target length over the first `fraction` of the steps, always at the same
    tokens per batch. Lengths not above `start_length` train without warmup."""

    start_length: int = 1024
    fraction: float = 0.3


@dataclass
class DataConfig:
    """Token source: `"dna"` (a FASTA path or `bundled:<name>`, default the bundled H. pylori genome) or `"lm"` (a
    text/JSONL file, default the bundled KJV Bible, tokenized by `tokenizer`: "bytes", "gpt-neox" or a
    tokenizer.json). The last `val_fraction` of the stream is held out for validation."""

    source: str = "dna"
    path: str | None = None
    tokenizer: str = "bytes"
    val_fraction: float = 0.1


@dataclass
class ScalingConfig:
    """One sweep: the same model trained from the same seed at each context length, at constant tokens per batch.

    `optimizer` is the tasks' AdamW + warmup/cosine config (`mambaseq.tasks.optim.OptimizerConfig`); its
    `total_steps` is set per length (`train_tokens / tokens_per_batch`). `chunk_size`: sequences longer than this go
    through the exact chunked forward/backward (`mambaseq.long_sequence`); None = never."""

    name: str
    output_dir: str
    model: dict[str, Any]
    tokens_per_batch: int
    train_tokens: int
    val_tokens: int
    lengths: list[int] = field(default_factory=list)
    log2_range: list[int] = field(default_factory=list)
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    chunk_size: int | None = None
    num_threads: int | None = None
    grad_clip: float = 1.0
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=1e-3, warmup_steps=10))
    seqlen_warmup: SeqLenWarmupConfig | None = None
    data: DataConfig = field(default_factory=DataConfig)

    def context_lengths(self) -> list[int]:
        """`lengths`, or the powers of two `2^a ... 2^b` for `log2_range: [a, b]`."""
        if self.lengths:
            return sorted(self.lengths)
        low, high = self.log2_range
        return [2**exponent for exponent in range(low, high + 1)]

    def validate(self, where: str) -> None:
        if bool(self.lengths) == bool(self.log2_range):
            raise ValueError(f"{where}: give exactly one of `lengths` or `log2_range` (got {self.lengths}, "
                             f"{self.log2_range})")
        if self.log2_range and (len(self.log2_range) != 2 or self.log2_range[0] > self.log2_range[1]):
            raise ValueError(f"{where}: log2_range={self.log2_range}, expected [low, high] with low <= high")
        for length in self.context_lengths():
            if length > self.tokens_per_batch or self.tokens_per_batch % length:
                raise ValueError(f"{where}: context length {length} must divide tokens_per_batch="
                                 f"{self.tokens_per_batch} (constant tokens per batch)")
        if self.train_tokens < self.tokens_per_batch:
            raise ValueError(f"{where}: train_tokens={self.train_tokens} < tokens_per_batch={self.tokens_per_batch}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"{where}: device={self.device!r}, expected 'auto', 'cpu' or 'cuda'")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"{where}: precision={self.precision!r}, expected 'auto', 'fp32' or 'bf16'")
        if self.data.source not in ("dna", "lm"):
            raise ValueError(f"{where}: data.source={self.data.source!r}, expected 'dna' or 'lm'")
        if self.seqlen_warmup is not None and not 0.0 <= self.seqlen_warmup.fraction < 1.0:
            raise ValueError(f"{where}: seqlen_warmup.fraction={self.seqlen_warmup.fraction}, expected [0, 1)")
        if "vocab_size" in self.model:
            raise ValueError(f"{where}: model.vocab_size is set by the data source's tokenizer; remove it")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "scaling config") -> ScalingConfig:
        _check_keys(cls, data, where)
        values = dict(data)
        sections = {"optimizer": OptimizerConfig, "seqlen_warmup": SeqLenWarmupConfig, "data": DataConfig}
        for key, section_cls in sections.items():
            if values.get(key) is not None:
                _check_keys(section_cls, values[key], f"{where}: {key}")
                section = dict(values[key])
                if section_cls is OptimizerConfig:  # YAML 1.1 reads `1e-3` as a string
                    section.update({k: float(v) for k, v in section.items() if k in _FLOAT_OPTIMIZER_KEYS})
                values[key] = section_cls(**section)
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name not in values]
        if missing:
            raise ValueError(f"{where}: missing required key(s) {missing}")
        config = cls(**values)
        config.validate(where)
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> ScalingConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"scaling config {path} does not exist")
        return cls.from_dict(yaml.safe_load(path.read_text()) or {}, where=str(path))
