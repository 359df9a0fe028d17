"""DNA networks: exact RC equivariance / invariance, BiMamba's view of the future, weight tying, masking."""
import pytest
import torch

from mambaseq.mixers.bidirectional import BidirectionalMixer
from mambaseq.tasks.dna.model import DNAClassifier, DNALanguageModel, DNAModelConfig, last_valid
from mambaseq.tasks.dna.task import DNAPretrainingTask, mask_bases
from mambaseq.tasks.dna.tokenizer import A_ID, MASK_ID, N_ID, PAD_ID, reverse_complement

BACKBONE = {"d_model": 16, "n_layer": 2, "mixer": {"d_state": 4}}


def network(**options) -> DNAModelConfig:
    return DNAModelConfig.from_dict({"backbone": dict(BACKBONE), **options})  # options may replace the backbone


def random_dna(batch: int, length: int, seed: int, pad: int = 0) -> torch.Tensor:
    """Random bases (A, C, G, T, N) with the last `pad` positions of row 0 set to [PAD]."""
    ids = torch.randint(A_ID, N_ID + 1, (batch, length), generator=torch.Generator().manual_seed(seed))
    if pad:
        ids[0, -pad:] = PAD_ID
    return ids


@pytest.mark.parametrize("bidirectional", [False, True])
def test_rc_equivariant_lm_is_equivariant_to_fp64_round_off(bidirectional):
    torch.manual_seed(0)
    model = DNALanguageModel(network(rc_equivariant=True, bidirectional=bidirectional)).double().eval()
    ids = random_dna(3, 37, seed=1, pad=5)
    with torch.no_grad():
        features, features_rc = model.forward_features(ids), model.forward_features(reverse_complement(ids))
        logits, logits_rc = model(ids), model(reverse_complement(ids))
    assert features.shape == (3, 37, 2 * BACKBONE["d_model"])
    torch.testing.assert_close(features_rc, features.flip(-2, -1), rtol=1e-12, atol=1e-12)  # fp64 round-off
    torch.testing.assert_close(logits_rc, logits.flip(1)[..., model.complement], rtol=1e-12, atol=1e-12)
    assert logits.abs().max() > 0.1


@pytest.mark.parametrize("bidirectional", [False, True])
def test_rc_equivariant_classifier_is_rc_invariant(bidirectional):
    torch.manual_seed(0)
    classifier = DNAClassifier(network(rc_equivariant=True, bidirectional=bidirectional), num_classes=3)
    classifier = classifier.double().eval()
    ids = random_dna(4, 41, seed=2, pad=7)
    with torch.no_grad():
        logits, logits_rc = classifier(ids), classifier(reverse_complement(ids))
    torch.testing.assert_close(logits_rc, logits, rtol=1e-12, atol=1e-12)
    plain = DNAClassifier(network(bidirectional=bidirectional), num_classes=3).double().eval()
    with torch.no_grad():
        assert (plain(ids) - plain(reverse_complement(ids))).abs().max() > 1e-6


def test_bimamba_sees_the_future_and_causal_mamba_does_not():
    torch.manual_seed(0)
    ids = random_dna(1, 30, seed=3)
    changed = ids.clone()
    changed[0, -1] = A_ID if ids[0, -1] != A_ID else A_ID + 1
    for bidirectional, should_change in ((True, True), (False, False)):
        model = DNALanguageModel(network(bidirectional=bidirectional)).double().eval()
        with torch.no_grad():
            difference = (model(ids)[0, 0] - model(changed)[0, 0]).abs().max().item()
        assert (difference > 1e-9) == should_change, (bidirectional, difference)


def test_bimamba_ties_projections_by_default():
    tied = DNALanguageModel(network(bidirectional=True))
    mixer = tied.backbone.layers[0].mixer
    assert isinstance(mixer, BidirectionalMixer)
    assert mixer.mamba_rev.in_proj.weight is mixer.mamba_fwd.in_proj.weight
    assert mixer.mamba_rev.out_proj.weight is mixer.mamba_fwd.out_proj.weight
    assert mixer.mamba_rev.conv1d.weight is not mixer.mamba_fwd.conv1d.weight
    untied = DNALanguageModel(network(bidirectional=True, bidirectional_weight_tie=False))
    untied_mixer = untied.backbone.layers[0].mixer
    assert untied_mixer.mamba_rev.in_proj.weight is not untied_mixer.mamba_fwd.in_proj.weight
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(untied) > count(tied) > count(DNALanguageModel(network()))
    with pytest.raises(ValueError, match="no recurrent step"):
        mixer.step(torch.zeros(1, 1, 16), None)


def test_causal_lm_state_dict_uses_mamba_ssm_names():
    keys = set(DNALanguageModel(network()).state_dict())
    assert {"backbone.embedding.weight", "backbone.layers.0.mixer.A_log", "backbone.norm_f.weight",
            "lm_head.weight"} <= keys
    assert not any(key.startswith("complement") for key in keys)


def test_last_valid_handles_padding_on_either_side():
    hidden = torch.arange(2 * 5, dtype=torch.float32).reshape(2, 5, 1)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]], dtype=torch.bool)
    assert last_valid(hidden, mask).flatten().tolist() == [2.0, 9.0]


def test_next_token_objective_rejects_non_causal_networks():
    with pytest.raises(ValueError, match="needs a causal network"):
        DNAPretrainingTask(network={"backbone": BACKBONE, "bidirectional": True})
    with pytest.raises(ValueError, match="unknown key"):
        DNAPretrainingTask(network={"backbone": BACKBONE, "reverse": True})
    hybrid = {**BACKBONE, "attn_layer_idx": [1], "attn": {"num_heads": 2, "causal": False}}
    assert not network(backbone=hybrid).causal
    assert network(backbone={**hybrid, "attn": {"num_heads": 2}}).causal
    masked = DNAPretrainingTask(network={"backbone": BACKBONE, "rc_equivariant": True}, objective="masked")
    batch = {"input_ids": random_dna(2, 64, seed=4, pad=10), "labels": torch.zeros(2, 64, dtype=torch.long)}
    output = masked.compute_loss(batch)
    assert torch.isfinite(output.loss) and output.num_targets > 0


def test_mask_bases_statistics():
    torch.manual_seed(0)
    ids = random_dna(64, 512, seed=5, pad=100)
    masked, labels = mask_bases(ids, 0.15)
    chosen = labels != -100
    valid = ids != PAD_ID
    assert not (chosen & ~valid).any()
    assert abs(chosen.sum().item() / valid.sum().item() - 0.15) < 0.01
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(masked[~chosen], ids[~chosen])
    assert abs((masked[chosen] == MASK_ID).float().mean().item() - 0.8) < 0.02
