"""Resolve a checkpoint name to a local path: an existing file or folder as is, otherwise a Hugging Face hub id,
downloaded into (or found in) the hub cache. `revision`, `HF_HUB_OFFLINE`, `HF_HOME`/`HF_HUB_CACHE` and
`HF_TOKEN` behave as in every huggingface_hub client."""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from huggingface_hub import constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from mambaseq.pretrained.layout import EXPECTED_LAYOUT, LIGHTNING_SUFFIX, MAMBA_SSM_WEIGHTS_FILE

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
LOCAL_SUFFIXES = (LIGHTNING_SUFFIX, ".bin", ".json", ".safetensors", ".pt")
# config.json, shard indices and tokenizer files, plus safetensors weights; mamba-ssm's .bin is fetched only
# when a repo has no safetensors, so that repos holding both are not downloaded twice.
CHECKPOINT_PATTERNS = ("*.json", "*.safetensors")


def is_hub_id(name: str) -> bool:
    """Whether `name` looks like a hub repo id ("owner/name" or "name") rather than a file-system path."""
    return HUB_ID.fullmatch(name) is not None and not name.endswith(LOCAL_SUFFIXES)


def resolve_pretrained(name_or_path: str | Path, revision: str | None = None) -> Path:
    """Local path of a checkpoint: `name_or_path` itself when it exists, else the hub snapshot folder of that id."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if revision is not None:
            raise ValueError(f"revision={revision!r} applies to hub ids only, but {path} is a local path")
        return path
    if not is_hub_id(str(name_or_path)):
        raise FileNotFoundError(f"{name_or_path} does not exist and is not a Hugging Face hub id (owner/name): "
                                f"expected {EXPECTED_LAYOUT}")
    return download_checkpoint(str(name_or_path), revision)


def download_checkpoint(repo_id: str, revision: str | None = None) -> Path:
    """Snapshot folder (in the hub cache) holding the config, weights and tokenizer files of hub repo `repo_id`."""
    folder = download_snapshot(repo_id, revision, CHECKPOINT_PATTERNS)
    if not any(folder.glob("*.safetensors")):
        with _explained_hub_errors(repo_id, revision, EXPECTED_LAYOUT):
            try:  # pinned to the snapshot's commit, so that the file lands next to config.json
                hf_hub_download(repo_id, MAMBA_SSM_WEIGHTS_FILE, revision=folder.name)
            except RemoteEntryNotFoundError:
                pass  # the format reader names the weight files it expected
    return folder


def download_snapshot(
    repo_id: str, revision: str | None, allow_patterns: Sequence[str], local_alternative: str = EXPECTED_LAYOUT
) -> Path:
    """`huggingface_hub.snapshot_download` of the files matching `allow_patterns`, with errors that explain;
    `local_alternative` describes the local path to pass instead when the hub cannot be used."""
    with _explained_hub_errors(repo_id, revision, local_alternative):
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=list(allow_patterns)))


@contextmanager
def _explained_hub_errors(repo_id: str, revision: str | None, local_alternative: str) -> Iterator[None]:
    try:
        yield
    except LocalEntryNotFoundError as error:
        reason = ("HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE
                  else "the Hugging Face Hub cannot be reached (no network)")
        raise FileNotFoundError(
            f"cannot load {repo_id!r} (revision {revision or 'main'}): {reason} and it is not in the local hub cache "
            f"{constants.HF_HUB_CACHE}. Pass a local path instead: {local_alternative}; or download it where there "
            f"is network (`hf download {repo_id}`) into that cache."
        ) from error
    except RevisionNotFoundError as error:
        raise FileNotFoundError(f"hub repo {repo_id!r} has no revision {revision!r}") from error
    except RepositoryNotFoundError as error:
        raise FileNotFoundError(
            f"{repo_id!r} is not a local path, and the Hugging Face Hub has no model repo of that name that you can "
            f"access (if it is private or gated, log in with `hf auth login`). Expected {local_alternative}"
        ) from error
