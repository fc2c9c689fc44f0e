"""The losses of training steps not yet read from the device, and the sums they go into.

Each step's loss (and its statistics) stays on the device; :meth:`StepLedger.read_back` folds
the pending steps into the epoch's sums with a single host synchronisation. The loop calls it
once per logging interval, and before an evaluation, a save or the epoch's end.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attnlab.train.state import Loss, TrainState

__all__ = ["StepLedger"]


class StepLedger:
    """Pending steps and the running loss of the current logging window."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.pending: list[tuple[int, Loss]] = []  # (step, detached loss)
        self.grad_norm: Tensor | None = None  # of the latest step, on the device
        self.grad_norm_value: float | None = None  # the same, read back
        self.window_sum, self.window_steps = 0.0, 0  # since the last step line

    def add(self, step: int, loss: Loss, grad_norm: Tensor | None) -> Loss:
        """Keep a step's loss (detached) until the next read-back; returns it."""
        kept = Loss(loss.value.detach(), loss.examples, loss.tokens,
                    {k: v.detach() for k, v in loss.stats.items()})
        self.pending.append((step, kept))
        self.grad_norm = grad_norm
        return kept

    def start_window(self) -> None:
        """Forget the running loss (a new epoch starts its own step lines)."""
        self.window_sum, self.window_steps = 0.0, 0

    def _counts(self, counts: list[Tensor | int]) -> Tensor:
        """Host ints and device tensors as one float64 vector on the device."""
        return torch.stack([torch.as_tensor(c, device=self.device) for c in counts]).double()

    def window_mean(self) -> float:
        mean = self.window_sum / self.window_steps
        self.start_window()
        return mean

    def read_back(self, state: TrainState, lr: float) -> bool:
        """Fold the pending steps into ``state``'s epoch sums; False if none were pending.

        Raises:
            FloatingPointError: a step's loss is not finite (names the first such step).
        """
        if not self.pending:
            return False
        n, names = len(self.pending), sorted(self.pending[0][1].stats)
        losses = [loss for _, loss in self.pending]
        parts = [torch.stack([x.value for x in losses]).double(),  # (n,)
                 self._counts([x.examples for x in losses]),  # (n,)
                 self._counts([x.tokens for x in losses])]  # (n,)
        parts += [torch.stack([x.stats[k] for x in losses]).double() for k in names]  # (n,)
        if self.grad_norm is not None:
            parts.append(self.grad_norm.detach().double().reshape(1))  # (1,)
        values = torch.cat(parts).tolist()  # the one read from the device
        for (step, _), value, examples in zip(self.pending, values[:n], values[n:2 * n],
                                              strict=True):
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"training loss is {value} at step {step} (epoch {state.epoch + 1}); lower "
                    f"lr (now {lr}) or enable grad_clip")
            state.loss_sum += value * examples
            state.examples += int(examples)
            self.window_sum += value
            self.window_steps += 1
        state.tokens += int(sum(values[2 * n:3 * n]))
        for j, name in enumerate(names):
            state.stat_sums[name] = (state.stat_sums.get(name, 0)
                                     + int(sum(values[(3 + j) * n:(4 + j) * n])))
        self.grad_norm_value = values[-1] if self.grad_norm is not None else None
        self.pending.clear()
        return True
