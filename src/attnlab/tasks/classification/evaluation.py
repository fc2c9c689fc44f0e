"""Evaluation of a classifier over labelled batches: loss, accuracy, macro F1.

Legend: ``B`` batch, ``C`` classes.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.tasks.classification.metrics import EvalResult, confusion_matrix, summarize
from attnlab.train.distributed import all_reduce_sum

__all__ = ["evaluate"]


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
