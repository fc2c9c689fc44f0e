"""An encoder classifier's decisions, prepared for attribution (what
:meth:`~attnlab.inspect.Subject.decisions` returns).

One decision per text: the target class. The pooled row that attention methods read is the
``[CLS]`` row for ``cls`` pooling and the mean of the rows for ``mean`` pooling, as rollout
reads it. Word vectors are the output of ``model.get_input_embeddings()``, replaced through a
forward hook, so any encoder classifier that names its word embedding that way works.

Legend: ``N`` rows of a pass, ``L`` tokens, ``E`` word-vector width, ``C`` classes, ``Q``/``K``
query/key positions (both ``L`` here).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from attnlab.errors import InputError
from attnlab.inspect.capture import attention_modules
from attnlab.inspect.decisions import TOKENS_PER_PASS, Decisions, delete_tokens
from attnlab.inspect.html import model_name
from attnlab.inspect.rollout import attention_rollout
from attnlab.inspect.value_zeroing import normalise_rows, recording, zeroing_distances

__all__ = ["EncoderDecisions", "encoder_decisions", "input_embeddings", "replaced_output",
           "resolve_target"]



def encoder_decisions(subject, text: str, *, target: str | int | None = None,
                      reference: str | None = None) -> Decisions:
    """The decision of an encoder classifier on ``text``: its ``target`` class (a label name
    or index; ``None``: the predicted one).

    Raises:
        InputError: the subject has no classification head (a sentence encoder: nothing to
            attribute), a reference is given (translation only), the text has no tokens, or
            ``target`` is not one of its labels.
    """
    if subject.labels is None:
        raise InputError(f"{model_name(subject.name)} has no classification head (a sentence "
                         f"encoder): it makes no decision, so there is nothing to attribute; "
                         f"fine-tune it on labelled data first")
    if reference is not None:
        raise InputError(f"reference is for translation runs; {model_name(subject.name)} is a "
                         f"classifier (give target=LABEL instead)")
    enc = subject.encode([text])
    if bool(enc.special_mask[0].all()):
        raise InputError(f"text {text!r} has no tokens")
    model = subject.model.eval() if subject.model.training else subject.model
    embedding = input_embeddings(model, model_name(subject.name))
    engine = EncoderDecisions(model, enc.input_ids, embedding, subject.pooling,
                              [bool(s) for s in enc.special_mask[0]],
                              subject.tokenizer.pad_token_id)
    with torch.no_grad():
        probs = torch.softmax(engine.logits(enc.input_ids, enc.attention_mask).double(), -1)[0]
    engine.target = resolve_target(target, subject.labels, probs)
    special = engine.special
    return Decisions(tokens=list(enc.tokens[0]), special=special,
                     removable=[not s for s in special], targets=[subject.labels[engine.target]],
                     target_ids=[engine.target], probabilities=[float(probs[engine.target])],
                     engine=engine)


def resolve_target(target: str | int | None, labels: list[str], probs: Tensor) -> int:
    """The class index of ``target``: a label name, an index (also as a string of digits), or
    ``None`` for the predicted class."""
    if target is None:
        return int(probs.argmax())
    if isinstance(target, str) and target in labels:
        return labels.index(target)
    index = int(target) if isinstance(target, str) and target.isdigit() else target
    if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(labels):
        return index
    raise InputError(f"target must be one of the labels {labels} or an index in "
                     f"[0, {len(labels)}), got {target!r}")


def input_embeddings(model: nn.Module, name: str) -> nn.Module:
    """``model.get_input_embeddings()``: the module whose output are the word vectors."""
    get = getattr(model, "get_input_embeddings", None)
    if get is None:
        raise InputError(f"{name}: the model has no get_input_embeddings(); its word vectors "
                         f"cannot be attributed")
    return get()


@contextmanager
def replaced_output(module: nn.Module, output: Tensor) -> Iterator[None]:
    """Within the block, ``module``'s output is ``output`` (same shape; gradients flow to it)."""
    def hook(mod, args, out):
        if out.shape != output.shape:
            raise ValueError(f"replacement {tuple(output.shape)} does not match the output "
                             f"{tuple(out.shape)} of {type(mod).__name__}")
        return output

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class EncoderDecisions:
    """:class:`~attnlab.inspect.decisions.DecisionModel` of an encoder classifier on one text
    (one decision: class :attr:`target`)."""

    def __init__(self, model: nn.Module, input_ids: Tensor, embedding: nn.Module,
                 pooling: str, special: list[bool], pad_id: int) -> None:
        self.module, self.input_ids, self.embedding = model, input_ids, embedding  # (1, L)
        self.pooling, self.special, self.pad_id = pooling, special, pad_id
        self.attention_layers = list(attention_modules(model))
        self.target = 0  # set once the probabilities are known

    def logits(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """``(N, C)`` class scores."""
        out = self.module(input_ids, attention_mask)
        return getattr(out, "logits", out)

    def vectors(self) -> Tensor:
        with torch.no_grad():
            return self.embedding(self.input_ids)[0].detach()  # (L, E)

    def baseline(self, kind: str) -> Tensor:
        x = self.vectors()  # (L, E)
        if kind == "pad":
            with torch.no_grad():
                fill = self.embedding(torch.tensor([self.pad_id]))[0]  # (E,)
        else:
            fill = torch.zeros_like(x[0])
        special = torch.tensor(self.special)[:, None]  # (L, 1)
        return torch.where(special, x, fill.to(x.dtype).expand_as(x))  # (L, E)

    def log_probs(self, vectors: Tensor, rows: Tensor) -> Tensor:
        N, L = vectors.shape[:2]
        ids = self.input_ids.expand(N, L)  # (N, L)
        with replaced_output(self.embedding, vectors):
            logits = self.logits(ids, torch.ones_like(ids))  # (N, C)
        return torch.log_softmax(logits, -1)[:, self.target]  # (N,)

    def pool(self, attention: Tensor, rows: Tensor) -> Tensor:
        """The ``[CLS]`` row (``cls`` pooling) or the mean of the rows (``mean``)."""
        return attention[:, 0] if self.pooling == "cls" else attention.mean(1)  # (N, L)

    def rollout(self, weights: dict[str, Tensor], rows: Tensor) -> Tensor:
        layers = [weights[n] for n in self.attention_layers]  # (N, H, L, L) each
        return self.relevance(layers)  # (N, L)

    def relevance(self, layers: list[Tensor], residual: float = 0.5) -> Tensor:
        """The rollout of ``layers`` ``(N, H, L, L)`` read at the pooled row ``(N, L)``."""
        return attention_rollout(layers, pooling=self.pooling, residual=residual).relevance

    def value_zeroing(self) -> Tensor:
        """Per layer, the zeroing distances with rows normalised, rolled out; pooled row."""
        modules = attention_modules(self.module)
        layers = [self.module.get_submodule(n.rpartition(".")[0]) for n in self.attention_layers]
        with torch.no_grad(), recording(layers) as calls:
            self.log_probs(self.vectors()[None], torch.zeros(1, dtype=torch.long))
        L = self.input_ids.shape[1]
        mixing = [normalise_rows(zeroing_distances(layer, call, modules[n].v_proj, L))[None, None]
                  for layer, call, n in zip(layers, calls, self.attention_layers, strict=True)]
        return self.relevance(mixing, residual=0.0)  # (1, L)

    @torch.no_grad()
    def probability(self, keep: Tensor, rows: Tensor) -> Tensor:
        """The kept tokens of each row (in order), padded, in passes of at most
        :data:`TOKENS_PER_PASS` tokens."""
        ids, mask = delete_tokens(self.input_ids[0], keep, self.pad_id)  # (N, W) each
        chunk = max(1, TOKENS_PER_PASS // ids.shape[1])
        out = []
        for start in range(0, len(ids), chunk):
            part = mask[start:start + chunk]
            width = int(part.sum(1).max())
            logits = self.logits(ids[start:start + chunk, :width], part[:, :width])  # (n, C)
            out.append(torch.softmax(logits.double(), -1)[:, self.target])
        return torch.cat(out)  # (N,) float64
