"""How a translator is scored: the dev figures (token-level loss and accuracy under teacher
forcing, BLEU and chrF of greedy translations) and the one BLEU scorer, cased sacreBLEU and
chrF with the signatures that define them.

Legend: ``B`` pairs, ``T`` target length, ``V`` vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from sacrebleu.metrics import BLEU, CHRF
from torch import Tensor, nn

from attnlab.tasks.translation.data import IGNORE_INDEX
from attnlab.tasks.translation.translator import Translator
from attnlab.text import TextTokenizer
from attnlab.train.distributed import all_reduce_sum

__all__ = ["TARGETS", "BleuScore", "TranslationMetrics", "evaluate_translation", "score_bleu"]

TARGETS = ("labels",)  # batch entries the loss reads, the model does not see


@dataclass(frozen=True)
class BleuScore:
    """Cased corpus BLEU and chrF of some translations, with sacreBLEU's signatures."""

    bleu: float
    chrf: float
    n: int  # sentences
    signature: str  # "BLEU: nrefs:1|case:mixed|... chrF: ..."

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> BleuScore:
    """Cased corpus sacreBLEU and chrF (sacreBLEU's default tokenizer, 13a), one reference
    per sentence."""
    if len(hypotheses) != len(references):
        raise ValueError(f"one reference per hypothesis: got {len(hypotheses)} hypotheses and "
                         f"{len(references)} references")
    bleu, chrf = BLEU(), CHRF()
    hyps, refs = list(hypotheses), [list(references)]
    return BleuScore(bleu.corpus_score(hyps, refs).score, chrf.corpus_score(hyps, refs).score,
                     len(hyps), f"BLEU: {bleu.get_signature()} chrF: {chrf.get_signature()}")


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
            found = Translator(model, tokenizer).translate(sources)
            score = score_bleu([t.translation for t in found], references)
            bleu, chrf = score.bleu, score.chrf
    finally:
        model.train(was_training)
    for total in (loss_sum, correct, scored):  # under torchrun each pair is on one process
        all_reduce_sum(total)
    tokens = int(scored)
    if tokens == 0:
        raise ValueError("evaluation data yielded no target tokens")
    return TranslationMetrics(float(loss_sum) / tokens, int(correct) / tokens, tokens, bleu,
                              chrf, len(sources))
