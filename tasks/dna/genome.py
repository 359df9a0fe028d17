"""Random access to the records (chromosomes) of one FASTA file, as token ids.

Two backends behind one interface (`names`, `lengths`, `fetch(name, start, end)`):
- in memory: the whole file is read once (plain, gzip or bgzip), checked and encoded to uint8 ids. Used for gzip
  files and for files up to `IN_MEMORY_MAX_BYTES`; errors name the record and the position of a bad character.
- indexed: pyfaidx over an uncompressed FASTA (or bgzip with Biopython installed) with its `.fai` index, built on
  first use; windows are read and encoded on demand, so a 3 Gbp genome costs no memory. The file handle is opened
  lazily in each process, so DataLoader workers never share a file offset.
"""
from __future__ import annotations

import gzip
import logging
import os
import re
from pathlib import Path

import numpy as np

from mambaseq.tasks.dna.tokenizer import DNATokenizer, OnInvalid

log = logging.getLogger(__name__)

IN_MEMORY_MAX_BYTES = 64 * 2**20
_HEADER = re.compile(rb"^>([^\n]*)\n?", re.MULTILINE)
_WHITESPACE = b" \t\r\n"


class FastaFormatError(ValueError):
    """A FASTA file is empty, malformed, or asked for a record or range it does not have."""


def is_bgzip(path: Path) -> bool:
    """True for BGZF (blocked gzip) files: a gzip header with the FEXTRA "BC" subfield."""
    with open(path, "rb") as file:
        head = file.read(16)
    return len(head) >= 14 and head[:2] == b"\x1f\x8b" and bool(head[3] & 4) and head[12:14] == b"BC"


def _biopython_available() -> bool:
    try:
        import Bio.bgzf  # noqa: F401
    except ImportError:
        return False
    return True


class Genome:
    """One FASTA file. `names`: record names in file order (first word of each header); `lengths`: name -> bases.
    `fetch(name, start, end) -> (end - start,) uint8 ids` with 0-based, end-exclusive coordinates."""

    def __init__(self, path: str | os.PathLike, *, on_invalid: OnInvalid = "error", in_memory: bool | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"FASTA file {self.path} does not exist")
        if self.path.stat().st_size == 0:
            raise FastaFormatError(f"FASTA file {self.path} is empty: expected '>name' headers followed by bases")
        self.tokenizer = DNATokenizer(on_invalid)
        if in_memory is None:
            in_memory = self._prefers_memory()
        self.in_memory = in_memory
        self._records: dict[str, np.ndarray] = {}
        self._fasta = None
        self._fasta_pid: int | None = None
        self._warned_iupac = False
        if in_memory:
            self._records = self._read_all()
            self.lengths = {name: len(ids) for name, ids in self._records.items()}
        else:
            self.lengths = {name: len(record) for name, record in self._indexed().items()}
        if not self.lengths:
            raise FastaFormatError(f"FASTA file {self.path} holds no records: expected '>name' headers")
        if sum(self.lengths.values()) == 0:
            raise FastaFormatError(f"FASTA file {self.path}: every record is empty (no bases)")
        self.names = list(self.lengths)

    def _prefers_memory(self) -> bool:
        if self.path.suffix == ".gz":
            return not (is_bgzip(self.path) and _biopython_available())
        return self.path.stat().st_size <= IN_MEMORY_MAX_BYTES

    @property
    def total_length(self) -> int:
        return sum(self.lengths.values())

    def fetch(self, name: str, start: int, end: int) -> np.ndarray:
        """Ids of bases `[start, end)` of record `name`: `(end - start,)` uint8."""
        length = self.lengths.get(name)
        if length is None:
            raise FastaFormatError(f"{self.path}: no record named {name!r}; records are {self._names_preview()}")
        if not 0 <= start <= end <= length:
            raise FastaFormatError(f"{self.path}: range [{start}, {end}) is outside record {name!r} of length "
                                   f"{length}")
        if self.in_memory:
            return self._records[name][start:end]
        raw = self._indexed()[name][start:end]
        ids = self.tokenizer.encode(raw, source=str(self.path), record=name, offset=start)
        if self.tokenizer.counts["iupac"] and not self._warned_iupac:
            self._warned_iupac = True
            log.warning("%s: IUPAC ambiguity codes found (first in %s near %d); they are read as N", self.path, name,
                        start)
        return ids

    def _names_preview(self, limit: int = 10) -> str:
        names = list(self.lengths)
        return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")

    # ------------------------------------------------------------------------------------------------ in memory
    def _read_all(self) -> dict[str, np.ndarray]:
        opener = gzip.open if self.path.suffix == ".gz" else open
        try:
            with opener(self.path, "rb") as file:
                data = file.read()
        except (OSError, EOFError) as error:
            raise FastaFormatError(f"FASTA file {self.path} cannot be read: {error}") from error
        first_line = data.lstrip(_WHITESPACE).split(b"\n", 1)[0]
        if not first_line:
            raise FastaFormatError(f"FASTA file {self.path} is empty: expected '>name' headers followed by bases")
        if not first_line.startswith(b">"):
            raise FastaFormatError(f"FASTA file {self.path}, line 1: expected a '>name' header, got "
                                   f"{first_line[:40].decode(errors='replace')!r}")
        headers = list(_HEADER.finditer(data))
        records: dict[str, np.ndarray] = {}
        for index, header in enumerate(headers):
            line = data.count(b"\n", 0, header.start()) + 1
            words = header.group(1).split()
            if not words:
                raise FastaFormatError(f"FASTA file {self.path}, line {line}: header has no record name")
            name = words[0].decode(errors="replace")
            if name in records:
                raise FastaFormatError(f"FASTA file {self.path}, line {line}: record name {name!r} appears twice")
            body_end = headers[index + 1].start() if index + 1 < len(headers) else len(data)
            sequence = data[header.end():body_end].translate(None, _WHITESPACE)
            records[name] = self.tokenizer.encode(np.frombuffer(sequence, dtype=np.uint8), source=str(self.path),
                                                  record=name)
        self._log_replacements()
        return records

    def _log_replacements(self) -> None:
        counts = self.tokenizer.counts
        if counts["iupac"]:
            log.warning("%s: %d IUPAC ambiguity codes read as N", self.path, counts["iupac"])
        if counts["invalid"]:
            log.warning("%s: %d characters that are not DNA bases read as [UNK]", self.path, counts["invalid"])

    # -------------------------------------------------------------------------------------------------- indexed
    def _indexed(self):
        """The pyfaidx `Fasta` of this process (reopened after a fork)."""
        if self._fasta is None or self._fasta_pid != os.getpid():
            import pyfaidx

            try:
                self._fasta = pyfaidx.Fasta(str(self.path), as_raw=True, sequence_always_upper=False,
                                            build_index=True, rebuild=False)
            except (pyfaidx.FastaIndexingError, pyfaidx.UnsupportedCompressionFormat, OSError) as error:
                raise FastaFormatError(f"FASTA file {self.path} cannot be indexed by pyfaidx ({error}); check the "
                                       "file, or load it into memory (in_memory: true)") from error
            self._fasta_pid = os.getpid()
        return self._fasta

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fasta"] = None
        state["_fasta_pid"] = None
        return state
