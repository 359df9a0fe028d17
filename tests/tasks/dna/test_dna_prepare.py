"""scripts/prepare_dna.py on a fake extracted Debian package: FASTA + samtools-compatible .fai + BED splits."""
import json
from pathlib import Path

import numpy as np
import pyfaidx

from mambaseq.tasks.dna.datamodule import DNADataModule
from mambaseq.tasks.dna.genome import Genome
from mambaseq.tasks.dna.tokenizer import DNATokenizer
from script_loader import load_script


def test_prepare_genome_writes_fasta_index_and_splits(tmp_path, write_fasta, random_bases):
    prepare = load_script("prepare_dna")
    source = tmp_path / "extracted"
    inner = source / prepare.GENOMES["v_cholerae_o395"].path.lstrip("/")
    inner.parent.mkdir(parents=True)
    records = {"chrI": random_bases(5000, 1).lower(), "chrII": "N" * 1200 + random_bases(1800, 2)}
    write_fasta(inner, records)
    prepare.main(["genome", "v_cholerae_o395", "--source", str(source), "--output", str(tmp_path / "out"),
                  "--interval", "600"])
    folder = tmp_path / "out" / "v_cholerae_o395"
    fasta = folder / "v_cholerae_o395.fa"
    ours = Path(f"{fasta}.fai").read_text()
    Path(f"{fasta}.fai").unlink()
    pyfaidx.Faidx(str(fasta)).close()
    assert Path(f"{fasta}.fai").read_text() == ours
    genome = Genome(fasta, in_memory=False)
    assert np.array_equal(genome.fetch("chrII", 1190, 1300), DNATokenizer().encode(records["chrII"][1190:1300]))
    bed = [line.split() for line in (folder / "v_cholerae_o395.bed").read_text().splitlines()]
    chr1 = [(int(start), split) for chrom, start, _, split in bed if chrom == "chrI"]
    assert [split for _, split in chr1] == ["train"] * 7 + ["valid", "test"]
    assert [int(start) for chrom, start, _, _ in bed if chrom == "chrII"] == [1200, 1800, 2400]  # N-rich dropped
    provenance = json.loads((folder / "source.json").read_text())
    assert provenance["bases"] == 8000 and provenance["intervals"] == {"train": 9, "valid": 2, "test": 1}
    module = DNADataModule(fasta=str(fasta), bed=str(folder / "v_cholerae_o395.bed"), seq_len=256, batch_size=2)
    module.setup("fit")
    assert module.describe() == {"train": 9, "valid": 2, "test": 1}
