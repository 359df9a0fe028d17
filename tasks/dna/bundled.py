"""Genomes shipped with the package (see `mambaseq/assets/data/dna/README.md` for their provenance)."""
from __future__ import annotations

from pathlib import Path

BUNDLED_GENOMES: dict[str, str] = {
    "lambda_phage": "lambda_phage.fa.gz",
    "helicobacter_pylori": "helicobacter_pylori_g27_200kb.fa.gz",
}
BUNDLED_PREFIX = "bundled:"
DEFAULT_GENOME = "lambda_phage"


def bundled_genome(name: str) -> Path:
    """Path of bundled genome `name` (one of `BUNDLED_GENOMES`)."""
    if name not in BUNDLED_GENOMES:
        raise ValueError(f"bundled genome {name!r} is unknown: expected one of {sorted(BUNDLED_GENOMES)}")
    return _assets_dir() / BUNDLED_GENOMES[name]


def resolve_fasta(value: str | Path | None) -> Path:
    """A FASTA path from a config value: None = the default bundled genome, `bundled:<name>` = a bundled genome,
    anything else a file path."""
    if value is None:
        return bundled_genome(DEFAULT_GENOME)
    text = str(value)
    if text.startswith(BUNDLED_PREFIX):
        return bundled_genome(text[len(BUNDLED_PREFIX):])
    return Path(text).expanduser()


def _assets_dir() -> Path:
    """The assets folder of the installed `mambaseq` package (source checkout or wheel)."""
    import mambaseq

    return Path(mambaseq.__file__).resolve().parent / "assets" / "data" / "dna"
