"""Memory horizons of Mamba layers: with step sizes forced to a constant, the slowest decay rate is
softplus(bias) * min|A| and the horizon its inverse."""
import math

import pytest
import torch

from mambaseq.config import BackboneConfig, LMConfig, Mamba1Config, Mamba2Config
from mambaseq.lm import MambaLM
from mambaseq.tasks.synthetic.memory import memory_horizons, typical_decay_rates


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_mamba1_horizon_is_the_inverse_of_the_slowest_decay():
    torch.manual_seed(0)
    model = MambaLM(LMConfig(backbone=BackboneConfig(d_model=16, n_layer=2, mixer=Mamba1Config(d_state=4)),
                             vocab_size=20)).eval()
    biases = (-6.0, -3.0)
    with torch.no_grad():
        for layer, bias in zip(model.backbone.layers, biases):
            layer.mixer.dt_proj.weight.zero_()
            layer.mixer.dt_proj.bias.fill_(bias)
            layer.mixer.A_log.copy_(torch.log(torch.arange(1, 5.0)).expand_as(layer.mixer.A_log) + 0.5)
    memories = memory_horizons(model, torch.randint(0, 20, (2, 33)))
    assert [memory.layer for memory in memories] == [0, 1]
    for memory, bias in zip(memories, biases):
        expected_rate = _softplus(bias) * math.exp(0.5)  # min |A| = exp(log 1 + 0.5)
        assert memory.slowest_rate == pytest.approx(expected_rate, rel=1e-5)
        assert memory.horizon == pytest.approx(1 / expected_rate, rel=1e-5)
    assert memories[0].horizon > memories[1].horizon


def test_mamba2_horizon_uses_the_per_head_step_and_decay():
    torch.manual_seed(0)
    config = LMConfig(backbone=BackboneConfig(d_model=32, n_layer=1, mixer=Mamba2Config(d_state=8, headdim=16)),
                      vocab_size=20)
    model = MambaLM(config).eval()
    mixer = model.backbone.layers[0].mixer
    with torch.no_grad():
        mixer.in_proj.weight[-mixer.nheads:].zero_()
        mixer.dt_bias.copy_(torch.linspace(-5.0, -1.0, mixer.nheads))
        mixer.A_log.copy_(torch.linspace(0.0, 1.0, mixer.nheads))
    (memory,) = memory_horizons(model, torch.randint(0, 20, (3, 17)))
    rates = [_softplus(b) * math.exp(a) for b, a in zip(mixer.dt_bias.tolist(), mixer.A_log.tolist())]
    assert memory.slowest_rate == pytest.approx(min(rates), rel=1e-5)


def test_rates_follow_typical_steps_not_rare_large_ones():
    """A few large steps (trigger tokens) must not shorten the horizon of what distractors leave alone."""
    dt = torch.full((2, 100, 3), 1e-4)
    dt[:, ::50] = 5.0  # two large steps per sequence: the mean would be 0.1, 1000x the typical step
    rates = typical_decay_rates(dt, torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0]]))
    torch.testing.assert_close(rates, 1e-4 * torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0]]))
