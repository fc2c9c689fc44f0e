"""Using a trained translation run: translate texts (greedy or beam search), optionally with
the cross-attention of each output, and score a split with cased sacreBLEU and chrF, printing
sacreBLEU's signatures.

Legend: ``L`` decoder layers, ``H`` heads, ``T`` generated tokens, ``S`` source tokens."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from sacrebleu.metrics import BLEU, CHRF
from torch import Tensor

from attnlab.io.registry import LoadedModel, load_model
from attnlab.models.generation import Hypothesis, beam_search_nbest, greedy_search
from attnlab.tasks.translation.data import source_batches
from attnlab.tasks.translation.pipeline import MODEL_TYPE
from attnlab.text import load_parallel_split
from attnlab.text.tokenizer import EOS

__all__ = ["BleuResult", "Translation", "evaluate_run", "load_translator", "translate"]


@dataclass(frozen=True)
class Translation:
    """One text and the model's translation of it."""

    text: str
    translation: str
    tokens: list[str]  # the generated subword pieces
    ids: list[int] = field(default_factory=list)  # their ids
    source_tokens: list[str] = field(default_factory=list)  # what the encoder saw, [EOS] last
    finished: bool = True  # the output ended with [EOS] (False: cut at the length limit)
    # with attention=True: (L, H, T, S) cross-attention while choosing each generated token
    # (T = tokens, then [EOS] when finished) over the source tokens, on the CPU
    attention: Tensor | None = field(default=None, compare=False)

    @property
    def target_tokens(self) -> list[str]:
        """The tokens the rows of :attr:`attention` belong to: :attr:`tokens`, then ``[EOS]``
        when the output ended."""
        return self.tokens + [EOS] * self.finished

    def to_dict(self) -> dict:
        return {"text": self.text, "translation": self.translation, "tokens": self.tokens}


@dataclass(frozen=True)
class BleuResult:
    """Cased corpus BLEU and chrF of a split, with the sacreBLEU signatures that define them."""

    bleu: float
    chrf: float
    n: int  # sentences
    signature: str  # "BLEU: nrefs:1|case:mixed|... chrF: ..."
    hypotheses: list[str]

    def to_dict(self) -> dict:
        return {"bleu": self.bleu, "chrf": self.chrf, "n": self.n, "signature": self.signature}


def load_translator(path: str | os.PathLike, device: str = "cpu") -> LoadedModel:
    """The model and tokenizer of a translation run folder, in eval mode."""
    run = load_model(Path(path), device=device)
    if run.config.get("model_type") != MODEL_TYPE:
        raise ValueError(f"{run.path} holds a {run.config.get('model_type')!r} model, not a "
                         f"translator ({MODEL_TYPE!r})")
    if run.tokenizer is None:
        raise FileNotFoundError(f"{run.path} has no tokenizer.json; cannot turn text into ids")
    return run


@torch.no_grad()
def translate(path_or_run: str | os.PathLike | LoadedModel, texts: Sequence[str], *,
              beam: int = 1, max_length: int | None = None, batch_size: int = 64,
              device: str = "cpu", attention: bool = False) -> list[Translation]:
    """Translate ``texts``: greedy with ``beam=1``, else beam search with ``beam`` hypotheses;
    at most ``max_length`` tokens (default 50 more than the source, within the model's
    ``max_len``). With ``attention=True`` each :class:`Translation` carries the cross-attention
    of its output (of the beam returned)."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, got a single str; wrap it in a list")
    if not isinstance(beam, int) or beam < 1:
        raise ValueError(f"beam must be an integer >= 1, got {beam!r}")
    run = path_or_run if isinstance(path_or_run, LoadedModel) else load_translator(path_or_run,
                                                                                 device)
    tokenizer, model = run.tokenizer, run.model.eval()
    found: list[Translation | None] = [None] * len(texts)
    for rows, input_ids, mask in source_batches(tokenizer, texts, batch_size):
        sources = [ids[:n] for ids, n in zip(input_ids.tolist(), mask.sum(1).tolist(),
                                             strict=True)]
        hyps = _search(model, input_ids.to(device), mask.to(device), beam, max_length, attention)
        for row, source, hyp in zip(rows, sources, hyps, strict=True):
            found[row] = Translation(
                texts[row], tokenizer.decode(hyp.tokens), _pieces(tokenizer, hyp.tokens),
                hyp.tokens, _pieces(tokenizer, source), hyp.finished,
                None if hyp.attention is None else hyp.attention.float().cpu())
    return found  # type: ignore[return-value]


def _search(model, input_ids: Tensor, mask: Tensor, beam: int, max_length: int | None,
            attention: bool) -> list[Hypothesis]:
    """The hypothesis returned for each sentence: greedy with ``beam=1``, else the best beam."""
    if beam == 1:
        return greedy_search(model, input_ids, mask, max_length=max_length, attention=attention)
    return [n[0] for n in beam_search_nbest(model, input_ids, mask, beam=beam,
                                            max_length=max_length, attention=attention)]


def _pieces(tokenizer, ids: list[int]) -> list[str]:
    return [tokenizer.tokenizer.id_to_token(i) for i in ids]


def evaluate_run(path: str | os.PathLike, data: str, split: str, *, source_lang: str,
                 target_lang: str, beam: int = 1, device: str = "cpu") -> BleuResult:
    """Translate ``split`` of ``data`` and score it against its references."""
    run = load_translator(path, device)
    pairs = load_parallel_split(data, split, source_lang=source_lang, target_lang=target_lang)
    hypotheses = [t.translation for t in translate(run, pairs.sources, beam=beam,
                                                   device=device)]
    bleu, chrf = BLEU(), CHRF()
    refs = [pairs.targets]
    bleu_score = bleu.corpus_score(hypotheses, refs).score
    chrf_score = chrf.corpus_score(hypotheses, refs).score
    signature = f"BLEU: {bleu.get_signature()} chrF: {chrf.get_signature()}"
    return BleuResult(bleu_score, chrf_score, len(hypotheses), signature, hypotheses)
