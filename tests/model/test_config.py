"""Config dataclasses: dict/JSON round trips, errors naming bad keys and values, mamba-ssm config.json mapping."""
import json
import math

import pytest

from mambaseq.config import AttentionConfig, BackboneConfig, LMConfig, Mamba1Config, Mamba2Config

# config.json of state-spaces/mamba-130m and of a Mamba-2 hybrid, as mamba-ssm writes them.
MAMBA_130M_JSON = {"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {}, "rms_norm": True,
                   "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8}
MAMBA2_HYBRID_JSON = {
    "d_model": 256, "d_intermediate": 512, "n_layer": 4, "vocab_size": 1000,
    "ssm_cfg": {"layer": "Mamba2", "d_state": 64, "ngroups": 2, "use_mem_eff_path": True},
    "attn_layer_idx": [2], "attn_cfg": {"causal": True, "d_conv": 4, "head_dim": 32, "num_heads": 8,
                                        "out_proj_bias": False, "qkv_proj_bias": False, "rotary_emb_dim": 16},
    "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 16,
    "tie_embeddings": False,
}


def _configs() -> list[LMConfig]:
    hybrid = BackboneConfig(d_model=64, n_layer=3, mixer=Mamba2Config(headdim=16, ngroups=2, dt_limit=(0.0, 0.5)),
                            attn_layer_idx=[1], attn=AttentionConfig(num_heads=4, num_heads_kv=2, rotary_emb_dim=8),
                            d_intermediate=96, rms_norm=False)
    return [
        LMConfig(),
        LMConfig(backbone=BackboneConfig(mixer=Mamba1Config(dt_rank=7, dt_init="constant")), vocab_size=11),
        LMConfig(backbone=hybrid, vocab_size=300, pad_vocab_size_multiple=64, tie_embeddings=False),
    ]


@pytest.mark.parametrize("config", _configs())
def test_dict_and_json_round_trip(config: LMConfig) -> None:
    assert LMConfig.from_dict(config.to_dict()) == config
    assert LMConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_padded_vocab() -> None:
    assert LMConfig(vocab_size=50277).padded_vocab_size == 50280
    assert LMConfig(vocab_size=64).padded_vocab_size == 64
    assert LMConfig(vocab_size=5, pad_vocab_size_multiple=1).padded_vocab_size == 5


def test_unknown_keys_are_named() -> None:
    data = LMConfig().to_dict()
    data["backbone"]["mixer"]["d_stat"] = 8
    with pytest.raises(ValueError, match="Mamba1Config: unknown key.*d_stat"):
        LMConfig.from_dict(data)
    with pytest.raises(ValueError, match="LMConfig: unknown key.*vocab"):
        LMConfig.from_dict({"vocab": 10})
    with pytest.raises(ValueError, match="BackboneConfig: unknown key.*layers"):
        BackboneConfig.from_dict({"layers": 2})
    with pytest.raises(ValueError, match="mixer kind='mamba3'"):
        BackboneConfig.from_dict({"mixer": {"kind": "mamba3"}})


@pytest.mark.parametrize("build, message", [
    (lambda: Mamba1Config(dt_init="uniform"), "dt_init='uniform'"),
    (lambda: Mamba1Config(d_state=0), "d_state=0"),
    (lambda: Mamba1Config(dt_min=0.2, dt_max=0.1), "dt_min/dt_max"),
    (lambda: Mamba2Config(A_init_range=(0.0, 4.0)), "A_init_range"),
    (lambda: BackboneConfig(d_model=48, mixer=Mamba2Config(headdim=64)), "multiple of headdim=64"),
    (lambda: BackboneConfig(n_layer=2, attn_layer_idx=[2], attn=AttentionConfig()), "attn_layer_idx"),
    (lambda: BackboneConfig(attn_layer_idx=[0]), "attn=None"),
    (lambda: BackboneConfig(kernel_backend="cuda-graphs"), "kernel_backend='cuda-graphs'"),
    (lambda: AttentionConfig(num_heads=6, num_heads_kv=4), "num_heads_kv=4"),
])
def test_bad_values_are_named(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_from_mamba_ssm_130m() -> None:
    config = LMConfig.from_mamba_ssm_dict(MAMBA_130M_JSON)
    assert config.backbone.d_model == 768 and config.backbone.n_layer == 24
    assert config.backbone.mixer == Mamba1Config()
    assert config.backbone.mixer.resolved_dt_rank(768) == 48
    assert config.padded_vocab_size == 50280 and config.tie_embeddings
    assert config.backbone.d_intermediate == 0 and config.backbone.attn_layer_idx == []


def test_from_mamba_ssm_hybrid_and_back() -> None:
    config = LMConfig.from_mamba_ssm_dict(MAMBA2_HYBRID_JSON)
    backbone = config.backbone
    assert backbone.mixer == Mamba2Config(d_state=64, ngroups=2)
    assert backbone.attn == AttentionConfig(num_heads=8, head_dim=32, rotary_emb_dim=16, causal=True, d_conv=4,
                                            qkv_proj_bias=False, out_proj_bias=False)
    assert backbone.layer_mixer(2) is backbone.attn and backbone.layer_mixer(1) is backbone.mixer
    assert config.pad_vocab_size_multiple == 16 and not config.tie_embeddings
    written = config.to_mamba_ssm_dict()
    assert written["ssm_cfg"] == {"layer": "Mamba2", "d_state": 64, "ngroups": 2}
    assert LMConfig.from_mamba_ssm_dict(json.loads(json.dumps(written))) == config


def test_mamba_ssm_attention_defaults_to_non_causal() -> None:
    """mamba-ssm's MHA is non-causal unless attn_cfg says otherwise; the mapping must not change that."""
    data = {**MAMBA2_HYBRID_JSON, "attn_cfg": {"num_heads": 8}}
    assert LMConfig.from_mamba_ssm_dict(data).backbone.attn.causal is False


@pytest.mark.parametrize("data, message", [
    ({**MAMBA_130M_JSON, "n_layers": 2}, "unknown key.*n_layers"),
    ({**MAMBA_130M_JSON, "ssm_cfg": {"layer": "Mamba3"}}, "ssm_cfg.layer='Mamba3'"),
    ({**MAMBA_130M_JSON, "ssm_cfg": {"d_state": 16, "headdim": 64}}, "Mamba1Config: unknown key.*headdim"),
    ({**MAMBA_130M_JSON, "ssm_cfg": {"layer": "Mamba2", "d_ssm": 512}}, "d_ssm=512"),
])
def test_mamba_ssm_errors(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LMConfig.from_mamba_ssm_dict(data)


def test_to_mamba_ssm_refuses_what_it_cannot_express() -> None:
    with pytest.raises(ValueError, match="norm_eps=1e-06"):
        LMConfig(backbone=BackboneConfig(norm_eps=1e-6)).to_mamba_ssm_dict()


def test_dt_limit_infinity_survives_json() -> None:
    config = LMConfig(backbone=BackboneConfig(d_model=64, mixer=Mamba2Config(headdim=16)))
    restored = LMConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert math.isinf(restored.backbone.mixer.dt_limit[1])
