"""Training hyper-parameters: one dataclass, the single place where their defaults live."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from attnlab.configs import DictConfig
from attnlab.errors import InputError

__all__ = ["AUTO_BATCH_SIZES", "SCHEDULES", "TrainConfig"]

SCHEDULES = ("linear", "cosine", "constant", "inverse_sqrt")
# without batch_size, the largest of these that gives an epoch min_epoch_steps steps: SST-2's
# 67k phrases and 20k keep 128, 10k take 64, 5k-8k 32 (docs/classification.md, small data)
AUTO_BATCH_SIZES = (128, 64, 32)

@dataclass
class TrainConfig(DictConfig):
    """How to train: optimizer, schedule, regularisation, evaluation, checkpointing.

    The defaults train the default :class:`~attnlab.models.ClassifierConfig` on SST-2 well
    (they come from a search over learning rate, batch size, epochs and label smoothing).
    Without ``batch_size`` and ``epochs`` both follow the data's size: batches of 128, or 64 or
    32 where an epoch would make fewer than ``min_epoch_steps`` steps (:meth:`planned_batch_size`;
    more, noisier steps overfit a small data set less), and whole epochs of at least
    ``min_steps`` steps (:meth:`planned_epochs`), so that a small data set is not stopped after a
    few dozen steps, and warm-up and decay follow. SST-2's 67k phrases make one epoch of 526
    batches of 128; 10k sentences, four epochs of 156 batches of 64.
    The dev split is evaluated every ``eval_steps`` optimizer steps and at each epoch's end;
    ``best/`` holds the weights of the lowest dev loss, and ``patience`` counts evaluations.
    With ``ema_decay``, evaluations and ``best/`` use the exponential moving average of the
    weights (:class:`~attnlab.training.averaging.ExponentialMovingAverage`); ``last/`` keeps the
    raw weights and the average, to resume.

    With ``time_limit`` and ``decay_to_time_limit``, warm-up takes its share of the time limit
    (``time_limit × warmup_steps / total_steps``) and the decay the time after it, each phase
    following the time or the steps, whichever is further along: a run stopped by the clock ends
    one step short of a learning rate of 0, on any machine. Its learning rates then depend on
    the speed of the machine, so two such runs are not step for step the same.

    ``batch_size`` is the *global* batch: under ``torchrun`` each of the ``W`` processes takes
    ``batch_size // W`` examples per step, so one process and ``W`` processes make the same
    optimizer steps.
    """

    lr: float = field(default=1e-3, metadata={
        "help": "peak learning rate of AdamW, reached at the end of warm-up"})
    weight_decay: float = field(default=0.01, metadata={
        "help": "decoupled weight decay; never on biases, norms, embeddings"})
    embedding_weight_decay: float = field(default=0.0, metadata={
        "help": "decoupled weight decay on embedding tables"})
    adam_beta2: float = field(default=0.999, metadata={
        "help": "AdamW's second-moment decay (0.98 in Vaswani et al., 2017)"})
    batch_size: int | None = field(default=None, metadata={
        "help": "global examples per optimizer step, split across processes (none: 128, or 64 "
                "or 32 where an epoch would make fewer than min_epoch_steps steps)"})
    min_epoch_steps: int = field(default=150, metadata={
        "help": "without batch_size: the fewest steps an epoch should make; a small data set "
                "gets batches of 64 or 32, more and noisier steps, which overfit less"})
    epochs: int | None = field(default=None, metadata={
        "help": "passes over the training split (none: as many as min_steps needs)"})
    min_steps: int = field(default=500, metadata={
        "help": "without epochs: whole epochs of at least this many optimizer steps in all"})
    max_epochs: int = field(default=30, metadata={
        "help": "without epochs: at most this many epochs, however small the data"})
    warmup_ratio: float = field(default=0.1, metadata={
        "help": "fraction of all steps spent warming up linearly from 0"})
    warmup_steps: int | None = field(default=None, metadata={
        "help": "absolute warm-up steps; overrides warmup_ratio when set"})
    schedule: str = field(default="linear", metadata={
        "help": 'decay after warm-up: "linear" | "cosine" (to 0) | "constant" | "inverse_sqrt"'})
    grad_clip: float | None = field(default=1.0, metadata={
        "help": "max global gradient L2 norm; None or 0 disables clipping"})
    label_smoothing: float = field(default=0.25, metadata={
        "help": "> 0: the trainer computes smoothed cross-entropy from logits"})
    ema_decay: float | None = field(default=0.995, metadata={
        "help": "evaluate and keep best/ on an EMA of the weights (none: off)"})
    patience: int | None = field(default=5, metadata={
        "help": "stop after this many evaluations without a lower val loss"})
    min_delta: float = field(default=0.0, metadata={
        "help": "a val loss must drop by more than this to count as better"})
    seed: int = field(default=0, metadata={
        "help": "seeds weights, dropout and the per-epoch data order"})
    bf16: bool = field(default=False, metadata={
        "help": "forward under torch.autocast(dtype=torch.bfloat16)"})
    eval_every: int = field(default=1, metadata={
        "help": "evaluate on the dev split every this many epochs"})
    eval_steps: int | None = field(default=100, metadata={
        "help": "also evaluate every this many optimizer steps (none: off)"})
    log_every: int = field(default=50, metadata={
        "help": "write a step line to metrics.jsonl every this many steps"})
    save_every: int = field(default=0, metadata={
        "help": "also save last/ every this many steps (0: at each epoch end only)"})
    max_steps: int | None = field(default=None, metadata={
        "help": "stop after this many optimizer steps (None: all epochs)"})
    time_limit: float | None = field(default=None, metadata={
        "help": "stop training after this many seconds, evaluate, save"})
    decay_to_time_limit: bool = field(default=False, metadata={
        "help": "warm-up takes its share of time_limit and the linear or cosine decay ends when "
                "time_limit is up, if that comes before the last step"})
    device: str = field(default="auto", metadata={
        "help": '"auto" (cuda if available), "cpu", "cuda", "cuda:1", ...'})

    def __post_init__(self) -> None:
        _positive("lr", self.lr, float)
        _at_least("weight_decay", self.weight_decay, 0.0)
        _at_least("embedding_weight_decay", self.embedding_weight_decay, 0.0)
        _check_type("adam_beta2", self.adam_beta2, float)
        if not 0.0 < self.adam_beta2 < 1.0:
            raise InputError(f"adam_beta2 must be in (0, 1), got {self.adam_beta2}")
        if self.batch_size is not None:
            _positive("batch_size", self.batch_size, int)
        _positive("min_epoch_steps", self.min_epoch_steps, int)
        if self.epochs is not None:
            _positive("epochs", self.epochs, int)
        _positive("min_steps", self.min_steps, int)
        _positive("max_epochs", self.max_epochs, int)
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise InputError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.warmup_steps is not None:
            _at_least("warmup_steps", self.warmup_steps, 0, int)
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.grad_clip is not None:
            _at_least("grad_clip", self.grad_clip, 0.0)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise InputError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.ema_decay is not None:
            _check_type("ema_decay", self.ema_decay, float)
            if not 0.0 <= self.ema_decay < 1.0:
                raise InputError(f"ema_decay must be None or in [0, 1), got {self.ema_decay}")
        if self.patience is not None:
            _positive("patience", self.patience, int)
        _at_least("min_delta", self.min_delta, 0.0)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TypeError(f"seed must be an int, got {self.seed!r}")
        if not isinstance(self.bf16, bool):
            raise TypeError(f"bf16 must be a bool, got {self.bf16!r}")
        _positive("eval_every", self.eval_every, int)
        if self.eval_steps is not None:
            _positive("eval_steps", self.eval_steps, int)
        _positive("log_every", self.log_every, int)
        _at_least("save_every", self.save_every, 0, int)
        if self.max_steps is not None:
            _positive("max_steps", self.max_steps, int)
        if self.time_limit is not None:
            _positive("time_limit", self.time_limit, float)
        if not isinstance(self.decay_to_time_limit, bool):
            raise TypeError(f"decay_to_time_limit must be a bool, got {self.decay_to_time_limit!r}")
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu") or self.device.startswith("cuda")
        ):
            raise InputError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")

    def planned_batch_size(self, n_examples: int, world_size: int = 1) -> int:
        """``batch_size`` if given, else the largest of 128, 64 and 32 whose epoch of
        ``n_examples`` makes at least ``min_epoch_steps`` whole batches (32 if none does).

        Raises:
            InputError: the batch does not split evenly over ``world_size`` processes.
        """
        size = self.batch_size
        if size is None:
            size = next((s for s in AUTO_BATCH_SIZES if n_examples // s >= self.min_epoch_steps),
                        AUTO_BATCH_SIZES[-1])
        if size % world_size:
            raise InputError(f"batches of {size} examples do not split evenly over {world_size} "
                             f"processes; give a --batch-size divisible by {world_size}")
        return size

    def planned_epochs(self, steps_per_epoch: int) -> int:
        """``epochs`` if given, else the fewest whole epochs of ``steps_per_epoch`` optimizer
        steps that make ``min_steps``, at most ``max_epochs``."""
        if self.epochs is not None:
            return self.epochs
        return max(1, min(self.max_epochs, math.ceil(self.min_steps / steps_per_epoch)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a version mismatch)."""
        # runs saved before ema_decay existed had no EMA
        return super().from_dict({"ema_decay": None, **data})

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)


def _positive(name: str, value: Any, kind: type) -> None:
    _check_type(name, value, kind)
    if not value > 0:
        raise InputError(f"{name} must be > 0, got {value}")


def _at_least(name: str, value: Any, low: float, kind: type = float) -> None:
    _check_type(name, value, kind)
    if not value >= low:
        raise InputError(f"{name} must be >= {low}, got {value}")


def _check_type(name: str, value: Any, kind: type) -> None:
    ok = isinstance(value, int) if kind is int else isinstance(value, (int, float))
    if not ok or isinstance(value, bool):
        raise TypeError(f"{name} must be {'an int' if kind is int else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
