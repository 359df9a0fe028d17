"""Prepare offline genomes from Debian packages as FASTA + `.fai` + a BED file of train/valid/test intervals.

    python scripts/prepare_dna.py list
    python scripts/prepare_dna.py genome ecoli_mg1655 p_falciparum --output data/dna
    python scripts/prepare_dna.py bundled --source pkg --output mambaseq/assets/data/dna

`genome` downloads the Debian package with `apt-get download` (run `apt-get update` once first) unless `--source`
points at a folder where packages were already extracted (`dpkg-deb -x PKG.deb DIR`). Each genome is written to
`<output>/<name>/<name>.fa` (80 columns, record names = first header word), its samtools-compatible `.fai`, and
`<name>.bed` with lines `chrom start end split`: each record is tiled into `--interval`-base intervals (the last one
may be shorter); those starting in a record's first 80 % are train, next 10 % valid, last 10 % test; intervals with
more than `--max-n-fraction` N bases are dropped. `source.json` records where the data came from. `bundled` rebuilds
the two small genomes shipped in the package (see mambaseq/assets/data/dna/README.md).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mambaseq.tasks.dna.tokenizer import N_ID, DNATokenizer

LINE_WIDTH = 80
SPLIT_FRACTIONS = (("train", 0.8), ("valid", 0.9), ("test", 1.0))


@dataclass(frozen=True)
class DebianGenome:
    package: str
    path: str  # inside the extracted package
    description: str


RAGOUT = "/usr/share/doc/ragout/examples"
SMALT = "/usr/share/doc/smalt/test/data"
GENOMES: dict[str, DebianGenome] = {
    "ecoli_mg1655": DebianGenome("ragout-examples", f"{RAGOUT}/E.Coli/references/MG1655-K12.fasta.gz",
                                 "Escherichia coli K-12 MG1655, 4.6 Mbp, 1 record"),
    "ecoli_dh1": DebianGenome("ragout-examples", f"{RAGOUT}/E.Coli/references/DH1.fasta.gz",
                              "Escherichia coli DH1, 4.6 Mbp, 1 record"),
    "h_pylori_g27": DebianGenome("ragout-examples", f"{RAGOUT}/H.Pylori/references/G27.fasta.gz",
                                 "Helicobacter pylori G27, 1.65 Mbp, 1 record"),
    "s_aureus_col": DebianGenome("ragout-examples", f"{RAGOUT}/S.Aureus/references/COL.fasta.gz",
                                 "Staphylococcus aureus COL, 2.8 Mbp, 1 record"),
    "v_cholerae_o395": DebianGenome("ragout-examples", f"{RAGOUT}/V.Cholerae/references/O395.fasta.gz",
                                    "Vibrio cholerae O395, 4.1 Mbp, 2 chromosomes"),
    "hs37_chrx_trunc": DebianGenome("smalt-examples", f"{SMALT}/hs37chrXtrunc.fa.gz",
                                    "Human GRCh37 chrX, first 70 Mbp (N-rich start)"),
    "p_falciparum": DebianGenome("smalt-examples", f"{SMALT}/genome_1.fa.gz",
                                 "Plasmodium falciparum, 23 Mbp, 14 chromosomes (MAL1-14), AT-rich"),
    "p_knowlesi": DebianGenome("smalt-examples", f"{SMALT}/cigar_ref.fa.gz",
                               "Plasmodium knowlesi, 26 Mbp, 1840 contigs"),
}
BUNDLED = {  # file written -> (Debian package, path inside it)
    "lambda_phage.fa.gz": ("bowtie2-examples", "/usr/share/doc/bowtie2/examples/reference/lambda_virus.fa.gz"),
    "helicobacter_pylori_g27_200kb.fa.gz": ("ragout-examples", f"{RAGOUT}/H.Pylori/references/G27.fasta.gz"),
}
H_PYLORI_BUNDLED_BASES = 200_000
H_PYLORI_BUNDLED_NAME = "NC_011333.1_1-200000 Helicobacter pylori G27 chromosome, bases 1-200000"


def extracted_package(package: str, source: Path | None, cache: Path) -> Path:
    """Folder holding the extracted files of `package`: `source` if given, else apt-get download + dpkg-deb -x."""
    if source is not None:
        return source
    target = cache / package
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise SystemExit(f"prepare_dna: {tool} is not installed; extract {package} yourself and pass --source DIR")
    result = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"prepare_dna: `apt-get download {package}` failed (run `apt-get update` first?):\n"
                         f"{result.stderr.strip()}")
    deb = sorted(cache.glob(f"{package}_*.deb"))[-1]
    subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
    return target


def read_records(path: Path) -> list[tuple[str, str, bytes]]:
    """`(name, header, sequence bytes)` of a (gzip) FASTA, with a progress bar over the input."""
    opener = gzip.open if path.suffix == ".gz" else open
    records: list[tuple[str, str, list[bytes]]] = []
    with opener(path, "rb") as file, tqdm(desc=f"read {path.name}", unit="B", unit_scale=True) as progress:
        for line in file:
            progress.update(len(line))
            if line.startswith(b">"):
                header = line[1:].decode().strip()
                if not header:
                    raise SystemExit(f"prepare_dna: {path}: a header has no record name")
                records.append((header.split()[0], header, []))
            elif records:
                records[-1][2].append(line.strip())
            elif line.strip():
                raise SystemExit(f"prepare_dna: {path}: sequence before the first '>' header")
    if not records:
        raise SystemExit(f"prepare_dna: {path} holds no FASTA records")
    return [(name, header, b"".join(chunks)) for name, header, chunks in records]


def write_fasta_with_index(records: list[tuple[str, str, bytes]], path: Path) -> None:
    """FASTA at `LINE_WIDTH` columns and its `.fai` (name, length, offset, line bases, line bytes)."""
    index_lines, offset = [], 0
    with open(path, "wb") as fasta:
        for name, _, sequence in tqdm(records, desc=f"write {path.name}", unit="record"):
            header = f">{name}\n".encode()
            fasta.write(header)
            offset += len(header)
            index_lines.append(f"{name}\t{len(sequence)}\t{offset}\t{LINE_WIDTH}\t{LINE_WIDTH + 1}\n")
            for start in range(0, len(sequence), LINE_WIDTH):
                line = sequence[start:start + LINE_WIDTH] + b"\n"
                fasta.write(line)
                offset += len(line)
    Path(f"{path}.fai").write_text("".join(index_lines))


def split_intervals(name: str, ids: np.ndarray, interval: int, max_n_fraction: float) -> list[str]:
    """BED lines tiling one record; the split follows where the interval starts in the record."""
    lines, length = [], len(ids)
    for start in range(0, length, interval):
        end = min(start + interval, length)
        if np.mean(ids[start:end] == N_ID) > max_n_fraction:
            continue
        split = next(split for split, bound in SPLIT_FRACTIONS if start < bound * length)
        lines.append(f"{name}\t{start}\t{end}\t{split}\n")
    return lines


def prepare_genome(name: str, args: argparse.Namespace) -> Path:
    spec = GENOMES[name]
    source = extracted_package(spec.package, args.source, args.cache) / spec.path.lstrip("/")
    if not source.is_file():
        raise SystemExit(f"prepare_dna: {source} does not exist: is {spec.package} extracted there?")
    records = read_records(source)
    folder = args.output / name
    folder.mkdir(parents=True, exist_ok=True)
    fasta = folder / f"{name}.fa"
    write_fasta_with_index(records, fasta)
    tokenizer, bed_lines = DNATokenizer(on_invalid="replace"), []
    for record, _, sequence in tqdm(records, desc="intervals", unit="record"):
        ids = tokenizer.encode(sequence, source=str(source), record=record)
        bed_lines += split_intervals(record, ids, args.interval, args.max_n_fraction)
    (folder / f"{name}.bed").write_text("".join(bed_lines))
    counts = {split: sum(line.endswith(f"\t{split}\n") for line in bed_lines) for split, _ in SPLIT_FRACTIONS}
    provenance = {"name": name, "description": spec.description, "debian_package": spec.package,
                  "file": spec.path, "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
                  "records": len(records), "bases": sum(len(s) for _, _, s in records),
                  "iupac_codes": tokenizer.counts["iupac"], "invalid_characters": tokenizer.counts["invalid"],
                  "interval": args.interval, "intervals": counts}
    (folder / "source.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"{name}: {provenance['bases']:,} bases in {len(records)} record(s) -> {fasta}; intervals {counts}")
    return fasta


def write_gzip_fasta(path: Path, header: str, sequence: bytes) -> None:
    lines = [sequence[i:i + 70] for i in range(0, len(sequence), 70)]
    with gzip.GzipFile(path, "wb", mtime=0) as file:
        file.write(f">{header}\n".encode() + b"\n".join(lines) + b"\n")


def prepare_bundled(args: argparse.Namespace) -> None:
    args.output.mkdir(parents=True, exist_ok=True)
    lambda_package, lambda_path = BUNDLED["lambda_phage.fa.gz"]
    lambda_source = extracted_package(lambda_package, args.source, args.cache) / lambda_path.lstrip("/")
    shutil.copyfile(lambda_source, args.output / "lambda_phage.fa.gz")
    pylori_package, pylori_path = BUNDLED["helicobacter_pylori_g27_200kb.fa.gz"]
    [(_, _, sequence)] = read_records(extracted_package(pylori_package, args.source, args.cache)
                                      / pylori_path.lstrip("/"))
    write_gzip_fasta(args.output / "helicobacter_pylori_g27_200kb.fa.gz", H_PYLORI_BUNDLED_NAME,
                     sequence[:H_PYLORI_BUNDLED_BASES])
    for name in BUNDLED:
        print(f"{args.output / name}: sha256 {hashlib.sha256((args.output / name).read_bytes()).hexdigest()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="genomes this script can prepare")
    genome = commands.add_parser("genome", help="prepare genomes (FASTA + .fai + BED splits)")
    genome.add_argument("names", nargs="+", choices=sorted(GENOMES), metavar="NAME")
    genome.add_argument("--output", type=Path, default=Path("data/dna"))
    genome.add_argument("--interval", type=int, default=2**17, help="bases per BED interval (HyenaDNA: 2^17)")
    genome.add_argument("--max-n-fraction", type=float, default=0.5, help="drop intervals with more N than this")
    bundled = commands.add_parser("bundled", help="rebuild the genomes shipped in mambaseq/assets/data/dna")
    bundled.add_argument("--output", type=Path, default=Path("mambaseq/assets/data/dna"))
    for sub in (genome, bundled):
        sub.add_argument("--source", type=Path, help="folder where the Debian packages are already extracted")
        sub.add_argument("--cache", type=Path, default=Path("data/cache/debian"), help="download folder")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, spec in GENOMES.items():
            print(f"{name:<18} {spec.package:<17} {spec.description}")
    elif args.command == "genome":
        for name in args.names:
            prepare_genome(name, args)
    else:
        prepare_bundled(args)


if __name__ == "__main__":
    main(sys.argv[1:])
