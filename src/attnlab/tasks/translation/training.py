"""Translation on the task-agnostic loop: the token-level loss, the dev score (loss, token
accuracy, and BLEU/chrF of greedy translations), the run folder.

Legend: ``B`` pairs, ``T`` target length, ``V`` vocabulary.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sacrebleu
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.io.run_folder import RunFolder
from attnlab.models.generation import greedy
from attnlab.tasks.translation.data import IGNORE_INDEX, source_batches
from attnlab.text import TextTokenizer
from attnlab.train import Callback, Evaluator, Loss, TrainConfig, Trainer
from attnlab.train.distributed import DistInfo, all_reduce_sum, setup_distributed

__all__ = ["TranslationLoss", "TranslationMetrics", "translation_trainer"]

TARGETS = ("labels",)  # batch entries the loss reads, the model does not see


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


@dataclass(frozen=True)
class TranslationMetrics:
    """Dev-split figures: token-level loss and accuracy over every pair, and the cased
    sacreBLEU and chrF of greedy translations of the first ``sentences`` pairs."""

    loss: float  # mean cross-entropy per target token (no label smoothing)
    accuracy: float  # share of target tokens predicted right (teacher forcing)
    tokens: int  # target tokens scored
    bleu: float | None  # corpus BLEU of the greedy translations, or None if none were made
    chrf: float | None
    sentences: int  # pairs translated for BLEU and chrF

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TranslationMetrics:
        return cls(**d)

    def describe(self) -> str:
        line = f"loss {self.loss:.4f} acc {self.accuracy:.4f}"
        return line if self.bleu is None else f"{line} bleu {self.bleu:.2f} chrf {self.chrf:.2f}"


def score_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, float]:
    """Cased corpus sacreBLEU and chrF (sacreBLEU's default tokenizer, 13a)."""
    refs = [list(references)]
    return (sacrebleu.corpus_bleu(list(hypotheses), refs).score,
            sacrebleu.corpus_chrf(list(hypotheses), refs).score)


@torch.no_grad()
def translate_texts(model: nn.Module, tokenizer: TextTokenizer, texts: Sequence[str], *,
                    batch_size: int = 64) -> list[str]:
    """Greedy translations of ``texts``, in their order (at most 50 tokens more than the
    source, within the model's ``max_len``)."""
    device = next(model.parameters()).device
    out: list[str] = [""] * len(texts)
    for rows, input_ids, mask in source_batches(tokenizer, texts, batch_size):
        ids = greedy(model, input_ids.to(device), mask.to(device))
        for row, hyp in zip(rows, tokenizer.decode_batch(ids), strict=True):
            out[row] = hyp
    return out


@torch.no_grad()
def evaluate_translation(model: nn.Module, batches: Iterable[dict[str, Any]], *,
                         tokenizer: TextTokenizer | None = None,
                         sources: Sequence[str] = (), references: Sequence[str] = (),
                         device: torch.device | str = "cpu", bf16: bool = False
                         ) -> TranslationMetrics:
    """Loss and token accuracy over ``batches``; BLEU and chrF of greedy translations of
    ``sources`` against ``references`` (none when ``sources`` is empty)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    scored = torch.zeros((), dtype=torch.long, device=device)
    try:
        for batch in batches:
            batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            inputs = {k: v for k, v in batch.items() if k not in TARGETS}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(**inputs).logits.float()  # (B, T, V)
            labels = batch["labels"]  # (B, T)
            loss_sum += F.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                        ignore_index=IGNORE_INDEX, reduction="sum").double()
            real = labels != IGNORE_INDEX  # (B, T)
            correct += ((logits.argmax(-1) == labels) & real).sum()
            scored += real.sum()
        bleu = chrf = None
        if sources:
            bleu, chrf = score_bleu(translate_texts(model, tokenizer, sources), references)
    finally:
        model.train(was_training)
    for total in (loss_sum, correct, scored):  # under torchrun each pair is on one process
        all_reduce_sum(total)
    tokens = int(scored)
    if tokens == 0:
        raise ValueError("evaluation data yielded no target tokens")
    return TranslationMetrics(float(loss_sum) / tokens, int(correct) / tokens, tokens, bleu,
                              chrf, len(sources))


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
