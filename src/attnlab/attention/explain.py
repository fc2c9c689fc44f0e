"""Attention step by step: the intermediate results of ``softmax(Q Kᵀ · scale + mask) V``.

:func:`explain_attention` returns every step as an :class:`AttentionSteps`, computed by the
library's own :func:`attention_scores` and :func:`scaled_dot_product_attention`, so what it
shows is what the library computes.

Legend: ``...`` batch dims, ``L`` query length, ``S`` key length, ``E`` query/key dim (``d_k``),
``Ev`` value dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from attnlab.attention.functional import attention_scores, scaled_dot_product_attention
from attnlab.attention.masks import causal_mask, combine_masks
from attnlab.errors import InputError

__all__ = ["AttentionSteps", "explain_attention"]


@dataclass(frozen=True)
class AttentionSteps:
    """The steps of one attention computation."""

    scores: Tensor  # (..., L, S) Q Kᵀ, unscaled and unmasked
    scale: float  # what the scores were multiplied by
    default_scale: bool  # True when scale is the default 1/sqrt(d_k)
    scaled_scores: Tensor  # (..., L, S) Q Kᵀ · scale + mask; blocked keys at -inf
    weights: Tensor  # (..., L, S) softmax over the keys; rows sum to 1 (0 if fully masked)
    output: Tensor  # (..., L, Ev) weights V
    mask: Tensor | None  # (..., L, S) the mask applied (with causality), or None

    @property
    def row_sums(self) -> Tensor:
        """``(..., L)`` the sum of each row of the weights."""
        return self.weights.sum(dim=-1)

    def to_dict(self) -> dict:
        """Plain Python lists and floats; ``-inf`` (a blocked key) becomes ``None``."""
        return {
            "scores": _listed(self.scores),
            "scale": self.scale,
            "default_scale": self.default_scale,
            "scaled_scores": _listed(self.scaled_scores),
            "weights": _listed(self.weights),
            "row_sums": _listed(self.row_sums),
            "output": _listed(self.output),
            "mask": None if self.mask is None else _listed(self.mask),
        }


def explain_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    scale: float | None = None,
    *,
    is_causal: bool = False,
) -> AttentionSteps:
    """Compute attention and keep every intermediate step.

    Args:
        query: ``(..., L, E)``.
        key: ``(..., S, E)``.
        value: ``(..., S, Ev)``.
        attn_mask: broadcastable to ``(..., L, S)``; boolean ``True`` = may attend, or floating,
            added to the scaled scores.
        scale: multiplies the scores; default ``1 / sqrt(E)``; ``1`` for none.
        is_causal: query ``i`` attends only to keys ``j <= i`` (combined with ``attn_mask``).

    Returns:
        :class:`AttentionSteps`; its ``weights`` and ``output`` are those of
        :func:`scaled_dot_product_attention` with ``need_weights=True``.

    Raises:
        ValueError: an input holds NaN or infinity, or a step overflows its dtype (entries
            near 1e308 in float64): NaN weights would explain nothing.

    Example::

        >>> q, k = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> explain_attention(q, k, torch.tensor([[1.0, 2.0], [3.0, 4.0]])).output
        tensor([[1.6605, 2.6605]])
    """
    output, weights = scaled_dot_product_attention(
        query, key, value, attn_mask, is_causal=is_causal, scale=scale, need_weights=True
    )  # (..., L, Ev), (..., L, S); also checks the inputs
    mask = attn_mask
    if mask is not None and mask.is_floating_point():
        mask = mask.to(query.dtype)
    if is_causal:
        L, S = query.shape[-2], key.shape[-2]
        mask = combine_masks(mask, causal_mask(L, S, device=query.device))  # (..., L, S)
    used_scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    steps = AttentionSteps(
        scores=attention_scores(query, key, scale=1.0),  # (..., L, S)
        scale=used_scale,
        default_scale=scale is None,
        scaled_scores=attention_scores(query, key, mask, scale=used_scale),  # (..., L, S)
        weights=weights,
        output=output,
        mask=mask,
    )
    _check_finite(steps, query, key, value)
    return steps


def _check_finite(steps: AttentionSteps, query: Tensor, key: Tensor, value: Tensor) -> None:
    """Raise ``ValueError`` naming the first input or step that is not finite."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise InputError(f"{name} holds entries that are not finite (NaN or infinity)")
    dtype = steps.scores.dtype
    top = f"{torch.finfo(dtype).max:.3g}"
    if not torch.isfinite(steps.scores).all():
        raise InputError(f"Q Kᵀ overflows {_dtype_name(dtype)} (largest finite value {top}): "
                         f"use smaller query and key entries")
    scaled = steps.scaled_scores
    allowed = (torch.ones_like(scaled, dtype=torch.bool) if steps.mask is None
               else _allowed(steps.mask).expand_as(scaled))  # (..., L, S)
    if torch.isnan(scaled).any() or not torch.isfinite(scaled[allowed]).all():
        raise InputError(f"scores · scale overflows {_dtype_name(dtype)} (largest finite value "
                         f"{top}): use a smaller scale or smaller entries")
    for name, t in (("weights", steps.weights), ("output", steps.output)):
        if not torch.isfinite(t).all():
            raise InputError(f"the {name} are not finite: a step overflows "
                             f"{_dtype_name(dtype)} (largest finite value {top}); use smaller "
                             f"entries")


def _allowed(mask: Tensor) -> Tensor:
    """``True`` where a query may attend to a key, from a boolean or an additive mask."""
    return ~torch.isneginf(mask) if mask.is_floating_point() else mask


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _listed(t: Tensor) -> list | float | bool | None:
    """``t.tolist()`` with ``-inf`` replaced by ``None`` (JSON has no infinity)."""
    return _without_neg_inf(t.tolist())


def _without_neg_inf(x):
    if isinstance(x, list):
        return [_without_neg_inf(v) for v in x]
    return None if isinstance(x, float) and x == float("-inf") else x
