"""Forward-pass latency of a Mamba-130M-shaped LM (24 x 768, vocab 50277): mambaseq vs transformers'
`MambaForCausalLM` (and mamba-ssm's `MambaLMHeadModel` on CUDA when importable), all with the same random weights.

    python scripts/bench_forward.py --threads 1           # CPU: mambaseq (chunked scan) vs transformers slow path
    python scripts/bench_forward.py --device cuda --dtype bfloat16

Prints, per implementation, the median over `--repeats` timed runs (after `--warmup` untimed ones; runs of the
implementations alternate), tokens/s and the largest logit difference to mambaseq (a check that all compute the same
model).
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from tqdm import tqdm

from mambaseq.config import LMConfig
from mambaseq.lm import MambaLM
from mambaseq.pretrained.transformers_format import to_transformers

MAMBA_130M = {"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {}, "rms_norm": True,
              "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--backend", default="auto", help="mambaseq kernel backend (auto = chunked on CPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: torch's); 1 is steadier on a machine shared with other jobs")
    parser.add_argument("--skip-transformers", action="store_true", help="time mambaseq (and mamba-ssm) only")
    return parser.parse_args()


def _timed(forward: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    logits = forward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, logits


def time_interleaved(contenders: dict[str, Callable[[], torch.Tensor]], repeats: int, warmup: int,
                     device: torch.device) -> dict[str, tuple[float, torch.Tensor]]:
    """Median seconds and last logits per contender. Runs alternate between contenders (A B A B ...) so that a
    machine shared with other jobs slows all of them alike."""
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    logits: dict[str, torch.Tensor] = {}
    rounds = [(index, name) for index in range(warmup + repeats) for name in contenders]
    for index, name in tqdm(rounds, desc="forward passes"):
        elapsed, logits[name] = _timed(contenders[name], device)
        if index >= warmup:
            seconds[name].append(elapsed)
    return {name: (statistics.median(seconds[name]), logits[name]) for name in contenders}


def mamba_ssm_forward(model: MambaLM, input_ids: torch.Tensor) -> Callable[[], torch.Tensor] | None:
    """mamba-ssm's `MambaLMHeadModel` with the same weights, or None when it cannot run here."""
    if input_ids.device.type != "cuda":
        return None
    try:
        from mamba_ssm.models.config_mamba import MambaConfig
        from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
    except ImportError:
        return None
    reference = model.lm_head.weight
    mamba_ssm_model = MambaLMHeadModel(MambaConfig(**model.config.to_mamba_ssm_dict()), device=reference.device,
                                       dtype=reference.dtype).eval()
    mamba_ssm_model.load_state_dict(model.state_dict())
    return lambda: mamba_ssm_model(input_ids).logits


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    config = LMConfig.from_mamba_ssm_dict(MAMBA_130M)
    config.backbone.kernel_backend = args.backend
    model = MambaLM(config).eval()
    input_ids = torch.randint(0, config.vocab_size, (args.batch, args.seqlen), device=device)

    contenders: dict[str, Callable[[], torch.Tensor]] = {}
    if not args.skip_transformers:
        hf_model = to_transformers(model).to(device=device, dtype=dtype).eval()
        contenders["transformers MambaForCausalLM"] = lambda: hf_model(input_ids, use_cache=False).logits
    model = model.to(device=device, dtype=dtype)
    contenders = {f"mambaseq (backend={args.backend})": lambda: model(input_ids), **contenders}
    mamba_ssm = mamba_ssm_forward(model, input_ids)
    if mamba_ssm is not None:
        contenders["mamba-ssm MambaLMHeadModel"] = mamba_ssm

    tokens = args.batch * args.seqlen
    print(f"Mamba-130M shape (24 x 768, vocab {config.padded_vocab_size}), batch {args.batch} x {args.seqlen} "
          f"tokens, {args.dtype} on {device} ({torch.get_num_threads()} CPU threads), median of {args.repeats}")
    print(f"{'implementation':<34} {'median ms':>10} {'tokens/s':>10} {'max |dlogit| vs mambaseq':>26}")
    with torch.inference_mode():
        results = time_interleaved(contenders, args.repeats, args.warmup, device)
    reference = next(iter(results.values()))[1].float()
    for name, (seconds, logits) in results.items():
        difference = (logits.float() - reference).abs().max().item()
        print(f"{name:<34} {seconds * 1e3:>10.1f} {tokens / seconds:>10.0f} {difference:>26.2e}")


if __name__ == "__main__":
    main()
