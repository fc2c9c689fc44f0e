"""Evaluation during training: when the dev split is scored, which score is the best so far
(``best/``), and when patience runs out. The scoring itself is the task's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from torch import nn

# The :class:`~attnlab.train.Trainer` these functions work on (the trainer imports this
# module, so it is named here, not imported).
TrainerLike = Any

__all__ = ["Evaluator"]


@dataclass
class _BestSoFar:
    """The evaluator's part of the resumable state (saved in last/ beside the loop's)."""

    best_val_loss: float | None = None
    best_epoch: int | None = None
    best_step: int | None = None
    best_val: dict[str, Any] | None = None  # metrics dict of the best evaluation
    last_eval_step: int | None = None  # global_step of the latest evaluation
    last_val: dict[str, Any] | None = None  # metrics dict of the latest evaluation
    bad_evals: int = 0  # evaluations since the last improvement


class Evaluator:
    """Score the dev split every ``eval_steps`` steps and at epoch ends; keep the lowest loss.

    Args:
        score: ``score(model) -> metrics`` over the dev split; metrics have ``.loss``,
            ``to_dict()``, ``describe()`` and the class method ``from_dict``.
        metrics: the metrics class (to read saved ones back).

    The weights scored are the trainer's weight average when it keeps one. A lower dev loss
    (by more than ``min_delta``) saves ``best/`` through the trainer's store; ``patience``
    evaluations without one stop training.
    """

    def __init__(self, score: Callable[[nn.Module], Any], metrics: type) -> None:
        self.score = score
        self.metrics = metrics
        self.state = _BestSoFar()

    # --- schedule ---------------------------------------------------------------------------

    def due_mid_epoch(self, trainer: TrainerLike) -> bool:
        """``eval_steps`` came round; the epoch's last step is left to the epoch's end."""
        cfg, st = trainer.config, trainer.state
        return bool(cfg.eval_steps and st.global_step % cfg.eval_steps == 0
                    and st.batch_in_epoch < trainer.steps_per_epoch
                    and st.global_step < trainer.total_steps)

    def due_at_epoch_end(self, trainer: TrainerLike, last_epoch: bool) -> bool:
        return (trainer.state.epoch + 1) % trainer.config.eval_every == 0 or last_epoch

    def latest_at(self, step: int) -> Any:
        """The metrics of an evaluation made at ``step``, or ``None``."""
        if self.state.last_eval_step == step and self.state.last_val is not None:
            return self.metrics.from_dict(self.state.last_val)
        return None

    # --- scoring and the best checkpoint ----------------------------------------------------

    def evaluate(self, trainer: TrainerLike) -> Any:
        """The dev metrics of the weights evaluated (the average, when kept)."""
        with trainer.averaged_weights():
            return self.score(trainer.model)

    def track(self, trainer: TrainerLike, val: Any, metrics: dict[str, Any]) -> bool:
        """Note an evaluation at the current step: a lower val loss saves best/ (with
        ``metrics``), otherwise it counts towards ``patience``. True if it is the new best."""
        cfg, st, best = trainer.config, trainer.state, self.state
        best.last_eval_step, best.last_val = st.global_step, val.to_dict()
        if best.best_val_loss is not None and val.loss >= best.best_val_loss - cfg.min_delta:
            best.bad_evals += 1
            finished = st.global_step >= trainer.total_steps  # nothing left to stop
            if cfg.patience is not None and best.bad_evals >= cfg.patience and not finished:
                st.stopped_early = True
            return False
        best.best_val_loss, best.best_val, best.bad_evals = val.loss, val.to_dict(), 0
        best.best_epoch, best.best_step = st.epoch + 1, st.global_step
        if trainer.store is not None and trainer.dist.is_main:
            with trainer.averaged_weights():
                trainer.store.save("best", trainer.model, metrics=metrics)
        return True

    def best(self) -> Any:
        return None if self.state.best_val is None else self.metrics.from_dict(self.state.best_val)

    # --- resume -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return asdict(self.state)

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        names = {f.name for f in fields(_BestSoFar)}
        self.state = _BestSoFar(**{k: v for k, v in saved.items() if k in names})
