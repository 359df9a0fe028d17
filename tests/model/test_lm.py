"""MambaLM / backbone / heads: recurrent decoding equals the parallel forward, mamba-ssm state-dict layout and
initialization, tied head, gradient checkpointing."""
import math

import pytest
import torch

from mambaseq.backbone import MambaBackbone
from mambaseq.config import BackboneConfig, LMConfig, Mamba1Config
from mambaseq.heads import ClassificationHead, RegressionHead, pool_sequence
from mambaseq.lm import MambaLM
from model_builders import VOCAB_SIZE, perturb_, tiny_lm_config

KINDS = ["mamba1", "mamba2", "hybrid"]


def _model(kind: str, seed: int = 0, **overrides) -> MambaLM:
    torch.manual_seed(seed)
    return perturb_(MambaLM(tiny_lm_config(kind, **overrides)), seed=seed).eval()


@pytest.mark.parametrize("batch", [1, 2])  # batch 1: Mamba-1's fused front and back (FUSED_FRONT_MAX_BATCH)
@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_steps_match_full_forward(kind: str, batch: int) -> None:
    model = _model(kind)
    input_ids = torch.randint(0, VOCAB_SIZE, (batch, 10))
    with torch.no_grad():
        full = model(input_ids)
        cache = model.allocate_cache(batch)
        stepped = torch.cat([model.step(input_ids[:, t:t + 1], cache) for t in range(10)], dim=1)
    assert full.shape == (batch, 10, 64)
    assert cache.seqlen_offset == 10
    torch.testing.assert_close(stepped, full, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kind", ["mamba1", "mamba2"])
def test_recurrent_steps_on_cuda_match_the_fp64_forward(kind: str, batch: int) -> None:
    """The CUDA decoding step (for Mamba-1 at batch 1 the fused front, summing x_proj, and the fused back, adding
    out_proj into the residual stream; at batch 3 the state step with dt's projection inside), fp32, against the
    full forward of the same model in fp64 on the CPU."""
    model = _model(kind, seed=2)
    input_ids = torch.randint(0, VOCAB_SIZE, (batch, 10))
    with torch.no_grad():
        full = model.double()(input_ids)
        model = model.float().cuda()
        cache = model.allocate_cache(batch)
        stepped = torch.cat([model.step(input_ids[:, t:t + 1].cuda(), cache) for t in range(10)], dim=1)
    torch.testing.assert_close(stepped.double().cpu(), full, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_prefill_then_steps_match_full_forward(kind: str) -> None:
    model = _model(kind, seed=1)
    input_ids = torch.randint(0, VOCAB_SIZE, (3, 12))
    with torch.no_grad():
        full = model(input_ids)
        cache = model.allocate_cache(3)
        prompt = model(input_ids[:, :7], cache=cache)
        continued = [model.step(input_ids[:, t:t + 1], cache) for t in range(7, 12)]
        cache.reset()
        restarted = model(input_ids[:, :7], cache=cache)
    torch.testing.assert_close(torch.cat([prompt, *continued], dim=1), full, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(restarted, full[:, :7], rtol=1e-4, atol=1e-4)


def test_state_dict_has_mamba_ssm_keys_and_shapes() -> None:
    config = LMConfig(backbone=BackboneConfig(d_model=32, n_layer=2, mixer=Mamba1Config(d_state=8)), vocab_size=61)
    shapes = {key: tuple(value.shape) for key, value in MambaLM(config).state_dict().items()}
    layer = {"mixer.A_log": (64, 8), "mixer.D": (64,), "mixer.in_proj.weight": (128, 32),
             "mixer.conv1d.weight": (64, 1, 4), "mixer.conv1d.bias": (64,), "mixer.x_proj.weight": (2 + 16, 64),
             "mixer.dt_proj.weight": (64, 2), "mixer.dt_proj.bias": (64,), "mixer.out_proj.weight": (32, 64),
             "norm.weight": (32,)}
    expected = {"backbone.embedding.weight": (64, 32), "backbone.norm_f.weight": (32,), "lm_head.weight": (64, 32)}
    expected.update({f"backbone.layers.{i}.{name}": shape for i in range(2) for name, shape in layer.items()})
    assert shapes == expected


def test_tied_head_shares_the_embedding_and_loads_without_lm_head() -> None:
    source, target = _model("mamba1", seed=2), _model("mamba1", seed=3)
    assert source.lm_head.weight is source.backbone.embedding.weight
    state = {k: v for k, v in source.state_dict().items() if k != "lm_head.weight"}
    target.load_state_dict(state)
    input_ids = torch.randint(0, VOCAB_SIZE, (1, 6))
    torch.testing.assert_close(target(input_ids), source(input_ids))


def test_untied_head_is_separate() -> None:
    config = tiny_lm_config("mamba1")
    config.tie_embeddings = False
    model = MambaLM(config)
    assert model.lm_head.weight is not model.backbone.embedding.weight
    assert len(list(model.parameters())) == len(list(MambaLM(tiny_lm_config("mamba1")).parameters())) + 1


@pytest.mark.parametrize("d_intermediate", [0, 256])
def test_backbone_init_follows_mamba_ssm(d_intermediate: int) -> None:
    torch.manual_seed(0)
    n_layer, d_model = 4, 256
    backbone = MambaBackbone(BackboneConfig(d_model=d_model, n_layer=n_layer, mixer=Mamba1Config(bias=True),
                                            d_intermediate=d_intermediate), vocab_size=1000)
    assert abs(backbone.embedding.weight.std().item() - 0.02) < 0.001
    residuals = 2 if d_intermediate else 1
    for layer in backbone.layers:
        mixer = layer.mixer
        bound = 1 / math.sqrt(mixer.d_inner) / math.sqrt(residuals * n_layer)  # kaiming_uniform(a=sqrt 5) bound
        assert bound * 0.95 < mixer.out_proj.weight.abs().max() <= bound
        assert torch.count_nonzero(mixer.in_proj.bias) == 0 and torch.count_nonzero(mixer.out_proj.bias) == 0
        assert torch.count_nonzero(mixer.dt_proj.bias) == mixer.d_inner  # marked _no_reinit
        if d_intermediate:
            fc2_bound = 1 / math.sqrt(layer.mlp.fc2.in_features) / math.sqrt(residuals * n_layer)
            assert fc2_bound * 0.95 < layer.mlp.fc2.weight.abs().max() <= fc2_bound


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    input_ids = torch.randint(0, VOCAB_SIZE, (2, 9))
    grads = []
    for checkpointing in (False, True):
        model = _model("hybrid", seed=4, gradient_checkpointing=checkpointing).train()
        model(input_ids).logsumexp(-1).mean().backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-6, msg=name)


def test_layer_norm_variant_and_inputs_embeds() -> None:
    model = _model("mamba1", seed=5, rms_norm=False)
    assert "backbone.layers.0.norm.bias" in model.state_dict()
    input_ids = torch.randint(0, VOCAB_SIZE, (2, 5))
    hidden = model.backbone(inputs_embeds=model.backbone.embedding(input_ids))
    torch.testing.assert_close(model.lm_head(hidden), model(input_ids))
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        model.backbone()


def test_pooling_respects_the_mask() -> None:
    hidden = torch.arange(24, dtype=torch.float32).view(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    torch.testing.assert_close(pool_sequence(hidden, mask, "mean")[1], hidden[1, :2].mean(0))
    torch.testing.assert_close(pool_sequence(hidden, mask, "last"), torch.stack([hidden[0, 3], hidden[1, 1]]))
    torch.testing.assert_close(pool_sequence(hidden, mask, "max")[1], hidden[1, 1])
    assert ClassificationHead(3, 5)(hidden, mask).shape == (2, 5)
    assert RegressionHead(3, 2, pooling="none")(hidden).shape == (2, 4, 2)
