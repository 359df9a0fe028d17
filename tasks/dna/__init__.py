"""DNA modeling: character tokenizer, FASTA/BED data, HG38-style pretraining and species classification with
causal, bidirectional (BiMamba) and reverse-complement-equivariant Mamba networks. See docs/dna.md."""
from mambaseq.tasks.dna.datamodule import DNADataModule
from mambaseq.tasks.dna.species import SpeciesDataModule
from mambaseq.tasks.dna.task import DNAClassificationTask, DNAPretrainingTask

__all__ = ["DNAClassificationTask", "DNADataModule", "DNAPretrainingTask", "SpeciesDataModule"]
