"""What mattered to a decision, for the terminal and the pages: the attributions of several
methods (:func:`~attnlab.inspect.attribution.attribute`) as a line of top tokens per method
(``attnlab show``) and as the data of the page's "what mattered" row (``view.js``,
``mattered.js``), with the run's faithfulness report beside them when one exists.

The faithfulness report is the one ``attnlab faithfulness`` writes into the run folder,
``RUN/faithfulness/faithfulness.json`` (``{"methods": {NAME: {"comprehensiveness": x,
"sufficiency": y, ...}}, "split": ..., "n": ...}``); a missing or malformed file means no
figures, never an error: the row then says nothing about faithfulness.

Legend: ``D`` decisions (one for a classifier, one per generated token for a translation),
``L`` tokens attributed, ``S`` source tokens.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from attnlab.errors import InputError
from attnlab.inspect.attribution import METHODS, Attribution, attribute

__all__ = ["DEFAULT_METHOD", "FAITHFULNESS_FILE", "MAX_QUADRATIC_TOKENS", "QUADRATIC",
           "SHOWN_METHODS", "Mattered", "format_top", "format_tops", "mattered_block",
           "read_faithfulness", "top_tokens", "what_mattered"]

SHOWN_METHODS = tuple(m for m in METHODS if m != "random")  # random is a floor, not a view
DEFAULT_METHOD = "integrated_gradients"  # the method the page opens on, where computed
QUADRATIC = ("value_zeroing", "leave_one_out")  # a pass per token (and layer): cost ~ tokens²
MAX_QUADRATIC_TOKENS = 64  # longest input the QUADRATIC methods run on in show, pages, the app
_LONG = (f"the input has over {MAX_QUADRATIC_TOKENS} tokens; this method runs a pass per token, "
         f"so show and the views run it on shorter inputs only")
TOP = 3  # tokens per method in `show`'s lines
FAITHFULNESS_FILE = Path("faithfulness") / "faithfulness.json"  # inside a run folder
_FIGURES = 6  # significant digits of a score in the page's data


def top_tokens(attribution: Attribution, row: int = 0, k: int = TOP, *,
               stop: int | None = None) -> list[tuple[str, float]]:
    """The ``k`` tokens of highest score for decision ``row``, special tokens left out (they
    are never ranked), among the first ``stop`` tokens (default all; a translation's source:
    ``attribution.source_length``). Highest first; ties keep the sentence order."""
    scores = attribution.scores[row].tolist()  # (L,)
    stop = len(scores) if stop is None else stop
    ranked = sorted((i for i in range(stop) if not attribution.special[i]),
                    key=lambda i: -scores[i])
    return [(attribution.tokens[i], scores[i]) for i in ranked[:k]]


def format_top(pairs: Sequence[tuple[str, float]]) -> str:
    """``film 0.410 · gripping 0.300 · funny 0.120`` (three significant figures)."""
    return " \u00b7 ".join(f"{token} {score:#.3g}" for token, score in pairs) or "(no tokens)"


def format_tops(attribution: Attribution) -> str:
    """One line of an attribution's top tokens: for one decision (a label) its top tokens; for
    several (a translation), each generated token's top source token
    (``dog←Hund · runs←rennt``)."""
    a = attribution
    if a.source_length is None:
        return format_top(top_tokens(a))
    best = [top_tokens(a, d, 1, stop=a.source_length) for d in range(len(a.targets))]
    return " \u00b7 ".join(f"{target}\u2190{top[0][0] if top else '?'}"
                           for target, top in zip(a.targets, best, strict=True))


@dataclass(frozen=True)
class Mattered:
    """Several methods' attributions of the same texts: ``by_method[m][i]`` is method ``m``'s
    :class:`~attnlab.inspect.attribution.Attribution` of text ``i``, or ``None`` where the
    method was left out for that text (a quadratic one on a long input)."""

    by_method: dict[str, list[Attribution | None]]

    def of(self, i: int) -> dict[str, Attribution]:
        """Text ``i``'s attributions, by method."""
        return {m: atts[i] for m, atts in self.by_method.items() if atts[i] is not None}

    def left_out(self, i: int) -> list[str]:
        """The methods left out for text ``i``."""
        return [m for m, atts in self.by_method.items() if atts[i] is None]

    def lines(self, i: int) -> list[str]:
        """``show``'s lines for text ``i``: per method, its top tokens (:func:`format_tops`)."""
        return [f"  what mattered ({m}): " + (format_tops(atts[i]) if atts[i] is not None
                                              else f"left out ({_LONG})")
                for m, atts in self.by_method.items()]

    def blocks(self, n: int, cross: Sequence[Tensor | None] | None = None,
               decision_kinds: Sequence[str] = ()) -> list[dict | None]:
        """The page's ``"mattered"`` entry of each of ``n`` texts (``None`` where no method
        ran); ``cross[i]``: text ``i``'s cross-attention rows ``(D', S)`` to show beside a
        translation's attributions; ``decision_kinds``: the attention kinds whose query row
        ``d`` is decision ``d`` (a click there picks it)."""
        return [mattered_block(self.of(i), None if cross is None else cross[i], decision_kinds,
                               self.left_out(i)) if self.of(i) else None for i in range(n)]


def what_mattered(subject, texts: Sequence[str], *, methods: Sequence[str] = SHOWN_METHODS,
                  references: Sequence[str] | None = None, known: Mattered | None = None
                  ) -> Mattered:
    """Each of ``methods``' attributions of ``texts`` (the predicted label, or the model's own
    translation — or ``references``, decoded by force), at each method's defaults; those in
    ``known`` (of the same texts) are taken from it. Each text's decisions are prepared once
    for all the methods; the :data:`QUADRATIC` ones run on inputs of up to
    :data:`MAX_QUADRATIC_TOKENS` tokens only. A subject with nothing to explain (no
    ``decisions``, or an :class:`~attnlab.errors.InputError` from them: a sentence encoder)
    gives no attributions; a method it cannot be explained by (an ``InputError`` from
    :func:`~attnlab.inspect.attribution.attribute`) is left out."""
    texts = list(texts)
    known = known.by_method if known is not None else {}
    prepared = _decisions(subject, texts, references) if set(methods) - set(known) else []
    if prepared is None:
        return Mattered({})
    by_method = {}
    for method in methods:
        if method in known:
            by_method[method] = known[method]
            continue
        kept = [i for i, d in enumerate(prepared)
                if method not in QUADRATIC or len(d.tokens) <= MAX_QUADRATIC_TOKENS]
        try:
            found = attribute(subject, [prepared[i] for i in kept], method=method) if kept else []
        except InputError:
            continue
        by_method[method] = [None] * len(texts)
        for i, a in zip(kept, found, strict=True):
            by_method[method][i] = a
    return Mattered(by_method)


def _decisions(subject, texts: list[str], references: Sequence[str] | None) -> list | None:
    """Each text's decisions, or ``None`` if the subject has none to explain."""
    decide = getattr(subject, "decisions", None)
    if decide is None:
        return None
    references = [None] * len(texts) if references is None else list(references)
    try:
        return [decide(text, reference=reference)
                for text, reference in zip(texts, references, strict=True)]
    except InputError:
        return None


def _number(x: float) -> float:
    """``x`` to :data:`_FIGURES` significant digits (JSON stays small, no NaN passes)."""
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"an attribution score is {x}; the page shows finite numbers only")
    return float(f"{x:.{_FIGURES}g}")


def mattered_block(attributions: Mapping[str, Attribution], cross: Tensor | None = None,
                   decision_kinds: Sequence[str] = (), left_out: Sequence[str] = ()) -> dict:
    """One text's ``"mattered"`` entry of the page (see ``mattered.js``): its tokens, the
    decisions' targets, and per method every decision's scores, probability and completeness
    gap; ``cross``: the cross-attention rows ``(D', S)`` shown beside a translation's
    attributions (row ``d`` for decision ``d``); ``decision_kinds``: the attention kinds whose
    query row ``d`` is decision ``d``; ``left_out``: the methods left out (a note says why)."""
    first = next(iter(attributions.values()))
    names = list(attributions)
    default = DEFAULT_METHOD if DEFAULT_METHOD in names else names[0]
    return {
        "tokens": list(first.tokens),
        "special": [bool(s) for s in first.special],
        "source_length": first.source_length,
        "targets": list(first.targets),
        "decision_kinds": list(decision_kinds),
        "method": default,
        "methods": [{
            "name": name,
            "scores": [[_number(x) for x in row] for row in a.scores.tolist()],  # (D, L)
            "probabilities": [_number(p) for p in a.probabilities],  # (D,)
            "gap": (None if a.completeness_gap is None
                    else [_number(g) for g in a.completeness_gap]),  # (D,)
            "details": {str(k): v for k, v in a.details.items()
                        if isinstance(v, (str, int, float, bool))},
        } for name, a in attributions.items()],
        "cross": (None if cross is None
                  else [[_number(x) for x in row] for row in cross.tolist()]),  # (D', S)
        "note": (f"Left out: {', '.join(m.replace('_', ' ') for m in left_out)} ({_LONG})."
                 if left_out else None),
    }


def read_faithfulness(folder: str | os.PathLike | None) -> dict | None:
    """The faithfulness figures of the run in ``folder`` (``best/`` or ``last/`` of a run: the
    run's), as ``{"split", "n", "data", "methods": {NAME: {figure: number}}}`` with only the
    finite numbers kept; ``None`` when there is no report or it cannot be read as one."""
    if folder is None:
        return None
    folder = Path(folder)
    candidates = [folder / FAITHFULNESS_FILE]
    if folder.name in ("best", "last"):
        candidates.append(folder.parent / FAITHFULNESS_FILE)
    for path in candidates:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            continue
        report = _figures(data)
        if report is not None:
            return report
    return None


def _finite(v: object) -> bool:
    """Whether ``v`` is a number (not a bool) that a float holds finitely."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:  # an integer of hundreds of digits
        return False


def _figures(data: object) -> dict | None:
    """The report's figures, or ``None`` if ``data`` is not a faithfulness report."""
    if not isinstance(data, dict) or not isinstance(data.get("methods"), dict):
        return None
    methods = {}
    for name, figures in data["methods"].items():
        if not isinstance(figures, dict):
            continue
        kept = {str(k): float(v) for k, v in figures.items() if _finite(v)}
        if kept:
            methods[str(name)] = kept
    if not methods:
        return None
    split, n, source = data.get("split"), data.get("n"), data.get("data")
    return {"split": split if isinstance(split, str) else None,
            "n": n if isinstance(n, int) and not isinstance(n, bool) else None,
            # the data set's name, never a whole local path
            "data": Path(source).name or None if isinstance(source, str) else None,
            "methods": methods}
