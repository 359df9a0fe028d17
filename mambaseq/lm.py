"""`MambaLM`: backbone + LM head, with parallel forward (training, prompt prefill) and O(1)-state recurrent steps.

State-dict keys are mamba-ssm's `MambaLMHeadModel` (`backbone.embedding.weight`, `backbone.layers.{i}.…`,
`backbone.norm_f.weight`, `lm_head.weight`).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mambaseq.backbone import MambaBackbone
from mambaseq.config import LMConfig
from mambaseq.heads import LMHead
from mambaseq.inference import InferenceCache

LM_HEAD_KEY = "lm_head.weight"
EMBEDDING_KEY = "backbone.embedding.weight"


class MambaLM(nn.Module):
    """Causal language model over `config.padded_vocab_size` tokens (ids >= `config.vocab_size` are padding)."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = MambaBackbone(config.backbone, vocab_size=config.padded_vocab_size)
        tied = self.backbone.embedding if config.tie_embeddings else None
        self.lm_head = LMHead(config.backbone.d_model, config.padded_vocab_size, tied_embedding=tied)
        self.register_load_state_dict_pre_hook(MambaLM._fill_tied_head)

    def _fill_tied_head(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Load hook: checkpoints of tied models may store only one of the two shared matrices; supply the other."""
        if not self.config.tie_embeddings:
            return
        head, embedding = prefix + LM_HEAD_KEY, prefix + EMBEDDING_KEY
        if head not in state_dict and embedding in state_dict:
            state_dict[head] = state_dict[embedding]
        elif embedding not in state_dict and head in state_dict:
            state_dict[embedding] = state_dict[head]

    def allocate_cache(
        self, batch: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> InferenceCache:
        """Empty decoding state; dtype/device default to the model's."""
        reference = self.lm_head.weight
        return self.backbone.allocate_cache(batch, dtype or reference.dtype, device or reference.device)

    def forward(self, input_ids: torch.Tensor, cache: InferenceCache | None = None) -> torch.Tensor:
        """input_ids: (b, L) -> logits (b, L, padded_vocab). With `cache`, the pass starts from the cached states
        and leaves the final ones there, so that `step` can continue the sequence."""
        return self.lm_head(self.hidden_states(input_ids, cache=cache))

    def hidden_states(self, input_ids: torch.Tensor, cache: InferenceCache | None = None) -> torch.Tensor:
        """input_ids: (b, L) -> final-normed features (b, L, d_model) that the LM head projects (for losses that
        apply the head themselves, e.g. `mambaseq.losses.linear_cross_entropy`)."""
        return self.backbone(input_ids, cache=cache)

    def step(self, input_ids: torch.Tensor, cache: InferenceCache) -> torch.Tensor:
        """One recurrent decoding step: input_ids (b, 1) -> logits (b, 1, padded_vocab)."""
        return self.lm_head(self.backbone.step(input_ids, cache=cache))

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        revision: str | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> "MambaLM":
        """Load from a hub id, a mamba-ssm / transformers checkpoint folder or a Lightning .ckpt (see mambaseq.pretrained)."""
        from mambaseq.pretrained.loading import load_pretrained

        return load_pretrained(name_or_path, revision=revision, dtype=dtype, device=device)

    def save_pretrained(self, path: str, format: str = "mamba-ssm") -> None:
        """Write a checkpoint folder in "mamba-ssm" or "hf" (transformers) format."""
        from mambaseq.pretrained.loading import save_pretrained

        save_pretrained(self, path, format=format)
