"""One head of a trained model on real tokens, step by step: what ``attnlab explain RUN`` shows.

:func:`explain_head` runs one text through the model under :func:`~attnlab.inspect.capture`
(only the chosen module and head, ``vectors=True``), takes that head's query at one token, its
keys and values, and the mask its scores got, and recomputes the steps in float64 with
:func:`~attnlab.attention.explain_attention`, the library's own formula. The captured weights
come along as the reference the recomputation must match.

Models: an encoder (a classification run, ``all-MiniLM-L6-v2``: self-attention over the
text's tokens) or a translation run (the text is the source sentence, translated greedily
first; then one teacher-forced pass over source and ``[BOS]`` + translation gives encoder
self-attention, decoder causal self-attention or cross-attention).

Legend: ``L`` query tokens, ``S`` key tokens, ``d_k``/``d_v`` query-key and value size per head.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from attnlab.attention import explain_attention
from attnlab.inspect.capture import AttentionCapture, attention_modules, capture
from attnlab.inspect.html import model_name
from attnlab.inspect.subject import Subject, load_subject
from attnlab.io import CheckpointError
from attnlab.io.registry import SEQ2SEQ, LoadedModel, load_model, model_type_of
from attnlab.models.generation import greedy
from attnlab.models.seq2seq import Seq2SeqTransformer

__all__ = ["ATTENTION_KINDS", "HeadChoiceError", "HeadExplanation", "explain_head", "find_token",
           "open_model"]

ATTENTION_KINDS = ("self", "decoder", "cross")
# (stack, attribute of each layer) of a translation model's attention modules, by kind
_SEQ2SEQ_STACKS = {"self": ("encoder", "attn"), "decoder": ("decoder", "self_attn"),
                   "cross": ("decoder", "cross_attn")}
_SUBWORD_MARKS = ("##", "Ġ", "▁")


class HeadChoiceError(ValueError):
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
    translation: str | None  # the greedy translation (translation runs), else None
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
            "translation": self.translation, "tokens": self.tokens,
            "query_tokens": self.query_tokens, "query_index": self.query_index,
            "query_token": self.query_token, "d_k": self.d_k, "d_v": self.values.shape[-1],
            "scale": self.scale, "query": self.query.tolist(), "keys": self.keys.tolist(),
            "values": self.values.tolist(), "scores": self.scores.tolist(),
            "scaled_scores": scaled, "mask": self.mask.tolist(),
            "weights": self.weights.tolist(), "output": self.output.tolist(),
            "contributions": self.contributions.tolist(),
            "captured_weights": self.captured_weights.tolist(),
        }


@dataclass(frozen=True)
class _Pass:
    """One forward pass to capture: the modules of the chosen stack and the tokens each side."""

    model: nn.Module
    name: str  # shown name
    stack: list[str]  # dotted names of the stack's attention modules, in order
    query_tokens: list[str]
    key_tokens: list[str]
    forward: Callable[[], object]
    translation: str | None = None


def open_model(spec: str | os.PathLike) -> Subject | LoadedModel:
    """A translation run as a :class:`~attnlab.io.registry.LoadedModel`, anything else
    (classification run, pretrained name) as a :class:`~attnlab.inspect.subject.Subject`."""
    path = Path(spec)
    if _is_translation_run(path):
        run = load_model(path)
        if run.tokenizer is None:
            raise FileNotFoundError(f"{run.path} has no tokenizer.json; cannot turn text "
                                    f"into ids")
        return run
    return load_subject(spec)


@torch.no_grad()
def explain_head(model: Subject | LoadedModel | str | os.PathLike, text: str, *, layer: int,
                 head: int, token: str | int, attention: str = "self") -> HeadExplanation:
    """Explain what head ``head`` of layer ``layer`` computes for one token of ``text``.

    Args:
        model: a :class:`Subject`, a translation run's :class:`LoadedModel`, or what
            :func:`open_model` opens (a run folder or a pretrained name).
        text: the sentence (for a translation run: the source sentence, translated greedily).
        layer: index of the attention module within the stack ``attention`` names (for an
            encoder: among all its attention modules, in order, i.e. the layer).
        head: head index within that module.
        token: the query token: a token string (see :func:`find_token`) or a position.
        attention: ``"self"`` (encoder self-attention), or for translation runs
            ``"decoder"`` (causal self-attention over the generated tokens) or ``"cross"``
            (generated tokens query the source tokens).

    Returns:
        A :class:`HeadExplanation`.

    Raises:
        HeadChoiceError: (a ``ValueError``) an unknown ``attention``, ``layer``, ``head`` or
            ``token``; the message names the valid choices.

    Example::

        >>> e = explain_head("all-MiniLM-L6-v2", "a gripping film", layer=1, head=2,
        ...                  token="film")
        >>> e.tokens[e.weights.argmax()], e.output.shape
        ('[CLS]', torch.Size([32]))
    """
    if attention not in ATTENTION_KINDS:
        raise HeadChoiceError(f"attention must be one of {', '.join(ATTENTION_KINDS)}, got "
                              f"{attention!r}")
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    opened = open_model(model) if isinstance(model, (str, os.PathLike)) else model
    run = (_translation_pass(opened, text, attention)
           if isinstance(opened.model, Seq2SeqTransformer)
           else _encoder_pass(_as_subject(opened), text, attention))
    if isinstance(model, (str, os.PathLike)):
        run = replace(run, name=model_name(model))  # the run as the user named it
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


def _is_translation_run(path: Path) -> bool:
    try:
        return path.is_dir() and model_type_of(path) == SEQ2SEQ
    except (FileNotFoundError, CheckpointError):
        return False  # not an attnlab run folder: load_subject says what it is


def _as_subject(opened: Subject | LoadedModel) -> Subject:
    if isinstance(opened, Subject):
        return opened
    if opened.tokenizer is None:
        raise FileNotFoundError(f"{opened.path} has no tokenizer.json; cannot turn text into "
                                f"ids")
    return Subject(opened.model, opened.tokenizer, opened.labels, opened.pooling,
                   name=str(opened.path))


def _encoder_pass(subject: Subject, text: str, attention: str) -> _Pass:
    if attention != "self":
        raise HeadChoiceError(f"attention {attention!r} needs a translation run (encoder-decoder); "
                         f"{model_name(subject.name)} has self-attention only: use 'self'")
    enc = subject.encode([text])
    tokens = enc.tokens[0]
    return _Pass(subject.model, model_name(subject.name), list(attention_modules(subject.model)),
                 tokens, tokens, lambda: subject.model(enc.input_ids, enc.attention_mask))


def _translation_pass(run: Subject | LoadedModel, text: str, attention: str) -> _Pass:
    """Translate ``text`` greedily; the pass feeds the source and ``[BOS]`` + the
    translation (teacher forcing), as training does."""
    if not isinstance(run, LoadedModel):
        raise TypeError("a translation model comes as the LoadedModel of its run folder: pass "
                        "the folder, or open_model(folder)")
    model, tokenizer = run.model.eval(), run.tokenizer
    seen = tokenizer.tokenize([text])[0]
    source_ids, source_tokens = seen.ids[1:], seen.tokens[1:]  # pieces + [EOS], no [BOS]
    if len(source_ids) < 2:
        raise ValueError(f"text {text!r} has no tokens")
    input_ids = torch.tensor([source_ids])  # (1, S)
    mask = torch.ones_like(input_ids)  # (1, S)
    generated = greedy(model, input_ids, mask)[0][:model.config.max_len - 1]
    target_ids = [model.config.bos_token_id, *generated]
    target_tokens = [tokenizer.tokenizer.id_to_token(i) for i in target_ids]
    decoder_input_ids = torch.tensor([target_ids])  # (1, T)
    stack, attr = _SEQ2SEQ_STACKS[attention]
    names = {id(m): n for n, m in attention_modules(model).items()}
    modules = [names[id(getattr(layer, attr))] for layer in getattr(model, stack).layers]
    queries = source_tokens if attention == "self" else target_tokens
    keys = target_tokens if attention == "decoder" else source_tokens
    return _Pass(model, model_name(run.path), modules, queries, keys,
                 lambda: model(input_ids, mask, decoder_input_ids),
                 translation=tokenizer.decode(generated))


def _pick_module(run: _Pass, layer: int, attention: str) -> str:
    n = len(run.stack)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n:
        raise HeadChoiceError(f"layer must be an integer in [0, {n}) ({n} layers of "
                         f"{attention!r} attention in {run.name}), got {layer!r}")
    return run.stack[layer]


def _explain(run: _Pass, cap: AttentionCapture, name: str, attention: str, layer: int,
             head: int, i: int, text: str) -> HeadExplanation:
    """The steps of head ``head`` (the only one captured) for query ``i``, in float64."""
    q = cap.queries[name][0, 0, i:i + 1].double()  # (1, d_k)
    k = cap.keys[name][0, 0].double()  # (S, d_k)
    v = cap.values[name][0, 0].double()  # (S, d_v)
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
        translation=run.translation, tokens=list(run.key_tokens),
        query_tokens=list(run.query_tokens), query_index=i, d_k=q.shape[-1],
        scale=steps.scale, query=q[0], keys=k, values=v, scores=steps.scores[0],
        scaled_scores=steps.scaled_scores[0], mask=allowed, weights=steps.weights[0],
        output=steps.output[0], captured_weights=cap.weights[name][0, 0, i].clone())
