"""Exact resume: what ``last/`` holds besides the weights, and how the loop gets it back.

The state saved is the loop's counters (:class:`~attnlab.train.state.TrainState`) with the
evaluator's best-so-far in one ``progress`` dict, the optimizer, the weight average, every
process's random generators and the number of processes (the data shards depend on it).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch.distributed as dist

from attnlab.train.distributed import barrier
from attnlab.train.state import TrainState, rng_state, set_rng_state

# The :class:`~attnlab.train.Trainer` these functions work on (the trainer imports this
# module, so it is named here, not imported).
TrainerLike = Any

__all__ = ["RESUME_MAY_DIFFER", "restore_last", "save_last"]

# TrainConfig fields that may differ between an interrupted run and its resumption (they do not
# change the arithmetic of training).
RESUME_MAY_DIFFER = ("log_every", "save_every", "device", "time_limit")


def save_last(trainer: TrainerLike) -> None:
    """Save ``last/`` through the trainer's store (every process takes part)."""
    rngs = [rng_state()]
    if trainer.dist.distributed:
        rngs = [None] * trainer.dist.world_size
        dist.all_gather_object(rngs, rng_state())  # each process continues its own streams
    trainer.state.window_sum = trainer.ledger.window_sum
    trainer.state.window_steps = trainer.ledger.window_steps
    if trainer.dist.is_main:
        progress = asdict(trainer.state)
        if trainer.evaluator is not None:
            progress.update(trainer.evaluator.state_dict())
        state = {"progress": progress, "optimizer": trainer.optimizer.state_dict(),
                 "ema": None if trainer.ema is None else trainer.ema.state_dict(),
                 "rng": rngs, "world_size": trainer.dist.world_size}
        history = trainer.state.history
        trainer.store.save("last", trainer.model, metrics=history[-1] if history else None,
                           state=state)
    barrier()


def restore_last(trainer: TrainerLike) -> None:
    """Load ``last/`` into the trainer: weights, optimizer, average, counters, generators."""
    state = trainer.store.restore("last", trainer.model,
                                  may_differ=[f"train.{k}" for k in RESUME_MAY_DIFFER])
    if state["world_size"] != trainer.dist.world_size:
        raise ValueError(f"cannot resume on {trainer.dist.world_size} processes a run saved on "
                         f"{state['world_size']} (the data shards would differ)")
    trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.ema is not None:
        trainer.ema.load_state_dict(state["ema"])
    trainer.state = TrainState.from_dict(state["progress"])
    trainer.ledger.window_sum = trainer.state.window_sum
    trainer.ledger.window_steps = trainer.state.window_steps
    if trainer.evaluator is not None:
        trainer.evaluator.load_state_dict(state["progress"])
    set_rng_state(state["rng"][trainer.dist.rank])
