"""One head of a trained model on real tokens, step by step: what ``attnlab explain RUN`` shows.

:func:`explain_head` runs one text through the model under :func:`~attnlab.inspect.capture`
(only the chosen module and head, ``vectors=True``), takes that head's query at one token, its
keys and values, and the mask its scores got, and recomputes the steps in float64 with
:func:`~attnlab.attention.explain_attention`, the library's own formula. The captured weights
come along as the reference the recomputation must match.

Models: any :class:`~attnlab.inspect.protocol.Inspectable`. It names its kinds of attention
and gives the pass that shows each (:meth:`~attnlab.inspect.protocol.Inspectable.head_pass`):
an encoder's self-attention over the text's tokens; for a translation run, the source
translated greedily first, then one teacher-forced pass that shows encoder self-attention,
decoder causal self-attention or cross-attention.

Legend: ``L`` query tokens, ``S`` key tokens, ``d_k``/``d_v`` query-key and value size per head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from attnlab.attention import explain_attention
from attnlab.errors import InputError
from attnlab.inspect.capture import AttentionCapture, attention_modules, capture
from attnlab.inspect.html import model_name
from attnlab.inspect.protocol import HeadPass, Inspectable

__all__ = ["HeadChoiceError", "HeadExplanation", "explain_head", "find_token"]

_SUBWORD_MARKS = ("##", "Ġ", "▁")


class HeadChoiceError(InputError):
    """A layer, head, token or attention kind the model does not have; the message starts
    with the argument's name and says what is valid."""


@dataclass(frozen=True)
class HeadExplanation:
    """What one head did for one query token: every step of ``softmax(q·Kᵀ/√d_k + mask) V``.

    Tensors are float64 and one-dimensional over the keys (``(S,)``) unless said otherwise;
    ``weights`` and ``output`` are recomputed, ``captured_weights`` is what the model computed.
    """

    model: str  # the model's shown name (never a whole local path)
    module: str  # dotted name of the attention module
    attention: str  # "self" | "decoder" | "cross"
    layer: int  # index within that stack
    head: int
    text: str
    generated: str | None  # what the model generated before the pass (a translation), or None
    tokens: list[str]  # S key tokens
    query_tokens: list[str]  # L query tokens
    query_index: int  # position of the query token among query_tokens
    d_k: int
    scale: float  # 1/√d_k
    query: Tensor  # (d_k,) q of the query token, rotary applied
    keys: Tensor  # (S, d_k)
    values: Tensor  # (S, d_v)
    scores: Tensor  # q·k, unscaled
    scaled_scores: Tensor  # q·k·scale + mask; -inf where blocked
    mask: Tensor  # long: 1 = may attend, 0 = blocked
    weights: Tensor  # softmax of the scaled scores
    output: Tensor  # (d_v,) Σ weight·v
    captured_weights: Tensor  # the head's weights as the model computed them (float32)

    @property
    def query_token(self) -> str:
        return self.query_tokens[self.query_index]

    @property
    def contributions(self) -> Tensor:
        """``(S,)`` share of each key in the output: ``‖weight·v‖`` over their sum."""
        norms = (self.weights[:, None] * self.values).norm(dim=-1)  # (S, d_v) -> (S,)
        total = norms.sum()
        return norms / total if total > 0 else norms

    def to_dict(self) -> dict:
        """Plain lists and numbers; a blocked key's scaled score is ``None`` (JSON has no
        -inf)."""
        scaled = [None if math.isinf(x) else x for x in self.scaled_scores.tolist()]
        return {
            "model": self.model, "module": self.module, "attention": self.attention,
            "layer": self.layer, "head": self.head, "text": self.text,
            "generated": self.generated, "tokens": self.tokens,
            "query_tokens": self.query_tokens, "query_index": self.query_index,
            "query_token": self.query_token, "d_k": self.d_k, "d_v": self.values.shape[-1],
            "scale": self.scale, "query": self.query.tolist(), "keys": self.keys.tolist(),
            "values": self.values.tolist(), "scores": self.scores.tolist(),
            "scaled_scores": scaled, "mask": self.mask.tolist(),
            "weights": self.weights.tolist(), "output": self.output.tolist(),
            "contributions": self.contributions.tolist(),
            "captured_weights": self.captured_weights.tolist(),
        }


@torch.no_grad()
def explain_head(subject: Inspectable, text: str, *, layer: int, head: int, token: str | int,
                 attention: str = "self") -> HeadExplanation:
    """Explain what head ``head`` of layer ``layer`` computes for one token of ``text``.

    Args:
        subject: the model, e.g. :func:`~attnlab.inspect.subject.load_subject` of a folder or
            a pretrained name (``attnlab.tasks.open_subject`` opens a run of any task).
        text: the sentence (for a translation run: the source sentence, translated greedily).
        layer: index of the attention module within the stack ``attention`` names (for an
            encoder: among all its attention modules, in order, i.e. the layer).
        head: head index within that module.
        token: the query token: a token string (see :func:`find_token`) or a position.
        attention: one of the subject's ``attention_kinds``: ``"self"`` (encoder
            self-attention), or for translation runs ``"decoder"`` (causal self-attention over
            the generated tokens) or ``"cross"`` (generated tokens query the source tokens).

    Returns:
        A :class:`HeadExplanation`.

    Raises:
        HeadChoiceError: (a ``ValueError``) an unknown ``attention``, ``layer``, ``head`` or
            ``token``; the message names the valid choices.

    Example::

        >>> e = explain_head(load_subject("all-MiniLM-L6-v2"), "a gripping film", layer=1,
        ...                  head=2, token="film")
        >>> e.tokens[e.weights.argmax()], e.output.shape
        ('[CLS]', torch.Size([32]))
    """
    kinds = subject.attention_kinds
    if attention not in kinds:
        raise HeadChoiceError(f"attention must be one of {', '.join(kinds)} for "
                              f"{model_name(subject.name)} "
                              f"(its kinds of attention), got {attention!r}")
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    run = subject.head_pass(text, attention)
    name = _pick_module(run, layer, attention)
    module = attention_modules(run.model)[name]
    if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < module.n_heads:
        raise HeadChoiceError(f"head must be an integer in [0, {module.n_heads}) for {name} "
                              f"({module.n_heads} heads), got {head!r}")
    query_index = find_token(run.query_tokens, token)
    run.model.eval()
    with capture(run.model, layers=[name], heads=[head], vectors=True) as cap:
        run.forward()
    return _explain(run, cap, name, attention, layer, head, query_index, text)


def find_token(tokens: list[str], token: str | int) -> int:
    """Position of ``token`` in ``tokens``: the first exact match, else the first match
    ignoring case and subword marks (``##``, ``Ġ``, ``▁``), else, for a string of digits,
    that position; an ``int`` is a position (negative counts from the end).

    Raises:
        HeadChoiceError: no such token or position; the message lists the tokens.
    """
    n = len(tokens)
    if isinstance(token, str):
        if token in tokens:
            return tokens.index(token)
        plain = [_bare(t) for t in tokens]
        if _bare(token) in plain and _bare(token):
            return plain.index(_bare(token))
        if not token.lstrip("-").isdigit():
            raise HeadChoiceError(f"token {token!r} is not among the {n} query tokens {tokens}; "
                             f"give one of them or a position in [0, {n})")
        token = int(token)
    if isinstance(token, bool) or not isinstance(token, int):
        raise TypeError(f"token must be a str or an int, got {type(token).__name__}")
    if not -n <= token < n:
        raise HeadChoiceError(f"token position {token} is out of range: there are {n} query "
                         f"tokens {tokens}, positions [0, {n})")
    return token % n


def _bare(token: str) -> str:
    """``token`` without a leading subword mark, case-folded."""
    for mark in _SUBWORD_MARKS:
        token = token.removeprefix(mark)
    return token.casefold()


def _pick_module(run: HeadPass, layer: int, attention: str) -> str:
    n = len(run.stack)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n:
        raise HeadChoiceError(f"layer must be an integer in [0, {n}) ({n} layers of "
                         f"{attention!r} attention in {run.name}), got {layer!r}")
    return run.stack[layer]


def _explain(run: HeadPass, cap: AttentionCapture, name: str, attention: str, layer: int,
             head: int, i: int, text: str) -> HeadExplanation:
    """The steps of head ``head`` (the only one captured) for query ``i``, in float64."""
    q = cap.queries[name][0, 0, i:i + 1].double()  # (1, d_k)
    row = cap.kv_row(name, head)  # the key/value head it reads (shared, if grouped-query)
    k = cap.keys[name][0, row].double()  # (S, d_k)
    v = cap.values[name][0, row].double()  # (S, d_v)
    mask = cap.masks[name]
    if mask is not None:
        mask = mask[0, 0, i:i + 1]  # (1, S): boolean or additive
        mask = mask.double() if mask.is_floating_point() else mask
    steps = explain_attention(q, k, v, mask)  # default scale 1/√d_k, as the model's
    allowed = torch.ones(k.shape[0], dtype=torch.long) if steps.mask is None else (
        ~torch.isneginf(steps.mask[0]) if steps.mask.is_floating_point()
        else steps.mask[0]).long()  # (S,)
    return HeadExplanation(
        model=run.name, module=name, attention=attention, layer=layer, head=head, text=text,
        generated=run.generated, tokens=list(run.key_tokens),
        query_tokens=list(run.query_tokens), query_index=i, d_k=q.shape[-1],
        scale=steps.scale, query=q[0], keys=k, values=v, scores=steps.scores[0],
        scaled_scores=steps.scaled_scores[0], mask=allowed, weights=steps.weights[0],
        output=steps.output[0], captured_weights=cap.weights[name][0, 0, i].clone())
