"""Input adapters: shapes, the patch layout against an fp64 reference, and errors that name the numbers."""
import pytest
import torch

from mambaseq.tasks.modality.adapters import AdapterConfig, LinearProjection, Patching, TokenEmbedding, build_adapter


def test_token_embedding_shape_and_lookup():
    adapter = TokenEmbedding(vocab_size=11, d_model=8)
    tokens = torch.randint(0, 11, (3, 5))
    out = adapter(tokens)
    assert out.shape == (3, 5, 8)
    torch.testing.assert_close(out[1, 2], adapter.embedding.weight[tokens[1, 2]])
    with pytest.raises(ValueError, match=r"integer ids of shape \(batch, seqlen\), got \(3, 5, 2\)"):
        adapter(torch.zeros(3, 5, 2))


def test_linear_projection_shape_and_channel_check():
    adapter = LinearProjection(in_features=6, d_model=8)
    assert adapter(torch.randn(2, 7, 6)).shape == (2, 7, 8)
    with pytest.raises(ValueError, match=r"\(batch, seqlen, 6\), got \(2, 7, 5\)"):
        adapter(torch.randn(2, 7, 5))


def test_patching_matches_fp64_reference():
    torch.manual_seed(0)
    adapter = Patching(patch_len=4, in_features=3, d_model=8).double()
    features = torch.randn(2, 12, 3, dtype=torch.float64)
    out = adapter(features)
    assert out.shape == (2, 3, 8)
    for patch in range(3):  # patch p = steps 4p..4p+3, flattened step-major (all channels of a step together)
        flat = features[:, 4 * patch:4 * patch + 4].reshape(2, 12)
        reference = flat @ adapter.proj.weight.T + adapter.proj.bias
        torch.testing.assert_close(out[:, patch], reference, rtol=1e-12, atol=1e-12)


def test_patching_rejects_indivisible_length_naming_both_numbers():
    adapter = Patching(patch_len=4, in_features=3, d_model=8)
    with pytest.raises(ValueError, match="sequence length 10 is not divisible by patch_len=4"):
        adapter(torch.randn(2, 10, 3))


@pytest.mark.parametrize(("config", "message"), [
    (AdapterConfig(kind="token"), "adapter.vocab_size=0 must be positive for adapter.kind='token'"),
    (AdapterConfig(kind="patch", in_features=3, patch_len=0), "adapter.patch_len=0 must be positive"),
    (AdapterConfig(kind="conv", in_features=3), "adapter.kind='conv' is unknown"),
])
def test_build_adapter_errors(config, message):
    with pytest.raises(ValueError, match=message):
        build_adapter(config, d_model=8)


def test_build_adapter_kinds():
    assert isinstance(build_adapter(AdapterConfig(kind="token", vocab_size=5), 8), TokenEmbedding)
    assert isinstance(build_adapter(AdapterConfig(kind="linear", in_features=3), 8), LinearProjection)
    patching = build_adapter(AdapterConfig(kind="patch", in_features=3, patch_len=2), 8)
    assert isinstance(patching, Patching) and patching(torch.randn(1, 6, 3)).shape == (1, 3, 8)
