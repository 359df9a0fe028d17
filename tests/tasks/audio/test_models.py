"""The two audio models: SaShiMi-style U-Net causality, and recurrent stepping equal to the parallel forward (for the
U-Net with its per-stage buffers, and for the plain Mamba stack)."""
import pytest
import torch

from mambaseq.tasks.audio.task import build_audio_model
from mambaseq.unet import UNetConfig, UNetLM

UNET = {"d_model": 8, "pool": [2, 3], "expand": 2, "n_layer": 1, "mlp_expand": 2, "mixer": {"d_state": 4}}
MAMBA = {"d_model": 16, "n_layer": 2, "mixer": {"d_state": 4}}


def _model(architecture: str, network: dict, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_audio_model(architecture, network, num_classes=256).double().eval()


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("position", [0, 1, 5, 6, 7, 11, 12, 29, 35])
def test_unet_is_causal(position: int) -> None:
    """Changing the input at t changes no output before t (outputs at t predict t + 1 and may change)."""
    model = _model("unet", UNET)
    inputs = torch.randint(0, 256, (2, 36), generator=torch.Generator().manual_seed(position))
    changed = inputs.clone()
    changed[:, position] = (changed[:, position] + 101) % 256
    with torch.no_grad():
        base, other = model(inputs), model(changed)
    difference = (base - other).abs().amax(dim=(0, 2))
    assert float(difference[:position].sum()) < 1e-12  # fp64 round-off of the chunked scan at most
    assert float(difference[position]) > 1e-3  # the input does reach its own position


def test_unet_coarse_path_carries_information_forward() -> None:
    """Without the pooled path a change at t would vanish after the down/up stacks' receptive field; with it, the
    effect reaches the next pooling blocks through the coarse stages."""
    model = _model("unet", {**UNET, "pool": [4], "n_layer": 1})
    with torch.no_grad():
        model.unet.down.layers[0].mixer.out_proj.weight.zero_()
        model.unet.up.layers[0].mixer.out_proj.weight.zero_()
        model.unet.up.layers[0].mlp.fc2.weight.zero_()
        inputs = torch.randint(0, 256, (1, 16), generator=torch.Generator().manual_seed(1))
        changed = inputs.clone()
        changed[:, 1] += 1
        difference = (model(inputs) - model(changed)).abs().amax(dim=(0, 2))
    assert float(difference[2:4].max()) < 1e-12  # same block: only the skip path, now position-wise
    assert float(difference[4:8].min()) > 0.0  # next block: through pool down -> center -> pool up


@pytest.mark.parametrize(("architecture", "network"), [("unet", UNET), ("mamba", MAMBA)])
def test_step_by_step_equals_full_forward(architecture: str, network: dict) -> None:
    model = _model(architecture, network)
    inputs = torch.randint(0, 256, (3, 31), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        full = model(inputs)
        cache = model.allocate_cache(3)
        stepped = torch.cat([model.step(inputs[:, t: t + 1], cache) for t in range(inputs.shape[1])], dim=1)
    assert _relative_error(stepped, full) < 1e-5


def test_unet_prefill_mid_block_then_step_equals_forward() -> None:
    """Prompt prefill may end inside a pooling block, and chunks may continue a cached sequence."""
    model = _model("unet", UNET)
    inputs = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(inputs)
        cache = model.allocate_cache(2)
        pieces = [model(inputs[:, :5], cache=cache), model(inputs[:, 5:14], cache=cache)]
        pieces += [model.step(inputs[:, t: t + 1], cache) for t in range(14, 23)]
        pieces.append(model(inputs[:, 23:], cache=cache))
    assert _relative_error(torch.cat(pieces, dim=1), full) < 1e-5


def test_unet_handles_lengths_that_are_not_pool_multiples() -> None:
    model = _model("unet", UNET)
    inputs = torch.randint(0, 256, (1, 13), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert model(inputs).shape == (1, 13, 256)
        assert torch.allclose(model(inputs)[:, :7], model(inputs[:, :7]), rtol=0, atol=1e-10)


def test_unet_config_validation_and_round_trip() -> None:
    config = UNetConfig.from_dict(UNET)
    assert UNetConfig.from_dict(config.to_dict()) == config
    assert config.total_pool == 6 and config.width(2) == 32
    with pytest.raises(ValueError, match="unknown key"):
        UNetConfig.from_dict({"poolz": [4]})
    with pytest.raises(ValueError, match="pool"):
        UNetConfig(pool=[4, 0])
    with pytest.raises(ValueError, match="vocab_size must not be set"):
        build_audio_model("unet", {**UNET, "vocab_size": 16}, 256)
    with pytest.raises(ValueError, match="architecture='wavenet'"):
        build_audio_model("wavenet", {}, 256)
    assert isinstance(_model("unet", UNET), UNetLM)
