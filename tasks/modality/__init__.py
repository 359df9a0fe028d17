"""Extension API for new modalities: input adapter + shared Mamba backbone + head, registered by name.
See docs/new_modality.md."""
from mambaseq.tasks.modality.adapters import AdapterConfig, LinearProjection, Patching, TokenEmbedding
from mambaseq.tasks.modality.pretrained import PretrainedConfig, freeze_backbone, load_pretrained_backbone
from mambaseq.tasks.modality.registry import MODALITIES, get_modality, register_modality
from mambaseq.tasks.modality.task import HeadConfig, ModalityTask

__all__ = ["MODALITIES", "AdapterConfig", "HeadConfig", "LinearProjection", "ModalityTask", "Patching",
           "PretrainedConfig", "TokenEmbedding", "freeze_backbone", "get_modality", "load_pretrained_backbone",
           "register_modality"]
