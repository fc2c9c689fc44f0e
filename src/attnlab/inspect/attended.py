"""What a text looks like to the inspection tools: its padded inputs (:class:`Encoded`) and
what every head did on it (:class:`Attended`), shared by the subject that computes them and the
page that draws them.

Legend: ``B`` batch, ``H`` heads, ``L`` tokens, ``d_k``/``d_v`` query-key and value size per
head.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from attnlab.models.prediction import Prediction

__all__ = ["Attended", "Encoded"]


@dataclass(frozen=True)
class Encoded:
    """Texts as padded model inputs, with their tokens."""

    input_ids: Tensor  # (B, L) long
    attention_mask: Tensor  # (B, L) long, 1 = token, 0 = padding
    special_mask: Tensor  # (B, L) long, 1 = special token ([CLS], [SEP], ...)
    tokens: list[list[str]]  # per text, its real tokens
    truncated: list[bool]  # per text, whether it was cut to max_length


@dataclass(frozen=True)
class Attended:
    """One text seen through the model (padding removed)."""

    text: str
    tokens: list[str]  # L tokens
    special: list[int]  # (L,) 1 = special token
    layer_names: list[str]  # dotted names of the attention modules, in model order
    weights: list[Tensor]  # per layer (H_l, L, L); H_l differs only after pruning
    relevance: Tensor  # (L,) attention rollout toward the prediction
    prediction: Prediction | None  # None for an encoder without a classification head
    truncated: bool  # the text was longer than max_length tokens
    # with attend(..., vectors=True), per layer; otherwise None
    queries: list[Tensor] | None = None  # (H_l, L, d_k), after rotary positions
    keys: list[Tensor] | None = None  # (H_l, L, d_k)
    values: list[Tensor] | None = None  # (H_l, L, d_v)
    masks: list[Tensor | None] | None = None  # (1|H_l, L, L) bool (True = may attend) or
    #   additive; None where every key was seen
