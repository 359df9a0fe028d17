"""Model configuration dataclasses: mixer configs → `BackboneConfig` → `LMConfig`.

Field names and defaults follow mamba-ssm (`Mamba`, `Mamba2`, `MHA`, `MambaConfig`) so that a mamba-ssm
`config.json` maps onto these classes one to one (`LMConfig.from_mamba_ssm_dict` / `to_mamba_ssm_dict`).
Every class has `to_dict()` / `from_dict()`; `from_dict` rejects unknown keys by name.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

KERNEL_BACKENDS = ("auto", "reference", "chunked", "triton", "cuda")


def _check_keys(cls: type, data: dict[str, Any], ignored: frozenset[str] = frozenset()) -> None:
    """Raise a `ValueError` naming every key of `data` that is not a field of dataclass `cls`."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}: {data!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known - ignored)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown key(s) {unknown}; expected keys from {sorted(known)}")


def _require(condition: bool, owner: str, name: str, value: Any, expected: str) -> None:
    if not condition:
        raise ValueError(f"{owner}.{name}={value!r} is invalid: expected {expected}")


def _require_positive_ints(config: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        _require(isinstance(value, int) and not isinstance(value, bool) and value > 0, type(config).__name__, name,
                 value, "a positive integer")


def _plain_fields(config: Any) -> dict[str, Any]:
    return {f.name: _to_plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _to_plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass
class Mamba1Config:
    """Selective SSM mixer of Mamba-1 (mamba-ssm `Mamba`); `d_inner = expand * d_model`."""

    kind: Literal["mamba1"] = "mamba1"
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | Literal["auto"] = "auto"
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init: Literal["random", "constant"] = "random"
    dt_scale: float = 1.0
    dt_init_floor: float = 1e-4
    conv_bias: bool = True
    bias: bool = False

    KIND: ClassVar[str] = "mamba1"

    def __post_init__(self) -> None:
        name = type(self).__name__
        _require(self.kind == self.KIND, name, "kind", self.kind, f"{self.KIND!r}")
        _require_positive_ints(self, ("d_state", "d_conv", "expand"))
        _require(self.dt_rank == "auto" or (isinstance(self.dt_rank, int) and self.dt_rank > 0), name, "dt_rank",
                 self.dt_rank, '"auto" or a positive integer')
        _require(self.dt_init in ("random", "constant"), name, "dt_init", self.dt_init, '"random" or "constant"')
        _require(0 < self.dt_min <= self.dt_max, name, "dt_min/dt_max", (self.dt_min, self.dt_max),
                 "0 < dt_min <= dt_max")
        _require(self.dt_init_floor > 0, name, "dt_init_floor", self.dt_init_floor, "a positive float")

    def resolved_dt_rank(self, d_model: int) -> int:
        """Rank of the dt projection: `ceil(d_model / 16)` when "auto"."""
        return math.ceil(d_model / 16) if self.dt_rank == "auto" else int(self.dt_rank)

    def to_dict(self) -> dict[str, Any]:
        return _plain_fields(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Mamba1Config:
        _check_keys(cls, data)
        return cls(**data)


@dataclass
class Mamba2Config:
    """SSD mixer of Mamba-2 (mamba-ssm `Mamba2`): `nheads = expand * d_model / headdim`, B/C shared per group."""

    kind: Literal["mamba2"] = "mamba2"
    d_state: int = 128
    d_conv: int = 4
    expand: int = 2
    headdim: int = 64
    ngroups: int = 1
    A_init_range: tuple[float, float] = (1.0, 16.0)
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    dt_limit: tuple[float, float] = (0.0, float("inf"))
    D_has_hdim: bool = False
    rmsnorm: bool = True
    norm_before_gate: bool = False
    chunk_size: int = 256
    conv_init: float | None = None
    conv_bias: bool = True
    bias: bool = False

    KIND: ClassVar[str] = "mamba2"

    def __post_init__(self) -> None:
        name = type(self).__name__
        self.A_init_range = tuple(float(v) for v in self.A_init_range)
        self.dt_limit = tuple(float(v) for v in self.dt_limit)
        _require(self.kind == self.KIND, name, "kind", self.kind, f"{self.KIND!r}")
        _require_positive_ints(self, ("d_state", "d_conv", "expand", "headdim", "ngroups", "chunk_size"))
        low, high = self.A_init_range
        _require(len(self.A_init_range) == 2 and 0 < low <= high, name, "A_init_range", self.A_init_range,
                 "(low, high) with 0 < low <= high")
        _require(len(self.dt_limit) == 2 and 0 <= self.dt_limit[0] < self.dt_limit[1], name, "dt_limit",
                 self.dt_limit, "(low, high) with 0 <= low < high")
        _require(0 < self.dt_min <= self.dt_max, name, "dt_min/dt_max", (self.dt_min, self.dt_max),
                 "0 < dt_min <= dt_max")
        _require(self.conv_init is None or self.conv_init > 0, name, "conv_init", self.conv_init,
                 "None or a positive float")

    def num_heads(self, d_model: int) -> int:
        """Number of SSD heads for a model width; raises when `expand * d_model` is not a multiple of `headdim`."""
        d_inner = self.expand * d_model
        if d_inner % self.headdim or (d_inner // self.headdim) % self.ngroups:
            raise ValueError(
                f"Mamba2Config: expand * d_model = {d_inner} must be a multiple of headdim={self.headdim}, "
                f"and the head count a multiple of ngroups={self.ngroups}"
            )
        return d_inner // self.headdim

    def to_dict(self) -> dict[str, Any]:
        return _plain_fields(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Mamba2Config:
        _check_keys(cls, data)
        return cls(**data)


@dataclass
class AttentionConfig:
    """Multi-head causal self-attention of hybrid models (mamba-ssm `MHA`); `num_heads_kv < num_heads` is GQA."""

    kind: Literal["attention"] = "attention"
    num_heads: int = 8
    num_heads_kv: int | None = None
    head_dim: int | None = None
    rotary_emb_dim: int = 0
    rotary_emb_base: float = 10000.0
    rotary_emb_interleaved: bool = False
    causal: bool = True
    qkv_proj_bias: bool = True
    out_proj_bias: bool = True
    softmax_scale: float | None = None
    d_conv: int = 0
    mlp_dim: int = 0

    KIND: ClassVar[str] = "attention"

    def __post_init__(self) -> None:
        name = type(self).__name__
        _require(self.kind == self.KIND, name, "kind", self.kind, f"{self.KIND!r}")
        _require_positive_ints(self, ("num_heads",))
        kv_heads = self.kv_heads
        _require(kv_heads > 0 and self.num_heads % kv_heads == 0, name, "num_heads_kv", self.num_heads_kv,
                 f"a positive divisor of num_heads={self.num_heads}")
        _require(self.rotary_emb_dim % 2 == 0 and self.rotary_emb_dim >= 0, name, "rotary_emb_dim",
                 self.rotary_emb_dim, "an even non-negative integer")
        _require(self.d_conv >= 0 and self.mlp_dim >= 0, name, "d_conv/mlp_dim", (self.d_conv, self.mlp_dim),
                 "non-negative integers")

    @property
    def kv_heads(self) -> int:
        return self.num_heads if self.num_heads_kv is None else self.num_heads_kv

    def resolved_head_dim(self, d_model: int) -> int:
        """Per-head width: `head_dim`, or `d_model / num_heads` when unset."""
        if self.head_dim is not None:
            return self.head_dim
        if d_model % self.num_heads:
            raise ValueError(f"AttentionConfig: d_model={d_model} is not divisible by num_heads={self.num_heads}")
        return d_model // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        return _plain_fields(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttentionConfig:
        _check_keys(cls, data)
        return cls(**data)


MixerConfig = Mamba1Config | Mamba2Config | AttentionConfig
MIXER_CONFIGS: dict[str, type] = {cls.KIND: cls for cls in (Mamba1Config, Mamba2Config, AttentionConfig)}


def mixer_config_from_dict(data: dict[str, Any] | MixerConfig) -> MixerConfig:
    """Build the mixer config named by `data["kind"]` (default "mamba1")."""
    if isinstance(data, tuple(MIXER_CONFIGS.values())):
        return data
    if not isinstance(data, dict):
        raise TypeError(f"mixer config must be a dict or a mixer config, got {type(data).__name__}")
    kind = data.get("kind", "mamba1")
    if kind not in MIXER_CONFIGS:
        raise ValueError(f"mixer kind={kind!r} is unknown: expected one of {sorted(MIXER_CONFIGS)}")
    return MIXER_CONFIGS[kind].from_dict(data)


@dataclass
class BackboneConfig:
    """Stack of `n_layer` pre-norm blocks; layers listed in `attn_layer_idx` use `attn` instead of `mixer`."""

    d_model: int = 768
    n_layer: int = 24
    mixer: MixerConfig = field(default_factory=Mamba1Config)
    attn_layer_idx: list[int] = field(default_factory=list)
    attn: AttentionConfig | None = None
    d_intermediate: int = 0
    rms_norm: bool = True
    norm_eps: float = 1e-5
    residual_in_fp32: bool = True
    gradient_checkpointing: bool = False
    kernel_backend: str = "auto"

    def __post_init__(self) -> None:
        name = type(self).__name__
        self.mixer = mixer_config_from_dict(self.mixer)
        if isinstance(self.attn, dict):
            self.attn = AttentionConfig.from_dict(self.attn)
        self.attn_layer_idx = sorted(int(i) for i in self.attn_layer_idx)
        _require_positive_ints(self, ("d_model", "n_layer"))
        _require(self.d_intermediate >= 0, name, "d_intermediate", self.d_intermediate, "0 (no MLP) or positive")
        _require(self.norm_eps > 0, name, "norm_eps", self.norm_eps, "a positive float")
        _require(self.kernel_backend in KERNEL_BACKENDS, name, "kernel_backend", self.kernel_backend,
                 f"one of {KERNEL_BACKENDS}")
        bad_index = [i for i in self.attn_layer_idx if not 0 <= i < self.n_layer]
        _require(not bad_index, name, "attn_layer_idx", self.attn_layer_idx, f"indices in [0, {self.n_layer})")
        _require(not self.attn_layer_idx or self.attn is not None, name, "attn", self.attn,
                 "an AttentionConfig when attn_layer_idx is not empty")
        if isinstance(self.mixer, Mamba2Config):
            self.mixer.num_heads(self.d_model)
        for config in (self.mixer, self.attn):
            if isinstance(config, AttentionConfig):
                config.resolved_head_dim(self.d_model)

    def layer_mixer(self, layer_idx: int) -> MixerConfig:
        """The mixer config of layer `layer_idx`."""
        return self.attn if layer_idx in self.attn_layer_idx else self.mixer

    def to_dict(self) -> dict[str, Any]:
        data = _plain_fields(self)
        data["mixer"] = self.mixer.to_dict()
        data["attn"] = None if self.attn is None else self.attn.to_dict()
        data["attn_layer_idx"] = list(self.attn_layer_idx)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneConfig:
        _check_keys(cls, data)
        return cls(**data)


@dataclass
class LMConfig:
    """Language model: backbone + tied LM head over a vocabulary padded to `pad_vocab_size_multiple`."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    vocab_size: int = 50277
    pad_vocab_size_multiple: int = 8
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = BackboneConfig.from_dict(self.backbone)
        _require_positive_ints(self, ("vocab_size", "pad_vocab_size_multiple"))

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding / LM head: `vocab_size` rounded up to `pad_vocab_size_multiple`."""
        multiple = self.pad_vocab_size_multiple
        return (self.vocab_size + multiple - 1) // multiple * multiple

    def to_dict(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone.to_dict(),
            "vocab_size": self.vocab_size,
            "pad_vocab_size_multiple": self.pad_vocab_size_multiple,
            "tie_embeddings": self.tie_embeddings,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LMConfig:
        _check_keys(cls, data)
        return cls(**data)

    @classmethod
    def from_mamba_ssm_dict(cls, data: dict[str, Any]) -> LMConfig:
        """Read a mamba-ssm `config.json` (`MambaConfig` of `mamba_ssm.models.config_mamba`)."""
        return _lm_config_from_mamba_ssm(data)

    def to_mamba_ssm_dict(self) -> dict[str, Any]:
        """Write the mamba-ssm `config.json` of this model; raises for settings mamba-ssm cannot express."""
        return _lm_config_to_mamba_ssm(self)


# mamba-ssm `config.json` <-> LMConfig. Defaults below are mamba-ssm's own (`MambaConfig`, `MHA`), used for keys
# a config.json leaves out.
MAMBA_SSM_DEFAULTS: dict[str, Any] = {
    "d_model": 2560, "d_intermediate": 0, "n_layer": 64, "vocab_size": 50277, "ssm_cfg": {}, "attn_layer_idx": [],
    "attn_cfg": {}, "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
    "pad_vocab_size_multiple": 8, "tie_embeddings": True,
}
MAMBA_SSM_LAYERS = {"Mamba1": Mamba1Config, "Mamba2": Mamba2Config}
# Keys that only select a fused CUDA code path in mamba-ssm and carry no model semantics.
MAMBA_SSM_RUNTIME_KEYS = frozenset({"use_fast_path", "use_mem_eff_path"})
MAMBA_SSM_NORM_EPS = 1e-5


def _lm_config_from_mamba_ssm(data: dict[str, Any]) -> LMConfig:
    unknown = sorted(set(data) - set(MAMBA_SSM_DEFAULTS))
    if unknown:
        raise ValueError(f"mamba-ssm config: unknown key(s) {unknown}; expected keys from {sorted(MAMBA_SSM_DEFAULTS)}")
    merged = {**MAMBA_SSM_DEFAULTS, **data}
    ssm_cfg = {k: v for k, v in dict(merged["ssm_cfg"] or {}).items() if k not in MAMBA_SSM_RUNTIME_KEYS}
    layer = ssm_cfg.pop("layer", "Mamba1")
    if layer not in MAMBA_SSM_LAYERS:
        raise ValueError(f"mamba-ssm config: ssm_cfg.layer={layer!r} is not supported: expected one of "
                         f"{sorted(MAMBA_SSM_LAYERS)}")
    d_ssm = ssm_cfg.pop("d_ssm", None)
    if d_ssm is not None and d_ssm != ssm_cfg.get("expand", 2) * merged["d_model"]:
        raise ValueError(f"mamba-ssm config: ssm_cfg.d_ssm={d_ssm} is not supported: expected None or "
                         f"expand * d_model (partial-SSM Mamba-2 layers are not implemented)")
    mixer = MAMBA_SSM_LAYERS[layer].from_dict(ssm_cfg)
    attn = None
    if merged["attn_layer_idx"]:
        attn = AttentionConfig.from_dict({"causal": False, **merged["attn_cfg"]})
    backbone = BackboneConfig(
        d_model=merged["d_model"], n_layer=merged["n_layer"], mixer=mixer,
        attn_layer_idx=list(merged["attn_layer_idx"]), attn=attn, d_intermediate=merged["d_intermediate"],
        rms_norm=merged["rms_norm"], norm_eps=MAMBA_SSM_NORM_EPS, residual_in_fp32=merged["residual_in_fp32"],
    )
    return LMConfig(backbone=backbone, vocab_size=merged["vocab_size"],
                    pad_vocab_size_multiple=merged["pad_vocab_size_multiple"], tie_embeddings=merged["tie_embeddings"])


def _lm_config_to_mamba_ssm(config: LMConfig) -> dict[str, Any]:
    backbone = config.backbone
    if backbone.norm_eps != MAMBA_SSM_NORM_EPS:
        raise ValueError(f"BackboneConfig.norm_eps={backbone.norm_eps} cannot be written to a mamba-ssm config: "
                         f"mamba-ssm fixes it to {MAMBA_SSM_NORM_EPS}")
    layer = {Mamba1Config: "Mamba1", Mamba2Config: "Mamba2"}.get(type(backbone.mixer))
    if layer is None:
        raise ValueError(f"BackboneConfig.mixer of kind {backbone.mixer.kind!r} cannot be written to a mamba-ssm "
                         f"config: expected a Mamba1Config or Mamba2Config")
    defaults = type(backbone.mixer)().to_dict()
    ssm_cfg = {"layer": layer}
    ssm_cfg.update({k: v for k, v in backbone.mixer.to_dict().items() if k != "kind" and v != defaults[k]})
    attn_cfg = {}
    if backbone.attn is not None and backbone.attn_layer_idx:
        attn_cfg = {k: v for k, v in backbone.attn.to_dict().items() if k != "kind" and v is not None}
    return {
        "d_model": backbone.d_model,
        "d_intermediate": backbone.d_intermediate,
        "n_layer": backbone.n_layer,
        "vocab_size": config.vocab_size,
        "ssm_cfg": ssm_cfg,
        "attn_layer_idx": list(backbone.attn_layer_idx),
        "attn_cfg": attn_cfg,
        "rms_norm": backbone.rms_norm,
        "residual_in_fp32": backbone.residual_in_fp32,
        "fused_add_norm": True,
        "pad_vocab_size_multiple": config.pad_vocab_size_multiple,
        "tie_embeddings": config.tie_embeddings,
    }
