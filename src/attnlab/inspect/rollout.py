"""Attention rollout (Abnar & Zuidema, 2020): how much each input token flows into each position.

Per layer, the head-averaged attention is mixed with the identity for the residual stream,
``Â = 0.5·A + 0.5·I``, padding rows and columns are zeroed and rows renormalised; the layers are
multiplied through, ``R = Â_N ⋯ Â_1``. Row ``i`` of ``R`` says how much of position ``i`` in the
last layer came from each input token. The relevance of each token for a prediction is the
[CLS] row (``pooling="cls"``) or the mean of the real rows (``pooling="mean"``).

Legend: ``N`` layers, ``B`` batch, ``H`` heads, ``L`` sequence length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Rollout", "attention_rollout"]


class Rollout(NamedTuple):
    """Result of :func:`attention_rollout`."""

    joint: Tensor  # (B, L, L): R, rows = last-layer positions, columns = input tokens
    relevance: Tensor  # (B, L): each input token's share of the prediction, sums to 1


def attention_rollout(
    weights: Sequence[Tensor] | Tensor,
    attention_mask: Tensor | None = None,
    *,
    pooling: str = "cls",
    residual: float = 0.5,
) -> Rollout:
    """Roll the attention of every layer out into input-token relevance.

    Args:
        weights: per layer, in order, self-attention weights ``(B, H, L, L)``; or one tensor
            ``(N, B, H, L, L)`` (as :meth:`AttentionCapture.stack` gives).
        attention_mask: ``(B, L)``, 1 = token, 0 = padding; ``None`` = no padding.
        pooling: ``"cls"`` reads the first row; ``"mean"`` averages the rows of real tokens.
        residual: weight of the identity in each layer's mix (``0.5`` in the paper).

    Returns:
        :class:`Rollout` ``(joint (B, L, L), relevance (B, L))``; padding gets 0.
    """
    layers = list(weights) if not isinstance(weights, Tensor) else list(weights.unbind(0))
    if not layers:
        raise ValueError("weights must hold at least one layer")
    first = layers[0]
    if first.dim() != 4 or first.shape[-1] != first.shape[-2]:
        raise ValueError(f"weights per layer must be self-attention (B, H, L, L), got "
                         f"{tuple(first.shape)}")
    for i, w in enumerate(layers):
        if w.shape[0] != first.shape[0] or w.shape[-2:] != first.shape[-2:]:
            raise ValueError(f"layer {i} weights {tuple(w.shape)} do not match layer 0 "
                             f"{tuple(first.shape)} in B, L, L")
    if pooling not in ("cls", "mean"):
        raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must be in [0, 1], got {residual}")
    B, _, L, _ = first.shape
    if attention_mask is None:
        real = torch.ones(B, L, dtype=torch.bool, device=first.device)
    elif tuple(attention_mask.shape) != (B, L):
        raise ValueError(f"attention_mask must have shape (B, L) = {(B, L)}, got "
                         f"{tuple(attention_mask.shape)}")
    else:
        real = attention_mask.bool()
    keep = (real[:, :, None] & real[:, None, :]).to(first.dtype)  # (B, L, L)
    eye = torch.eye(L, dtype=first.dtype, device=first.device)  # (L, L)

    joint = None
    for w in layers:
        mixed = (1 - residual) * w.mean(dim=1) + residual * eye  # (B, L, L)
        mixed = mixed * keep
        mixed = mixed / mixed.sum(-1, keepdim=True).clamp_min(1e-12)  # rows sum to 1 (or 0)
        joint = mixed if joint is None else mixed @ joint  # (B, L, L) x (B, L, L) -> (B, L, L)

    if pooling == "cls":
        relevance = joint[:, 0]  # (B, L)
    else:
        rows = real.to(joint.dtype)[:, :, None]  # (B, L, 1)
        relevance = (joint * rows).sum(1) / rows.sum(1).clamp_min(1)  # (B, L)
    return Rollout(joint, relevance)
