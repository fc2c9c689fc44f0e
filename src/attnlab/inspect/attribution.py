"""Which input tokens a decision depends on: one API over every method and every task.

:func:`attribute` asks the subject for its :class:`Decisions` on each input (``subject.decisions
(text, target=..., reference=...)``: an encoder's :class:`~attnlab.inspect.Subject`, a
translator's own subject) and scores every token for every decision with one of
:data:`METHODS` (one row per decision: one for a classifier, one per target token for a
translation, over the source and the target prefix, as inseq does). The score the gradient
methods attribute, ``f``, is the log-probability of the decision's target.

Methods (the definitions, as :mod:`attnlab.inspect.attribution_methods` computes them):

* ``attention``: the pooled query's attention averaged over heads in the last layer (``layer``
  picks another); ``rollout``: attention rollout (Abnar & Zuidema, 2020); ``attention_grad``:
  the attention weights times the gradient of ``f`` with respect to them, averaged over heads;
* ``value_zeroing``: Mohebbi et al. (2023), rolled out over the layers;
* ``saliency``: the L2 norm of ``∂f/∂e`` for each token's word vector ``e``; ``grad_input``:
  ``∂f/∂e · e``; ``integrated_gradients``: Sundararajan et al. (2017) on the word vectors, as
  captum's ``LayerIntegratedGradients`` on the embedding layer, with the completeness gap;
* ``leave_one_out``: the drop in the target's probability when one token is deleted;
* ``random``: uniform scores in ``[0, 1)``, seeded: the floor every method must beat.

Legend: ``D`` decisions, ``L`` tokens.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from attnlab.errors import InputError
from attnlab.inspect import attribution_methods as methods
from attnlab.inspect.decisions import BASELINES, Decisions

__all__ = ["BASELINES", "LAYERED", "METHODS", "Attribution", "Decisions", "attribute",
           "attribute_decisions"]

METHODS: tuple[str, ...] = ("attention", "rollout", "attention_grad", "value_zeroing",
                            "saliency", "grad_input", "integrated_gradients",
                            "leave_one_out", "random")
LAYERED = ("attention", "attention_grad")  # the methods that read one layer (``layer=``)


@dataclass(frozen=True)
class Attribution:
    """One input's attributions by one method: one row per decision explained."""

    tokens: list[str]  # the tokens attributed (classifier: the input's, specials included;
    #                    translation: the source's, then the target prefix's)
    special: list[bool]  # per token: never removed by a perturbation, never ranked
    removable: list[bool]  # per token: what faithfulness may remove
    targets: list[str]  # per decision: the label explained, or the target token
    scores: Tensor  # (D, L) float: row d = decision d's score for every token
    method: str
    probabilities: list[float]  # per decision: the model's probability of the target
    completeness_gap: list[float] | None = None  # integrated gradients, per decision:
    #                                              Σ scores − (f(x) − f(baseline))
    details: dict = field(default_factory=dict)  # e.g. {"baseline": "pad", "steps": 50}
    source_length: int | None = None  # translation: tokens[:source_length] are the source

    def to_dict(self) -> dict:
        """JSON-ready. A classifier's one decision as flat fields (``scores`` one per token,
        ``target``, ``probability``); a translation's decisions as rows (``scores`` one row per
        target, ``targets``, ``probabilities``, ``source_length``)."""
        out = {"tokens": list(self.tokens), "method": self.method,
               "special": list(self.special), "removable": list(self.removable)}
        rows = self.scores.tolist()
        if self.source_length is None and len(self.targets) == 1:
            out.update(scores=rows[0], target=self.targets[0],
                       probability=self.probabilities[0])
            if self.completeness_gap is not None:
                out["completeness_gap"] = self.completeness_gap[0]
        else:
            out.update(scores=rows, targets=list(self.targets),
                       probabilities=list(self.probabilities), source_length=self.source_length)
            if self.completeness_gap is not None:
                out["completeness_gap"] = list(self.completeness_gap)
        out["details"] = dict(self.details)
        return out


def attribute(subject, inputs: str | Decisions | Sequence[str | Decisions], *,
              method: str = "integrated_gradients", target: str | int | None = None,
              references: Sequence[str] | None = None, steps: int = 50, baseline: str = "pad",
              layer: int | None = None, seed: int = 0) -> list[Attribution]:
    """Attribute each input's decisions to its tokens.

    Args:
        subject: a model with ``decisions(text, *, target=None, reference=None)`` (an encoder
            :class:`~attnlab.inspect.Subject` with a classification head, a translation run's
            subject).
        inputs: one text or several; a :class:`Decisions` already made by ``subject`` may stand
            for a text (faithfulness reuses it).
        method: one of :data:`METHODS`.
        target: a classifier's label, by name or index; ``None``: the predicted label.
        references: translation: one reference per input, decoded by force; ``None``: the
            model's greedy translation.
        steps: integrated gradients: points on the path (Gauss-Legendre nodes, captum's
            default), evaluated in one batch.
        baseline: integrated gradients: ``"pad"`` (each non-special token's word vector
            replaced by ``[PAD]``'s) or ``"zero"`` (by zeros); special tokens keep theirs.
        layer: ``attention``/``attention_grad``: which attention layer (negative counts from
            the end); ``None``: the last.
        seed: ``random``: the seed (with the input's tokens, so an input gets the same scores
            alone or among others).

    Returns:
        One :class:`Attribution` per input, in order.

    Raises:
        InputError: an unknown method, a bad target, steps, baseline or layer, references that
            do not match the inputs, or a subject with nothing to attribute (no classification
            head); the message names the argument, what was expected and what was given.
    """
    items = [inputs] if isinstance(inputs, (str, Decisions)) else list(inputs)
    if not items:
        raise InputError("inputs must hold at least one text")
    if references is not None:
        if isinstance(references, str) or len(references) != len(items):
            got = "a str" if isinstance(references, str) else f"{len(references)}"
            raise InputError(f"references must be a list of one reference per input "
                             f"({len(items)}), got {got}")
    check_options(method, steps, baseline, layer, seed)
    decide = getattr(subject, "decisions", None)
    if decide is None and not all(isinstance(x, Decisions) for x in items):
        raise InputError(f"{getattr(subject, 'name', type(subject).__name__)} cannot be "
                         f"attributed: it has no decisions(text) to explain")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, (str, Decisions)):
            raise InputError(f"inputs must be texts (str), got {type(item).__name__} at {i}")
        reference = None if references is None else references[i]
        decisions = item if isinstance(item, Decisions) else decide(item, target=target,
                                                                    reference=reference)
        out.append(attribute_decisions(decisions, method=method, steps=steps,
                                       baseline=baseline, layer=layer, seed=seed))
    return out


def attribute_decisions(decisions: Decisions, *, method: str = "integrated_gradients",
                        steps: int = 50, baseline: str = "pad", layer: int | None = None,
                        seed: int = 0) -> Attribution:
    """:func:`attribute` for one input already prepared (``subject.decisions(text)``)."""
    check_options(method, steps, baseline, layer, seed)
    gap, details = None, {}
    if method in LAYERED:
        n = len(decisions.engine.attention_layers)
        index = n - 1 if layer is None else layer
        if not -n <= index < n:
            raise InputError(f"layer must be in [{-n}, {n}) ({n} attention layers explain "
                             f"these decisions), got {layer}")
        details["layer"] = index % n
        fn = methods.attention if method == "attention" else methods.attention_grad
        scores = fn(decisions, index % n)
    elif method == "integrated_gradients":
        scores, gap = methods.integrated_gradients(decisions, steps, baseline)
        details.update(baseline=baseline, steps=steps, integration="gauss-legendre")
    elif method == "random":
        scores = methods.random_scores(decisions, _random_seed(seed, decisions.tokens))
        details["seed"] = seed
    else:
        scores = getattr(methods, method)(decisions)
        if method == "leave_one_out":
            details["removal"] = "deletion"
    scores = scores.detach().float().cpu()  # (D, L)
    if not bool(torch.isfinite(scores).all()):
        raise FloatingPointError(f"{method} gave non-finite scores for {decisions.tokens}")
    return Attribution(
        tokens=list(decisions.tokens), special=list(decisions.special),
        removable=list(decisions.removable), targets=list(decisions.targets), scores=scores,
        method=method, probabilities=list(decisions.probabilities),
        completeness_gap=None if gap is None else [float(g) for g in gap],
        details=details, source_length=decisions.source_length)


def check_options(method: str, steps: int, baseline: str, layer: int | None, seed: int) -> None:
    """Raise :class:`InputError` for an unknown method or a bad steps, baseline, layer or
    seed (``layer`` only with :data:`LAYERED` methods)."""
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be an integer >= 1, got {steps!r}")
    if baseline not in BASELINES:
        raise InputError(f"baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
    if layer is not None:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise InputError(f"layer must be an integer or None, got {layer!r}")
        if method not in LAYERED:
            raise InputError(f"layer applies to the methods {', '.join(LAYERED)} only, got "
                             f"layer={layer} with method {method!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"seed must be an integer, got {seed!r}")


def _random_seed(seed: int, tokens: Sequence[str]) -> int:
    """A generator seed from ``seed`` and the input's tokens."""
    crc = zlib.crc32("\x1f".join(tokens).encode("utf-8"))
    return (seed * 4_294_967_311 + crc) % 2 ** 63

