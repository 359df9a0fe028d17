"""Causal language modeling: `LanguageModelTask`, `LMDataModule`, and `mambaseq prepare` (tokenize to memmap shards)."""
