"""Generation throughput of a Mamba-1.4B-shaped LM (48 x 2048, vocab 50277, random weights): mambaseq eager and
CUDA-graph decoding (plain, and of the `torch.compile`d step) vs mamba-ssm's `MambaLMHeadModel.generate(cg=True)`
(same weights) and a Pythia-1.4B-shaped transformers `GPTNeoXForCausalLM` (24 x 2048, 16 heads, MLP 8192, SDPA,
KV cache); greedy, fixed length.

    python scripts/bench_generate.py                   # H100: batch 1 and 64, prompt 2048 + 128 new, fp16, all rows
    python scripts/bench_generate.py --tiny            # CPU smoke run: tiny models, eager + transformer rows
    python scripts/bench_generate.py --batch 1 --impls cuda_graph,mamba_ssm --profile 32   # + top kernels per row

Per (implementation, batch): one untimed warmup generation (it also captures the CUDA graphs), then `--repeats`
timed generations and `--repeats` timed prefills (generation of one token), medians; each timing is framed by
`torch.cuda.synchronize`. Reported: total tokens/s = batch * new / total time (prefill included; mamba-ssm's own
benchmark counts this way), decode tokens/s = batch * (new - 1) / (total - prefill) (the first new token comes
from the prefill's logits), and the ratios to the mamba-ssm and transformer rows of the same run. "same tokens"
compares each row's greedy tokens with mambaseq eager's (random weights: near-ties may flip late tokens).
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from tqdm import tqdm

from mambaseq.config import LMConfig
from mambaseq.generation import generate
from mambaseq.generation_cuda_graph import cuda_graph_decoder, release_cuda_graphs
from mambaseq.lm import MambaLM
from mambaseq.profiling import top_ops_table

MAMBA_1_4B = {"d_model": 2048, "n_layer": 48, "vocab_size": 50277, "ssm_cfg": {}, "rms_norm": True,
              "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8}
PYTHIA_1_4B = {"vocab_size": 50304, "hidden_size": 2048, "num_hidden_layers": 24, "num_attention_heads": 16,
               "intermediate_size": 8192, "max_position_embeddings": 4096}
TINY_MAMBA = {**MAMBA_1_4B, "d_model": 64, "n_layer": 2, "vocab_size": 512}
TINY_PYTHIA = {**PYTHIA_1_4B, "vocab_size": 512, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
               "intermediate_size": 256}
IMPLEMENTATIONS = ("eager", "cuda_graph", "cuda_graph_compile", "mamba_ssm", "transformer")
MAMBA_SSM_ROW, TRANSFORMER_ROW = "mamba-ssm generate(cg=True)", "transformer (HF GPT-NeoX, SDPA, KV cache)"
ROW_NAMES = {"eager": "mambaseq eager", "cuda_graph": "mambaseq cuda_graph",
             "cuda_graph_compile": "mambaseq cuda_graph + torch.compile", "mamba_ssm": MAMBA_SSM_ROW,
             "transformer": TRANSFORMER_ROW}

Generator = Callable[[torch.Tensor, int], torch.Tensor]  # (prompt ids (b, L), new tokens) -> (b, L + new)


@dataclass
class Row:
    name: str
    batch: int
    first_run_s: float = float("nan")
    prefill_s: float = float("nan")
    total_s: float = float("nan")
    total_tokens_per_s: float = float("nan")
    decode_tokens_per_s: float = float("nan")
    decode_ms_per_step: float = float("nan")
    peak_memory_gb: float = float("nan")
    same_tokens: float = float("nan")
    error: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", default=None, help="comma-separated batch sizes (default 1,64; --tiny: 1,2)")
    parser.add_argument("--prompt-len", type=int, default=None, help="prompt tokens (default 2048; --tiny: 16)")
    parser.add_argument("--new-tokens", type=int, default=None, help="generated tokens (default 128; --tiny: 6)")
    parser.add_argument("--impls", default=None,
                        help=f"comma-separated subset of {','.join(IMPLEMENTATIONS)} (default: all; --tiny: eager,"
                             f"transformer)")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--compile-mode", default="default",
                        help='torch.compile mode of the cuda_graph_compile row, e.g. "max-autotune-no-cudagraphs"')
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (median)")
    parser.add_argument("--tiny", action="store_true", help="tiny models on CPU, for a smoke test")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="after timing a row, profile one generation of N new tokens and print its top kernels")
    parser.add_argument("--profile-rows", type=int, default=20, help="kernels listed per profiled row")
    args = parser.parse_args(argv)
    args.batch = [int(b) for b in (args.batch or ("1,2" if args.tiny else "1,64")).split(",")]
    args.prompt_len = args.prompt_len or (16 if args.tiny else 2048)
    args.new_tokens = args.new_tokens or (6 if args.tiny else 128)
    args.impls = (args.impls or ("eager,transformer" if args.tiny else ",".join(IMPLEMENTATIONS))).split(",")
    unknown = sorted(set(args.impls) - set(IMPLEMENTATIONS))
    if unknown:
        parser.error(f"--impls: unknown {unknown}; expected a subset of {IMPLEMENTATIONS}")
    if args.new_tokens < 2:
        parser.error(f"--new-tokens={args.new_tokens}: expected >= 2 (decode time excludes the first token)")
    return args


def synchronized_seconds(function: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def measure(name: str, generator: Generator, prompts: dict[int, torch.Tensor], new_tokens: int, repeats: int,
            reference: dict[int, torch.Tensor] | None, profile: tuple[int, int] = (0, 0)) -> list[Row]:
    """Time `generator` per batch size (warmup, then medians of total and prefill-only runs). The first row's new
    tokens per batch become `reference` (None: no comparison). `profile = (new tokens, rows)`: then print the top
    kernels of one generation of that many tokens (0: no profile)."""
    rows = []
    for batch, prompt in prompts.items():
        row = Row(name, batch)
        device = prompt.device
        try:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            row.first_run_s, tokens = synchronized_seconds(lambda: generator(prompt, new_tokens), device)
            totals, prefills = [], []
            for _ in tqdm(range(repeats), desc=f"{name} b{batch}", leave=False):
                totals.append(synchronized_seconds(lambda: generator(prompt, new_tokens), device)[0])
                prefills.append(synchronized_seconds(lambda: generator(prompt, 1), device)[0])
            if profile[0]:
                print(f"\nprofile of {name} b{batch}, prompt {prompt.shape[1]} + {profile[0]} new tokens: "
                      + top_ops_table(lambda: generator(prompt, profile[0]), 1, profile[1], device))
        except Exception as error:  # noqa: BLE001 - a row that cannot run (OOM, missing package) is reported
            row.error = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
            rows.append(row)
            continue
        new = tokens[:, prompt.shape[1]:]
        if new.shape != (batch, new_tokens):
            row.error = f"produced {tuple(new.shape)} new tokens, expected {(batch, new_tokens)}"
        if reference is not None:
            reference.setdefault(batch, new)
            row.same_tokens = (new == reference[batch]).float().mean().item()
        row.total_s, row.prefill_s = statistics.median(totals), statistics.median(prefills)
        row.total_tokens_per_s = batch * new_tokens / row.total_s
        decode_s = row.total_s - row.prefill_s
        row.decode_tokens_per_s = batch * (new_tokens - 1) / decode_s if decode_s > 0 else float("nan")
        row.decode_ms_per_step = decode_s / (new_tokens - 1) * 1e3
        if device.type == "cuda":
            row.peak_memory_gb = torch.cuda.max_memory_allocated(device) / 2**30
        rows.append(row)
    return rows


def mambaseq_generator(model: MambaLM, impl: str, compile_mode: str) -> Generator:
    """Greedy `generate` eagerly, or from CUDA graphs of the plain / `torch.compile`d step (the model's decoder is
    switched to the matching one before each run; the graphs of one kind are kept between runs)."""
    def run(ids: torch.Tensor, new: int) -> torch.Tensor:
        if impl != "eager":
            cuda_graph_decoder(model, compile=compile_mode if impl == "cuda_graph_compile" else False)
        return generate(model, ids, new, do_sample=False, cuda_graph=impl != "eager")

    return run


def mamba_ssm_model(model: MambaLM) -> torch.nn.Module:
    """mamba-ssm's `MambaLMHeadModel` with `model`'s weights."""
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

    reference = model.lm_head.weight
    other = MambaLMHeadModel(MambaConfig(**model.config.to_mamba_ssm_dict()), device=reference.device,
                             dtype=reference.dtype).eval()
    other.load_state_dict(model.state_dict())
    return other


def mamba_ssm_generator(model: torch.nn.Module) -> Generator:
    """`generate(cg=True)`, with a fresh decoding cache whenever the batch size changes: mamba-ssm 2.3.2 rebuilds
    its graphs only for a larger batch and otherwise runs a smaller one on the larger one's states (which fails)."""
    def run(ids: torch.Tensor, new: int) -> torch.Tensor:
        cache = getattr(model, "_decoding_cache", None)
        if cache is not None and cache.max_batch_size != ids.shape[0]:
            model._decoding_cache = None
        return model.generate(ids, max_length=ids.shape[1] + new, cg=True, top_k=1, temperature=1.0,
                              return_dict_in_generate=False, output_scores=False)

    return run


def transformer_model(config: dict, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    with torch.device(device):
        return GPTNeoXForCausalLM._from_config(GPTNeoXConfig(**config, use_cache=True), attn_implementation="sdpa",
                                               dtype=dtype).eval()


def transformer_generator(model: torch.nn.Module) -> Generator:
    def run(ids: torch.Tensor, new: int) -> torch.Tensor:
        return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                              do_sample=False, use_cache=True, pad_token_id=0)

    return run


def free(device: torch.device) -> None:
    """Release what the last rows held: compiled code (its guards reference the model), then cached GPU memory."""
    torch.compiler.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def versus(row: Row, other: Row | None) -> str:
    """"decode ratio/total ratio" of `row`'s tokens/s to `other`'s."""
    if other is None or other.error:
        return "-"
    return (f"{row.decode_tokens_per_s / other.decode_tokens_per_s:.2f}x/"
            f"{row.total_tokens_per_s / other.total_tokens_per_s:.2f}x")


def print_table(rows: list[Row], args: argparse.Namespace, device: torch.device, dtype_name: str) -> None:
    print(f"\nprompt {args.prompt_len} + {args.new_tokens} new tokens, {dtype_name} on "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, median of {args.repeats}")
    header = (f"{'implementation':<42} {'batch':>5} {'prefill s':>9} {'total s':>8} {'total tok/s':>11} "
              f"{'decode tok/s':>12} {'ms/step':>8} {'vs mamba-ssm (dec/tot)':>23} {'vs transformer (dec/tot)':>25} "
              f"{'peak GB':>7} {'same tokens':>11}")
    print(header)
    for row in rows:
        if row.error:
            print(f"{row.name:<42} {row.batch:>5}  error: {row.error}")
            continue
        mamba_ssm, transformer = (next((r for r in rows if r.name == name and r.batch == row.batch), None)
                                  for name in (MAMBA_SSM_ROW, TRANSFORMER_ROW))
        same_tokens = "-" if math.isnan(row.same_tokens) else f"{row.same_tokens:.1%}"
        print(f"{row.name:<42} {row.batch:>5} {row.prefill_s:>9.3f} {row.total_s:>8.3f} "
              f"{row.total_tokens_per_s:>11.0f} {row.decode_tokens_per_s:>12.0f} {row.decode_ms_per_step:>8.2f} "
              f"{versus(row, mamba_ssm):>23} {versus(row, transformer):>25} {row.peak_memory_gb:>7.1f} "
              f"{same_tokens:>11}")


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.tiny:
        raise SystemExit("bench_generate.py: no CUDA device; use --tiny for a CPU smoke run")
    dtype = torch.float32 if args.tiny else getattr(torch, args.dtype)
    torch.manual_seed(0)
    mamba_config = LMConfig.from_mamba_ssm_dict(TINY_MAMBA if args.tiny else MAMBA_1_4B)
    prompts = {batch: torch.randint(0, mamba_config.vocab_size, (batch, args.prompt_len), device=device)
               for batch in args.batch}
    rows: list[Row] = []
    reference: dict[int, torch.Tensor] = {}
    profile = (args.profile, args.profile_rows)
    mamba_rows = [impl for impl in IMPLEMENTATIONS[:-1] if impl in args.impls]
    if mamba_rows:
        with torch.device(device):
            model = MambaLM(mamba_config).to(dtype).eval()
        for impl in mamba_rows:
            if impl == "mamba_ssm":
                try:
                    other = mamba_ssm_model(model)
                except Exception as error:  # noqa: BLE001 - mamba-ssm missing or broken: report the row
                    rows += [Row(ROW_NAMES[impl], batch, error=f"{type(error).__name__}: {error}")
                             for batch in args.batch]
                    continue
                rows += measure(ROW_NAMES[impl], mamba_ssm_generator(other), prompts, args.new_tokens, args.repeats,
                                reference, profile)
                del other
            else:
                generator = mambaseq_generator(model, impl, args.compile_mode)
                rows += measure(ROW_NAMES[impl], generator, prompts, args.new_tokens, args.repeats, reference, profile)
                release_cuda_graphs(model)
            free(device)
        del model
        free(device)
    if "transformer" in args.impls:
        model = transformer_model(TINY_PYTHIA if args.tiny else PYTHIA_1_4B, device, dtype)
        rows += measure(ROW_NAMES["transformer"], transformer_generator(model), prompts, args.new_tokens,
                        args.repeats, None, profile)
        del model
        free(device)
    print_table(rows, args, device, str(dtype).removeprefix("torch."))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "rows": [asdict(row) for row in rows]}, handle, indent=2)
    return rows


if __name__ == "__main__":
    main()
