"""What the inspection tools need of a model: the :class:`Inspectable` protocol.

``attnlab show``, ``explain``, ``serve`` and the views work on any object that meets it. An
encoder (a classifier, a sentence encoder) meets it through
:class:`~attnlab.inspect.subject.Subject`; a task whose model is built otherwise (a translator
that generates before its attention can be seen) provides its own. The tools never ask which
kind of model they hold: they ask the subject.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import nn

from attnlab.inspect.decisions import Decisions

__all__ = ["HeadPass", "Inspectable", "Look"]


@dataclass(frozen=True)
class HeadPass:
    """One forward pass to capture for one kind of attention, and the tokens on each side:
    what the neuron view needs to redo one head's arithmetic."""

    model: nn.Module
    name: str  # the model as shown
    stack: list[str]  # dotted names of this kind's attention modules, layer by layer
    query_tokens: list[str]
    key_tokens: list[str]
    forward: Callable[[], object]  # runs the pass (under capture)
    generated: str | None = None  # the text the model generated first, if any (a translation)
    # with ids_pass: where the given ids start among the query tokens and among the key tokens
    offsets: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Look:
    """What ``attnlab show`` prints, draws and pages for some texts, computed once."""

    lines: list[str]  # the terminal's description of every text
    warnings: list[str]  # said on stderr (a text cut to the model's longest input, ...)
    n_layers: int  # layers that --layer may name
    n_heads: int  # heads that --head may name (of the first layer drawn)
    picture: Callable[[int | None, int | None], Any]  # (layer, head) -> matplotlib Figure
    view: Callable[[], Any]  # -> AttentionView: the HTML explorer of all the texts


@runtime_checkable
class Inspectable(Protocol):
    """A model seen by the inspection tools."""

    name: str  # the model as shown in pictures and pages
    task: str  # what the page calls it: "classification", "translation", ...
    labels: list[str] | None  # class names, or None without a classification head
    attention_kinds: tuple[str, ...]  # e.g. ("self",) or ("self", "decoder", "cross")
    show_options: tuple[str, ...]  # options of `show` it takes beyond the common ones
    default_example: str  # the sentence the live app opens on

    def look(self, texts: Sequence[str], **options: Any) -> Look:
        """Run ``texts`` and describe, draw and page what every head did."""

    def head_pass(self, text: str, attention: str) -> HeadPass:
        """The pass that shows one kind of attention (one of :attr:`attention_kinds`)."""

    def ordinary_ids(self) -> list[int]:
        """The token ids a probe may draw: the vocabulary less special tokens (the random
        repeated sequences of :func:`~attnlab.inspect.roles_probe.head_roles`)."""

    def ids_pass(self, ids: Sequence[int], attention: str) -> HeadPass:
        """A pass on token ``ids`` (no text, no generation), wrapped as the model's inputs are
        (``[CLS] ids [SEP]``, ``[BOS] ids``, ...); :attr:`HeadPass.offsets` says where ``ids``
        start among the query and the key tokens."""

    def payload(self, text: str) -> dict:
        """The live app's data for one sentence (see ``view.js``)."""

    def decisions(self, text: str, *, target: str | int | None = None,
                  reference: str | None = None) -> Decisions:
        """``text`` prepared for :func:`~attnlab.inspect.attribution.attribute`: the decisions
        to explain (a label, or each target token of ``reference`` or of the model's own
        output) and what the methods ask of the model. Raises ``InputError`` where the model
        makes no decision (a sentence encoder)."""
