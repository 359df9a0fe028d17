"""`mambaseq convert SRC DST --to hf|mamba-ssm`: rewrite a checkpoint in the other format.

SRC is a hub id, a checkpoint folder (either format) or a Lightning `.ckpt`; every key and shape is checked on the
way. Tokenizer files found next to SRC are copied to DST.

    mambaseq convert state-spaces/mamba-130m ./mamba-130m-hf --to hf
    mambaseq convert runs/lm/checkpoints/last.ckpt ./my-mamba --to mamba-ssm
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from mambaseq.pretrained.formats import WRITABLE_FORMATS, read_checkpoint, write_checkpoint
from mambaseq.pretrained.hub import resolve_pretrained
from mambaseq.pretrained.loading import DTYPES, model_from_checkpoint
from mambaseq.pretrained.tokenizer import TOKENIZER_PATTERNS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mambaseq convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="hub id, checkpoint folder or Lightning .ckpt")
    parser.add_argument("destination", help="output folder (created; files of the same name are replaced)")
    parser.add_argument("--to", required=True, choices=WRITABLE_FORMATS, help="output format")
    parser.add_argument("--revision", default=None, help="hub branch, tag or commit of SOURCE")
    parser.add_argument("--dtype", default="auto", choices=["auto", *DTYPES], help="auto: keep the stored dtype")
    parser.add_argument("--max-shard-size", default="5GB", help="safetensors shard size of --to hf (e.g. 2GB)")
    return parser


def convert(source: str, destination: Path, to: str, revision: str | None = None, dtype: str = "auto",
            max_shard_size: str = "5GB") -> list[str]:
    """Convert `source` into folder `destination`; returns the names of the files written there."""
    source_path = resolve_pretrained(source, revision)
    checkpoint = read_checkpoint(source_path)
    model = model_from_checkpoint(checkpoint, dtype=dtype)
    write_checkpoint(model, destination, to, max_shard_size=max_shard_size)
    if source_path.is_dir():
        for name in TOKENIZER_PATTERNS:
            if (source_path / name).is_file():
                shutil.copyfile(source_path / name, destination / name)
    return sorted(path.name for path in destination.iterdir())


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        files = convert(args.source, Path(args.destination), args.to, args.revision, args.dtype, args.max_shard_size)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"mambaseq convert: error: {error}") from error
    print(f"wrote {args.to} checkpoint {args.destination}: {', '.join(files)}")
