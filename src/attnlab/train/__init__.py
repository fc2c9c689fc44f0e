"""Training: a loop that knows no model and no task, its config and its collaborators."""

from attnlab.train.averaging import ExponentialMovingAverage
from attnlab.train.config import TrainConfig
from attnlab.train.metrics import EvalResult, MetricsLog
from attnlab.train.trainer import (
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
    "EpochRecord",
    "EvalResult",
    "ExponentialMovingAverage",
    "FitResult",
    "MetricsLog",
    "RunArtifacts",
    "StepInfo",
    "TrainConfig",
    "Trainer",
    "seed_everything",
]
