"""How a classifier is scored: loss, accuracy and macro F1 (from a confusion matrix), and the
evaluation over labelled batches that computes them.

Legend: ``N`` examples, ``B`` batch, ``C`` classes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.train.distributed import all_reduce_sum

__all__ = ["EvalResult", "confusion_matrix", "evaluate", "macro_f1", "summarize"]


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


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[dict[str, Tensor]],
    *,
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> EvalResult:
    """Mean unsmoothed cross-entropy, accuracy and macro F1 of ``model`` over ``batches``.

    Args:
        model: ``model(**batch)`` returns an object with ``.logits`` ``(B, C)``.
        batches: dicts with ``labels`` ``(B,)`` and the model's inputs. Under ``torchrun``
            each example on exactly one process: the sums are reduced over processes.
        device: where the batches go (the model must be there already).
        bf16: run the forward under ``torch.autocast(dtype=torch.bfloat16)``.

    The model is put in eval mode for the pass and restored afterwards.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    matrix: Tensor | None = None
    try:
        for batch in batches:
            batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model(**batch)
            logits = out.logits.float()  # (B, C)
            labels = batch["labels"]  # (B,)
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
            cm = confusion_matrix(logits.argmax(-1), labels, logits.shape[-1])  # (C, C)
            matrix = cm if matrix is None else matrix + cm
    finally:
        model.train(was_training)
    if matrix is None:
        raise ValueError("evaluation data yielded no batches")
    all_reduce_sum(loss_sum)
    all_reduce_sum(matrix)
    return summarize(float(loss_sum), matrix.cpu())
