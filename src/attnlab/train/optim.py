"""AdamW with sensible weight-decay groups, and the warm-up-then-decay learning-rate schedule.

The schedule is a pure function of the step (and, when it must end at a time limit, of the
training time spent), so resuming needs only the counters saved in last/. Fitted to a time
limit, the warm-up gets the same share of the time as of the steps (``time_limit x warmup /
total_steps`` seconds) and the decay the time left after it, each ending by the clock or by the
steps, whichever comes first: a run stopped by the clock has warmed up and decayed to (one step
short of) 0, however slow the machine.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["build_optimizer", "lr_factor", "set_lr", "time_progress", "time_warmup",
           "warmup_steps_for"]

# Modules whose weights are scales or lookup tables, not projections: decaying them only hurts.
_NO_DECAY_MODULES = (nn.LayerNorm, nn.Embedding, nn.GroupNorm, nn.BatchNorm1d, nn.RMSNorm)


def build_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    embedding_weight_decay: float = 0.0, beta2: float = 0.999
                    ) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, norms or embeddings), and
    optionally its own decay on embedding tables (``embedding_weight_decay``; AdamW shrinks
    every row each step, so words seen rarely drift back towards zero).

    Parameters are grouped in ``model.named_parameters()`` order, so the optimizer state lines
    up with the same model built again (needed to resume).
    """
    no_decay_ids, embedding_ids = set(), set()
    for module in model.modules():
        if isinstance(module, _NO_DECAY_MODULES):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
        if isinstance(module, nn.Embedding) and embedding_weight_decay > 0:
            embedding_ids.add(id(module.weight))
    decay, no_decay, embeddings = [], [], []
    for _, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if id(param) in embedding_ids:
            embeddings.append(param)
        else:
            (no_decay if param.ndim < 2 or id(param) in no_decay_ids else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
        {"params": embeddings, "weight_decay": embedding_weight_decay},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=(0.9, beta2))


def warmup_steps_for(total_steps: int, warmup_ratio: float, warmup_steps: int | None) -> int:
    """Absolute warm-up length: ``warmup_steps`` if given, else ``ceil(ratio * total)``."""
    if warmup_steps is not None:
        return min(warmup_steps, total_steps)
    return math.ceil(warmup_ratio * total_steps)


def lr_factor(step: int, total_steps: int, warmup: int, schedule: str,
              time_progress: float = 0.0, time_warmup: float = 0.0) -> float:
    """Multiplier of the peak learning rate for optimizer step ``step`` (0-based).

    Linear warm-up ``(step + 1) / warmup`` over the first ``warmup`` steps, then ``constant``
    (1), ``linear`` decay to 0 at ``total_steps``, ``cosine`` decay to 0 at ``total_steps``, or
    ``inverse_sqrt``: ``sqrt(warmup / (step + 1))``, which ignores ``total_steps`` (Vaswani et
    al., 2017, §5.3; fairseq's ``inverse_sqrt``). When the time runs out before the steps do,
    the clock moves the schedule on: ``time_warmup`` (in [0, 1], see :func:`time_warmup`) is
    how far the warm-up is by the clock and ``time_progress`` (in [0, 1], see
    :func:`time_progress`) how far the linear or cosine decay is; each phase follows whichever
    of steps and time is further along.
    """
    if step < warmup and time_warmup < 1.0:
        return max((step + 1) / warmup, time_warmup)
    if schedule == "constant":
        return 1.0
    if schedule == "inverse_sqrt":
        return min(1.0, math.sqrt(max(warmup, 1) / (step + 1)))
    progress = (step - warmup) / max(1, total_steps - warmup)  # < 1 (< 0 if the clock ended
    progress = min(max(progress, time_progress, 0.0), 1.0)  # the warm-up early)
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"schedule must be 'linear', 'cosine', 'constant' or 'inverse_sqrt', "
                     f"got {schedule!r}")


def time_warmup(elapsed: float, warmup_time: float) -> float:
    """How far warm-up is along the clock: the share of ``warmup_time`` seconds spent (1 when
    there is no warm-up)."""
    return 1.0 if warmup_time <= 0 else min(max(elapsed / warmup_time, 0.0), 1.0)


def time_progress(elapsed: float, warmup_end: float | None, time_limit: float | None) -> float:
    """How far the decay is along a time budget: the share of the time between the end of
    warm-up (``warmup_end`` seconds into training) and ``time_limit`` already spent; 0 before
    warm-up ends or without a limit."""
    if time_limit is None or warmup_end is None:
        return 0.0
    if time_limit <= warmup_end:  # warm-up alone took the whole budget
        return 1.0
    return min(max((elapsed - warmup_end) / (time_limit - warmup_end), 0.0), 1.0)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate to ``lr``."""
    for group in optimizer.param_groups:
        group["lr"] = lr
