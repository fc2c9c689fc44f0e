"""Using a trained translation run: translate a split and score it with cased sacreBLEU and
chrF (sentences one by one go through :class:`~attnlab.tasks.translation.translator.Translator`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from attnlab.tasks.translation.metrics import BleuScore, score_bleu
from attnlab.tasks.translation.translator import Translator
from attnlab.text import load_parallel_split

__all__ = ["SplitTranslation", "evaluate_run"]


@dataclass(frozen=True)
class SplitTranslation:
    """A split translated: its score and the hypotheses, one per source sentence."""

    score: BleuScore
    hypotheses: list[str]


def evaluate_run(path: str | os.PathLike, data: str, split: str, *, source_lang: str,
                 target_lang: str, beam: int = 1, limit: int | None = None,
                 device: str = "cpu") -> SplitTranslation:
    """Translate ``split`` of ``data`` (its first ``limit`` sentences, or all) with the run in
    ``path`` (greedy, or beam search) and score it against the references."""
    translator = Translator.load(path, device)
    pairs = load_parallel_split(data, split, source_lang=source_lang, target_lang=target_lang)
    rows = slice(None) if limit is None else slice(limit)
    hypotheses = [t.translation for t in translator.translate(pairs.sources[rows], beam=beam)]
    return SplitTranslation(score_bleu(hypotheses, pairs.targets[rows]), hypotheses)
