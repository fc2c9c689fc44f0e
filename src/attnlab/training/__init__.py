"""Training: a model-agnostic trainer, its config, checkpoints, metrics and experiments.

Knows models only through ``model(**batch) -> .loss, .logits`` and data only as batch dicts.
"""

from attnlab.training.averaging import ExponentialMovingAverage
from attnlab.training.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from attnlab.training.config import TrainConfig
from attnlab.training.metrics import EvalResult, MetricsLog
from attnlab.training.trainer import (
    Callback,
    EpochRecord,
    FitResult,
    RunArtifacts,
    StepInfo,
    Trainer,
    seed_everything,
)

__all__ = [
    "Callback",
    "Checkpoint",
    "CheckpointError",
    "EpochRecord",
    "EvalResult",
    "ExponentialMovingAverage",
    "FitResult",
    "MetricsLog",
    "RunArtifacts",
    "StepInfo",
    "TrainConfig",
    "Trainer",
    "load_checkpoint",
    "load_weights",
    "save_checkpoint",
    "seed_everything",
]
