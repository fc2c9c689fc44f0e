"""Training: a loop that knows no model and no task (:class:`Trainer`), its config and its
collaborators: evaluation with early stopping, the weight average, the metrics log, progress.
Imports nothing else of attnlab; a task hands it a model, batches, a loss and a run store."""

from attnlab.train.averaging import ExponentialMovingAverage
from attnlab.train.config import TrainConfig
from attnlab.train.evaluation import Evaluator
from attnlab.train.interrupt import TrainingInterrupted
from attnlab.train.metrics_log import MetricsLog
from attnlab.train.state import EpochRecord, FitResult, Loss, StepInfo, seed_everything
from attnlab.train.store import RunStore
from attnlab.train.trainer import Callback, Trainer

__all__ = [
    "Callback",
    "EpochRecord",
    "Evaluator",
    "ExponentialMovingAverage",
    "FitResult",
    "Loss",
    "MetricsLog",
    "RunStore",
    "StepInfo",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "seed_everything",
]
