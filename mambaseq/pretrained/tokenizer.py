"""Tokenizers for pretrained LMs: the bundled GPT-NeoX-20B tokenizer (the one every state-spaces Mamba model was
trained with), a `tokenizer.json`, a tokenizer folder, or a hub id."""
from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from mambaseq.pretrained.hub import download_snapshot, is_hub_id

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "tokenizer"
BUNDLED = {"gpt-neox-20b": ASSETS / "gpt-neox-20b" / "tokenizer.json"}
DEFAULT_TOKENIZER = "gpt-neox-20b"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
TOKENIZER_PATTERNS = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
END_OF_TEXT = "<|endoftext|>"
LOCAL_TOKENIZER = f"{sorted(BUNDLED)} (bundled), a {TOKENIZER_FILE} file, or a folder holding one"


def load_tokenizer(name_or_path: str | Path | None = None, revision: str | None = None) -> PreTrainedTokenizerFast:
    """A fast tokenizer. `None` or "gpt-neox-20b": the bundled GPT-NeoX-20B tokenizer (50277 tokens,
    `<|endoftext|>` = id 0 as bos/eos), no network needed; a `tokenizer.json` file; a folder holding
    `tokenizer_config.json` (read by `AutoTokenizer`) or just `tokenizer.json`; or a hub id."""
    name = DEFAULT_TOKENIZER if name_or_path is None else str(name_or_path)
    if name in BUNDLED:
        return tokenizer_from_file(BUNDLED[name])
    path = Path(name).expanduser()
    if not path.exists():
        if not is_hub_id(name):
            raise FileNotFoundError(f"tokenizer {name!r}: no such file or folder, and not a hub id; expected "
                                    f"{LOCAL_TOKENIZER}, or a hub id")
        path = download_snapshot(name, revision, TOKENIZER_PATTERNS, local_alternative=LOCAL_TOKENIZER)
    if path.is_file():
        return tokenizer_from_file(path)
    if (path / TOKENIZER_CONFIG_FILE).is_file():
        tokenizer = AutoTokenizer.from_pretrained(path)
        if not isinstance(tokenizer, PreTrainedTokenizerFast):
            raise ValueError(f"{path / TOKENIZER_CONFIG_FILE} describes a {type(tokenizer).__name__}: expected a "
                             "fast (tokenizers-backed) tokenizer")
        return tokenizer
    if (path / TOKENIZER_FILE).is_file():
        return tokenizer_from_file(path / TOKENIZER_FILE)
    raise FileNotFoundError(f"tokenizer folder {path} holds neither {TOKENIZER_CONFIG_FILE} nor {TOKENIZER_FILE}")


def tokenizer_from_file(path: Path) -> PreTrainedTokenizerFast:
    """A fast tokenizer over one `tokenizer.json`; `<|endoftext|>`, when present, is its bos, eos and unk token."""
    try:
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path))
    except Exception as error:  # tokenizers raises a bare `Exception` for malformed files
        raise ValueError(f"{path} is corrupted or not a tokenizers `tokenizer.json`: {error}") from error
    if END_OF_TEXT in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT, "unk_token": END_OF_TEXT})
    return tokenizer
