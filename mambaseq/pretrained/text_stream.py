"""Incremental detokenization: turn tokens into text as they arrive, without printing half a character."""
from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

REPLACEMENT_CHARACTER = "\ufffd"


class IncrementalDetokenizer:
    """Feed token ids one at a time with `push`; each call returns the text they completed (maybe "").

    A character whose UTF-8 bytes span several byte-level tokens decodes to U+FFFD until its last byte arrives, so
    text ending in U+FFFD is held back. Decoding re-reads a few tokens of context before the new ones, so that
    tokenizers that drop a leading space of the first decoded token still produce the right spacing.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_ids: Sequence[int] = (), context: int = 5) -> None:
        self.tokenizer = tokenizer
        self.ids = list(prompt_ids)
        self.prefix_offset = max(len(self.ids) - context, 0)
        self.read_offset = len(self.ids)

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _new_text(self) -> str:
        already_read = self._decode(self.ids[self.prefix_offset:self.read_offset])
        full = self._decode(self.ids[self.prefix_offset:])
        return full[len(already_read):] if len(full) > len(already_read) else ""

    def push(self, token_id: int) -> str:
        """Add one token; return the newly completed text."""
        self.ids.append(int(token_id))
        text = self._new_text()
        if not text or text.endswith(REPLACEMENT_CHARACTER):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return text

    def flush(self) -> str:
        """Text of the tokens still held back (an incomplete character decodes as U+FFFD)."""
        text = self._new_text()
        self.prefix_offset = self.read_offset = len(self.ids)
        return text
