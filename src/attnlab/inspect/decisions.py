"""One input prepared for attribution: the decisions to explain and what the methods ask of
the model that made them.

A subject that can be attributed has ``decisions(text, *, target=None, reference=None)``
returning :class:`Decisions`; an encoder's are built in :mod:`attnlab.inspect.attribution_subject`,
a translator's in its task. The methods of :mod:`attnlab.inspect.attribution` reach the model
only through :class:`DecisionModel`, so they never ask which task or model family it is.

Legend: ``N`` rows of one batched pass, ``D`` decisions, ``L`` tokens, ``E`` word-vector width,
``H`` heads, ``Q`` query positions, ``K`` key positions of one attention layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from attnlab.errors import InputError

__all__ = ["BASELINES", "TOKENS_PER_PASS", "DecisionModel", "Decisions", "delete_tokens"]

TOKENS_PER_PASS = 16384  # rows x tokens of one batched forward (bounds the memory)
BASELINES = ("pad", "zero")  # integrated gradients' starting points (see DecisionModel.baseline)


class DecisionModel(Protocol):
    """What the methods ask of the model behind one input's decisions (a subject builds it).

    The score ``f`` of decision ``d`` is ``log p(target_d)``. Word vectors are the output of the
    model's word-embedding module (``get_input_embeddings()``), before positions, scaling or
    normalisation, for the ``L`` tokens of :attr:`Decisions.tokens` in order.
    """

    module: nn.Module  # the model whose MultiHeadAttention modules the attention methods watch
    attention_layers: list[str]  # dotted names of the attention modules that explain a
    #                              decision, input side first ("attention", "attention_grad")

    def vectors(self) -> Tensor:
        """``(L, E)``: the word vectors of the input, detached."""

    def baseline(self, kind: str) -> Tensor:
        """``(L, E)``: the word vectors of integrated gradients' baseline; every special token
        keeps its own. ``"pad"``: the others become ``[PAD]``'s; ``"zero"``: zeros."""

    def log_probs(self, vectors: Tensor, rows: Tensor) -> Tensor:
        """``(N,)``: ``log p(target of decision rows[n])`` when the word vectors are
        ``vectors[n]`` ``(N, L, E)``; differentiable in ``vectors``, one forward pass. Decisions
        are in order: a pass may run only what decision ``max(rows)`` reads, and decision
        ``D - 1`` reads every token (the pass whose attention the attention methods keep)."""

    def pool(self, attention: Tensor, rows: Tensor) -> Tensor:
        """``(N, L)``: the head-averaged weights ``(N, Q, K)`` of one of
        :attr:`attention_layers` read as each row's decision's scores over the tokens."""

    def rollout(self, weights: dict[str, Tensor], rows: Tensor) -> Tensor:
        """``(N, L)``: attention rollout for each row's decision, from every attention module's
        weights ``(N, H, Q, K)`` by dotted name (of one pass on the unchanged input)."""

    def value_zeroing(self) -> Tensor:
        """``(D, L)``: value zeroing (Mohebbi et al., 2023), rolled out over the layers."""

    def probability(self, keep: Tensor, rows: Tensor) -> Tensor:
        """``(N,)``: as :meth:`Decisions.probability`, with ``keep`` already holding every
        token that is not removable."""


@dataclass
class Decisions:
    """One input prepared for the methods (what a subject's ``decisions`` returns).

    Attributes:
        tokens: the tokens attributed (classifier: the input's, specials included; translation:
            the source's, then the target prefix's: the decoder input, ``[BOS]`` first).
        special: per token: never removed by a perturbation, never ranked.
        removable: per token: what a perturbation may delete (classifier: the non-special
            tokens; translation: the non-special source tokens).
        targets: per decision: the label explained, or the target token.
        target_ids: per decision: the class index, or the target token's id.
        probabilities: per decision: the model's probability of the target on the full input.
        engine: the model behind the decisions, as the methods reach it.
        source_length: translation: ``tokens[:source_length]`` are the source; else ``None``.
    """

    tokens: list[str]
    special: list[bool]
    removable: list[bool]
    targets: list[str]
    target_ids: list[int]
    probabilities: list[float]
    engine: DecisionModel
    source_length: int | None = None

    def probability(self, keep: Tensor, rows: Tensor) -> Tensor:
        """The probability of decision ``rows[n]``'s target when only the tokens with
        ``keep[n]`` remain: the others are deleted from the sequence (not masked); tokens that
        are not removable (specials, a translation's target prefix) always remain. No grad.

        Shape:
            keep ``(N, L)`` bool, rows ``(N,)`` long in ``[0, D)`` -> ``(N,)`` float.
        """
        L, D = len(self.tokens), len(self.targets)
        if not isinstance(keep, Tensor) or keep.dim() != 2 or keep.shape[1] != L:
            raise InputError(f"keep must be a bool tensor (N, L) with L = {L} tokens, got "
                             f"{tuple(keep.shape) if isinstance(keep, Tensor) else keep!r}")
        rows = torch.as_tensor(rows, dtype=torch.long)
        if rows.shape != keep.shape[:1]:
            raise InputError(f"rows must have shape (N,) = ({keep.shape[0]},) to match keep, "
                             f"got {tuple(rows.shape)}")
        if rows.numel() and not (0 <= int(rows.min()) and int(rows.max()) < D):
            raise InputError(f"rows must be decision indices in [0, {D}), got values in "
                             f"[{int(rows.min())}, {int(rows.max())}]")
        fixed = ~torch.tensor(self.removable, dtype=torch.bool)  # (L,)
        with torch.no_grad():
            return self.engine.probability(keep.bool() | fixed, rows)

    def __len__(self) -> int:
        """The number of decisions ``D``."""
        return len(self.targets)


def delete_tokens(ids: Tensor, keep: Tensor, pad_id: int) -> tuple[Tensor, Tensor]:
    """Each row of ``keep`` applied to ``ids``: the kept tokens in order, padded.

    Shape:
        ids ``(L,)``, keep ``(N, L)`` bool -> ids ``(N, W)`` and attention mask ``(N, W)``
        (1 = token), ``W`` the most tokens kept by a row.
    """
    L = ids.shape[0]
    lengths = keep.sum(1)  # (N,)
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices  # (N, L) kept first
    real = torch.arange(L, device=ids.device)[None, :] < lengths[:, None]  # (N, L)
    kept = ids[order].masked_fill(~real, pad_id)  # (N, L)
    width = max(int(lengths.max()), 1) if len(lengths) else 1
    return kept[:, :width], real[:, :width].long()
