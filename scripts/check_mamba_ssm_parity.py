"""Parity with mamba-ssm's `MambaLMHeadModel` on the GPU, through the checkpoint files both sides read and write.

For each config (Mamba-1, Mamba-2, a Mamba-2 + attention + MLP hybrid), mamba-ssm builds a model with random
(perturbed) weights and writes it with its own `save_pretrained`; `mambaseq.pretrained` loads that folder. The script
prints, in fp32 and bf16 and per mambaseq kernel backend, the max |logit difference| to mamba-ssm (bf16 also shows
both models' distance to the fp32 reference; mamba-ssm loaded by its `from_pretrained(dtype=torch.bfloat16)`, ours by
`load_pretrained(dtype=torch.bfloat16)`), and how many greedy tokens agree. It then writes our model back in
mamba-ssm format and checks that `MambaLMHeadModel.from_pretrained` reads the same tensors.

    python scripts/check_mamba_ssm_parity.py [--seqlen 300] [--backends auto,chunked,triton]

Needs CUDA, mamba-ssm and causal-conv1d (the hybrid uses rotary embeddings only when flash-attn is importable).
Exits with status 1 when a comparison is outside its tolerance.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import torch

from mambaseq.generation import generate
from mambaseq.lm import MambaLM
from mambaseq.pretrained import save_pretrained
from mambaseq.pretrained.formats import read_checkpoint
from mambaseq.pretrained.loading import model_from_checkpoint

VOCAB_SIZE = 50277
FP32_RELATIVE_TOLERANCE = 1e-3  # max |diff| / max |logit|
BF16_ERROR_RATIO = 2.0  # our bf16 error to the fp32 reference may be at most this multiple of mamba-ssm's (+ 1e-2)


def configs(rotary: bool) -> dict[str, dict]:
    common = dict(d_model=768, n_layer=4, vocab_size=VOCAB_SIZE, rms_norm=True, residual_in_fp32=True,
                  fused_add_norm=True)
    return {
        "mamba1": dict(common, ssm_cfg={}, pad_vocab_size_multiple=8),
        "mamba2": dict(common, ssm_cfg={"layer": "Mamba2"}, pad_vocab_size_multiple=16),
        "hybrid": dict(common, ssm_cfg={"layer": "Mamba2"}, pad_vocab_size_multiple=16, d_intermediate=1536,
                       attn_layer_idx=[1], attn_cfg={"causal": True, "num_heads": 12, "num_heads_kv": 4,
                                                     "rotary_emb_dim": 32 if rotary else 0, "d_conv": 4}),
    }


@torch.no_grad()
def perturb_(model: torch.nn.Module, scale: float = 0.02, seed: int = 0) -> None:
    """Noise on every parameter, so that norm weights, biases and D are not at their neutral init."""
    generator = torch.Generator(device="cuda").manual_seed(seed)
    for parameter in model.parameters():
        parameter.add_(scale * torch.randn(parameter.shape, generator=generator, device="cuda", dtype=parameter.dtype))


def greedy_agreement(ours: MambaLM, theirs: torch.nn.Module, prompt: torch.Tensor, new_tokens: int) -> int:
    """Number of leading generated positions (over the batch) where both greedy decodings agree."""
    expected = theirs.generate(prompt, max_length=prompt.shape[1] + new_tokens, top_k=1, vocab_size=VOCAB_SIZE)
    produced = generate(ours, prompt, new_tokens, do_sample=False)
    same = (expected[:, prompt.shape[1]:] == produced[:, prompt.shape[1]:]).all(dim=0).int()
    return int(same.cumprod(0).sum())


def compare(name: str, config: dict, args: argparse.Namespace, folder: Path) -> bool:
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

    torch.manual_seed(0)
    theirs = MambaLMHeadModel(MambaConfig(**config), device="cuda", dtype=torch.float32).eval()
    perturb_(theirs)
    theirs.save_pretrained(str(folder / name))
    input_ids = torch.randint(0, VOCAB_SIZE, (args.batch, args.seqlen), device="cuda")
    prompt = input_ids[:, :16]
    ok = True
    with torch.no_grad():
        reference = theirs(input_ids).logits.float()
        # mamba-ssm's own bf16 loading: A_log and D stay fp32 parameters, everything else is bf16
        theirs_bf16 = MambaLMHeadModel.from_pretrained(str(folder / name), device="cuda", dtype=torch.bfloat16).eval()
        theirs_bf16_logits = theirs_bf16(input_ids).logits.float()
    scale = reference.abs().max().item()
    for backend in args.backends:
        for dtype in (torch.float32, torch.bfloat16):
            checkpoint = read_checkpoint(folder / name)
            checkpoint.config.backbone.kernel_backend = backend
            try:
                ours = model_from_checkpoint(checkpoint, dtype=dtype, device="cuda")
                with torch.no_grad():
                    logits = ours(input_ids).float()
            except Exception as error:  # a backend may be missing on this machine; report and go on
                print(f"{name:7s} {backend:8s} {str(dtype)[6:]:9s} failed: {type(error).__name__}: {error}")
                ok = False
                continue
            theirs_model = theirs if dtype == torch.float32 else theirs_bf16
            agreement = "-" if name == "hybrid" and not args.hybrid_generation else (
                f"{greedy_agreement(ours, theirs_model, prompt, args.new_tokens)}/{args.new_tokens}")
            if dtype == torch.float32:
                diff = (logits - reference).abs().max().item()
                passed = diff <= FP32_RELATIVE_TOLERANCE * scale
                detail = f"max|diff| {diff:.3e} (relative {diff / scale:.2e})"
            else:
                diff = (logits - theirs_bf16_logits).abs().max().item()
                ours_error = (logits - reference).abs().max().item()
                theirs_error = (theirs_bf16_logits - reference).abs().max().item()
                passed = ours_error <= BF16_ERROR_RATIO * theirs_error + 1e-2
                detail = (f"max|diff| {diff:.3e}; to fp32 reference: ours {ours_error:.3e}, "
                          f"mamba-ssm {theirs_error:.3e}")
            ok &= passed
            print(f"{name:7s} {backend:8s} {str(dtype)[6:]:9s} {detail}; greedy agreement {agreement} "
                  f"{'ok' if passed else 'FAIL'}", flush=True)
    ok &= check_export(name, folder, theirs)
    return ok


def check_export(name: str, folder: Path, theirs: torch.nn.Module) -> bool:
    """Our mamba-ssm export of the loaded model must give mamba-ssm the very same tensors."""
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

    ours = model_from_checkpoint(read_checkpoint(folder / name), device="cuda")
    save_pretrained(ours, folder / f"{name}-export")
    reloaded = MambaLMHeadModel.from_pretrained(str(folder / f"{name}-export"), device="cuda").state_dict()
    expected = theirs.state_dict()
    same = reloaded.keys() == expected.keys() and all(torch.equal(reloaded[k], expected[k]) for k in expected)
    print(f"{name:7s} export to mamba-ssm format, read by MambaLMHeadModel.from_pretrained: "
          f"{'identical tensors ok' if same else 'DIFFERENT FAIL'}", flush=True)
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seqlen", type=int, default=300, help="not a multiple of the SSD chunk size (256)")
    parser.add_argument("--new-tokens", type=int, default=32, help="greedy tokens compared")
    parser.add_argument("--backends", type=lambda text: text.split(","), default=["auto", "chunked"])
    parser.add_argument("--configs", type=lambda text: text.split(","), default=["mamba1", "mamba2", "hybrid"])
    parser.add_argument("--hybrid-generation", action="store_true",
                        help="also decode the hybrid greedily (mamba-ssm's attention decoding needs flash-attn)")
    args = parser.parse_args()
    if not torch.cuda.is_available() or importlib.util.find_spec("mamba_ssm") is None:
        raise SystemExit("check_mamba_ssm_parity.py needs a CUDA GPU and mamba-ssm (pip install mamba-ssm "
                         "causal-conv1d)")
    rotary = importlib.util.find_spec("flash_attn") is not None
    print(f"device {torch.cuda.get_device_name()}, batch {args.batch}, seqlen {args.seqlen}, "
          f"hybrid rotary {'on' if rotary else 'off (no flash-attn)'}")
    all_ok = True
    with tempfile.TemporaryDirectory() as folder:
        for name, config in configs(rotary).items():
            if name in args.configs:
                all_ok &= compare(name, config, args, Path(folder))
    print("all comparisons within tolerance" if all_ok else "SOME COMPARISONS FAILED")
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
