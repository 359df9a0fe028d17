"""Generation: logits processors on hand-made logits and against transformers' processors, sampling statistics,
eos handling, padded-vocabulary masking, `stream` == `generate`, greedy decoding of a real model."""
import math
from types import SimpleNamespace

import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from mambaseq.generation import (
    apply_repetition_penalty,
    apply_top_k,
    apply_top_p,
    generate,
    process_logits,
    select_next_token,
    stream,
)
from mambaseq.lm import MambaLM
from model_builders import VOCAB_SIZE, perturb_, tiny_lm_config

NEG_INF = float("-inf")


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    penalized = apply_repetition_penalty(logits, torch.tensor([[0, 1, 1]]), 2.0)
    assert torch.equal(penalized, torch.tensor([[1.0, -2.0, 0.5, 3.0]]))


def test_top_k_keeps_the_k_largest() -> None:
    logits = torch.tensor([[1.0, 4.0, 2.0, 3.0]])
    assert torch.equal(apply_top_k(logits, 2), torch.tensor([[NEG_INF, 4.0, NEG_INF, 3.0]]))
    assert torch.equal(apply_top_k(logits, 0), logits)
    assert torch.equal(apply_top_k(logits, 10), logits)


@pytest.mark.parametrize("top_p, kept", [(0.4, [0]), (0.6, [0, 1]), (0.75, [0, 1]), (0.9, [0, 1, 2]),
                                         (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_the_smallest_nucleus(top_p: float, kept: list[int]) -> None:
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    filtered = apply_top_p(logits, top_p)
    assert torch.isfinite(filtered[0]).nonzero().flatten().tolist() == kept


def test_processing_order_matches_transformers() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 50) * 3
    sequences = torch.randint(0, 50, (4, 7))
    reference = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.3), TemperatureLogitsWarper(0.7),
                                     TopKLogitsWarper(20), TopPLogitsWarper(0.8)])
    ours = process_logits(logits, sequences, temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.3)
    assert torch.equal(torch.isinf(ours), torch.isinf(reference(sequences, logits.clone())))
    torch.testing.assert_close(ours, reference(sequences, logits.clone()))


def test_sampling_frequencies_follow_tempered_probabilities() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.tensor([0.0, math.log(3.0)]).expand(20000, 2)
    history = torch.zeros(20000, 0, dtype=torch.long)
    tokens = select_next_token(logits, history, generator=generator)
    assert abs(tokens.float().mean().item() - 0.75) < 0.015
    tempered = select_next_token(logits, history, temperature=2.0, generator=generator)
    assert abs(tempered.float().mean().item() - math.sqrt(3) / (1 + math.sqrt(3))) < 0.015
    assert torch.equal(select_next_token(logits, history, temperature=0.0), torch.ones(20000, dtype=torch.long))


class ScriptedLM(torch.nn.Module):
    """Fake LM whose logits favor `script[row][position]`; padded vocabulary columns get huge logits."""

    def __init__(self, script: torch.Tensor, vocab_size: int, padded_vocab_size: int) -> None:
        super().__init__()
        self.script = script
        self.config = SimpleNamespace(vocab_size=vocab_size)
        self.padded_vocab_size = padded_vocab_size

    def allocate_cache(self, batch: int) -> SimpleNamespace:
        return SimpleNamespace(position=0)

    def _logits(self, length: int, cache: SimpleNamespace) -> torch.Tensor:
        positions = torch.arange(cache.position, cache.position + length)
        cache.position += length
        logits = torch.zeros(self.script.shape[0], length, self.padded_vocab_size)
        logits[..., self.config.vocab_size:] = 1e4
        targets = self.script[:, positions.clamp(max=self.script.shape[1] - 1)]
        logits.scatter_(2, targets.unsqueeze(-1), 10.0)
        return logits

    def forward(self, input_ids: torch.Tensor, cache: SimpleNamespace) -> torch.Tensor:
        return self._logits(input_ids.shape[1], cache)

    def step(self, input_ids: torch.Tensor, cache: SimpleNamespace) -> torch.Tensor:
        return self._logits(1, cache)


def test_eos_pads_finished_rows_and_stops_when_all_finished() -> None:
    # prompt of 2 tokens: the next-token logits after position p favor script[:, p]
    script = torch.tensor([[0, 5, 2, 9, 4, 4, 4], [0, 6, 7, 8, 3, 4, 4]])
    model = ScriptedLM(script, vocab_size=10, padded_vocab_size=16)
    prompt = torch.tensor([[1, 1], [1, 1]])
    out = generate(model, prompt, max_new_tokens=10, eos_token_id=[9, 3], pad_token_id=0, do_sample=False)
    assert out.tolist() == [[1, 1, 5, 2, 9, 0], [1, 1, 6, 7, 8, 3]]


def test_padded_vocabulary_is_never_sampled() -> None:
    script = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7]])
    model = ScriptedLM(script, vocab_size=10, padded_vocab_size=16)
    generator = torch.Generator().manual_seed(0)
    out = generate(model, torch.tensor([[3]]), max_new_tokens=6, temperature=50.0, generator=generator)
    assert out.max() < 10
    greedy = generate(model, torch.tensor([[3]]), max_new_tokens=6, do_sample=False)
    assert greedy[0, 1:].tolist() == [0, 1, 2, 3, 4, 5]


def test_stream_yields_what_generate_returns_and_sampling_is_seeded() -> None:
    torch.manual_seed(0)
    model = perturb_(MambaLM(tiny_lm_config("mamba2")), scale=0.5).eval()
    prompt = torch.randint(0, VOCAB_SIZE, (2, 4))
    streamed = torch.stack(list(stream(model, prompt, 6, do_sample=False)), dim=1)
    assert torch.equal(torch.cat([prompt, streamed], 1), generate(model, prompt, 6, temperature=0.0))
    runs = [generate(model, prompt, 8, top_k=5, top_p=0.9, repetition_penalty=1.2,
                     generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1]) and runs[0].shape == (2, 12) and runs[0].max() < VOCAB_SIZE


def test_top_k_one_is_greedy() -> None:
    torch.manual_seed(1)
    model = perturb_(MambaLM(tiny_lm_config("mamba1")), scale=0.5).eval()
    prompt = torch.randint(0, VOCAB_SIZE, (3, 3))
    sampled = generate(model, prompt, 7, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled, generate(model, prompt, 7, do_sample=False))


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": -1.0}, "temperature=-1.0"),
    ({"top_p": 0.0}, "top_p=0.0"),
    ({"top_k": -2}, "top_k=-2"),
    ({"repetition_penalty": 0.0}, "repetition_penalty=0.0"),
])
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    model = ScriptedLM(torch.zeros(1, 1, dtype=torch.long), vocab_size=4, padded_vocab_size=8)
    with pytest.raises(ValueError, match=message):
        generate(model, torch.zeros(1, 1, dtype=torch.long), 3, **kwargs)
