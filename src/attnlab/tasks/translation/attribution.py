"""A translation's decisions, prepared for attribution (what
:meth:`~attnlab.tasks.translation.subject.TranslationSubject.decisions` returns).

Forced decoding of a reference (or of the model's greedy translation): the decoder reads
``[BOS]`` and the target pieces and, at each position ``d``, decides the next token: the pieces,
then ``[EOS]`` (a decision too: when to stop; left out only for a greedy output cut at the
length limit). The tokens attributed are the source's (pieces, then ``[EOS]``) and then the
target prefix's (the decoder input); decision ``d`` can depend on the source and on prefix
tokens ``0..d``.

* Attention methods read the cross-attention (averaged over heads; the last decoder layer, or
  ``layer``) at decision ``d``'s query over the source; the prefix columns get 0.
* Rollout: the last layer's head-averaged cross-attention times the encoder's attention
  rollout (how much each source position's encoder output came from each source token).
* Value zeroing: per encoder layer as for an encoder, rolled out into ``R (S, S)``; per decoder
  layer, zeroing each source token's value in the cross-attention and each prefix token's in
  the self-attention gives ``M = [M_src (T, S) | M_tgt (T, T)]`` (rows normalised together);
  the decoder rolls out as ``X_l = M_src [R | 0] + M_tgt X_{l-1}`` from ``X_0 = [0 | I]``
  (the aggregation of ALTI+, Ferrando et al., 2022, with value zeroing's per-layer scores).
* Gradient methods attribute over the source and prefix word vectors (``model.embedding``,
  and ``model.target_embedding`` for the target side when the embeddings are not tied).

The ``D`` decisions run as ``D`` replicas of the pair in one batch, row ``d`` scored on target
``d``, so one backward pass gives every decision's gradients.

Legend: ``N`` rows of a pass, ``S`` source tokens, ``T`` prefix tokens (= decisions ``D``),
``E`` word-vector width, ``V`` vocabulary, ``H`` heads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from attnlab.errors import InputError
from attnlab.inspect.attribution_subject import input_embeddings, replaced_output
from attnlab.inspect.capture import attention_modules
from attnlab.inspect.decisions import TOKENS_PER_PASS, Decisions, delete_tokens
from attnlab.inspect.rollout import attention_rollout
from attnlab.inspect.value_zeroing import normalise_rows, recording, zeroing_distances
from attnlab.tasks.translation.translator import Translator

__all__ = ["TranslationDecisions", "translation_decisions"]



def translation_decisions(translator: Translator, text: str, *, target: str | int | None = None,
                          reference: str | None = None) -> Decisions:
    """The decisions of forced decoding ``reference`` (``None``: the model's greedy
    translation of ``text``) after the source ``text``.

    Raises:
        InputError: ``target`` is given (a translation's targets are its tokens: give a
            reference), or the text or reference has no tokens.
    """
    if target is not None:
        raise InputError(f"target is for classifiers; a translation's decisions are its target "
                         f"tokens: give a reference (or none: the model's own translation), got "
                         f"target={target!r}")
    model, tok = translator.model, translator.tokenizer
    if model.training:
        model.eval()
    seen = tok.tokenize([text])[0]
    source, source_tokens, source_special = seen.ids[1:], seen.tokens[1:], seen.special[1:]
    if len(source) < 2:
        raise InputError(f"text {text!r} has no tokens")
    if reference is None:
        found = translator.translate([text])[0]
        full = [tok.bos_token_id, *found.ids, *[tok.eos_token_id] * found.finished]
    else:
        if not isinstance(reference, str):
            raise InputError(f"reference must be a str, got {type(reference).__name__}")
        full = tok.tokenize([reference])[0].ids  # [BOS] pieces [EOS]
        if len(full) < 3:
            raise InputError(f"reference {reference!r} has no tokens")
    prefix, labels = full[:-1], full[1:]
    engine = TranslationDecisions(model, source, prefix, labels, tok.pad_token_id)
    specials = {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}
    special = [bool(s) for s in source_special] + [i in specials for i in prefix]
    engine.special = special
    with torch.no_grad():
        probs = engine.log_probs(engine.vectors()[None].expand(len(labels), -1, -1),
                                 torch.arange(len(labels))).exp()  # (D,)
    return Decisions(
        tokens=list(source_tokens) + translator.pieces(prefix), special=special,
        removable=[not s for s in source_special] + [False] * len(prefix),
        targets=translator.pieces(labels), target_ids=list(labels),
        probabilities=probs.tolist(), engine=engine, source_length=len(source))


class TranslationDecisions:
    """:class:`~attnlab.inspect.decisions.DecisionModel` of forced decoding: ``labels[d]``
    after ``prefix[:d+1]`` and the source."""

    def __init__(self, model: nn.Module, source: list[int], prefix: list[int],
                 labels: list[int], pad_id: int) -> None:
        self.module, self.pad_id = model, pad_id
        self.source, self.prefix = torch.tensor(source), torch.tensor(prefix)  # (S,), (T,)
        self.labels = torch.tensor(labels)  # (T,)
        self.source_embedding = input_embeddings(model, "the translator")
        target = getattr(model, "target_embedding", None)  # None: tied to the source side
        self.target_embedding = self.source_embedding if target is None else target
        names = {id(m): n for n, m in attention_modules(model).items()}
        self.encoder_layers = [names[id(layer.attn)] for layer in model.encoder.layers]
        self.attention_layers = [names[id(layer.cross_attn)] for layer in model.decoder.layers]
        self.special: list[bool] = []  # per token, set by translation_decisions

    @property
    def S(self) -> int:
        return len(self.source)

    def vectors(self) -> Tensor:
        with torch.no_grad():
            return torch.cat([self.source_embedding(self.source),
                              self.target_embedding(self.prefix)]).detach()  # (S + T, E)

    def baseline(self, kind: str) -> Tensor:
        x = self.vectors()  # (S + T, E)
        fill = torch.zeros_like(x)
        if kind == "pad":
            with torch.no_grad():
                pad = torch.tensor([self.pad_id])
                fill[:self.S] = self.source_embedding(pad)[0]
                fill[self.S:] = self.target_embedding(pad)[0]
        special = torch.tensor(self.special)[:, None]  # (S + T, 1)
        return torch.where(special, x, fill)  # (S + T, E)

    def log_probs(self, vectors: Tensor, rows: Tensor) -> Tensor:
        N, S = len(rows), self.S
        T = int(rows.max()) + 1  # the prefix the latest decision reads (causal: no more)
        with replaced_output(self.source_embedding, vectors[:, :S]):
            memory = self.module.encode(self.source.expand(N, S))  # (N, S, D)
        with replaced_output(self.target_embedding, vectors[:, S:S + T]), self._reading(rows):
            logits = self.module.decode(self.prefix[:T].expand(N, -1), memory)[:, 0]  # (N, V)
        return torch.log_softmax(logits, -1)[torch.arange(N), self.labels[rows]]  # (N,)

    @contextmanager
    def _reading(self, rows: Tensor) -> Iterator[None]:
        """Within the block the decoder's output is row ``n``'s position ``rows[n]`` only
        ``(N, 1, D)``: the output projection runs on the positions decided, not all ``T``."""
        def hook(module, args, output):
            return output[torch.arange(len(rows)), rows][:, None]  # (N, 1, D)

        handle = self.module.decoder.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def pool(self, attention: Tensor, rows: Tensor) -> Tensor:
        """Decision ``d``'s cross-attention row over the source; 0 on the prefix."""
        N = len(rows)
        out = attention.new_zeros(N, self.S + len(self.prefix))  # (N, S + T)
        out[:, :self.S] = attention[torch.arange(N), rows]  # (N, S)
        return out

    def rollout(self, weights: dict[str, Tensor], rows: Tensor) -> Tensor:
        """The last layer's cross-attention row times the encoder's rollout."""
        encoder = attention_rollout([weights[n] for n in self.encoder_layers]).joint  # (N, S, S)
        cross = weights[self.attention_layers[-1]].mean(1)  # (N, T, S)
        picked = cross[torch.arange(len(rows)), rows]  # (N, S)
        rolled = picked[:, None] @ encoder  # (N, 1, S) x (N, S, S) -> (N, 1, S)
        return self.pool(rolled, torch.zeros_like(rows))  # (N, S + T)

    def value_zeroing(self) -> Tensor:
        """Encoder layers rolled into ``R``, then the decoder's ALTI+-style rollout."""
        encoder, decoder = list(self.module.encoder.layers), list(self.module.decoder.layers)
        S, T = self.S, len(self.prefix)
        with torch.no_grad(), recording(encoder + decoder) as calls:
            self.log_probs(self.vectors()[None], torch.tensor([T - 1]))  # reads every token
        R = torch.eye(S, dtype=calls[0].output.dtype)  # (S, S)
        for layer, call in zip(encoder, calls[:len(encoder)], strict=True):
            R = normalise_rows(zeroing_distances(layer, call, layer.attn.v_proj, S)) @ R
        source_rows = torch.cat([R, R.new_zeros(S, T)], 1)  # (S, S + T)
        X = torch.cat([R.new_zeros(T, S), torch.eye(T, dtype=R.dtype)], 1)  # (T, S + T)
        for layer, call in zip(decoder, calls[len(encoder):], strict=True):
            cross = zeroing_distances(layer, call, layer.cross_attn.v_proj, S)  # (T, S)
            own = zeroing_distances(layer, call, layer.self_attn.v_proj, T).tril()  # (T, T)
            M = normalise_rows(torch.cat([cross, own], 1))  # (T, S + T)
            X = M[:, :S] @ source_rows + M[:, S:] @ X  # (T, S + T)
        return X  # (D, S + T)

    @torch.no_grad()
    def probability(self, keep: Tensor, rows: Tensor) -> Tensor:
        """The kept source tokens of each row (in order), padded; the prefix stays whole."""
        ids, mask = delete_tokens(self.source, keep[:, :self.S], self.pad_id)  # (N, W) each
        chunk = max(1, TOKENS_PER_PASS // (ids.shape[1] + len(self.prefix)))
        out = []
        for start in range(0, len(ids), chunk):
            part, n = mask[start:start + chunk], len(mask[start:start + chunk])
            width = int(part.sum(1).max())
            memory = self.module.encode(ids[start:start + chunk, :width], part[:, :width])
            decided = rows[start:start + chunk]  # (n,)
            prefix = self.prefix[:int(decided.max()) + 1]  # what the latest decision reads
            with self._reading(decided):
                logits = self.module.decode(prefix.expand(n, -1), memory,
                                            part[:, :width])[:, 0]  # (n, V)
            target = self.labels[decided]  # (n,)
            out.append(torch.softmax(logits.double(), -1)[torch.arange(n), target])
        return torch.cat(out)  # (N,) float64
