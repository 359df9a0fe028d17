"""Fast decoding: last-position prefill == full forward, static-buffer decoder (eager, CPU) == plain steps, clear
errors for CPU / attention layers; on CUDA, graph-replayed generation == eager generation token for token (with
deterministic algorithms), and graph logits == eager step logits."""
import pytest
import torch

from mambaseq.generation import generate, stream
from mambaseq.generation_cuda_graph import (
    CUDAGraphDecoder,
    cuda_graph_decoder,
    graph_capture_problem,
    prefill,
    release_cuda_graphs,
)
from mambaseq.lm import MambaLM
from model_builders import VOCAB_SIZE, perturb_, tiny_lm_config

MAMBA_KINDS = ["mamba1", "mamba2"]


def tiny_model(kind: str, dtype: torch.dtype = torch.float64, device: str = "cpu") -> MambaLM:
    return perturb_(MambaLM(tiny_lm_config(kind))).to(device=device, dtype=dtype).eval()


def assert_cache_equal(actual, expected) -> None:
    for index, (mine, theirs) in enumerate(zip(actual.layers, expected.layers, strict=True)):
        for name in vars(theirs):
            left, right = getattr(mine, name), getattr(theirs, name)
            if isinstance(right, torch.Tensor):
                torch.testing.assert_close(left, right, msg=lambda m: f"layer {index} {name}: {m}")
    assert actual.seqlen_offset == expected.seqlen_offset


@pytest.mark.parametrize("kind", ["mamba1", "mamba2", "hybrid"])
def test_prefill_returns_last_logits_and_the_states_of_a_full_forward(kind: str, seed: int) -> None:
    model = tiny_model(kind)
    input_ids = torch.randint(0, VOCAB_SIZE, (2, 11))
    cache, reference_cache = model.allocate_cache(2), model.allocate_cache(2)
    logits = prefill(model, input_ids, cache)
    reference = model(input_ids, cache=reference_cache)[:, -1]
    torch.testing.assert_close(logits, reference)
    assert_cache_equal(cache, reference_cache)
    # a second prefill continues from the cached states (not from zeros)
    more = torch.randint(0, VOCAB_SIZE, (2, 5))
    torch.testing.assert_close(prefill(model, more, cache), model(more, cache=reference_cache)[:, -1])
    assert_cache_equal(cache, reference_cache)
    assert all("forward" not in vars(layer.mixer) for layer in model.backbone.layers)


@pytest.mark.parametrize("kind", MAMBA_KINDS)
def test_static_decoder_matches_plain_steps_and_reuses_its_cache(kind: str, seed: int) -> None:
    model = tiny_model(kind)
    decoder = CUDAGraphDecoder(model, capture=False)
    for prompt_len in (7, 4):  # the second generation reuses (and resets) the static cache
        input_ids = torch.randint(0, VOCAB_SIZE, (3, prompt_len))
        cache = model.allocate_cache(3)
        logits, decoding = decoder.start(input_ids)
        torch.testing.assert_close(logits, model(input_ids, cache=cache)[:, -1])
        for _ in range(4):
            tokens = torch.randint(0, VOCAB_SIZE, (3,))
            expected = model.step(tokens[:, None], cache)[:, -1]
            torch.testing.assert_close(decoding.step(tokens).clone(), expected)
        assert decoder._static[3].cache.seqlen_offset == cache.seqlen_offset == prompt_len + 4


@pytest.mark.slow
@pytest.mark.parametrize("kind", MAMBA_KINDS)
def test_compiled_static_decoder_matches_plain_steps(kind: str, seed: int) -> None:
    model = tiny_model(kind, dtype=torch.float32)
    decoder = CUDAGraphDecoder(model, capture=False, compile=True)
    input_ids = torch.randint(0, VOCAB_SIZE, (2, 5))
    cache = model.allocate_cache(2)
    logits, decoding = decoder.start(input_ids)
    torch.testing.assert_close(logits, model(input_ids, cache=cache)[:, -1])
    for _ in range(3):  # the compiled step updates the static states in place
        tokens = torch.randint(0, VOCAB_SIZE, (2,))
        expected = model.step(tokens[:, None], cache)[:, -1]
        torch.testing.assert_close(decoding.step(tokens).clone(), expected, rtol=1e-5, atol=1e-5)


def test_static_decoder_rejects_a_stale_generation_and_follows_moved_parameters(seed: int) -> None:
    model = tiny_model("mamba1", dtype=torch.float32)
    decoder = CUDAGraphDecoder(model, capture=False)
    _, first = decoder.start(torch.randint(0, VOCAB_SIZE, (2, 5)))
    decoder.start(torch.randint(0, VOCAB_SIZE, (2, 5)))
    with pytest.raises(RuntimeError, match="another generation with the same model and batch size"):
        first.step(torch.zeros(2, dtype=torch.long))
    model.double()
    logits, decoding = decoder.start(torch.randint(0, VOCAB_SIZE, (2, 5)))
    assert logits.dtype == decoding.step(torch.zeros(2, dtype=torch.long)).dtype == torch.float64


def test_static_buffers_allocated_under_inference_mode_are_updated_outside_it(seed: int) -> None:
    model = tiny_model("mamba2")
    decoder = CUDAGraphDecoder(model, capture=False)
    input_ids = torch.randint(0, VOCAB_SIZE, (2, 5))
    with torch.inference_mode():
        expected, decoding = decoder.start(input_ids)
        expected_next = decoding.step(input_ids[:, 0]).clone()
    logits, decoding = decoder.start(input_ids)
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(decoding.step(input_ids[:, 0]), expected_next)


def test_cuda_graph_on_cpu_raises_a_clear_error() -> None:
    model = tiny_model("mamba1")
    with pytest.raises(RuntimeError, match="cuda_graph=True needs the model on a CUDA device, got cpu"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), 2, do_sample=False, cuda_graph=True)


def test_attention_layers_are_rejected_by_name() -> None:
    model = tiny_model("hybrid")
    assert "layer 1: CausalSelfAttention" in graph_capture_problem(model)
    assert graph_capture_problem(tiny_model("mamba2")) == ""
    with pytest.raises(TypeError, match="layer 1: CausalSelfAttention"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), 2, do_sample=False, cuda_graph=True)


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def deterministic():
    """Deterministic algorithms for token-for-token comparisons: Mamba-1's fused batch-1 step adds out_proj into the
    residual stream with fp32 atomics, whose order (the last bits of the sum) varies from run to run."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(False)


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("kind", MAMBA_KINDS)
def test_cuda_graph_greedy_generation_equals_eager(kind: str, dtype: torch.dtype, seed: int, deterministic) -> None:
    model = tiny_model(kind, dtype=dtype, device="cuda")
    for batch in (1, 3, 1):  # two batch sizes, and a graph replayed for a second prompt
        input_ids = torch.randint(0, VOCAB_SIZE, (batch, 9), device="cuda")
        eager = generate(model, input_ids, 12, do_sample=False)
        graphed = generate(model, input_ids, 12, do_sample=False, cuda_graph=True)
        assert torch.equal(graphed, eager)
    assert sorted(cuda_graph_decoder(model)._static) == [1, 3]
    release_cuda_graphs(model)


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("batch", [1, 2])  # batch 1: Mamba-1's fused front and back, captured
@pytest.mark.parametrize("kind", MAMBA_KINDS)
def test_cuda_graph_logits_equal_eager_step_logits(kind: str, batch: int, seed: int) -> None:
    model = tiny_model(kind, dtype=torch.float32, device="cuda")
    input_ids = torch.randint(0, VOCAB_SIZE, (batch, 6), device="cuda")
    cache = model.allocate_cache(batch)
    logits, decoding = CUDAGraphDecoder(model).start(input_ids)
    torch.testing.assert_close(logits, model(input_ids, cache=cache)[:, -1], rtol=1e-4, atol=1e-4)
    for _ in range(5):
        tokens = torch.randint(0, VOCAB_SIZE, (batch,), device="cuda")
        expected = model.step(tokens[:, None], cache)[:, -1]
        torch.testing.assert_close(decoding.step(tokens), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("kind", MAMBA_KINDS)
def test_compiled_cuda_graph_greedy_generation_equals_eager(kind: str, seed: int) -> None:
    model = tiny_model(kind, dtype=torch.float32, device="cuda")
    input_ids = torch.randint(0, VOCAB_SIZE, (2, 9), device="cuda")
    eager = generate(model, input_ids, 12, do_sample=False)
    assert cuda_graph_decoder(model, compile=True).compile
    assert torch.equal(generate(model, input_ids, 12, do_sample=False, cuda_graph=True), eager)
    assert not cuda_graph_decoder(model, compile=False).compile
    release_cuda_graphs(model)


@pytest.mark.gpu
@requires_cuda
def test_cuda_graph_sampling_stream_matches_eager_with_the_same_generator(seed: int) -> None:
    model = tiny_model("mamba2", dtype=torch.float32, device="cuda")
    input_ids = torch.randint(0, VOCAB_SIZE, (2, 5), device="cuda")
    runs = []
    for cuda_graph in (False, True):
        generator = torch.Generator(device="cuda").manual_seed(seed)
        runs.append(torch.stack(list(stream(model, input_ids, 10, top_k=20, generator=generator,
                                            cuda_graph=cuda_graph)), dim=1))
    assert torch.equal(runs[0], runs[1])


@pytest.mark.gpu
@requires_cuda
def test_cuda_graph_rejects_attention_on_gpu() -> None:
    model = tiny_model("hybrid", dtype=torch.float32, device="cuda")
    with pytest.raises(TypeError, match="CausalSelfAttention"):
        generate(model, torch.zeros(1, 3, dtype=torch.long, device="cuda"), 2, do_sample=False, cuda_graph=True)
