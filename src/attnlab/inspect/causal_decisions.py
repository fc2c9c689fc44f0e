"""A decoder-only language model's decision, prepared for attribution (what
:meth:`~attnlab.inspect.causal_subject.CausalSubject.decisions` returns).

One decision per text: the next token after it (the likeliest, or the ``target`` token given).
The row that the attention methods and rollout read is the last token's: the query whose output
predicts that token. Deleting tokens keeps the text's order; the decision is then read at the
last token kept.

Legend: ``N`` rows of a pass, ``L`` tokens, ``V`` vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.errors import InputError
from attnlab.inspect.attribution_subject import EncoderDecisions, input_embeddings
from attnlab.inspect.decisions import Decisions
from attnlab.inspect.html import model_name
from attnlab.inspect.rollout import attention_rollout

__all__ = ["CausalDecisions", "causal_decisions"]


class CausalDecisions(EncoderDecisions):
    """:class:`~attnlab.inspect.decisions.DecisionModel` of a language model on one text (one
    decision: token :attr:`target` after the text)."""

    def __init__(self, model: nn.Module, input_ids: Tensor, embedding: nn.Module,
                 special: list[bool], pad_id: int | None) -> None:
        super().__init__(model, input_ids, embedding, "last", special,
                         0 if pad_id is None else pad_id)
        self.has_pad = pad_id is not None

    def logits(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """``(N, V)``: the next-token scores at each row's last real token (rows are padded on
        the right; a causal model's earlier positions never see the padding)."""
        out = self.module(input_ids, attention_mask)  # (N, L, V)
        last = attention_mask.sum(1) - 1  # (N,)
        return out[torch.arange(len(out)), last]  # (N, V)

    def baseline(self, kind: str) -> Tensor:
        if kind == "pad" and not self.has_pad:
            raise InputError("baseline 'pad' needs a [PAD] token, and this tokenizer has none; "
                             "give baseline 'zero'")
        return super().baseline(kind)

    def pool(self, attention: Tensor, rows: Tensor) -> Tensor:
        """The last token's row ``(N, L)``."""
        return attention[:, -1]

    def relevance(self, layers: list[Tensor], residual: float = 0.5) -> Tensor:
        """The rollout's last row ``(N, L)``: what the next-token prediction drew from."""
        return attention_rollout(layers, residual=residual).joint[:, -1]


def causal_decisions(subject, text: str, *, target: str | int | None = None,
                     reference: str | None = None) -> Decisions:
    """The decision of a language model after ``text``: the next token ``target`` (a token of
    the vocabulary, or its id; ``None``: the likeliest).

    Raises:
        InputError: a reference is given (translation only), the text has no tokens, or
            ``target`` is not in the vocabulary.
    """
    if reference is not None:
        raise InputError(f"reference is for translation runs; {model_name(subject.name)} is a "
                         f"language model (give target=TOKEN instead)")
    enc = subject.encode([text])
    if enc.input_ids.shape[1] == 0 or bool(enc.special_mask[0].all()):
        raise InputError(f"text {text!r} has no tokens")
    model = subject.model.eval() if subject.model.training else subject.model
    embedding = input_embeddings(model, model_name(subject.name))
    special = [bool(s) for s in enc.special_mask[0]]
    engine = CausalDecisions(model, enc.input_ids, embedding, special,
                             subject.tokenizer.pad_token_id)
    with torch.no_grad():
        probs = torch.softmax(engine.logits(enc.input_ids, enc.attention_mask).double(), -1)[0]
    engine.target = _target_id(subject.tokenizer, target, probs)
    token = subject.tokenizer.tokenizer.id_to_token(engine.target)
    return Decisions(tokens=list(enc.tokens[0]), special=special,
                     removable=[not s for s in special], targets=[token],
                     target_ids=[engine.target], probabilities=[float(probs[engine.target])],
                     engine=engine)


def _target_id(tokenizer, target: str | int | None, probs: Tensor) -> int:
    """The id of ``target``: a token of the vocabulary, an id, or ``None`` (the likeliest)."""
    if target is None:
        return int(probs.argmax())
    if isinstance(target, str) and tokenizer.token_to_id(target) is not None:
        return int(tokenizer.token_to_id(target))
    if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < len(probs):
        return target
    raise InputError(f"target must be a token of the vocabulary or an id in [0, {len(probs)}),"
                     f" got {target!r}")
