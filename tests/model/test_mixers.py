"""Mixers and norms: initialization statistics, recurrent step == parallel forward, attention and norms against
explicit fp64 formulas, Mamba-2 options (dt_limit, D_has_hdim, gate/norm order)."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from mambaseq.config import AttentionConfig, Mamba1Config, Mamba2Config
from mambaseq.mixers import CausalSelfAttention, Mamba1Mixer, Mamba2Mixer
from mambaseq.mixers.rotary import apply_rotary, rotary_cos_sin
from mambaseq.norm import GatedRMSNorm, RMSNorm
from model_builders import perturb_

D_MODEL = 32


def test_mamba1_init_statistics() -> None:
    torch.manual_seed(0)
    config = Mamba1Config(d_state=12, dt_min=0.002, dt_max=0.05)
    mixer = Mamba1Mixer(512, config)  # d_inner = 1024 samples of dt
    dt = F.softplus(mixer.dt_proj.bias)
    assert dt.min() >= config.dt_min * (1 - 1e-5) and dt.max() <= config.dt_max * (1 + 1e-5)
    assert dt.min() < 1.2 * config.dt_min and dt.max() > 0.8 * config.dt_max  # log-uniform spans the range
    log_dt = dt.log()
    midpoint = (math.log(config.dt_min) + math.log(config.dt_max)) / 2
    assert abs(log_dt.mean().item() - midpoint) < 0.1
    A = -torch.exp(mixer.A_log)
    torch.testing.assert_close(A, -torch.arange(1, 13, dtype=torch.float32).expand(1024, -1), rtol=1e-6, atol=0)
    assert torch.equal(mixer.D, torch.ones(1024))
    bound = mixer.dt_rank**-0.5 * config.dt_scale
    assert mixer.dt_proj.weight.abs().max() <= bound and mixer.dt_proj.weight.abs().max() > 0.95 * bound
    assert mixer.A_log._no_weight_decay and mixer.D._no_weight_decay and mixer.dt_proj.bias._no_reinit


def test_mamba1_constant_dt_init_and_floor() -> None:
    mixer = Mamba1Mixer(64, Mamba1Config(dt_init="constant", dt_scale=2.0, dt_min=1e-6, dt_max=1e-5,
                                         dt_init_floor=1e-3))
    assert torch.allclose(mixer.dt_proj.weight, torch.full_like(mixer.dt_proj.weight, 2.0 / math.sqrt(4)))
    assert torch.allclose(F.softplus(mixer.dt_proj.bias), torch.full((128,), 1e-3), rtol=1e-4)


def test_mamba2_init_statistics() -> None:
    torch.manual_seed(0)
    config = Mamba2Config(headdim=4, A_init_range=(2.0, 8.0), dt_min=0.01, dt_max=0.2)
    mixer = Mamba2Mixer(1024, config)  # 512 heads
    dt = F.softplus(mixer.dt_bias)
    assert dt.min() >= 0.01 * (1 - 1e-5) and dt.max() <= 0.2 * (1 + 1e-5)
    assert dt.min() < 0.012 and dt.max() > 0.17
    A = -torch.exp(mixer.A_log)
    assert A.max() <= -2.0 + 1e-5 and A.min() >= -8.0 - 1e-5 and A.std() > 1.5  # uniform on [-8, -2]: std 1.73
    assert torch.equal(mixer.D, torch.ones(512))
    assert all(p._no_weight_decay for p in (mixer.dt_bias, mixer.A_log, mixer.D))


def test_rms_norm_matches_formula() -> None:
    norm = perturb_(RMSNorm(D_MODEL, eps=1e-3))
    x = torch.randn(2, 5, D_MODEL)
    x64, w64 = x.double(), norm.weight.double()
    expected = x64 / torch.sqrt(x64.pow(2).mean(-1, keepdim=True) + 1e-3) * w64
    torch.testing.assert_close(norm(x).double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm_before_gate", [False, True])
def test_gated_rms_norm_matches_formula(norm_before_gate: bool) -> None:
    norm = perturb_(GatedRMSNorm(24, group_size=8, eps=1e-5, norm_before_gate=norm_before_gate))
    x, z = torch.randn(3, 24), torch.randn(3, 24)
    x64, z64, w64 = x.double(), z.double(), norm.weight.double()
    gate = z64 * torch.sigmoid(z64)

    def group_rms(v: torch.Tensor) -> torch.Tensor:
        groups = v.view(3, 3, 8)
        return (groups / torch.sqrt(groups.pow(2).mean(-1, keepdim=True) + 1e-5)).view(3, 24)

    expected = group_rms(x64) * w64 * gate if norm_before_gate else group_rms(x64 * gate) * w64
    torch.testing.assert_close(norm(x, z).double(), expected, rtol=1e-5, atol=1e-6)


def _mixers() -> dict[str, torch.nn.Module]:
    return {
        "mamba1": Mamba1Mixer(D_MODEL, Mamba1Config(d_state=6, bias=True)),
        "mamba2": Mamba2Mixer(D_MODEL, Mamba2Config(d_state=6, headdim=8, ngroups=2, chunk_size=4)),
        "mamba2-hdimD-prenorm-limit": Mamba2Mixer(D_MODEL, Mamba2Config(
            d_state=6, headdim=16, chunk_size=3, D_has_hdim=True, norm_before_gate=True, dt_limit=(0.01, 0.5))),
        "mamba2-no-norm": Mamba2Mixer(D_MODEL, Mamba2Config(d_state=6, headdim=16, rmsnorm=False, d_conv=2)),
        "attention-gqa-rotary-conv-mlp": CausalSelfAttention(D_MODEL, AttentionConfig(
            num_heads=4, num_heads_kv=2, rotary_emb_dim=6, d_conv=4, mlp_dim=20)),
        "attention-interleaved-rotary": CausalSelfAttention(D_MODEL, AttentionConfig(
            num_heads=2, head_dim=12, rotary_emb_dim=12, rotary_emb_interleaved=True)),
    }


@pytest.mark.parametrize("name", list(_mixers()))
def test_step_and_prefill_match_forward(name: str) -> None:
    torch.manual_seed(1)
    mixer = perturb_(_mixers()[name]).eval()
    hidden = torch.randn(2, 11, D_MODEL)
    with torch.no_grad():
        full = mixer(hidden)
        cache = mixer.allocate_cache(2, torch.float32, "cpu")
        stepped = torch.cat([mixer.step(hidden[:, t:t + 1], cache) for t in range(11)], dim=1)
        cache = mixer.allocate_cache(2, torch.float32, "cpu")
        prefix = mixer(hidden[:, :2], cache)  # shorter than the conv width
        middle = mixer(hidden[:, 2:7], cache)
        rest = torch.cat([mixer.step(hidden[:, t:t + 1], cache) for t in range(7, 11)], dim=1)
    torch.testing.assert_close(stepped, full, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.cat([prefix, middle, rest], dim=1), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["mamba1", "mamba2", "attention-gqa-rotary-conv-mlp"])
def test_step_runs_on_the_mixers_kernel_backend(name: str) -> None:
    """The decoding step dispatches on the mixer's backend: "triton" cannot take CPU tensors and says so."""
    mixer = _mixers()[name].eval()
    mixer.kernel_backend = "triton"
    cache = mixer.allocate_cache(2, torch.float32, "cpu")
    with torch.no_grad(), pytest.raises(ValueError, match="backend='triton' cannot run this decoding step"):
        mixer.step(torch.randn(2, 1, D_MODEL), cache)


def test_forward_with_states_is_differentiable_in_the_states() -> None:
    torch.manual_seed(2)
    mixer = perturb_(Mamba2Mixer(D_MODEL, Mamba2Config(d_state=6, headdim=8, chunk_size=4)))
    hidden = torch.randn(1, 9, D_MODEL)
    full = mixer(hidden)
    first, states = mixer.forward_with_states(hidden[:, :4])
    states = tuple(s.detach().requires_grad_() for s in states)
    second, _ = mixer.forward_with_states(hidden[:, 4:], states)
    torch.testing.assert_close(torch.cat([first, second], 1), full, rtol=1e-4, atol=1e-5)
    second.sum().backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in states)


def _naive_attention(mixer: CausalSelfAttention, hidden: torch.Tensor) -> torch.Tensor:
    """fp64 softmax(q k^T / sqrt(d)) v with an explicit causal mask and GQA head sharing, no conv/rotary/mlp."""
    mixer = mixer.double()
    batch, seqlen, _ = hidden.shape
    h, hkv, d = mixer.num_heads, mixer.num_heads_kv, mixer.head_dim
    q, k, v = mixer.in_proj(hidden.double()).split([h * d, hkv * d, hkv * d], dim=-1)
    q = q.view(batch, seqlen, h, d)
    k = k.view(batch, seqlen, hkv, d).repeat_interleave(h // hkv, dim=2)
    v = v.view(batch, seqlen, hkv, d).repeat_interleave(h // hkv, dim=2)
    scores = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(d)
    scores = scores.masked_fill(torch.ones(seqlen, seqlen, dtype=torch.bool).triu(1), float("-inf"))
    context = torch.einsum("bhij,bjhd->bihd", scores.softmax(-1), v).reshape(batch, seqlen, h * d)
    return mixer.out_proj(context)


def test_attention_matches_naive_softmax() -> None:
    torch.manual_seed(3)
    mixer = perturb_(CausalSelfAttention(D_MODEL, AttentionConfig(num_heads=4, num_heads_kv=2)))
    hidden = torch.randn(2, 7, D_MODEL)
    expected = _naive_attention(mixer, hidden)
    torch.testing.assert_close(mixer.float()(hidden).double(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("interleaved", [False, True])
def test_rotary_scores_depend_on_relative_position_only(interleaved: bool) -> None:
    torch.manual_seed(4)
    q, k = torch.randn(1, 1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)

    def score(q_pos: int, k_pos: int) -> float:
        cos_q, sin_q = rotary_cos_sin(torch.tensor([q_pos]), 6, 10000.0)
        cos_k, sin_k = rotary_cos_sin(torch.tensor([k_pos]), 6, 10000.0)
        rotated_q = apply_rotary(q, cos_q.double(), sin_q.double(), interleaved)
        rotated_k = apply_rotary(k, cos_k.double(), sin_k.double(), interleaved)
        return (rotated_q * rotated_k).sum().item()

    assert score(5, 2) == pytest.approx(score(13, 10), rel=1e-6)
    assert score(5, 2) != pytest.approx(score(5, 3), rel=1e-3)
    cos, sin = rotary_cos_sin(torch.tensor([3]), 6, 10000.0)
    assert torch.equal(apply_rotary(q, cos.double(), sin.double(), interleaved)[..., 6:], q[..., 6:])


def test_mamba2_dt_limit_clamps_only_when_binding() -> None:
    torch.manual_seed(5)
    config = Mamba2Config(d_state=6, headdim=8, chunk_size=4)
    reference = perturb_(Mamba2Mixer(D_MODEL, config))
    hidden = torch.randn(2, 6, D_MODEL)

    def with_limit(limit: tuple[float, float]) -> torch.Tensor:
        mixer = Mamba2Mixer(D_MODEL, dataclasses.replace(config, dt_limit=limit))
        mixer.load_state_dict(reference.state_dict())
        return mixer(hidden)

    torch.testing.assert_close(with_limit((0.0, 1e6)), reference(hidden), rtol=1e-5, atol=1e-6)
    assert (with_limit((0.5, 0.6)) - reference(hidden)).abs().max() > 1e-3


def test_mamba2_per_channel_D_matches_per_head_D() -> None:
    torch.manual_seed(6)
    per_head = perturb_(Mamba2Mixer(D_MODEL, Mamba2Config(d_state=6, headdim=16, chunk_size=4)))
    per_channel = Mamba2Mixer(D_MODEL, Mamba2Config(d_state=6, headdim=16, chunk_size=4, D_has_hdim=True))
    state = dict(per_head.state_dict())
    state["D"] = per_head.D.detach().repeat_interleave(16)
    per_channel.load_state_dict(state)
    hidden = torch.randn(1, 5, D_MODEL)
    torch.testing.assert_close(per_channel(hidden), per_head(hidden))
