"""Chunked exact long-sequence processing: gradients equal those of one unchunked forward/backward (fp64)."""
import pytest
import torch
import torch.nn.functional as F


from mambaseq.config import BackboneConfig, LMConfig, Mamba1Config, Mamba2Config
from mambaseq.kernels import dispatch, selective_scan_reference
from mambaseq.kernels.causal_conv1d import causal_conv1d as causal_conv1d_torch
from mambaseq.lm import MambaLM
from mambaseq.long_sequence import (
    StatefulLM, chunked_forward, chunked_loss_backward, lm_chunk_logits, lm_loss_backward,
    split_chunks,
)


def test_split_chunks_covers_the_sequence():
    assert split_chunks(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert split_chunks(8, 8) == [slice(0, 8)]
    with pytest.raises(ValueError, match="chunk_size=0"):
        split_chunks(8, 0)


class ToyRecurrence(torch.nn.Module):
    """Input-gated diagonal recurrence with a width-3 causal conv in front: two states, like a Mamba layer."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = torch.nn.Parameter(torch.randn(3, width, dtype=torch.float64))
        self.gate = torch.nn.Linear(width, width, dtype=torch.float64)
        self.readout = torch.nn.Linear(width, 5, dtype=torch.float64)

    def segment(self, x, states):
        batch, length, width = x.shape
        conv_state, hidden = states if states is not None else (x.new_zeros(batch, 2, width), x.new_zeros(batch, width))
        padded = torch.cat([conv_state, x], dim=1)
        mixed = sum(self.conv[k] * padded[:, k : k + length] for k in range(3))
        outputs = []
        for t in range(length):
            decay = torch.sigmoid(self.gate(mixed[:, t]))
            hidden = decay * hidden + (1 - decay) * torch.tanh(mixed[:, t])
            outputs.append(hidden)
        return self.readout(torch.stack(outputs, dim=1)), [padded[:, -2:], hidden]


def _toy_loss(output, targets):
    return F.cross_entropy(output.flatten(0, 1), targets.flatten(), reduction="sum") / 48


@pytest.mark.parametrize("chunk_size", [1, 5, 16, 100])
def test_chunked_gradients_equal_unchunked_on_a_toy_recurrence(chunk_size):
    torch.manual_seed(0)
    toy = ToyRecurrence(width=4)
    x = torch.randn(2, 24, 4, dtype=torch.float64)
    targets = torch.randint(0, 5, (2, 24))

    output, _ = toy.segment(x, None)
    reference_loss = _toy_loss(output, targets)
    reference_loss.backward()
    reference = {name: p.grad.clone() for name, p in toy.named_parameters()}
    toy.zero_grad()

    result = chunked_loss_backward(toy.segment, x, targets, chunk_size, _toy_loss)
    assert result.num_chunks == -(-24 // chunk_size)
    assert result.loss == pytest.approx(reference_loss.item(), rel=1e-12)
    for name, parameter in toy.named_parameters():
        torch.testing.assert_close(parameter.grad, reference[name], rtol=1e-10, atol=1e-12)


def _tiny_lm(mixer, n_layer=2, d_model=16, vocab_size=11, gradient_checkpointing=False):
    torch.manual_seed(0)
    backbone = BackboneConfig(d_model=d_model, n_layer=n_layer, mixer=mixer, kernel_backend="reference",
                              gradient_checkpointing=gradient_checkpointing)
    return MambaLM(LMConfig(backbone=backbone, vocab_size=vocab_size)).double()


def assert_gradients_close(model, reference, limit=1e-11):
    for name, parameter in model.named_parameters():
        relative = float((parameter.grad - reference[name]).abs().max() / reference[name].abs().max())
        assert relative < limit, f"{name}: relative gradient error {relative:.2e} >= {limit:.0e}"


MIXERS = {
    "mamba1": Mamba1Config(d_state=4),
    "mamba2": Mamba2Config(d_state=8, headdim=8, chunk_size=4),
}


@pytest.mark.parametrize("mixer", list(MIXERS))
@pytest.mark.parametrize("chunk_size", [7, 16])
def test_lm_chunked_gradients_equal_unchunked(mixer, chunk_size):
    model = _tiny_lm(MIXERS[mixer])
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, 11, (2, 33), generator=generator)
    labels = torch.randint(0, 11, (2, 33), generator=generator)
    labels[0, :5] = -100

    logits = model(input_ids)
    reference_loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    reference_loss.backward()
    reference = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()

    result = lm_loss_backward(model, input_ids, labels, chunk_size)
    assert result.loss == pytest.approx(reference_loss.item(), rel=1e-12)
    assert_gradients_close(model, reference)
    assert "forward" not in vars(model.backbone.layers[0].mixer), "the patched forward is removed on exit"


def test_lm_chunked_gradients_with_gradient_checkpointing():
    model = _tiny_lm(MIXERS["mamba1"], gradient_checkpointing=True).train()
    input_ids = torch.randint(0, 11, (1, 20), generator=torch.Generator().manual_seed(2))
    labels = input_ids.roll(-1, dims=1)
    F.cross_entropy(model(input_ids).flatten(0, 1), labels.flatten()).backward()
    reference = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    lm_loss_backward(model, input_ids, labels, chunk_size=6)
    assert_gradients_close(model, reference)


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_chunked_logits_equal_one_forward(mixer):
    model = _tiny_lm(MIXERS[mixer]).eval()
    input_ids = torch.randint(0, 11, (3, 29), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = model(input_ids)
    chunked = torch.cat(list(lm_chunk_logits(model, input_ids, chunk_size=8)), dim=1)
    torch.testing.assert_close(chunked, reference, rtol=1e-10, atol=1e-12)


def test_final_states_match_the_inference_cache_prefill():
    model = _tiny_lm(MIXERS["mamba1"]).eval()
    input_ids = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(4))
    cache = model.allocate_cache(2)
    with torch.no_grad():
        model(input_ids, cache=cache)
    with StatefulLM(model) as stateful:
        *_, (_, states) = chunked_forward(stateful.segment, input_ids, chunk_size=5)
    for index, layer_cache in enumerate(cache.layers):
        torch.testing.assert_close(states[2 * index].to(layer_cache.conv_state.dtype), layer_cache.conv_state)
        torch.testing.assert_close(states[2 * index + 1].to(layer_cache.ssm_state.dtype), layer_cache.ssm_state)


def test_attention_layers_are_rejected_by_name():
    from mambaseq.config import AttentionConfig

    backbone = BackboneConfig(d_model=16, n_layer=2, mixer=Mamba1Config(d_state=4), attn_layer_idx=[1],
                              attn=AttentionConfig(num_heads=2))
    model = MambaLM(LMConfig(backbone=backbone, vocab_size=11))
    with pytest.raises(TypeError, match="layer 1: CausalSelfAttention"):
        StatefulLM(model)


def _zero_state_kernel(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """mamba-ssm's `selective_scan_fn` contract, emulated: zero initial state, last state without gradient."""
    y, last = selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_final_state=True)
    return (y, last.detach()) if return_last_state else y


def _conv_kernel(x, weight, bias=None, initial_states=None, return_final_states=False, activation=None):
    """causal-conv1d's `causal_conv1d_fn` contract, emulated with the PyTorch conv."""
    return causal_conv1d_torch(x, weight, bias, activation, initial_states, return_final_states)


def test_lm_chunked_gradients_through_the_mamba_ssm_route(monkeypatch):
    """backend="cuda" (mamba-ssm scan + prefix/suffix state positions), emulated on the CPU, end to end."""
    calls = []

    def emulated(module, name):
        calls.append(name)
        return (_zero_state_kernel if name == "selective_scan_fn" else _conv_kernel), ""

    monkeypatch.setattr(dispatch, "_optional", emulated)
    monkeypatch.setattr(dispatch, "_CUDA_DTYPES", (torch.float64,))  # exact emulation in fp64
    model = _tiny_lm(MIXERS["mamba1"])
    input_ids = torch.randint(0, 11, (2, 21), generator=torch.Generator().manual_seed(6))
    labels = input_ids.roll(-1, dims=1)
    reference_loss = F.cross_entropy(model(input_ids).flatten(0, 1), labels.flatten())
    reference_loss.backward()
    reference = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    for layer in model.backbone.layers:
        layer.mixer.kernel_backend = "cuda"
    result = lm_loss_backward(model, input_ids, labels, chunk_size=8)
    assert "selective_scan_fn" in calls, "the emulated mamba-ssm route was taken"
    assert result.loss == pytest.approx(reference_loss.item(), rel=1e-12)
    assert_gradients_close(model, reference, limit=1e-8)  # the prefix positions scale inputs by up to e/step


@pytest.mark.gpu
@pytest.mark.parametrize("mixer", list(MIXERS))
def test_cuda_chunked_gradients_equal_unchunked(mixer):
    """On the GPU the fast kernels run (mamba-ssm / causal-conv1d when installed): the chunked pass must still match
    one unchunked pass, to fp32 accuracy."""
    torch.manual_seed(0)
    mixer_config = Mamba1Config(d_state=16) if mixer == "mamba1" else Mamba2Config(d_state=32, headdim=16)
    backbone = BackboneConfig(d_model=64, n_layer=2, mixer=mixer_config)
    model = MambaLM(LMConfig(backbone=backbone, vocab_size=32)).cuda()
    input_ids = torch.randint(0, 32, (2, 1000), device="cuda")
    labels = input_ids.roll(-1, dims=1)
    reference_loss = F.cross_entropy(model(input_ids).flatten(0, 1), labels.flatten())
    reference_loss.backward()
    reference = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    result = lm_loss_backward(model, input_ids, labels, chunk_size=256)
    assert result.loss == pytest.approx(reference_loss.item(), rel=1e-5)
    for name, parameter in model.named_parameters():
        relative = float((parameter.grad - reference[name]).abs().max() / reference[name].abs().max())
        assert relative < 2e-3, f"{name}: relative gradient error {relative:.2e}"
