"""FASTA reading, BED parsing, interval widening, window datasets and the DNA data modules."""
import numpy as np
import pytest
import torch

from mambaseq.tasks.dna.bundled import BUNDLED_GENOMES, bundled_genome, resolve_fasta
from mambaseq.tasks.dna.datamodule import DNADataModule
from mambaseq.tasks.dna.datasets import IGNORE_INDEX, IntervalWindows, RandomWindows, TiledWindows
from mambaseq.tasks.dna.genome import FastaFormatError, Genome
from mambaseq.tasks.dna.intervals import BedFormatError, Interval, read_bed, split_regions, widen_interval
from mambaseq.tasks.dna.species import SpeciesDataModule
from mambaseq.tasks.dna.tokenizer import PAD_ID, DNATokenizer, InvalidSequenceError, reverse_complement


# ------------------------------------------------------------------------------------------------------ FASTA
def test_gzip_in_memory_and_indexed_plain_fasta_agree(tmp_path, genome_records, write_fasta):
    plain = Genome(write_fasta(tmp_path / "g.fa", genome_records), in_memory=False)
    gzipped = Genome(write_fasta(tmp_path / "g.fa.gz", genome_records))
    assert gzipped.in_memory and not plain.in_memory
    assert plain.lengths == gzipped.lengths == {name: len(seq) for name, seq in genome_records.items()}
    expected = DNATokenizer().encode(genome_records["chr1"][123:1234])
    assert np.array_equal(plain.fetch("chr1", 123, 1234), expected)
    assert np.array_equal(gzipped.fetch("chr1", 123, 1234), expected)


def test_fasta_reads_soft_masked_and_iupac_bases(tmp_path, write_fasta):
    genome = Genome(write_fasta(tmp_path / "g.fa.gz", {"chr1": "acgtRYACGT"}))
    assert DNATokenizer().decode(genome.fetch("chr1", 0, 10)) == "ACGTNNACGT"
    assert genome.tokenizer.counts["iupac"] == 2


def test_fasta_errors_name_file_record_and_position(tmp_path, write_fasta):
    empty = tmp_path / "empty.fa"
    empty.write_text("")
    with pytest.raises(FastaFormatError, match="empty.fa is empty"):
        Genome(empty)
    no_header = tmp_path / "raw.fa.gz"
    write_fasta(tmp_path / "ok.fa.gz", {"x": "ACGT"})
    no_header.write_bytes(b"")
    with pytest.raises(FastaFormatError, match="raw.fa.gz is empty"):
        Genome(no_header)
    headerless = tmp_path / "headerless.fa"
    headerless.write_text("ACGT\nACGT\n")
    with pytest.raises(FastaFormatError, match="headerless.fa, line 1: expected a '>name' header"):
        Genome(headerless, in_memory=True)
    bad = write_fasta(tmp_path / "bad.fa", {"chr1": "ACGT" * 20, "chr7": "ACGTAC!GT"})
    with pytest.raises(InvalidSequenceError, match=r"bad.fa, record 'chr7', position 6: character '!'"):
        Genome(bad, in_memory=True)
    duplicate = write_fasta(tmp_path / "dup.fa", {"chr1": "ACGT"})
    duplicate.write_text(duplicate.read_text() * 2)
    with pytest.raises(FastaFormatError, match="record name 'chr1' appears twice"):
        Genome(duplicate, in_memory=True)
    genome = Genome(write_fasta(tmp_path / "g.fa", {"chr1": "ACGT" * 10}), in_memory=False)
    with pytest.raises(FastaFormatError, match="no record named 'chrX'"):
        genome.fetch("chrX", 0, 4)
    with pytest.raises(FastaFormatError, match=r"range \[30, 50\) is outside record 'chr1' of length 40"):
        genome.fetch("chr1", 30, 50)


def test_bundled_genomes_are_where_the_docs_say():
    lambda_phage = Genome(bundled_genome("lambda_phage"))
    assert lambda_phage.total_length == 48502
    assert resolve_fasta(None) == bundled_genome("lambda_phage")
    assert resolve_fasta("bundled:helicobacter_pylori") == bundled_genome("helicobacter_pylori")
    assert sum(bundled_genome(name).stat().st_size for name in BUNDLED_GENOMES) < 1_000_000
    with pytest.raises(ValueError, match="bundled genome 'mouse' is unknown"):
        resolve_fasta("bundled:mouse")


# -------------------------------------------------------------------------------------------------------- BED
def test_read_bed_with_split_column_and_comments(tmp_path):
    bed = tmp_path / "seq.bed"
    bed.write_text("# header\ntrack name=x\nchr1\t0\t100\ttrain\n\nchr2 10 20 valid\nchr1 5 9 validation\n"
                   "chr1 100 3000 test\n")
    intervals = read_bed(bed, {"chr1": 3000, "chr2": 1000})
    assert intervals == [Interval("chr1", 0, 100, "train"), Interval("chr2", 10, 20, "valid"),
                         Interval("chr1", 5, 9, "valid"), Interval("chr1", 100, 3000, "test")]


@pytest.mark.parametrize("line, message", [
    ("chrX 0 10 train", r"seq.bed:2: chromosome 'chrX' is not in the FASTA file"),
    ("chr1 2990 3001 train", r"seq.bed:2: end 3001 is beyond the end of chr1 \(length 3000\)"),
    ("chr1 10 10 train", r"seq.bed:2: interval \[10, 10\) is empty"),
    ("chr1 ten 20 train", r"seq.bed:2: start and end must be integers"),
    ("chr1 0 10", r"seq.bed:2: expected 4 columns"),
    ("chr1 0 10 holdout", r"seq.bed:2: split 'holdout' is unknown"),
])
def test_bed_errors_name_file_line_and_value(tmp_path, line, message):
    bed = tmp_path / "seq.bed"
    bed.write_text(f"chr1 0 10 train\n{line}\n")
    with pytest.raises(BedFormatError, match=message):
        read_bed(bed, {"chr1": 3000})


def test_empty_bed_is_an_error(tmp_path):
    bed = tmp_path / "empty.bed"
    bed.write_text("# nothing\n")
    with pytest.raises(BedFormatError, match="empty.bed holds no intervals"):
        read_bed(bed, {"chr1": 10})


# ----------------------------------------------------------------------------------------------- widening
@pytest.mark.parametrize("start, end, chrom_length, length, expected", [
    (100, 110, 1000, 30, (90, 120)),       # widened symmetrically around the centre
    (100, 111, 1000, 30, (91, 121)),       # odd slack: the extra base goes to the right
    (2, 12, 1000, 30, (0, 30)),            # clamped at the chromosome start
    (990, 1000, 1000, 30, (970, 1000)),    # clamped at the chromosome end
    (100, 500, 1000, 100, (250, 350)),     # a longer interval is narrowed around its centre
    (0, 20, 25, 30, (0, 25)),              # chromosome shorter than the window: all of it (caller pads)
])
def test_widen_interval(start, end, chrom_length, length, expected):
    assert widen_interval(start, end, chrom_length, length) == expected


def test_interval_windows_pad_only_short_chromosomes(fasta_path):
    genome = Genome(fasta_path)
    intervals = [Interval("chr1", 0, 10), Interval("chrM", 10, 20)]
    dataset = IntervalWindows(genome, intervals, 101)
    first, short = dataset[0], dataset[1]
    assert (first["input_ids"] != PAD_ID).all()
    assert torch.equal(first["input_ids"], torch.from_numpy(genome.fetch("chr1", 0, 100).astype(np.int64)))
    assert (short["input_ids"][:50] != PAD_ID).all() and (short["input_ids"][50:] == PAD_ID).all()
    assert (short["labels"][49:] == IGNORE_INDEX).all() and (short["labels"][:49] != IGNORE_INDEX).all()


# ------------------------------------------------------------------------------------------- whole genome
def test_random_windows_are_deterministic_per_seed_and_epoch(fasta_path):
    genome = Genome(fasta_path)
    regions = split_regions(genome.lengths, 0.1, 0.1)["train"]

    def draw(seed: int, epoch: int) -> torch.Tensor:
        dataset = RandomWindows(genome, regions, 65, num_samples=8, seed=seed, rc_probability=0.5)
        dataset.epoch = epoch
        return torch.stack([dataset[i]["input_ids"] for i in range(8)])

    assert torch.equal(draw(0, 0), draw(0, 0))
    assert not torch.equal(draw(0, 0), draw(0, 1))
    assert not torch.equal(draw(0, 0), draw(1, 0))


def test_random_windows_pick_chromosomes_in_proportion_to_length(tmp_path, write_fasta):
    genome = Genome(write_fasta(tmp_path / "g.fa", {"big": "A" * 3000, "small": "C" * 1000}))
    regions = split_regions(genome.lengths, 0.0, 0.0)["train"]
    dataset = RandomWindows(genome, regions, 11, num_samples=4000, seed=3)
    from_big = np.mean([dataset[i]["input_ids"][0].item() == 7 for i in range(4000)])
    assert abs(from_big - 0.75) < 0.03


def test_rc_augmentation_reverse_complements_the_same_window(fasta_path):
    genome = Genome(fasta_path)
    regions = split_regions(genome.lengths, 0.1, 0.1)["train"]
    plain = RandomWindows(genome, regions, 40, num_samples=4, seed=5, next_token=False)
    flipped = RandomWindows(genome, regions, 40, num_samples=4, seed=5, next_token=False, rc_probability=1.0)
    for index in range(4):
        assert torch.equal(flipped[index]["input_ids"], reverse_complement(plain[index]["input_ids"]))


def test_tiled_windows_score_every_held_out_base_once(fasta_path):
    genome = Genome(fasta_path)
    regions = split_regions(genome.lengths, 0.2, 0.0)["valid"]
    dataset = TiledWindows(genome, regions, 101)
    targets = sum(int((dataset[i]["labels"] != IGNORE_INDEX).sum()) for i in range(len(dataset)))
    assert targets == sum(region.length - 1 for region in regions)


# ------------------------------------------------------------------------------------------- data modules
def test_dna_data_module_whole_genome_batches(fasta_path):
    module = DNADataModule(fasta=str(fasta_path), seq_len=64, batch_size=4, train_samples_per_epoch=16)
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch["input_ids"].shape == batch["labels"].shape == (4, 64)
    inside = batch["labels"][:, :-1] != IGNORE_INDEX
    assert torch.equal(batch["labels"][:, :-1][inside], batch["input_ids"][:, 1:][inside])
    assert set(module.describe()) == {"train", "valid", "test"}


def test_dna_data_module_with_bed_splits(tmp_path, fasta_path):
    bed = tmp_path / "seq.bed"
    bed.write_text("chr1 0 100 train\nchr1 200 300 train\nchr2 0 500 valid\nchrM 0 50 test\n")
    module = DNADataModule(fasta=str(fasta_path), bed=str(bed), seq_len=128, batch_size=2)
    module.setup("fit")
    assert module.describe() == {"train": 2, "valid": 1, "test": 1}
    test_batch = next(iter(module.test_dataloader()))
    assert (test_batch["input_ids"][0, 50:] == PAD_ID).all()
    with pytest.raises(ValueError, match="train_samples_per_epoch applies to whole-genome sampling"):
        DNADataModule(fasta=str(fasta_path), bed=str(bed), train_samples_per_epoch=4)


def test_data_module_tokens_per_batch_and_warmup_shapes(fasta_path):
    module = DNADataModule(fasta=str(fasta_path), seq_len=64, batch_size=None, tokens_per_batch=256,
                           train_samples_per_epoch=8)
    assert module.batch_size == 4
    module.setup("fit")
    module.set_sequence_length(16, 16)
    batch = next(iter(module.train_dataloader()))
    assert batch["input_ids"].shape == (4, 64)
    pieces = batch["input_ids"].reshape(16, 16)
    labels = batch["labels"].reshape(16, 16)
    inside = labels[:, :-1] != IGNORE_INDEX
    assert torch.equal(labels[:, :-1][inside], pieces[:, 1:][inside])
    with pytest.raises(ValueError, match="expected a divisor of seq_len=64 and 256 tokens per batch"):
        module.set_sequence_length(16, 8)


def test_species_data_module_labels_and_balance():
    module = SpeciesDataModule(seq_len=128, batch_size=64, train_samples_per_epoch=256, eval_samples=64)
    module.setup("fit")
    assert module.species == ["lambda_phage", "helicobacter_pylori"] and module.num_classes == 2
    batch = next(iter(module.train_dataloader()))
    assert batch["input_ids"].shape == (64, 128) and batch["labels"].shape == (64,)
    assert 16 < int(batch["labels"].sum()) < 48
    valid = next(iter(module.val_dataloader()))
    assert torch.equal(valid["input_ids"], next(iter(module.val_dataloader()))["input_ids"])
    with pytest.raises(ValueError, match="at least two species"):
        SpeciesDataModule(genomes={"only": "bundled:lambda_phage"})
