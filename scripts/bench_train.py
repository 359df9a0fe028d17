"""Training throughput of the 130M Mamba-1 LM (24 x 768, vocab 50277) and the 130M Mamba-2 LM (24 x 768, headdim
64, d_state 128): mambaseq with kernel backend "auto" (mamba-ssm / causal-conv1d kernels when installed, our fused
add + RMSNorm) with the full-logits loss and with the chunked LM-head loss (`mambaseq.losses.linear_cross_entropy`),
with kernel backend "triton" (our Triton scan / SSD, conv and norm kernels; chunked loss) and, with --compile, the
model `torch.compile`d (auto, chunked loss), vs mamba-ssm's `MambaLMHeadModel` and transformers'
`MambaForCausalLM` (Mamba-1).

    python scripts/bench_train.py --compile             # CUDA: b8 L2048, bf16 autocast, fused AdamW, all rows
    python scripts/bench_train.py --markdown --arch mamba1 --impls mambaseq_light,mamba_ssm
    python scripts/bench_train.py --tiny                # CPU smoke run: tiny models, 2 steps, eager rows
    python scripts/bench_train.py --arch mamba1 --impls mambaseq,mamba_ssm --profile 3   # + top kernels per row

A step is zero_grad -> forward + loss under autocast -> backward -> AdamW step, on random tokens (fp32 weights).
Per row: `--warmup` untimed steps, then `--steps` steps timed as one span (CUDA events; wall clock on CPU).
Reported: tokens/s = batch * seqlen * steps / time, ms/step, peak GiB (`torch.cuda.max_memory_allocated`, reset
per row) and the tokens/s ratio to the mamba-ssm row of the same architecture. A row that fails (missing package,
OOM) prints its error and the run goes on; each row's model and optimizer are freed before the next.
"""
from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from mambaseq.config import LMConfig
from mambaseq.lm import MambaLM
from mambaseq.losses import DEFAULT_CHUNK_SIZE, IGNORE_INDEX, linear_cross_entropy
from mambaseq.profiling import top_ops_table

ARCHS = {
    "mamba1": {"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {"layer": "Mamba1"}},
    "mamba2": {"d_model": 768, "n_layer": 24, "vocab_size": 50277,
               "ssm_cfg": {"layer": "Mamba2", "headdim": 64, "d_state": 128}},
}
TINY = {"d_model": 64, "n_layer": 2, "vocab_size": 500}
TINY_MAMBA2 = {"headdim": 16, "d_state": 16, "chunk_size": 16}
COMMON = {"rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8}
IMPLEMENTATIONS = ("mambaseq", "mambaseq_light", "mambaseq_triton", "mambaseq_compile", "mamba_ssm", "transformers")
DEFAULT_IMPLEMENTATIONS = ("mambaseq", "mambaseq_light", "mambaseq_triton", "mamba_ssm", "transformers")
TINY_IMPLEMENTATIONS = ("mambaseq", "mambaseq_light", "transformers")
ROW_NAMES = {"mambaseq": "mambaseq auto (full logits)", "mambaseq_light": "mambaseq auto (chunked loss)",
             "mambaseq_triton": "mambaseq triton (chunked loss)",
             "mambaseq_compile": "mambaseq auto + torch.compile (chunked loss)",
             "mamba_ssm": "mamba-ssm MambaLMHeadModel", "transformers": "transformers MambaForCausalLM"}
KERNEL_BACKENDS = {"mambaseq_triton": "triton"}  # other mambaseq rows: "auto"

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (input_ids, labels) (b, L) -> loss


@dataclass
class Row:
    arch: str
    name: str
    tokens_per_s: float = float("nan")
    ms_per_step: float = float("nan")
    peak_gib: float = float("nan")
    first_loss: float = float("nan")
    error: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per row (default 10; --tiny: 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per row (default 3; --tiny: 1)")
    parser.add_argument("--batch", type=int, default=None, help="sequences per step (default 8; --tiny: 2)")
    parser.add_argument("--seqlen", type=int, default=None, help="tokens per sequence (default 2048; --tiny: 32)")
    parser.add_argument("--arch", default="mamba1,mamba2", help=f"comma-separated subset of {','.join(ARCHS)}")
    parser.add_argument("--impls", default=None,
                        help=f"comma-separated subset of {','.join(IMPLEMENTATIONS)} (default: "
                             f"{','.join(DEFAULT_IMPLEMENTATIONS)}; --tiny: {','.join(TINY_IMPLEMENTATIONS)})")
    parser.add_argument("--compile", action="store_true", help="add the mambaseq_compile row (torch.compile)")
    parser.add_argument("--loss-chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
                        help="rows per chunk of the chunked loss")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode of the mambaseq_compile row")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="after timing a row, profile N more steps and print its top kernels (torch.profiler)")
    parser.add_argument("--profile-rows", type=int, default=20, help="kernels listed per profiled row")
    parser.add_argument("--tiny", action="store_true", help="tiny models on CPU, for a smoke test")
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.tiny else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    args.batch = args.batch or (2 if args.tiny else 8)
    args.seqlen = args.seqlen or (32 if args.tiny else 2048)
    args.arch = args.arch.split(",")
    args.impls = (args.impls or ",".join(TINY_IMPLEMENTATIONS if args.tiny else DEFAULT_IMPLEMENTATIONS)).split(",")
    if args.compile and "mambaseq_compile" not in args.impls:
        args.impls.append("mambaseq_compile")
    for name, values, known in (("--arch", args.arch, ARCHS), ("--impls", args.impls, IMPLEMENTATIONS)):
        unknown = sorted(set(values) - set(known))
        if unknown:
            parser.error(f"{name}: unknown {unknown}; expected a subset of {tuple(known)}")
    return args


def mamba_ssm_config(arch: str, tiny: bool) -> dict:
    """The mamba-ssm `MambaConfig` fields of `arch` (shrunk with --tiny)."""
    config = {**ARCHS[arch], **COMMON}
    if tiny:
        config.update(TINY)
        if arch == "mamba2":
            config["ssm_cfg"] = {**config["ssm_cfg"], **TINY_MAMBA2}
    return config


def full_logits_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)


def build(impl: str, config: dict, device: torch.device, args: argparse.Namespace
          ) -> tuple[torch.nn.Module, LossFunction]:
    """The model of row `impl` (fp32 weights on `device`) and its loss function."""
    if impl.startswith("mambaseq"):
        lm_config = LMConfig.from_mamba_ssm_dict(config)
        lm_config.backbone.kernel_backend = KERNEL_BACKENDS.get(impl, "auto")
        with device:
            model = MambaLM(lm_config)
        if impl == "mambaseq":
            return model, lambda ids, labels: full_logits_loss(model(ids), labels)
        features = model.hidden_states
        if impl == "mambaseq_compile":
            features = torch.compile(model.hidden_states, mode=args.compile_mode)
        return model, lambda ids, labels: linear_cross_entropy(features(ids), model.lm_head.weight, labels,
                                                               chunk_size=args.loss_chunk_size)
    if impl == "mamba_ssm":
        from mamba_ssm.models.config_mamba import MambaConfig
        from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

        model = MambaLMHeadModel(MambaConfig(**config), device=device)
        return model, lambda ids, labels: full_logits_loss(model(ids).logits, labels)
    if config["ssm_cfg"]["layer"] != "Mamba1":
        raise ValueError(f"transformers' MambaForCausalLM is Mamba-1 only, not {config['ssm_cfg']['layer']}")
    from transformers import MambaConfig, MambaForCausalLM

    multiple = config["pad_vocab_size_multiple"]
    hf_config = MambaConfig(vocab_size=(config["vocab_size"] + multiple - 1) // multiple * multiple,
                            hidden_size=config["d_model"], num_hidden_layers=config["n_layer"], state_size=16,
                            expand=2, conv_kernel=4, residual_in_fp32=True, use_cache=False, tie_word_embeddings=True)
    with device:
        model = MambaForCausalLM(hf_config)
    return model, lambda ids, labels: full_logits_loss(model(input_ids=ids, use_cache=False).logits, labels)


def random_batch(batch: int, seqlen: int, vocab_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids (b, L) and next-token labels (the last position ignored)."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab_size, (batch, seqlen + 1), generator=generator)
    labels = ids[:, 1:].clone()
    labels[:, -1] = IGNORE_INDEX
    return ids[:, :-1].to(device), labels.to(device)


def measure(row: Row, impl: str, config: dict, device: torch.device, args: argparse.Namespace) -> None:
    """Fill `row` with the timings of `impl` (or its error)."""
    model = optimizer = loss_function = None
    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        torch.manual_seed(0)  # same seed for every row (the implementations draw their inits differently)
        model, loss_function = build(impl, config, device, args)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
        ids, labels = random_batch(args.batch, args.seqlen, config["vocab_size"], device)

        def step() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = loss_function(ids, labels)
            loss.backward()
            optimizer.step()
            return loss.detach()

        for index in tqdm(range(args.warmup), desc=f"{row.arch} {impl} warmup", leave=False):
            loss = step()
            if index == 0:
                row.first_loss = loss.item()
        seconds = timed(step, args.steps, device, f"{row.arch} {impl}")
        if args.warmup == 0:
            row.first_loss = float("nan")
        row.ms_per_step = seconds / args.steps * 1e3
        row.tokens_per_s = args.batch * args.seqlen * args.steps / seconds
        if device.type == "cuda":
            row.peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
        if args.profile:
            print(f"\nprofile of {row.arch} {row.name}: "
                  + top_ops_table(step, args.profile, args.profile_rows, device))
    except Exception as error:  # noqa: BLE001 - a row that cannot run (OOM, missing package) is reported
        row.error = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
        print(f"{row.arch} {row.name}: error: {row.error}")
    finally:
        model = optimizer = loss_function = None  # free the row's memory before the next (closures share these)
        free(device)


def timed(step: Callable[[], torch.Tensor], steps: int, device: torch.device, label: str) -> float:
    """Seconds for `steps` calls of `step`, CUDA events on GPU, wall clock after a synchronize on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in tqdm(range(steps), desc=label, leave=False):
            step()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1e3
    begin = time.perf_counter()
    for _ in tqdm(range(steps), desc=label, leave=False):
        step()
    return time.perf_counter() - begin


def free(device: torch.device) -> None:
    """Release the last row: compiled code (its guards hold the model), then cached GPU memory."""
    torch.compiler.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def print_table(rows: list[Row], args: argparse.Namespace, device: torch.device) -> None:
    header = ["arch", "implementation", "tokens/s", "ms/step", "peak GiB", "vs mamba-ssm", "first loss", "error"]
    lines = []
    for row in rows:
        reference = next((r for r in rows if r.arch == row.arch and r.name == ROW_NAMES["mamba_ssm"]
                          and not r.error), None)
        ratio = f"{row.tokens_per_s / reference.tokens_per_s:.2f}x" if reference and not row.error else "-"
        lines.append([row.arch, row.name, f"{row.tokens_per_s:,.0f}", f"{row.ms_per_step:.1f}", f"{row.peak_gib:.2f}",
                      ratio, f"{row.first_loss:.3f}", row.error])
    on_cuda = device.type == "cuda"
    device_name = torch.cuda.get_device_name(device) if on_cuda else "CPU"
    print(f"train step, b{args.batch} L{args.seqlen}, bf16 autocast, AdamW{' fused' if on_cuda else ''}, "
          f"{args.warmup} warmup + {args.steps} timed steps, {device_name}")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for line in lines:
            print("| " + " | ".join(line) + " |")
        return
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    for line in [header, *lines]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    rows = []
    for arch in args.arch:
        config = mamba_ssm_config(arch, args.tiny)
        for impl in args.impls:
            if impl == "transformers" and arch != "mamba1":
                continue
            row = Row(arch, ROW_NAMES[impl])
            measure(row, impl, config, device, args)
            rows.append(row)
    print_table(rows, args, device)
    return rows


if __name__ == "__main__":
    main()
