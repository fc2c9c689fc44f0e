"""What the training loop counts and reports: its resumable state, one step, one epoch, the fit.

Metrics objects (a task's dev-split results) only need ``.loss``, ``to_dict()`` and a
``from_dict`` classmethod; the loop never looks inside them.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["EpochRecord", "FitResult", "Loss", "StepInfo", "TrainState", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Loss:
    """What a task's ``loss_fn(outputs, batch)`` returns for one batch.

    Attributes:
        value: the scalar to backpropagate (a mean over the batch).
        examples: how many examples (or target tokens) ``value`` averages over: the weight of
            this batch in the epoch's mean training loss; an ``int``, or a tensor read back
            with the loss.
        tokens: real (non-padding) tokens in the batch, for the throughput.
        stats: per-batch sums whose epoch means are reported as ``train_<name>``, e.g.
            ``{"accuracy": number of correct predictions}``.
        mean_over_examples: ``value`` is a mean over ``examples`` whose number differs between
            processes (target tokens, say): under ``torchrun`` the loop then weights each
            process's gradient by its share of the global count, so that a step follows the
            mean over the whole global batch, not the mean of the per-process means.
    """

    value: Tensor
    examples: Tensor | int
    tokens: Tensor | int
    stats: dict[str, Tensor] = field(default_factory=dict)
    mean_over_examples: bool = False


class StepInfo:
    """Passed to :meth:`Callback.on_step_end` after each optimizer step.

    ``loss`` reads the step's loss from the device on first use only, so callbacks that do not
    look at it cost no host synchronisation.
    """

    def __init__(self, step: int, epoch: int, loss: Tensor, lr: float) -> None:
        self.step = step  # optimizer steps done so far (1 after the first)
        self.epoch = epoch  # 0-based
        self.lr = lr  # learning rate used for this step
        self._loss = loss

    @property
    def loss(self) -> float:
        """This step's training loss (this process)."""
        return float(self._loss)


@dataclass
class TrainState:
    """Counters of the loop that a resumed run must get back exactly (saved in last/)."""

    global_step: int = 0
    epoch: int = 0  # current 0-based epoch
    batch_in_epoch: int = 0  # batches of `epoch` already trained on
    loss_sum: float = 0.0  # this epoch, this process: sum of per-example training loss
    examples: int = 0  # this epoch, this process
    tokens: int = 0  # this epoch, this process
    stat_sums: dict[str, float] = field(default_factory=dict)  # this epoch: Loss.stats summed
    window_sum: float = 0.0  # training losses since the last step line (its running mean)
    window_steps: int = 0  # steps since the last step line
    epoch_seconds: float = 0.0  # training time spent in this epoch before the last save
    stopped_early: bool = False  # the evaluator's patience ran out
    out_of_time: bool = False  # training stopped at config.time_limit
    wall_time: float = 0.0  # fit time before this invocation
    warmup_end: float | None = None  # fit time when warm-up ended (decay_to_time_limit)
    history: list[dict[str, Any]] = field(default_factory=list)  # EpochRecord dicts

    def start_epoch_sums(self) -> None:
        self.loss_sum, self.examples, self.tokens, self.stat_sums = 0.0, 0, 0, {}
        self.batch_in_epoch, self.epoch_seconds = 0, 0.0

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TrainState:
        """The loop's fields of a saved ``progress`` dict (which holds the evaluator's too)."""
        names = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in saved.items() if k in names})
        if "stat_sums" not in saved and "correct" in saved:  # saved before stat_sums existed
            state.stat_sums = {"accuracy": saved["correct"]}
        return state


@dataclass
class EpochRecord:
    """One epoch: training averages and, if evaluated, the dev metrics."""

    epoch: int  # 1-based
    step: int  # optimizer steps done at the end of the epoch
    train_loss: float  # mean training loss over the epoch's examples (all processes)
    train_stats: dict[str, float]  # epoch means of Loss.stats (weights changing under them)
    val: Any  # dev metrics after the epoch, or None if not evaluated
    seconds: float  # wall time of the epoch (training + evaluation)
    tokens_per_s: float  # training throughput (non-padding tokens, all processes)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("train_stats", "val")}
        d.update({f"train_{name}": value for name, value in self.train_stats.items()})
        d["val"] = None if self.val is None else self.val.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], metrics: type) -> EpochRecord:
        own = {f.name for f in fields(cls)}
        stats = {k[len("train_"):]: v for k, v in d.items()
                 if k.startswith("train_") and k not in own}
        val = None if d["val"] is None else metrics.from_dict(d["val"])
        return cls(d["epoch"], d["step"], d["train_loss"], stats, val, d["seconds"],
                   d["tokens_per_s"])


@dataclass
class FitResult:
    """Outcome of :meth:`~attnlab.train.Trainer.fit`."""

    history: list[EpochRecord]  # one record per (possibly partial, at max_steps) epoch
    best_epoch: int | None  # 1-based epoch of the lowest val loss (None: no evaluation)
    best_val: Any  # dev metrics of the best evaluation (the weights in best/)
    global_step: int  # optimizer steps done
    stopped_early: bool  # patience ran out
    wall_time: float  # seconds spent in fit (this invocation plus any interrupted ones)
    out_of_time: bool = False  # training stopped at config.time_limit
    best_step: int | None = None  # optimizer steps done at the best evaluation

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["history"] = [r.to_dict() for r in self.history]
        d["best_val"] = None if self.best_val is None else self.best_val.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], metrics: type) -> FitResult:
        """Inverse of :meth:`to_dict`; ``metrics`` is the task's metrics class."""
        return cls(
            history=[EpochRecord.from_dict(r, metrics) for r in d["history"]],
            best_epoch=d["best_epoch"],
            best_val=None if d["best_val"] is None else metrics.from_dict(d["best_val"]),
            global_step=d["global_step"],
            stopped_early=d["stopped_early"],
            wall_time=d["wall_time"],
            out_of_time=d.get("out_of_time", False),
            best_step=d.get("best_step"),
        )


def rng_state() -> dict[str, Any]:
    """Every global random generator's state (saved in last/ so dropout resumes exactly)."""
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
