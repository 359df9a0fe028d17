"""`SpeciesDataModule`: which genome does a segment come from? (HyenaDNA's species classification task.)

Each FASTA is one class. A sample draws a species uniformly, then a chromosome ∝ length, then a uniform segment
of `seq_len` bases. Each chromosome is cut into train / valid / test parts (`valid_fraction`, `test_fraction` at
its end), so no base of an evaluation segment is seen in training. Batches: `{"input_ids": (b, L) int64,
"labels": (b,) int64}`.
"""
from __future__ import annotations

from mambaseq.tasks.dna.bundled import BUNDLED_PREFIX, resolve_fasta
from mambaseq.tasks.dna.datamodule import GenomeDataModule
from mambaseq.tasks.dna.datasets import SpeciesWindows
from mambaseq.tasks.dna.genome import Genome
from mambaseq.tasks.dna.intervals import split_regions
from mambaseq.tasks.dna.tokenizer import VOCAB_SIZE, OnInvalid

DEFAULT_SPECIES = {"lambda_phage": f"{BUNDLED_PREFIX}lambda_phage",
                   "helicobacter_pylori": f"{BUNDLED_PREFIX}helicobacter_pylori"}
EVAL_SEED_OFFSETS = {"valid": 1, "test": 2}


class SpeciesDataModule(GenomeDataModule):
    """`genomes`: species name -> FASTA path (or `bundled:<name>`), in label order; None = the two bundled genomes
    (lambda phage vs a 200 kb piece of H. pylori). `train_samples_per_epoch` random training segments per epoch
    (reverse-complemented with probability `rc_probability`), `eval_samples` fixed segments per evaluation split."""

    def __init__(
        self,
        genomes: dict[str, str] | None = None,
        seq_len: int = 1024,
        batch_size: int | None = 8,
        tokens_per_batch: int | None = None,
        train_samples_per_epoch: int = 2048,
        eval_samples: int = 512,
        valid_fraction: float = 0.1,
        test_fraction: float = 0.1,
        eval_batch_size: int | None = None,
        rc_probability: float = 0.5,
        seed: int = 0,
        num_workers: int = 0,
        on_invalid: OnInvalid = "error",
        in_memory: bool | None = None,
    ) -> None:
        super().__init__(seq_len, batch_size, tokens_per_batch, seed, num_workers, eval_batch_size)
        genomes = dict(DEFAULT_SPECIES if genomes is None else genomes)
        if len(genomes) < 2:
            raise ValueError(f"SpeciesDataModule: genomes={genomes} must name at least two species")
        self.species = list(genomes)
        self.fasta_paths = [resolve_fasta(path) for path in genomes.values()]
        self.num_classes = len(self.species)
        self.train_samples_per_epoch = train_samples_per_epoch
        self.eval_samples = eval_samples
        self.valid_fraction = valid_fraction
        self.test_fraction = test_fraction
        self.rc_probability = rc_probability
        self.on_invalid = on_invalid
        self.in_memory = in_memory
        self.vocab_size = VOCAB_SIZE
        self.genomes: list[Genome] = []

    def _build_datasets(self) -> None:
        self.genomes = [Genome(path, on_invalid=self.on_invalid, in_memory=self.in_memory)
                        for path in self.fasta_paths]
        regions = [split_regions(genome.lengths, self.valid_fraction, self.test_fraction) for genome in self.genomes]
        self.datasets["train"] = SpeciesWindows(
            self.genomes, [r["train"] for r in regions], self.seq_len, self.train_samples_per_epoch, seed=self.seed,
            rc_probability=self.rc_probability)
        for split, offset in EVAL_SEED_OFFSETS.items():
            if all(r[split] for r in regions):
                self.datasets[split] = SpeciesWindows(
                    self.genomes, [r[split] for r in regions], self.seq_len, self.eval_samples,
                    seed=self.seed + offset)
