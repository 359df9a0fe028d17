"""Parity with transformers' `MambaForCausalLM` / `Mamba2ForCausalLM` (torch slow path, CPU, fp32) after
converting config and weights, both directions; greedy generation equals transformers' greedy `generate`."""
import pytest
import torch
import transformers

from mambaseq.config import BackboneConfig, LMConfig
from mambaseq.generation import generate
from mambaseq.lm import MambaLM
from mambaseq.pretrained.transformers_format import (
    from_transformers,
    lm_config_from_transformers,
    lm_config_to_transformers,
    load_transformers_state_dict,
    to_transformers,
)
from model_builders import perturb_, tiny_lm_config

MAX_LOGIT_DIFF = 1e-4


def _hf_mamba1(tie: bool = True) -> transformers.MambaForCausalLM:
    config = transformers.MambaConfig(vocab_size=72, hidden_size=32, num_hidden_layers=2, state_size=8,
                                      use_bias=True, time_step_rank=3, layer_norm_epsilon=1e-4,
                                      tie_word_embeddings=tie)
    return perturb_(transformers.MambaForCausalLM(config)).eval()


def _hf_mamba2(n_groups: int, tie: bool = False) -> transformers.Mamba2ForCausalLM:
    config = transformers.Mamba2Config(vocab_size=72, hidden_size=32, num_hidden_layers=2, state_size=8,
                                       num_heads=8, head_dim=8, n_groups=n_groups, chunk_size=4,
                                       tie_word_embeddings=tie)
    return perturb_(transformers.Mamba2ForCausalLM(config)).eval()


HF_MODELS = {
    "mamba1": _hf_mamba1,
    "mamba1-untied": lambda: _hf_mamba1(tie=False),
    "mamba2-ngroups1": lambda: _hf_mamba2(1),
    "mamba2-ngroups2-tied": lambda: _hf_mamba2(2, tie=True),
}


@pytest.mark.parametrize("name", list(HF_MODELS))
def test_logits_match_transformers(name: str) -> None:
    torch.manual_seed(0)
    hf_model = HF_MODELS[name]()
    model = from_transformers(hf_model).eval()
    input_ids = torch.randint(0, 72, (2, 11))  # 11 is not a multiple of the SSD chunk size
    with torch.no_grad():
        expected = hf_model(input_ids).logits
        logits = model(input_ids)
    assert logits.shape == expected.shape
    assert (logits - expected).abs().max() < MAX_LOGIT_DIFF


@pytest.mark.parametrize("kind", ["mamba1", "mamba2"])
def test_export_to_transformers_and_back(kind: str) -> None:
    torch.manual_seed(1)
    model = perturb_(MambaLM(tiny_lm_config(kind))).eval()
    hf_model = to_transformers(model).eval()
    assert hf_model.config.vocab_size == model.config.padded_vocab_size
    input_ids = torch.randint(0, 61, (2, 9))
    with torch.no_grad():
        assert (hf_model(input_ids).logits - model(input_ids)).abs().max() < MAX_LOGIT_DIFF
    back = from_transformers(hf_model)
    assert back.config.backbone == model.config.backbone
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_local_save_pretrained_round_trip(tmp_path) -> None:
    hf_model = _hf_mamba2(2, tie=True)
    hf_model.save_pretrained(tmp_path)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    model = from_transformers(reloaded).eval()
    input_ids = torch.randint(0, 72, (1, 6))
    with torch.no_grad():
        assert (hf_model(input_ids).logits - model(input_ids)).abs().max() < MAX_LOGIT_DIFF


@pytest.mark.parametrize("name", ["mamba1", "mamba2-ngroups2-tied"])
def test_greedy_generation_matches_transformers(name: str) -> None:
    torch.manual_seed(2)
    hf_model = HF_MODELS[name]()
    model = from_transformers(hf_model).eval()
    prompt = torch.randint(0, 72, (2, 5))
    expected = hf_model.generate(prompt, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0,
                                 attention_mask=torch.ones_like(prompt))
    assert torch.equal(generate(model, prompt, max_new_tokens=12, do_sample=False), expected)


def test_config_mapping() -> None:
    hf_config = transformers.Mamba2Config(vocab_size=50, hidden_size=64, num_hidden_layers=3, state_size=16,
                                          num_heads=16, head_dim=8, n_groups=4, time_step_limit=(0.0, 2.0))
    config = lm_config_from_transformers(hf_config.to_dict())
    mixer = config.backbone.mixer
    assert (mixer.kind, mixer.headdim, mixer.ngroups, mixer.dt_limit) == ("mamba2", 8, 4, (0.0, 2.0))
    assert config.padded_vocab_size == 50  # no extra padding on top of transformers' vocab
    assert lm_config_to_transformers(config).num_heads == 16
    with pytest.raises(ValueError, match="num_heads=4 is inconsistent"):
        lm_config_from_transformers({**hf_config.to_dict(), "num_heads": 4})
    with pytest.raises(ValueError, match="model_type='llama'"):
        lm_config_from_transformers({"model_type": "llama"})


def test_export_refuses_hybrids() -> None:
    with pytest.raises(ValueError, match="attn_layer_idx.*d_intermediate"):
        lm_config_to_transformers(tiny_lm_config("hybrid"))


def test_shape_mismatch_names_key_and_both_shapes() -> None:
    hf_model = _hf_mamba1()
    model = MambaLM(LMConfig(backbone=BackboneConfig(d_model=32, n_layer=2, mixer={"d_state": 4}), vocab_size=72))
    with pytest.raises(ValueError, match=r"backbone.layers.0.mixer.A_log: transformers checkpoint has shape "
                                         r"\(64, 8\), MambaLM expects \(64, 4\)"):
        load_transformers_state_dict(model, hf_model.state_dict())
    state = dict(hf_model.state_dict())
    state.pop("backbone.norm_f.weight")
    state["backbone.extra.weight"] = torch.zeros(2)
    matching = from_transformers(hf_model)
    with pytest.raises(ValueError, match="missing in transformers checkpoint: backbone.norm_f.weight.*\n.*"
                                         "unexpected in transformers checkpoint: backbone.extra.weight"):
        load_transformers_state_dict(matching, state)
