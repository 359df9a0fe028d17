"""Train steps of a 130M Mamba LM (24 x 768, GPT-NeoX vocab) at context lengths 2^14 ... 2^20 on one GPU.

Each step processes one sequence of the given length with the exact chunked forward/backward of
`mambaseq.long_sequence` (states carried between chunks, one chunk's activations in memory), then an AdamW update.
Optionally the plain unchunked step is tried too, to show where it runs out of memory. Prints a markdown table
(step time, tokens/s, peak memory) and the largest length reached.

    python scripts/long_context_train.py --min-log2 14 --max-log2 20 --chunk-size 16384
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mambaseq.config import BackboneConfig, LMConfig, Mamba1Config, Mamba2Config
from mambaseq.lm import MambaLM
from mambaseq.long_sequence import lm_loss_backward

GIB = 1024**3


@dataclass
class StepResult:
    seq_len: int
    mode: str
    status: str
    step_seconds: float = float("nan")
    peak_gib: float = float("nan")
    loss: float = float("nan")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-log2", type=int, default=14)
    parser.add_argument("--max-log2", type=int, default=20)
    parser.add_argument("--chunk-size", type=int, default=16384, help="positions per chunk of the chunked processor")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per length")
    parser.add_argument("--warmup-steps", type=int, default=1,
                        help="untimed steps at the first length (kernel compilation, allocator growth)")
    parser.add_argument("--mixer", choices=["mamba1", "mamba2"], default="mamba1")
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--n-layer", type=int, default=24)
    parser.add_argument("--vocab-size", type=int, default=50277)
    parser.add_argument("--unchunked-max-log2", type=int, default=0,
                        help="also try plain unchunked steps up to this length (0: never)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args()


def build_model(args: argparse.Namespace, device: torch.device) -> MambaLM:
    mixer = Mamba1Config() if args.mixer == "mamba1" else Mamba2Config()
    config = LMConfig(backbone=BackboneConfig(d_model=args.d_model, n_layer=args.n_layer, mixer=mixer),
                      vocab_size=args.vocab_size)
    return MambaLM(config).to(device)


def train_step(model: MambaLM, optimizer: torch.optim.Optimizer, input_ids: torch.Tensor, chunk_size: int | None,
               device: torch.device) -> float:
    labels = input_ids.roll(-1, dims=1)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        if chunk_size is None:
            loss = F.cross_entropy(model(input_ids).flatten(0, 1).float(), labels.flatten())
            loss.backward()
            value = float(loss.detach())
        else:
            value = lm_loss_backward(model, input_ids, labels, chunk_size).loss
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return value


def measure(model: MambaLM, optimizer: torch.optim.Optimizer, seq_len: int, chunk_size: int | None, steps: int,
            device: torch.device, vocab_size: int) -> StepResult:
    """Mean time and peak memory of `steps` training steps on one random sequence of `seq_len` tokens."""
    mode = "unchunked" if chunk_size is None else f"chunked ({min(chunk_size, seq_len)})"
    generator = torch.Generator().manual_seed(seq_len)
    durations, loss = [], float("nan")
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        for _ in range(steps):
            input_ids = torch.randint(0, vocab_size, (1, seq_len), generator=generator).to(device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            loss = train_step(model, optimizer, input_ids, chunk_size, device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            durations.append(time.perf_counter() - started)
    except torch.cuda.OutOfMemoryError:
        optimizer.zero_grad(set_to_none=True)
        return StepResult(seq_len, mode, "oom")
    peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else float("nan")
    return StepResult(seq_len, mode, "ok", sum(durations) / len(durations), peak, loss)


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(args, device).train()
    parameters = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=device.type == "cuda")
    print(f"model: {args.n_layer} x {args.d_model} {args.mixer}, {parameters / 1e6:.1f}M parameters, on {device}")
    if args.warmup_steps:
        measure(model, optimizer, 2**args.min_log2, args.chunk_size, args.warmup_steps, device, args.vocab_size)
    results = []
    for exponent in range(args.min_log2, args.max_log2 + 1):
        seq_len = 2**exponent
        if exponent <= args.unchunked_max_log2:
            results.append(measure(model, optimizer, seq_len, None, args.steps, device, args.vocab_size))
            print(results[-1], flush=True)
        results.append(measure(model, optimizer, seq_len, args.chunk_size, args.steps, device, args.vocab_size))
        print(results[-1], flush=True)
    print("\n| length | mode | status | step (s) | tokens/s | peak memory (GiB) | loss |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        tokens_per_second = r.seq_len / r.step_seconds if r.status == "ok" else float("nan")
        print(f"| 2^{r.seq_len.bit_length() - 1} | {r.mode} | {r.status} | {r.step_seconds:.3f} | "
              f"{tokens_per_second:,.0f} | {r.peak_gib:.2f} | {r.loss:.3f} |")
    reached = [r.seq_len for r in results if r.status == "ok" and r.mode != "unchunked"]
    print(f"\nlargest length reached (chunked): {max(reached) if reached else 'none'}")


if __name__ == "__main__":
    main()
