"""Language modelling on the task-agnostic loop: the next-token loss, wired with the dev score
(:mod:`~attnlab.tasks.lm.metrics`) and the run folder into a Trainer.

Legend: ``B`` windows, ``C`` context, ``V`` vocabulary.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.io.run_folder import RunFolder
from attnlab.tasks.lm.metrics import TARGETS, LMMetrics, score_lm
from attnlab.text import TextTokenizer
from attnlab.train import Callback, Evaluator, Loss, TrainConfig, Trainer
from attnlab.train.distributed import DistInfo, setup_distributed

__all__ = ["TARGETS", "LMLoss", "lm_trainer"]


class LMLoss:
    """Mean cross-entropy of the next token, label-smoothed when ``label_smoothing > 0``;
    reports the token accuracy."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def __call__(self, outputs: Tensor, batch: dict[str, Any]) -> Loss:
        logits, labels = outputs, batch["labels"]  # (B, C, V), (B, C)
        value = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(),  # (B*C, V)
                                label_smoothing=self.label_smoothing)
        correct = (logits.detach().argmax(-1) == labels).sum()
        return Loss(value, labels.numel(), labels.numel(), {"accuracy": correct})


def lm_trainer(
    model: nn.Module, config: TrainConfig, train_data: Iterable[dict[str, Any]],
    eval_data: Iterable[dict[str, Any]] | None = None, *, tokenizer: TextTokenizer,
    units: Tensor, unit: str, out_dir: str | os.PathLike | None = None,
    run_config: dict[str, Any] | None = None, callbacks: Sequence[Callback] = (),
    progress: bool = True, dist_info: DistInfo | None = None,
) -> Trainer:
    """A :class:`~attnlab.train.Trainer` for a language model: the next-token cross-entropy,
    the dev loss and bits per ``unit`` (``best/`` at the lowest loss; ``units`` from
    :func:`~attnlab.tasks.lm.metrics.units_per_token`), and the run folder ``out_dir`` with
    ``run_config`` in its checkpoints."""
    info = dist_info if dist_info is not None else setup_distributed(config.device)
    evaluator = None
    if eval_data is not None:
        def score(scored: nn.Module) -> LMMetrics:
            return score_lm(scored, eval_data, units, unit, device=info.device, bf16=config.bf16)

        evaluator = Evaluator(score, LMMetrics)
    store = None
    if out_dir is not None:
        store = RunFolder(out_dir, {**(run_config or {}), "train": config.to_dict()},
                          tokenizer=tokenizer)
    return Trainer(model, config, train_data, LMLoss(config.label_smoothing), targets=TARGETS,
                   evaluator=evaluator, store=store, callbacks=callbacks, progress=progress,
                   dist_info=info)
