"""Character-level DNA tokenizer with HyenaDNA / Caduceus ids, and reverse complement of id arrays.

Ids: `[CLS]=0 [SEP]=1 [BOS]=2 [MASK]=3 [PAD]=4 [RESERVED]=5 [UNK]=6 A=7 C=8 G=9 T=10 N=11` (12 ids), so that
checkpoints and data prepared for HyenaDNA / Caduceus use the same numbers. Encoding is one numpy table lookup
over the raw bytes: soft-masked (lowercase) bases read as uppercase, IUPAC ambiguity codes (R Y S W K M B D H V)
become N and are counted, and any other character is an error that names the source, record and position (or, with
`on_invalid="replace"`, becomes [UNK] and is counted).
"""
from __future__ import annotations

from collections import Counter
from typing import Literal, TypeVar

import numpy as np
import torch

SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]")
BASES = "ACGTN"
VOCAB: dict[str, int] = {token: index for index, token in enumerate(SPECIAL_TOKENS + tuple(BASES))}
CLS_ID, SEP_ID, BOS_ID, MASK_ID, PAD_ID, RESERVED_ID, UNK_ID = range(len(SPECIAL_TOKENS))
A_ID, C_ID, G_ID, T_ID, N_ID = (VOCAB[base] for base in BASES)
VOCAB_SIZE = len(VOCAB)
IUPAC_AMBIGUITY = "RYSWKMBDHV"
COMPLEMENT_BASES = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}

_INVALID = -1
_IUPAC = -2
OnInvalid = Literal["error", "replace"]
IdArray = TypeVar("IdArray", np.ndarray, torch.Tensor)


def _byte_table() -> np.ndarray:
    """256-entry table: byte -> token id, `_IUPAC` for ambiguity codes, `_INVALID` otherwise."""
    table = np.full(256, _INVALID, dtype=np.int16)
    for base in BASES:
        table[ord(base)] = table[ord(base.lower())] = VOCAB[base]
    for code in IUPAC_AMBIGUITY:
        table[ord(code)] = table[ord(code.lower())] = _IUPAC
    return table


def complement_ids(vocab_size: int = VOCAB_SIZE) -> np.ndarray:
    """`(vocab_size,)` int64 map id -> id of the complementary base (A<->T, C<->G); N, special tokens and padded
    vocabulary rows map to themselves."""
    table = np.arange(vocab_size, dtype=np.int64)
    for base, partner in COMPLEMENT_BASES.items():
        table[VOCAB[base]] = VOCAB[partner]
    return table


BYTE_TO_ID = _byte_table()
COMPLEMENT = complement_ids()
ID_TO_CHAR = np.array([token if len(token) == 1 else "?" for token in VOCAB], dtype="<U1")


class InvalidSequenceError(ValueError):
    """A sequence holds a character that is neither a DNA base nor an IUPAC ambiguity code."""


class DNATokenizer:
    """Bytes/str -> `(L,)` uint8 ids. `counts` accumulates `"iupac"` (ambiguity codes read as N) and `"invalid"`
    (characters replaced by [UNK]) over every call, for logging after a genome is read."""

    vocab = VOCAB
    vocab_size = VOCAB_SIZE
    pad_id = PAD_ID
    mask_id = MASK_ID

    def __init__(self, on_invalid: OnInvalid = "error") -> None:
        if on_invalid not in ("error", "replace"):
            raise ValueError(f"DNATokenizer: on_invalid={on_invalid!r}, expected 'error' or 'replace'")
        self.on_invalid = on_invalid
        self.counts: Counter[str] = Counter()

    def encode(self, sequence: str | bytes | np.ndarray, *, source: str = "<sequence>", record: str = "",
               offset: int = 0) -> np.ndarray:
        """Ids `(L,)` uint8 of `sequence` (str, bytes or a uint8 array of ASCII codes). `source`, `record` and
        `offset` (position of the first character in the record) only serve error messages."""
        raw = _as_bytes_array(sequence)
        ids = BYTE_TO_ID[raw]
        if ids.min(initial=0) >= 0:
            return ids.astype(np.uint8)
        iupac = ids == _IUPAC
        self.counts["iupac"] += int(iupac.sum())
        ids[iupac] = N_ID
        invalid = ids == _INVALID
        if invalid.any():
            if self.on_invalid == "error":
                position = int(np.flatnonzero(invalid)[0])
                where = f"{source}, record {record!r}" if record else source
                raise InvalidSequenceError(
                    f"{where}, position {offset + position}: character {chr(raw[position])!r} is not a DNA base "
                    f"(expected A C G T N, lowercase, or an IUPAC code {IUPAC_AMBIGUITY}); set on_invalid='replace' "
                    "to read such characters as [UNK]")
            self.counts["invalid"] += int(invalid.sum())
            ids[invalid] = UNK_ID
        return ids.astype(np.uint8)

    def decode(self, ids: np.ndarray | torch.Tensor | list[int]) -> str:
        """Bases of `ids: (L,)`; special tokens become '?'."""
        array = ids.cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
        return "".join(ID_TO_CHAR[array.astype(np.int64)])


def reverse_complement(ids: IdArray) -> IdArray:
    """Reverse complement of token ids `(..., L)` (numpy array or torch tensor, any integer dtype): reverse the
    last axis and complement each base; special tokens keep their id."""
    if isinstance(ids, torch.Tensor):
        table = torch.as_tensor(COMPLEMENT, device=ids.device)
        return table[ids.long()].to(ids.dtype).flip(-1)
    return COMPLEMENT[ids].astype(ids.dtype)[..., ::-1].copy()


def _as_bytes_array(sequence: str | bytes | np.ndarray) -> np.ndarray:
    if isinstance(sequence, np.ndarray):
        if sequence.dtype != np.uint8:
            raise TypeError(f"DNATokenizer.encode: arrays must hold uint8 ASCII codes, got dtype {sequence.dtype}")
        return sequence
    if isinstance(sequence, str):
        sequence = sequence.encode("ascii", errors="replace")
    return np.frombuffer(sequence, dtype=np.uint8)
