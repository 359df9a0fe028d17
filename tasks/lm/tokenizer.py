"""Text tokenizers for LM data: GPT-NeoX-20B (bundled) or any tokenizer `load_tokenizer` reads, or raw UTF-8 bytes.

`TextTokenizer` gives every backend the same three things the data pipeline needs: `encode_batch(texts)`,
`eos_token_id` (written between documents) and `vocab_size` (ids are `< vocab_size`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

GPT_NEOX = "gpt-neox-20b"
BYTES = "bytes"
EOS_TEXT = "<|endoftext|>"


class TextTokenizer(Protocol):
    name: str
    eos_token_id: int
    vocab_size: int

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...


@dataclass
class ByteTokenizer:
    """UTF-8 bytes as ids 0..255, EOS = 256 (vocab 257). Needs no files; used by tests and byte-level models."""

    name: str = BYTES
    eos_token_id: int = 256
    vocab_size: int = 257

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(text.encode("utf-8")) for text in texts]

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class HFTokenizer:
    """A `tokenizers.Tokenizer` or a transformers tokenizer. `vocab_size` counts added special tokens."""

    def __init__(self, tokenizer: Any, name: str) -> None:
        self.name = name
        self.backend = getattr(tokenizer, "_tokenizer", tokenizer)  # transformers fast tokenizers wrap `tokenizers`
        if not hasattr(self.backend, "encode_batch"):
            raise TypeError(f"tokenizer {name!r}: expected a `tokenizers.Tokenizer` or a fast transformers "
                            f"tokenizer, got {type(tokenizer).__name__}")
        eos = self.backend.token_to_id(EOS_TEXT)
        if eos is None:
            raise ValueError(f"tokenizer {name!r} has no {EOS_TEXT!r} token to separate documents")
        self.eos_token_id = int(eos)
        self.vocab_size = int(self.backend.get_vocab_size(with_added_tokens=True))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.backend.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self.backend.decode(ids)


def load_text_tokenizer(spec: str) -> TextTokenizer:
    """`"bytes"`, or anything `mambaseq.pretrained.tokenizer.load_tokenizer` reads: `"gpt-neox-20b"` (bundled,
    offline), a `tokenizer.json`, a tokenizer folder, or a hub id."""
    if spec == BYTES:
        return ByteTokenizer()
    from mambaseq.pretrained.tokenizer import load_tokenizer

    return HFTokenizer(load_tokenizer(spec), spec)
