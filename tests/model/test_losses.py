"""`linear_cross_entropy` (chunked LM-head cross-entropy) against `F.cross_entropy` of full fp64 logits.

Tolerances (relative error of the norm): fp64 inputs 1e-10 (same math, other summation order); fp32 inputs 1e-5
(observed 2e-7); bf16 inputs vs the fp64 reference on the same bf16-rounded inputs: 1e-3 for the loss, 1e-2 for
the gradients (bf16 keeps 8 mantissa bits, ~4e-3 per rounding of the logits and of grad_logits; observed over 5
seeds: loss <= 5e-5, gradients <= 3.2e-3).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mambaseq.losses import IGNORE_INDEX, linear_cross_entropy


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.double(), expected.double()
    return ((actual - expected).norm() / expected.norm().clamp_min(1e-30)).item()


def make_problem(batch: int, seqlen: int, d_model: int, vocab: int, seed: int, ignored_fraction: float = 0.25):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, seqlen, d_model, generator=generator, dtype=torch.float64)
    weight = torch.randn(vocab, d_model, generator=generator, dtype=torch.float64) / d_model**0.5
    targets = torch.randint(0, vocab, (batch, seqlen), generator=generator)
    ignored = torch.rand(batch, seqlen, generator=generator) < ignored_fraction
    return hidden, weight, targets.masked_fill(ignored, IGNORE_INDEX)


def reference_loss_and_grads(hidden, weight, targets, vocab_size=None):
    """Full-logits fp64 loss and grads; padding columns (>= vocab_size) masked out of the softmax."""
    hidden = hidden.detach().double().requires_grad_()
    weight = weight.detach().double().requires_grad_()
    logits = F.linear(hidden, weight)
    if vocab_size is not None:
        logits = logits.masked_fill(torch.arange(weight.shape[0]) >= vocab_size, float("-inf"))
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
    loss.backward()
    return loss.detach(), hidden.grad, weight.grad


def chunked_loss_and_grads(hidden, weight, targets, dtype, **kwargs):
    hidden = hidden.detach().to(dtype).requires_grad_()
    weight = weight.detach().to(dtype).requires_grad_()
    loss = linear_cross_entropy(hidden, weight, targets, **kwargs)
    loss.backward()
    return loss.detach(), hidden.grad, weight.grad


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("chunk_size", [7, 64, 4096])  # 7 and 64 do not divide the 3 * 50 rows
def test_matches_full_logits_cross_entropy(dtype, tolerance, chunk_size):
    hidden, weight, targets = make_problem(3, 50, 32, 101, seed=chunk_size)
    expected = reference_loss_and_grads(hidden, weight, targets)
    actual = chunked_loss_and_grads(hidden, weight, targets, dtype, chunk_size=chunk_size)
    assert actual[0].dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    for name, got, want in zip(("loss", "grad_hidden", "grad_weight"), actual, expected):
        assert got.dtype == dtype or name == "loss"
        assert relative_error(got, want) < tolerance, name


def test_ignored_rows_get_no_gradient_and_do_not_count():
    hidden, weight, targets = make_problem(2, 40, 16, 50, seed=1, ignored_fraction=0.5)
    loss, grad_hidden, _ = chunked_loss_and_grads(hidden, weight, targets, torch.float64, chunk_size=9)
    ignored = targets == IGNORE_INDEX
    assert ignored.any() and (~ignored).any()
    assert grad_hidden[ignored].abs().max() == 0
    assert grad_hidden[~ignored].abs().amin(-1).min() > 0
    kept_loss, _, _ = chunked_loss_and_grads(hidden[~ignored][None], weight, targets[~ignored][None],
                                             torch.float64, chunk_size=9)
    assert relative_error(loss, kept_loss) < 1e-12


def test_padding_columns_are_left_out_of_the_softmax_when_vocab_size_is_given():
    hidden, weight, targets = make_problem(2, 30, 16, 48, seed=2)
    targets = targets.masked_fill(targets >= 45, IGNORE_INDEX)
    expected = reference_loss_and_grads(hidden, weight, targets, vocab_size=45)
    actual = chunked_loss_and_grads(hidden, weight, targets, torch.float64, chunk_size=11, vocab_size=45)
    for name, got, want in zip(("loss", "grad_hidden", "grad_weight"), actual, expected):
        assert relative_error(got, want) < 1e-10, name
    assert actual[2][45:].abs().max() == 0
    with_padding = chunked_loss_and_grads(hidden, weight, targets, torch.float64, chunk_size=11)[0]
    assert with_padding > actual[0]  # the padded columns add probability mass when kept


def test_bfloat16_inputs_stay_close_to_the_fp32_input_reference():
    hidden, weight, targets = make_problem(2, 64, 64, 300, seed=3)
    hidden, weight = hidden.to(torch.bfloat16), weight.to(torch.bfloat16)  # same rounded inputs for both
    expected = reference_loss_and_grads(hidden, weight, targets)
    actual = chunked_loss_and_grads(hidden, weight, targets, torch.bfloat16, chunk_size=50)
    assert actual[1].dtype == actual[2].dtype == torch.bfloat16
    for name, got, want, tolerance in zip(("loss", "grad_hidden", "grad_weight"), actual, expected,
                                          (1e-3, 1e-2, 1e-2)):
        assert relative_error(got, want) < tolerance, name


def test_autocast_runs_the_product_in_the_autocast_dtype():
    hidden, weight, targets = make_problem(2, 20, 16, 40, seed=4)
    hidden, weight = hidden.float().requires_grad_(), weight.float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = linear_cross_entropy(hidden, weight, targets, chunk_size=13)
        full = F.cross_entropy(F.linear(hidden, weight).float().flatten(0, 1), targets.flatten(),
                               ignore_index=IGNORE_INDEX)
    assert loss.dtype == torch.float32
    assert relative_error(loss, full) < 1e-6  # both take the product in bf16, then fp32 softmax
    loss.backward()
    assert hidden.grad.dtype == weight.grad.dtype == torch.float32


def test_all_rows_ignored_gives_nan_like_cross_entropy():
    hidden, weight, targets = make_problem(1, 5, 8, 10, seed=5)
    loss = linear_cross_entropy(hidden, weight, torch.full_like(targets, IGNORE_INDEX))
    assert torch.isnan(loss)


@pytest.mark.parametrize("kwargs, message", [({"chunk_size": 0}, "chunk_size=0"),
                                             ({"vocab_size": 99}, "vocab_size=99")])
def test_bad_arguments_are_named(kwargs, message):
    hidden, weight, targets = make_problem(1, 5, 8, 10, seed=6)
    with pytest.raises(ValueError, match=message):
        linear_cross_entropy(hidden, weight, targets, **kwargs)


def test_language_model_task_light_loss_equals_full_logits_loss():
    from mambaseq.tasks.lm.task import LanguageModelTask

    config = {"backbone": {"d_model": 16, "n_layer": 2}, "vocab_size": 61}  # padded to 64 rows
    light, full = LanguageModelTask(config, loss_chunk_size=7), LanguageModelTask(config, loss_chunk_size=0)
    full.load_state_dict(light.state_dict())
    generator = torch.Generator().manual_seed(7)
    input_ids = torch.randint(0, 61, (2, 12), generator=generator)
    ignored = torch.rand(2, 12, generator=generator) < 0.3
    labels = torch.randint(0, 61, (2, 12), generator=generator).masked_fill(ignored, IGNORE_INDEX)
    outputs = [task.compute_loss({"input_ids": input_ids, "labels": labels}) for task in (light, full)]
    assert relative_error(outputs[0].loss, outputs[1].loss) < 1e-6  # fp32, other summation order
    assert outputs[0].num_tokens == outputs[1].num_tokens and outputs[0].num_targets == outputs[1].num_targets
    for output in outputs:
        output.loss.backward()
    for (name, light_parameter), full_parameter in zip(light.named_parameters(), full.parameters()):
        assert relative_error(light_parameter.grad, full_parameter.grad) < 1e-5, name
    assert light.hparams["loss_chunk_size"] == 7
