"""Loading and saving checkpoints in mamba-ssm, transformers and Lightning formats: logits and greedy generations
equal transformers' on the same weights, round trips keep every tensor, exported hf folders load in transformers."""
import json

import pytest
import torch
import transformers

from mambaseq.config import AttentionConfig, BackboneConfig, LMConfig, Mamba1Config, Mamba2Config
from mambaseq.generation import generate
from mambaseq.lm import MambaLM
from mambaseq.pretrained import load_pretrained, save_pretrained
from mambaseq.pretrained.formats import read_checkpoint
from checkpoint_builders import (
    HF_VOCAB_SIZE,
    MAMBA_SSM_VOCAB_SIZE,
    hf_mamba1,
    hf_mamba2,
    randomize_,
    write_hf_pytorch_bin_checkpoint,
    write_mamba_ssm_checkpoint,
)

MAX_LOGIT_DIFF = 1e-4
SHARD_SIZE = "20KB"  # a tiny model spread over several shards


def tiny_config(kind: str, vocab_size: int = 61) -> LMConfig:
    mixers = {"mamba1": Mamba1Config(d_state=8), "mamba2": Mamba2Config(d_state=8, headdim=8, ngroups=2, chunk_size=4),
              "hybrid": Mamba2Config(d_state=8, headdim=16, chunk_size=4)}
    backbone = dict(d_model=32, n_layer=3, mixer=mixers[kind])
    if kind == "hybrid":
        backbone.update(attn_layer_idx=[1], d_intermediate=40,
                        attn=AttentionConfig(num_heads=4, num_heads_kv=2, rotary_emb_dim=4, d_conv=3))
    return LMConfig(backbone=BackboneConfig(**backbone), vocab_size=vocab_size, tie_embeddings=kind != "mamba2")


def tiny_model(kind: str) -> MambaLM:
    torch.manual_seed(0)
    return randomize_(MambaLM(tiny_config(kind))).eval()


def assert_same_logits(model: MambaLM, hf_model: transformers.PreTrainedModel, vocab_size: int) -> None:
    input_ids = torch.randint(0, vocab_size, (2, 11))  # 11: not a multiple of the SSD chunk size
    with torch.no_grad():
        expected, logits = hf_model(input_ids).logits, model(input_ids)
    assert logits.shape == expected.shape
    assert (logits - expected).abs().max() < MAX_LOGIT_DIFF


def assert_same_weights(model: MambaLM, other: MambaLM) -> None:
    assert other.config == model.config
    state, other_state = model.state_dict(), other.state_dict()
    assert state.keys() == other_state.keys()
    for key, value in state.items():
        assert torch.equal(other_state[key], value), key


HF_CHECKPOINTS = {
    "mamba1-tied": (hf_mamba1, {}),
    "mamba2-untied": (hf_mamba2, {}),
    "mamba1-sharded": (hf_mamba1, {"max_shard_size": SHARD_SIZE}),
    "mamba2-sharded-tied": (lambda: hf_mamba2(tie=True), {"max_shard_size": SHARD_SIZE}),
}


@pytest.mark.parametrize("name", list(HF_CHECKPOINTS))
def test_transformers_checkpoint_matches_transformers(name, tmp_path) -> None:
    build, save_kwargs = HF_CHECKPOINTS[name]
    hf_model = build()
    hf_model.save_pretrained(tmp_path, **save_kwargs)
    assert (tmp_path / "model.safetensors.index.json").is_file() == ("sharded" in name)
    model = load_pretrained(tmp_path)
    assert not model.training
    assert_same_logits(model, hf_model, HF_VOCAB_SIZE)


def test_transformers_pytorch_bin_fallback(tmp_path) -> None:
    hf_model = hf_mamba2()
    write_hf_pytorch_bin_checkpoint(tmp_path, hf_model)
    checkpoint = read_checkpoint(tmp_path)
    assert (checkpoint.format, checkpoint.source.name) == ("hf", "pytorch_model.bin")
    assert_same_logits(load_pretrained(tmp_path), hf_model, HF_VOCAB_SIZE)


@pytest.mark.parametrize("build", [hf_mamba1, hf_mamba2], ids=["mamba1", "mamba2"])
def test_mamba_ssm_checkpoint_matches_transformers(build, tmp_path) -> None:
    hf_model = build()
    write_mamba_ssm_checkpoint(tmp_path, hf_model)
    model = load_pretrained(tmp_path)
    assert (model.config.vocab_size, model.config.padded_vocab_size) == (MAMBA_SSM_VOCAB_SIZE, HF_VOCAB_SIZE)
    assert_same_logits(model, hf_model, MAMBA_SSM_VOCAB_SIZE)


@pytest.mark.parametrize("build", [hf_mamba1, lambda: hf_mamba2(tie=True)], ids=["mamba1", "mamba2"])
def test_greedy_generation_matches_transformers(build, tmp_path) -> None:
    hf_model = build()
    hf_model.save_pretrained(tmp_path)
    model = load_pretrained(tmp_path)
    prompt = torch.randint(0, HF_VOCAB_SIZE, (2, 5))
    expected = hf_model.generate(prompt, max_new_tokens=10, do_sample=False, eos_token_id=None, pad_token_id=0,
                                 attention_mask=torch.ones_like(prompt))
    assert torch.equal(generate(model, prompt, max_new_tokens=10, do_sample=False), expected)


@pytest.mark.parametrize("kind", ["mamba1", "mamba2", "hybrid"])
def test_mamba_ssm_round_trip(kind, tmp_path) -> None:
    model = tiny_model(kind)
    save_pretrained(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "pytorch_model.bin"]
    saved = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    assert saved.keys() == model.state_dict().keys()  # mamba-ssm loads strictly: lm_head.weight is kept when tied
    reloaded = load_pretrained(tmp_path)
    assert_same_weights(model, reloaded)
    config_text = (tmp_path / "config.json").read_text()
    save_pretrained(reloaded, tmp_path)
    assert (tmp_path / "config.json").read_text() == config_text


@pytest.mark.parametrize(("kind", "max_shard_size"), [("mamba1", "5GB"), ("mamba2", SHARD_SIZE)])
def test_hf_export_loads_in_transformers_and_back(kind, max_shard_size, tmp_path) -> None:
    model = tiny_model(kind)
    save_pretrained(model, tmp_path, format="hf", max_shard_size=max_shard_size)
    assert (tmp_path / "model.safetensors.index.json").is_file() == (max_shard_size == SHARD_SIZE)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(hf_model).__name__ == {"mamba1": "MambaForCausalLM", "mamba2": "Mamba2ForCausalLM"}[kind]
    assert hf_model.config.tie_word_embeddings == model.config.tie_embeddings
    assert_same_logits(model, hf_model, model.config.vocab_size)
    assert_same_weights(model, load_pretrained(tmp_path))  # the real vocab_size (61, not 64) survives


def test_conversion_chain_keeps_mamba_ssm_config(tmp_path) -> None:
    write_mamba_ssm_checkpoint(tmp_path / "original", hf_mamba2(tie=True))
    model = load_pretrained(tmp_path / "original")
    save_pretrained(model, tmp_path / "hf", format="hf")
    save_pretrained(load_pretrained(tmp_path / "hf"), tmp_path / "back")
    original = json.loads((tmp_path / "original" / "config.json").read_text())
    back = json.loads((tmp_path / "back" / "config.json").read_text())
    assert back == original
    assert_same_weights(model, load_pretrained(tmp_path / "back"))


def test_lightning_checkpoint(tmp_path) -> None:
    model = tiny_model("hybrid")
    checkpoint = {"epoch": 3, "global_step": 120, "mambaseq_lm_config": model.config.to_dict(),
                  "state_dict": {f"model.{key}": value for key, value in model.state_dict().items()},
                  "optimizer_states": [], "hyper_parameters": {"lm": model.config.to_dict()}}
    torch.save(checkpoint, tmp_path / "last.ckpt")
    assert_same_weights(model, load_pretrained(tmp_path / "last.ckpt"))


def test_dtype_and_device(tmp_path) -> None:
    model = tiny_model("mamba1").to(torch.bfloat16)
    save_pretrained(model, tmp_path)
    kept = load_pretrained(tmp_path, device="cpu")
    assert {p.dtype for p in kept.parameters()} == {torch.bfloat16}
    assert kept.lm_head.weight is kept.backbone.embedding.weight
    converted = load_pretrained(tmp_path, dtype="float32")
    assert {p.dtype for p in converted.parameters()} == {torch.float32}
    assert torch.equal(converted.lm_head.weight, model.lm_head.weight.float())
    with pytest.raises(ValueError, match="dtype='float8' is not supported"):
        load_pretrained(tmp_path, dtype="float8")


def test_hf_export_refuses_what_transformers_cannot_express(tmp_path) -> None:
    with pytest.raises(ValueError, match="attn_layer_idx"):
        save_pretrained(tiny_model("hybrid"), tmp_path / "hybrid", format="hf")
    assert not (tmp_path / "hybrid").exists()
    with pytest.raises(ValueError, match="format 'gguf' cannot be written"):
        save_pretrained(tiny_model("mamba1"), tmp_path, format="gguf")


@pytest.mark.skipif(not hasattr(MambaLM, "from_pretrained"), reason="MambaLM.from_pretrained/save_pretrained "
                    "(delegating to mambaseq.pretrained.loading) are not in lm.py yet")
def test_mamba_lm_methods_delegate(tmp_path) -> None:
    model = tiny_model("mamba2")
    model.save_pretrained(tmp_path / "hf", format="hf")
    reloaded = MambaLM.from_pretrained(tmp_path / "hf", dtype=torch.bfloat16, device="cpu")
    assert reloaded.lm_head.weight.dtype == torch.bfloat16 and not reloaded.training
    assert torch.equal(reloaded.lm_head.weight, model.lm_head.weight.to(torch.bfloat16))
