"""Translation on the task-agnostic loop: the token-level loss, wired with the dev score
(:mod:`~attnlab.tasks.translation.metrics`) and the run folder into a Trainer.

Legend: ``B`` pairs, ``T`` target length, ``V`` vocabulary.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch.nn.functional as F
from torch import nn

from attnlab.io.run_folder import RunFolder
from attnlab.tasks.translation.data import IGNORE_INDEX
from attnlab.tasks.translation.metrics import TARGETS, TranslationMetrics, evaluate_translation
from attnlab.text import TextTokenizer
from attnlab.train import Callback, Evaluator, Loss, TrainConfig, Trainer
from attnlab.train.distributed import DistInfo, setup_distributed

__all__ = ["TARGETS", "TranslationLoss", "translation_trainer"]


class TranslationLoss:
    """Mean cross-entropy per target token, label-smoothed when ``label_smoothing > 0``;
    reports the token accuracy and the real tokens of both sides."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def __call__(self, outputs: Any, batch: dict[str, Any]) -> Loss:
        logits, labels = outputs.logits, batch["labels"]  # (B, T, V), (B, T)
        value = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(),  # (B*T, V)
                                ignore_index=IGNORE_INDEX, label_smoothing=self.label_smoothing)
        real = labels != IGNORE_INDEX  # (B, T)
        correct = ((logits.detach().argmax(-1) == labels) & real).sum()
        n_targets = real.sum()
        tokens = n_targets + batch["attention_mask"].sum()
        # a mean over target tokens, whose number differs between torchrun shards
        return Loss(value, n_targets, tokens, {"accuracy": correct}, mean_over_examples=True)


def translation_trainer(
    model: nn.Module, config: TrainConfig, train_data: Iterable[dict[str, Any]],
    eval_data: Iterable[dict[str, Any]] | None = None, *, tokenizer: TextTokenizer | None = None,
    dev_sources: Sequence[str] = (), dev_references: Sequence[str] = (),
    out_dir: str | os.PathLike | None = None, run_config: dict[str, Any] | None = None,
    callbacks: Sequence[Callback] = (), progress: bool = True,
    dist_info: DistInfo | None = None,
) -> Trainer:
    """A :class:`~attnlab.train.Trainer` for a translator: the token-level (smoothed)
    cross-entropy, the dev loss (``best/`` at the lowest) with BLEU of greedy translations of
    ``dev_sources``, and the run folder ``out_dir`` with ``run_config`` in its checkpoints."""
    info = dist_info if dist_info is not None else setup_distributed(config.device)
    evaluator = None
    if eval_data is not None:
        def score(scored: nn.Module) -> TranslationMetrics:
            return evaluate_translation(scored, eval_data, tokenizer=tokenizer,
                                        sources=dev_sources, references=dev_references,
                                        device=info.device, bf16=config.bf16)

        evaluator = Evaluator(score, TranslationMetrics)
    store = None
    if out_dir is not None:
        store = RunFolder(out_dir, {**(run_config or {}), "train": config.to_dict()},
                          tokenizer=tokenizer)
    return Trainer(model, config, train_data, TranslationLoss(config.label_smoothing),
                   targets=TARGETS, evaluator=evaluator, store=store, callbacks=callbacks,
                   progress=progress, dist_info=info)
