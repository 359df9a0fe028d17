"""`mambaseq generate` and `mambaseq convert` on tiny local checkpoints."""
import json

import huggingface_hub.constants
import pytest
import torch

from mambaseq.cli import main as mambaseq_main
from mambaseq.config import BackboneConfig, LMConfig, Mamba1Config
from mambaseq.generation import generate
from mambaseq.lm import MambaLM
from mambaseq.pretrained import load_pretrained, load_tokenizer, save_pretrained
from mambaseq.pretrained.tokenizer import BUNDLED
from checkpoint_builders import randomize_

PROMPT = "Hello world, this is"
GPT_NEOX_VOCAB = 50277


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny Mamba-1 over the full GPT-NeoX vocabulary, in mamba-ssm format."""
    torch.manual_seed(0)
    config = LMConfig(backbone=BackboneConfig(d_model=16, n_layer=2, mixer=Mamba1Config(d_state=4)),
                      vocab_size=GPT_NEOX_VOCAB)
    model = randomize_(MambaLM(config), scale=0.5).eval()
    folder = tmp_path_factory.mktemp("checkpoint")
    save_pretrained(model, folder)
    return folder


def test_generate_streams_the_greedy_continuation(checkpoint, tokenizer, capsys) -> None:
    mambaseq_main(["generate", "--model", str(checkpoint), "--prompt", PROMPT, "--max-new-tokens", "12",
                   "--temperature", "0", "--device", "cpu"])
    captured = capsys.readouterr()
    prompt_ids = tokenizer.encode(PROMPT)
    sequence = generate(load_pretrained(checkpoint), torch.tensor([prompt_ids]), 12, do_sample=False)[0]
    new_ids = sequence[len(prompt_ids):].tolist()
    new_ids = new_ids[:new_ids.index(0)] if 0 in new_ids else new_ids  # the CLI stops at <|endoftext|>
    assert captured.out == PROMPT + tokenizer.decode(new_ids) + "\n"
    assert f"[{len(new_ids)} tokens in" in captured.err


def test_generate_sampling_is_reproducible_with_a_seed(checkpoint, capsys) -> None:
    outputs = []
    for _ in range(2):
        mambaseq_main(["generate", "--model", str(checkpoint), "--prompt", PROMPT, "--max-new-tokens", "10",
                       "--temperature", "0.8", "--top-k", "40", "--top-p", "0.95", "--repetition-penalty", "1.2",
                       "--seed", "7", "--dtype", "float32"])
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert outputs[0].startswith(PROMPT) and len(outputs[0]) > len(PROMPT) + 1


def test_generate_cuda_graph_choice(checkpoint, capsys) -> None:
    """auto: CUDA graphs where they can run (here the CPU: off); on: an error saying why they cannot."""
    with pytest.raises(SystemExit, match="mambaseq generate: error: --cuda-graph on: needs a CUDA device"):
        mambaseq_main(["generate", "--model", str(checkpoint), "--prompt", PROMPT, "--device", "cpu",
                       "--cuda-graph", "on"])
    mambaseq_main(["generate", "--model", str(checkpoint), "--prompt", PROMPT, "--max-new-tokens", "3",
                   "--device", "cpu", "--cuda-graph", "auto"])
    assert "CUDA graphs" not in capsys.readouterr().err


@pytest.mark.gpu
def test_generate_with_cuda_graphs_matches_eager_greedy_output(checkpoint, capsys) -> None:
    outputs = []
    for choice in ("off", "on"):
        mambaseq_main(["generate", "--model", str(checkpoint), "--prompt", PROMPT, "--max-new-tokens", "12",
                       "--temperature", "0", "--device", "cuda", "--dtype", "float32", "--cuda-graph", choice])
        captured = capsys.readouterr()
        outputs.append(captured.out)
    assert "CUDA graphs" in captured.err
    assert outputs[0] == outputs[1]


def test_generate_reports_errors_without_a_traceback(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit, match="mambaseq generate: error: .*missing.ckpt does not exist"):
        mambaseq_main(["generate", "--model", str(tmp_path / "missing.ckpt"), "--prompt", "hi"])


def test_generate_offline_hub_id_without_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(SystemExit, match=r"mambaseq generate: error: cannot load 'state-spaces/mamba-130m' \(revision "
                                         r"main\): HF_HUB_OFFLINE is set .* Pass a local path instead"):
        mambaseq_main(["generate", "--model", "state-spaces/mamba-130m", "--prompt", "hi"])


def test_convert_round_trip_keeps_weights_config_and_tokenizer(checkpoint, tmp_path, capsys) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("config.json", "pytorch_model.bin"):
        (source / name).write_bytes((checkpoint / name).read_bytes())
    (source / "tokenizer.json").write_bytes(BUNDLED["gpt-neox-20b"].read_bytes())
    mambaseq_main(["convert", str(source), str(tmp_path / "hf"), "--to", "hf", "--max-shard-size", "1MB"])
    assert "wrote hf checkpoint" in capsys.readouterr().out
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    assert (tmp_path / "hf" / "tokenizer.json").is_file()
    mambaseq_main(["convert", str(tmp_path / "hf"), str(tmp_path / "back"), "--to", "mamba-ssm"])
    assert json.loads((tmp_path / "back" / "config.json").read_text()) == json.loads(
        (source / "config.json").read_text())
    original, back = load_pretrained(source).state_dict(), load_pretrained(tmp_path / "back").state_dict()
    assert original.keys() == back.keys()
    assert all(torch.equal(original[key], back[key]) for key in original)


def test_convert_lightning_checkpoint_to_bfloat16(checkpoint, tmp_path) -> None:
    model = load_pretrained(checkpoint)
    torch.save({"mambaseq_lm_config": model.config.to_dict(),
                "state_dict": {f"model.{key}": value for key, value in model.state_dict().items()}},
               tmp_path / "last.ckpt")
    mambaseq_main(["convert", str(tmp_path / "last.ckpt"), str(tmp_path / "out"), "--to", "mamba-ssm", "--dtype",
                   "bfloat16"])
    converted = load_pretrained(tmp_path / "out")
    assert converted.lm_head.weight.dtype == torch.bfloat16
    assert torch.equal(converted.lm_head.weight, model.lm_head.weight.to(torch.bfloat16))
