"""Files: atomic writes, safetensors checkpoints, the registry of model types, pretrained
loading. Knows models by their public constructors and configs only."""

from attnlab.io.atomic import write_bytes_atomic, write_text_atomic
from attnlab.io.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from attnlab.io.families import FAMILIES, load_family
from attnlab.io.pretrained import (
    KNOWN_MODELS,
    load_pretrained,
    load_pretrained_classifier,
    resolve_model_dir,
)
from attnlab.io.registry import (
    LoadedModel,
    build_model,
    checkpoint_dir,
    load_bert_classifier,
    load_model,
    save_bert_classifier,
)
from attnlab.io.run_folder import RunFolder, config_differences

__all__ = [
    "KNOWN_MODELS",
    "Checkpoint",
    "CheckpointError",
    "FAMILIES",
    "LoadedModel",
    "RunFolder",
    "build_model",
    "checkpoint_dir",
    "config_differences",
    "load_checkpoint",
    "load_family",
    "load_bert_classifier",
    "load_model",
    "load_pretrained",
    "load_pretrained_classifier",
    "load_weights",
    "resolve_model_dir",
    "save_bert_classifier",
    "save_checkpoint",
    "write_bytes_atomic",
    "write_text_atomic",
]
