"""Classification on the task-agnostic loop: the loss, the dev-split score, the run folder.

:func:`classification_trainer` wires a :class:`~attnlab.train.Trainer` for any model whose
``forward(**batch)`` returns ``.logits`` ``(B, C)`` and, given ``labels``, ``.loss``.

Legend: ``B`` batch, ``C`` classes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.io.run_folder import RunFolder
from attnlab.tasks.classification.metrics import EvalResult, evaluate
from attnlab.train import Callback, Evaluator, Loss, TrainConfig, Trainer
from attnlab.train.distributed import DistInfo, setup_distributed

__all__ = ["ClassificationLoss", "RunArtifacts", "classification_trainer"]


class ClassificationLoss:
    """Cross-entropy of ``outputs.logits`` against ``batch["labels"]``, label-smoothed when
    ``label_smoothing > 0`` (then the model does not get the labels); else the model's own
    ``outputs.loss``. Reports the training accuracy and the real tokens."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing
        self.targets = ("labels",) if label_smoothing > 0 else ()  # keys the model must not see

    def __call__(self, outputs: Any, batch: dict[str, Tensor]) -> Loss:
        labels = batch["labels"]  # (B,)
        logits = outputs.logits  # (B, C)
        if self.label_smoothing > 0:
            value = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        else:
            value = outputs.loss
        if value is None:
            raise ValueError("the model returned loss=None although labels were given")
        if logits is not None and logits.dim() == 2:
            correct = (logits.detach().argmax(-1) == labels).sum()
        else:
            correct = torch.zeros((), dtype=torch.long, device=labels.device)
        mask = batch.get("attention_mask")
        tokens = mask.sum() if mask is not None else batch["input_ids"].numel()
        return Loss(value, int(labels.shape[0]), tokens, {"accuracy": correct})


@dataclass
class RunArtifacts:
    """What a checkpoint needs besides the weights to rebuild and use the model.

    Attributes:
        model_config: JSON-ready dict the model is rebuilt from.
        model_type: name of the model family (see :mod:`attnlab.io.registry`).
        labels: class names, index ``i`` is class ``i``.
        tokenizer: a ``tokenizers.Tokenizer`` or a path to tokenizer.json, or ``None``.
        extra: more JSON-ready entries for config.json (e.g. the data source).
    """

    model_config: dict[str, Any]
    model_type: str = "classifier"
    labels: list[str] | None = None
    tokenizer: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def config(self, train: TrainConfig) -> dict[str, Any]:
        """The config.json of the run's checkpoints."""
        return {"model_type": self.model_type, "model": self.model_config,
                "train": train.to_dict(), "labels": self.labels, **self.extra}


def classification_trainer(
    model: nn.Module, config: TrainConfig, train_data: Iterable[dict[str, Tensor]],
    eval_data: Iterable[dict[str, Tensor]] | None = None, *,
    out_dir: str | os.PathLike | None = None, artifacts: RunArtifacts | None = None,
    callbacks: Sequence[Callback] = (), progress: bool = True,
    dist_info: DistInfo | None = None,
) -> Trainer:
    """A :class:`~attnlab.train.Trainer` for a classifier: the (smoothed) cross-entropy,
    dev loss, accuracy and macro F1 every ``eval_steps``, ``best/`` at the lowest dev loss, and
    the run folder ``out_dir`` (``None`` writes nothing).

    Example::

        trainer = classification_trainer(model, TrainConfig(epochs=3), train_batches,
                                         dev_batches, out_dir="runs/h4",
                                         artifacts=RunArtifacts(model_config=cfg.to_dict()))
        result = trainer.fit()                   # or fit(resume=True) after an interruption
    """
    info = dist_info if dist_info is not None else setup_distributed(config.device)
    evaluator = None
    if eval_data is not None:
        def score(scored: nn.Module) -> EvalResult:
            return evaluate(scored, eval_data, device=info.device, bf16=config.bf16)

        evaluator = Evaluator(score, EvalResult)
    store = None
    if out_dir is not None:
        artifacts = artifacts or RunArtifacts(model_config={})
        store = RunFolder(out_dir, artifacts.config(config), tokenizer=artifacts.tokenizer)
    loss = ClassificationLoss(config.label_smoothing)
    return Trainer(model, config, train_data, loss, targets=loss.targets, evaluator=evaluator,
                   store=store, callbacks=callbacks, progress=progress, dist_info=info)
