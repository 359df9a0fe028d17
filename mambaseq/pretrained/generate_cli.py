"""`mambaseq generate`: stream text from a pretrained or trained Mamba LM to the terminal as tokens arrive.

    mambaseq generate --model state-spaces/mamba-130m --prompt "Mamba is" --max-new-tokens 64 --top-p 0.9
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from mambaseq.generation import stream
from mambaseq.generation_cuda_graph import graph_capture_problem
from mambaseq.pretrained.formats import read_checkpoint
from mambaseq.pretrained.hub import resolve_pretrained
from mambaseq.pretrained.layout import EXPECTED_LAYOUT
from mambaseq.pretrained.loading import DTYPES, model_from_checkpoint, parse_dtype
from mambaseq.pretrained.text_stream import IncrementalDetokenizer
from mambaseq.pretrained.tokenizer import DEFAULT_TOKENIZER, TOKENIZER_FILE, load_tokenizer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mambaseq generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help=f"hub id or local path: {EXPECTED_LAYOUT}")
    parser.add_argument("--prompt", required=True, help="text to continue ('' starts from <|endoftext|>)")
    parser.add_argument("--revision", default=None, help="hub branch, tag or commit")
    parser.add_argument("--tokenizer", default=None,
                        help=f"tokenizer name, file, folder or hub id (default: the model folder's {TOKENIZER_FILE} "
                             f"if it has one, else the bundled {DEFAULT_TOKENIZER})")
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy decoding")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    parser.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0 = off)")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, help="CTRL-style penalty (1 = off)")
    parser.add_argument("--dtype", default="auto", choices=["auto", *DTYPES],
                        help="auto: the checkpoint's dtype on GPU, float32 on CPU")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--seed", type=int, default=None, help="seed of the sampler (reproducible output)")
    parser.add_argument("--cuda-graph", default="auto", choices=["auto", "on", "off"],
                        help="replay each decoding step from a CUDA graph (auto: on CUDA for Mamba-1/2 models)")
    return parser


def use_cuda_graph(choice: str, model: torch.nn.Module, device: torch.device) -> bool:
    """Whether to decode from CUDA graphs: "auto" where it can run, "on" or an error saying why it cannot."""
    problem = "needs a CUDA device" if device.type != "cuda" else graph_capture_problem(model)
    if choice == "on" and problem:
        raise ValueError(f"--cuda-graph on: {problem}")
    return choice != "off" and not problem


def default_tokenizer_source(checkpoint_path: Path) -> str | Path:
    """The checkpoint folder when it ships a tokenizer, else the bundled GPT-NeoX-20B tokenizer."""
    return checkpoint_path if (checkpoint_path / TOKENIZER_FILE).is_file() else DEFAULT_TOKENIZER


def run(args: argparse.Namespace) -> None:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = parse_dtype(args.dtype) or (torch.float32 if device.type == "cpu" else None)
    if args.seed is not None:
        torch.manual_seed(args.seed)
    checkpoint_path = resolve_pretrained(args.model, args.revision)
    checkpoint = read_checkpoint(checkpoint_path)
    model = model_from_checkpoint(checkpoint, dtype=dtype, device=device)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    print(f"[{checkpoint.format} checkpoint {checkpoint.source}: {parameters / 1e6:.1f}M parameters, "
          f"{model.lm_head.weight.dtype}, {device}]", file=sys.stderr)
    tokenizer = load_tokenizer(args.tokenizer or default_tokenizer_source(checkpoint_path))
    prompt_ids = tokenizer.encode(args.prompt, add_special_tokens=False)
    if not prompt_ids:
        if tokenizer.eos_token_id is None:
            raise ValueError("the prompt is empty and the tokenizer has no eos token to start from")
        prompt_ids = [tokenizer.eos_token_id]
    if max(prompt_ids) >= model.config.vocab_size:
        raise ValueError(f"the prompt has token id {max(prompt_ids)}, but the model's vocab_size is "
                         f"{model.config.vocab_size}: pass the tokenizer the model was trained with (--tokenizer)")
    input_ids = torch.tensor([prompt_ids], device=device)
    detokenizer = IncrementalDetokenizer(tokenizer, prompt_ids)
    sys.stdout.write(args.prompt)
    sys.stdout.flush()
    cuda_graph = use_cuda_graph(args.cuda_graph, model, device)
    start, count = time.perf_counter(), 0
    for next_tokens in stream(model, input_ids, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                              top_p=args.top_p, repetition_penalty=args.repetition_penalty,
                              eos_token_id=tokenizer.eos_token_id, cuda_graph=cuda_graph):
        token = int(next_tokens[0])
        if token == tokenizer.eos_token_id:
            break
        count += 1
        sys.stdout.write(detokenizer.push(token))
        sys.stdout.flush()
    sys.stdout.write(detokenizer.flush() + "\n")
    seconds = time.perf_counter() - start
    print(f"[{count} tokens in {seconds:.2f} s, {count / max(seconds, 1e-9):.1f} tokens/s on {device}"
          f"{', CUDA graphs' if cuda_graph else ''}]", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"mambaseq generate: error: {error}") from error
