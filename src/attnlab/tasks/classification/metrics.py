"""Classification metrics: loss, accuracy, macro F1, from a confusion matrix.

Legend: ``N`` examples, ``C`` classes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["EvalResult", "confusion_matrix", "macro_f1", "summarize"]


@dataclass(frozen=True)
class EvalResult:
    """Metrics of one pass over a labelled split.

    Attributes:
        loss: mean cross-entropy per example (no label smoothing).
        accuracy: fraction of examples whose arg-max class is the label.
        f1: macro F1, the unweighted mean of the per-class F1 (a class never predicted nor
            present counts 0 and is left out of the mean).
        n: number of examples.
    """

    loss: float
    accuracy: float
    f1: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalResult:
        return cls(**d)

    def describe(self) -> str:
        """``loss 0.4018 acc 0.8154 f1 0.8154``, as the epoch lines print it."""
        return f"loss {self.loss:.4f} acc {self.accuracy:.4f} f1 {self.f1:.4f}"


def confusion_matrix(preds: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Counts ``M[true, pred]`` as an int64 ``(C, C)`` tensor.

    Shape:
        preds, labels: ``(N,)`` integer class indices in ``[0, C)``.
    """
    if preds.shape != labels.shape or preds.dim() != 1:
        raise ValueError(
            f"preds and labels must be 1-D of equal shape, got {tuple(preds.shape)} "
            f"and {tuple(labels.shape)}"
        )
    for name, t in (("preds", preds), ("labels", labels)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ValueError(
                f"{name} must lie in [0, {num_classes}), got [{int(t.min())}, {int(t.max())}]"
            )
    flat = labels.long() * num_classes + preds.long()  # (N,) index of the cell (true, pred)
    counts = torch.bincount(flat, minlength=num_classes * num_classes)  # (C * C,)
    return counts.view(num_classes, num_classes)  # (C, C)


def macro_f1(matrix: Tensor) -> float:
    """Macro F1 of a confusion matrix ``M[true, pred]`` (classes absent from both are skipped)."""
    m = matrix.double()
    tp = m.diag()  # (C,)
    predicted = m.sum(0)  # (C,) column sums
    actual = m.sum(1)  # (C,) row sums
    present = (predicted + actual) > 0
    if not bool(present.any()):
        return 0.0
    f1 = 2 * tp / (predicted + actual).clamp_min(1)  # (C,) = 2PR/(P+R) written as 2tp/(p+a)
    return float(f1[present].mean())


def summarize(loss_sum: float, matrix: Tensor) -> EvalResult:
    """An :class:`EvalResult` from a summed loss and a confusion matrix."""
    n = int(matrix.sum())
    if n == 0:
        raise ValueError("cannot summarize an evaluation over 0 examples")
    loss = loss_sum / n
    if not math.isfinite(loss):
        raise ValueError(f"evaluation loss is not finite ({loss}); the model diverged")
    return EvalResult(loss=loss, accuracy=float(matrix.diag().sum()) / n, f1=macro_f1(matrix), n=n)
