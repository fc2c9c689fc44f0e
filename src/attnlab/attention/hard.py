"""Hard attention: each query attends to exactly one key, beside the usual soft attention.

* :func:`hard_attention` — the key of highest score (argmax); not differentiable in the
  scores, so ``query`` and ``key`` get no gradient (``value`` does).
* :func:`gumbel_softmax_attention` and :class:`GumbelAttention` — a sampled one-hot choice,
  ``one_hot(argmax((scores + g) / τ))`` with Gumbel noise ``g``; trained through the
  straight-through estimator (Jang et al., 2017; Maddison et al., 2017): the forward pass uses
  the one-hot weights, the backward pass the gradient of ``softmax((scores + g) / τ)``.

Both use :func:`~attnlab.attention.functional.attention_scores` for the scaled, masked scores,
so masks mean what they mean in :func:`scaled_dot_product_attention` (boolean ``True`` = may
attend; floating = added). A query whose keys are all masked gets output 0 and weights 0.

Legend: ``...`` batch dims (e.g. ``B, H``), ``L`` query length, ``S`` key length,
``E`` query/key dim, ``Ev`` value dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.attention.functional import (
    AttentionOutput,
    attention_scores,
    check_attention_inputs,
)

__all__ = ["GumbelAttention", "gumbel_softmax_attention", "hard_attention"]


def hard_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    *,
    scale: float | None = None,
) -> AttentionOutput:
    """Each query takes the value of its highest-scoring key (the first one on ties).

    Args:
        query: ``(..., L, E)``.
        key: ``(..., S, E)``.
        value: ``(..., S, Ev)``.
        attn_mask: broadcastable to ``(..., L, S)``; boolean ``True`` = may attend, or floating,
            added to the scaled scores.
        scale: multiplies the scores; default ``1 / sqrt(E)`` (it cannot change the argmax
            unless a floating mask is added).

    Returns:
        :class:`AttentionOutput` ``(output (..., L, Ev), weights (..., L, S))``; each row of the
        weights is one-hot, or all 0 when every key of that row is masked.
    """
    check_attention_inputs(query, key, value, attn_mask, 0.0, scale)
    scores = attention_scores(query, key, _as_dtype(attn_mask, query), scale=scale)  # (..., L, S)
    weights = _one_hot_argmax(scores)  # (..., L, S)
    output = weights @ value  # (..., L, S) x (..., S, Ev) -> (..., L, Ev)
    return AttentionOutput(output, weights)


def gumbel_softmax_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    *,
    temperature: float | Tensor,
    scale: float | None = None,
    hard: bool = True,
    generator: torch.Generator | None = None,
) -> AttentionOutput:
    """Attention over one sampled key per query, differentiable through the straight-through
    estimator.

    The weights are ``softmax((scores + g) / τ)`` with ``g ~ Gumbel(0, 1)``; with ``hard=True``
    the forward pass replaces them by their one-hot argmax while gradients flow through the soft
    weights (to ``query``, ``key``, ``value`` and ``temperature``). As ``τ -> 0`` the soft weights
    approach the one-hot sample; the key sampled is ``j`` with probability
    ``softmax(scores)_j`` whatever ``τ``.

    Args:
        query, key, value, attn_mask, scale: as in :func:`hard_attention`.
        temperature: ``τ > 0``; a float or a tensor broadcastable to ``(..., L, S)``
            (e.g. ``(H, 1, 1)`` per head), possibly a trained parameter.
        hard: one-hot forward weights (straight-through) if ``True``, soft weights if ``False``.
        generator: for reproducible noise.

    Returns:
        :class:`AttentionOutput` ``(output (..., L, Ev), weights (..., L, S))``; a row whose
        keys are all masked has output 0 and weights 0.
    """
    check_attention_inputs(query, key, value, attn_mask, 0.0, scale)
    temperature = _check_temperature(temperature)
    scores = attention_scores(query, key, _as_dtype(attn_mask, query), scale=scale)  # (..., L, S)
    # Gumbel(0, 1) noise, -log(Exp(1)); the clamp keeps a (rare) exact 0 from giving +inf.
    exp_sample = torch.empty_like(scores).exponential_(generator=generator)  # (..., L, S)
    noise = -exp_sample.clamp_min_(torch.finfo(scores.dtype).tiny).log()  # (..., L, S)
    perturbed = (scores + noise) / temperature  # (..., L, S); blocked keys stay -inf
    dead = torch.isneginf(perturbed).all(dim=-1, keepdim=True)  # (..., L, 1)
    # A fully masked row is soft-maxed over zeros and then zeroed, so no NaN reaches backward.
    soft = torch.softmax(perturbed.masked_fill(dead, 0.0), dim=-1).masked_fill(dead, 0.0)
    weights = _StraightThrough.apply(soft, _one_hot_argmax(perturbed)) if hard else soft
    output = weights @ value  # (..., L, S) x (..., S, Ev) -> (..., L, Ev)
    return AttentionOutput(output, weights)


class GumbelAttention(nn.Module):
    """Gumbel-softmax hard attention with its temperature held (and optionally trained) here.

    The temperature is stored as ``log τ`` so that it stays positive while it is trained.
    In training mode each call samples (:func:`gumbel_softmax_attention`, straight-through);
    in evaluation mode it is deterministic, the argmax of :func:`hard_attention`.

    Args:
        temperature: initial ``τ > 0``; default ``1.0``.
        learn_temperature: make ``log τ`` a parameter; otherwise a buffer.

    Shape:
        As :func:`gumbel_softmax_attention`.
    """

    def __init__(self, temperature: float = 1.0, learn_temperature: bool = True) -> None:
        super().__init__()
        if not (isinstance(temperature, int | float) and math.isfinite(temperature)
                and temperature > 0):
            raise ValueError(f"temperature must be a finite float > 0, got {temperature!r}")
        log_t = torch.tensor(math.log(temperature), dtype=torch.get_default_dtype())
        if learn_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)

    @property
    def temperature(self) -> Tensor:
        """``τ = exp(log τ)``, a scalar tensor (differentiable when learned)."""
        return self.log_temperature.exp()

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        attn_mask: Tensor | None = None,
        *,
        scale: float | None = None,
        generator: torch.Generator | None = None,
    ) -> AttentionOutput:
        if not self.training:
            return hard_attention(query, key, value, attn_mask, scale=scale)
        return gumbel_softmax_attention(
            query, key, value, attn_mask, temperature=self.temperature.to(query.dtype),
            scale=scale, hard=True, generator=generator,
        )

    def extra_repr(self) -> str:
        learned = isinstance(self.log_temperature, nn.Parameter)
        return f"temperature={self.temperature.item():.4g}, learn_temperature={learned}"


class _StraightThrough(torch.autograd.Function):
    """Forward: the one-hot ``hard`` weights, exactly; backward: the gradient goes to ``soft``."""

    @staticmethod
    def forward(ctx, soft: Tensor, hard: Tensor) -> Tensor:
        return hard.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None


def _one_hot_argmax(scores: Tensor) -> Tensor:
    """One-hot rows at each row's (first) maximum, all 0 where the row is entirely ``-inf``."""
    index = scores.argmax(dim=-1)  # (..., L)
    weights = F.one_hot(index, scores.shape[-1]).to(scores.dtype)  # (..., L, S)
    dead = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., L, 1)
    return weights.masked_fill(dead, 0.0)


def _as_dtype(attn_mask: Tensor | None, query: Tensor) -> Tensor | None:
    """A floating mask in the query's dtype (a boolean one unchanged)."""
    if attn_mask is not None and attn_mask.is_floating_point():
        return attn_mask.to(query.dtype)
    return attn_mask


def _check_temperature(temperature: float | Tensor) -> float | Tensor:
    if isinstance(temperature, Tensor):
        if not temperature.is_floating_point():
            raise TypeError(f"temperature must be floating point, got dtype {temperature.dtype}")
        if not bool((temperature > 0).all() & temperature.isfinite().all()):
            raise ValueError(f"temperature must be finite and > 0 everywhere, got "
                             f"min {temperature.min().item()}")
        return temperature
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise TypeError(f"temperature must be a float or a Tensor, got "
                        f"{type(temperature).__name__}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite float > 0, got {temperature}")
    return float(temperature)
