"""Data modules for DNA: `DNADataModule` (next-token / masked pretraining windows of one genome, from a BED file
of split intervals or by whole-genome sampling) and the shared base `GenomeDataModule`.

Batches: `{"input_ids": (b, L) int64, "labels": (b, L) int64}`, labels = next base, -100 where the target is
[PAD]. Training loaders are resumable (`ResumableDataLoader`) and draw fresh windows each epoch; evaluation loaders
are fixed. Both shard by rank. The training shape follows `SequenceLengthWarmup` through `set_sequence_length`.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset, Subset

from mambaseq.tasks.data import ResumableDataLoader
from mambaseq.tasks.dna.bundled import resolve_fasta
from mambaseq.tasks.dna.datasets import IntervalWindows, RandomWindows, TiledWindows
from mambaseq.tasks.dna.genome import Genome
from mambaseq.tasks.dna.intervals import SPLITS, read_bed, split_regions
from mambaseq.tasks.dna.tokenizer import VOCAB_SIZE, OnInvalid
from mambaseq.tasks.seqlen_warmup import split_windows


class EpochAwareLoader(ResumableDataLoader):
    """`ResumableDataLoader` that tells its dataset the epoch before each pass, so random windows change with the
    epoch and stay reproducible (workers receive the dataset, epoch included, when each pass starts)."""

    def __iter__(self) -> Iterator[Any]:
        self.dataset.epoch = self.resumable_sampler.epoch
        yield from super().__iter__()


class GenomeDataModule(pl.LightningDataModule):
    """Shared loaders, rank sharding and sequence-length warmup. `batch_size` is derived from `tokens_per_batch`
    when that is given (`tokens_per_batch / seq_len`)."""

    def __init__(self, seq_len: int, batch_size: int | None, tokens_per_batch: int | None, seed: int,
                 num_workers: int, eval_batch_size: int | None) -> None:
        super().__init__()
        if seq_len < 1:
            raise ValueError(f"{type(self).__name__}: seq_len={seq_len}, expected a positive integer")
        if tokens_per_batch is not None:
            if tokens_per_batch % seq_len:
                raise ValueError(f"{type(self).__name__}: tokens_per_batch={tokens_per_batch} is not a multiple of "
                                 f"seq_len={seq_len}")
            if batch_size is not None and batch_size * seq_len != tokens_per_batch:
                raise ValueError(f"{type(self).__name__}: batch_size={batch_size} x seq_len={seq_len} != "
                                 f"tokens_per_batch={tokens_per_batch}; give only one of batch_size, tokens_per_batch")
            batch_size = tokens_per_batch // seq_len
        if batch_size is None or batch_size < 1:
            raise ValueError(f"{type(self).__name__}: batch_size={batch_size}, expected a positive integer (or "
                             "tokens_per_batch)")
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.train_seq_len = seq_len
        self.datasets: dict[str, Dataset] = {}

    # --------------------------------------------------------------------------------------- length warmup
    def set_sequence_length(self, seq_len: int, batch_size: int) -> None:
        """Train on `(batch_size, seq_len)` batches from the next batch on, at the same tokens per batch: loaded
        `(b, L)` batches are cut into `L / seq_len` pieces (`split_windows`), which the training dataset draws
        independently of each other (`GenomeWindows.set_pieces`; with `num_workers > 0` from the next epoch on)."""
        if self.seq_len % seq_len or seq_len * batch_size != self.seq_len * self.batch_size:
            raise ValueError(f"{type(self).__name__}.set_sequence_length({seq_len}, {batch_size}): expected a divisor "
                             f"of seq_len={self.seq_len} and {self.seq_len * self.batch_size} tokens per batch")
        self.train_seq_len = seq_len
        if "train" in self.datasets:
            self.datasets["train"].set_pieces(self.seq_len // seq_len)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        if trainer is not None and trainer.training and self.train_seq_len != self.seq_len:
            return split_windows(batch, self.train_seq_len)
        return batch

    # ---------------------------------------------------------------------------------------------- loaders
    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            self._build_datasets()
            self.set_sequence_length(self.train_seq_len, self.seq_len * self.batch_size // self.train_seq_len)

    def _build_datasets(self) -> None:
        """Fill `self.datasets` ("train", and "valid" / "test" when there is held-out data)."""
        raise NotImplementedError

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _dataset(self, split: str) -> Dataset:
        if not self.datasets:
            raise RuntimeError(f"{type(self).__name__}: no data yet; call setup() first (the Trainer does)")
        if split not in self.datasets:
            raise ValueError(f"{type(self).__name__}: there is no {split} split (a BED file without {split} "
                             f"intervals, or a {split} fraction of 0); set trainer.limit_val_batches: 0 to skip it")
        return self.datasets[split]

    def train_dataloader(self) -> ResumableDataLoader:
        rank, world_size = self._rank()
        return EpochAwareLoader(self._dataset("train"), self.batch_size, shuffle=True, seed=self.seed, rank=rank,
                                world_size=world_size, num_workers=self.num_workers)

    def _eval_loader(self, split: str) -> DataLoader:
        dataset = self._dataset(split)
        rank, world_size = self._rank()
        if world_size > 1:  # equal shares, so that ranks run the same number of (synchronized) eval steps
            share = max(1, len(dataset) // world_size)
            dataset = Subset(dataset, [(rank + k * world_size) % len(dataset) for k in range(share)])
        return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


class DNADataModule(GenomeDataModule):
    """Pretraining windows of one genome.

    With `bed` (lines `chrom start end split`, HyenaDNA's HG38 `sequences.bed`), each interval of a split is one
    sample, widened around its centre to `seq_len + 1` bases. Without it, each chromosome is cut into train / valid /
    test parts (`valid_fraction`, `test_fraction` at its end); training draws `train_samples_per_epoch` random
    windows per epoch (chromosome ∝ length; default: train bases / seq_len), evaluation tiles the held-out parts
    (at most `max_eval_windows` windows). `fasta` None is the bundled lambda phage genome; `bundled:<name>` names
    another bundled genome. Training windows are reverse-complemented with probability `rc_probability`.
    """

    def __init__(
        self,
        fasta: str | None = None,
        bed: str | None = None,
        seq_len: int = 1024,
        batch_size: int | None = 8,
        tokens_per_batch: int | None = None,
        train_samples_per_epoch: int | None = None,
        valid_fraction: float = 0.1,
        test_fraction: float = 0.1,
        max_eval_windows: int | None = None,
        eval_batch_size: int | None = None,
        rc_probability: float = 0.5,
        seed: int = 0,
        num_workers: int = 0,
        on_invalid: OnInvalid = "error",
        in_memory: bool | None = None,
    ) -> None:
        super().__init__(seq_len, batch_size, tokens_per_batch, seed, num_workers, eval_batch_size)
        if bed is not None and train_samples_per_epoch is not None:
            raise ValueError("DNADataModule: train_samples_per_epoch applies to whole-genome sampling; with a BED "
                             "file every train interval is one sample per epoch")
        self.fasta = resolve_fasta(fasta)
        self.bed = bed
        self.train_samples_per_epoch = train_samples_per_epoch
        self.valid_fraction = valid_fraction
        self.test_fraction = test_fraction
        self.max_eval_windows = max_eval_windows
        self.rc_probability = rc_probability
        self.on_invalid = on_invalid
        self.in_memory = in_memory
        self.vocab_size = VOCAB_SIZE
        self.genome: Genome | None = None

    def _build_datasets(self) -> None:
        self.genome = Genome(self.fasta, on_invalid=self.on_invalid, in_memory=self.in_memory)
        window = self.seq_len + 1
        if self.bed is not None:
            intervals = read_bed(self.bed, self.genome.lengths)
            by_split = {split: [i for i in intervals if i.split == split] for split in SPLITS}
            for split in SPLITS:
                chosen = by_split[split]
                if split != "train" and self.max_eval_windows and len(chosen) > self.max_eval_windows:
                    step = len(chosen) / self.max_eval_windows
                    chosen = [chosen[int(k * step)] for k in range(self.max_eval_windows)]
                if chosen:
                    self.datasets[split] = IntervalWindows(
                        self.genome, chosen, window, seed=self.seed,
                        rc_probability=self.rc_probability if split == "train" else 0.0)
            if "train" not in self.datasets:
                raise ValueError(f"BED file {self.bed} has no 'train' interval")
            return
        regions = split_regions(self.genome.lengths, self.valid_fraction, self.test_fraction)
        train_bases = sum(region.length for region in regions["train"])
        num_samples = self.train_samples_per_epoch or max(1, train_bases // self.seq_len)
        self.datasets["train"] = RandomWindows(self.genome, regions["train"], window, num_samples, seed=self.seed,
                                               rc_probability=self.rc_probability)
        for split in ("valid", "test"):
            if regions[split]:
                self.datasets[split] = TiledWindows(self.genome, regions[split], window,
                                                    max_windows=self.max_eval_windows, seed=self.seed)

    def describe(self) -> dict[str, int]:
        """Number of windows per split (after `setup`)."""
        return {split: len(dataset) for split, dataset in self.datasets.items()}
