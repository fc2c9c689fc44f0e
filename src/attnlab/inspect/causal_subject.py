"""A decoder-only language model under inspection (GPT-2, the Llama layout): what it predicts
next after a text, and what every head did on the way.

:class:`CausalSubject` meets :class:`~attnlab.inspect.protocol.Inspectable` as
:class:`~attnlab.inspect.subject.Subject` does for an encoder, with the model's causal mask in
every picture (a query sees only itself and the tokens before it: the upper triangle is 0). The
text is read as the tokenizer's ``tokenizer.json`` makes it (GPT-2 adds nothing; a Llama
tokenizer adds ``<s>``); a long text keeps its first tokens. The rollout relevance is the last
token's row: what the next-token prediction drew from.

Legend: ``B`` batch, ``H`` heads, ``L`` tokens, ``V`` vocabulary.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from attnlab.errors import InputError
from attnlab.inspect.attended import Attended, Encoded
from attnlab.inspect.capture import attention_modules, capture
from attnlab.inspect.causal_decisions import causal_decisions
from attnlab.inspect.decisions import Decisions
from attnlab.inspect.html import AttentionView, attention_payload, model_name, render_page
from attnlab.inspect.protocol import HeadPass, Look
from attnlab.inspect.rollout import attention_rollout
from attnlab.inspect.subject_parts import TextPasses, checked_ids, picture_of, text_vectors
from attnlab.text import TextTokenizer, pad_sequences

__all__ = ["CausalSubject"]

EXAMPLE = "The cat sat on the"  # the sentence the live app opens on
TOP_NEXT = 5  # next tokens listed after each text


class CausalSubject(TextPasses):
    """A language model ``model(input_ids, attention_mask) -> logits (B, L, V)`` and its
    tokenizer (``tokenizer.max_length``: the model's longest input)."""

    task: ClassVar[str] = "language model"  # what pages call it
    labels: ClassVar[None] = None  # no classes: it predicts the next token
    attention_kinds: ClassVar[tuple[str, ...]] = ("self",)  # causal self-attention
    show_options: ClassVar[tuple[str, ...]] = ()
    default_example: ClassVar[str] = EXAMPLE

    def __init__(self, model: nn.Module, tokenizer: TextTokenizer, name: str) -> None:
        if tokenizer.max_length is None:
            raise ValueError("the tokenizer must truncate to the model's longest input")
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name

    @classmethod
    def open(cls, path: str | os.PathLike, config: Any, model: nn.Module) -> CausalSubject:
        """The model of a Hugging Face folder with the folder's ``tokenizer.json``."""
        tokenizer = TextTokenizer.load(Path(path) / "tokenizer.json",
                                       max_length=model.max_positions)
        return cls(model, tokenizer, str(path))

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Tokenize (the tokenizer's own special tokens, if any), keep the first
        ``max_length`` tokens, and pad."""
        if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
            raise InputError("texts must be a non-empty list of strings")
        limit = self.tokenizer.max_length
        rows = self.tokenizer.tokenizer.encode_batch(list(texts))
        for i, row in enumerate(rows):
            if all(row.special_tokens_mask):
                raise InputError(f"text {i} ({texts[i]!r}) has no tokens")
        batch = self.tokenizer.pad([r.ids[:limit] for r in rows])  # (B, L) each
        return Encoded(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask,
            special_mask=pad_sequences([r.special_tokens_mask[:limit] for r in rows], 0)[0],
            tokens=[r.tokens[:limit] for r in rows], truncated=[len(r.ids) > limit for r in rows])

    @torch.no_grad()
    def attend(self, texts: Sequence[str], *, vectors: bool = False
               ) -> tuple[list[Attended], list[Tensor]]:
        """Run ``texts`` (one batch): what every head did on each, and each text's
        next-token probabilities ``(V,)`` after its last token."""
        enc = self.encode(texts)
        with capture(self.model, tokens=enc.tokens, vectors=vectors) as cap:
            logits = self.model(enc.input_ids, enc.attention_mask)  # (B, L, V)
        names = [n for n in cap.names if n in cap.weights]
        layers = [cap.weights[n] for n in names]  # (B, H, L, L)
        joint = attention_rollout(layers, enc.attention_mask).joint  # (B, L, L)
        attended, nexts = [], []
        for b, text in enumerate(texts):
            n = len(enc.tokens[b])
            attended.append(Attended(
                text=text, tokens=enc.tokens[b], special=enc.special_mask[b, :n].tolist(),
                layer_names=list(names), weights=[w[b, :, :n, :n].clone() for w in layers],
                relevance=joint[b, n - 1, :n].clone(), prediction=None,
                truncated=enc.truncated[b],
                **(text_vectors(cap, names, b, n) if vectors else {})))
            nexts.append(torch.softmax(logits[b, n - 1].float(), dim=-1))  # (V,)
        return attended, nexts

    def next_tokens(self, probs: Tensor, k: int = TOP_NEXT) -> str:
        """The ``k`` likeliest next tokens as ``token p`` pairs."""
        top = torch.topk(probs, min(k, probs.numel()))
        return ", ".join(f"{self.tokenizer.tokenizer.id_to_token(int(i))!r} {float(p):.3f}"
                         for p, i in zip(top.values, top.indices, strict=True))

    def look(self, texts: Sequence[str]) -> Look:
        """Each text's likeliest next tokens and rollout (from the last token) as lines;
        pictures of the first text and the explorer page of all of them."""
        attended, nexts = self.attend(texts, vectors=True)
        warnings = [f"text {i} was cut to {self.tokenizer.max_length} tokens (the model's "
                    f"longest input)" for i, a in enumerate(attended) if a.truncated]
        lines = []
        for a, probs in zip(attended, nexts, strict=True):
            lines += [a.text, f"  next: {self.next_tokens(probs)}",
                      "  rollout: " + " ".join(f"{t}:{float(r):.2f}"
                                               for t, r in zip(a.tokens, a.relevance, strict=True))]
        first = attended[0]

        def picture(layer: int | None, head: int | None):
            return picture_of(first, layer, head, name=self.name,
                              rollout_title="attention rollout (from the last token)")

        def view() -> AttentionView:
            return AttentionView(render_page("view.html", self._payload(attended, nexts)))

        return Look(lines, warnings, len(first.weights), first.weights[0].shape[0], picture,
                    view)

    def ids_pass(self, ids: Sequence[int], attention: str) -> HeadPass:
        """One pass on ``ids`` as they are (no token added): they start at position 0."""
        ids = checked_ids(ids, self.tokenizer)
        if len(ids) > self.tokenizer.max_length:
            raise InputError(f"ids must fit the model's longest input "
                             f"({self.tokenizer.max_length} tokens), got {len(ids)} ids")
        input_ids = torch.tensor([ids])  # (1, L)
        tokens = [self.tokenizer.tokenizer.id_to_token(i) for i in ids]
        return HeadPass(self.model, model_name(self.name), list(attention_modules(self.model)),
                        tokens, tokens, lambda: self.model(input_ids, torch.ones_like(input_ids)))

    def payload(self, text: str) -> dict:
        """The live app's data for ``text``: rollout, every head, the vectors."""
        return self._payload(*self.attend([text], vectors=True))

    def decisions(self, text: str, *, target: str | int | None = None,
                  reference: str | None = None) -> Decisions:
        """The next token after ``text`` (``target``: a token or id; ``None``: the likeliest),
        prepared for :func:`~attnlab.inspect.attribute`."""
        return causal_decisions(self, text, target=target, reference=reference)

    def _payload(self, attended: list[Attended], nexts: list[Tensor]) -> dict:
        notes = [f"Next token: {self.next_tokens(p)}. The rollout reads the last token's row "
                 f"(what the next-token prediction drew from)." for p in nexts]
        return attention_payload(self.name, attended, None, notes=notes)
