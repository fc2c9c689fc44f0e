"""Scaled dot-product attention, ``softmax(Q Kᵀ · scale + mask) · V``, in one place.

:func:`attention` is the formula in ten lines of plain torch. :func:`scaled_dot_product_attention`
is what models call; two paths compute the same thing (they agree to 1e-5 in float32):

* **fused** (``need_weights=False``, the default) calls PyTorch's fused kernel
  ``torch.nn.functional.scaled_dot_product_attention``; the ``L × S`` weights never exist in memory.
* **explicit** (``need_weights=True``) writes the weights out because the caller asked for them.
  The scores are computed into the buffer that becomes the weights and soft-maxed in place, so
  no other ``L × S`` tensor is made; its backward pass is written by hand
  (:mod:`attnlab.attention.explicit`) and takes gradients through the output and the weights.

A query row whose every key is masked gets output 0 and weights 0, never NaN (in forward and
backward).

With ``enable_gqa=True`` (grouped-query attention) the key and value have ``G`` heads at dim -3
and the query ``H``, a multiple of ``G``; query head ``h`` reads key/value head ``h // (H/G)``.
The fused path passes this on to PyTorch's kernel (faster than repeating the keys: see
``benchmarks/gqa.py``); the explicit path repeats each key/value head for its query heads first.

Legend: ``...`` batch dims (e.g. ``B, H``), ``L`` query length, ``S`` key length,
``E`` query/key dim (``d_k``), ``Ev`` value dim (``d_v``), ``G`` key/value heads.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.attention.explicit import ExplicitAttention, safe_softmax
from attnlab.attention.masks import causal_mask, combine_masks

__all__ = [
    "AttentionOutput",
    "attention",
    "attention_scores",
    "check_attention_inputs",
    "repeat_kv",
    "scaled_dot_product_attention",
]


def attention(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
              ) -> tuple[Tensor, Tensor]:
    """The formula in plain torch: ``softmax(Q Kᵀ / √d_k + mask) V``, softmax over the keys.

    ``mask``: boolean (``True`` = may attend) or added to the scores. This is what the two fast
    paths of :func:`scaled_dot_product_attention` compute; call that one (it checks its inputs,
    runs the fused kernel, and never gives NaN when a row's every key is masked).
    """
    d_k = query.shape[-1]
    scores = query @ key.transpose(-2, -1) / math.sqrt(d_k)  # (..., L, E) x (..., E, S)
    if mask is not None and mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))  # blocked keys get no weight
    elif mask is not None:
        scores = scores + mask  # an additive bias (ALiBi, -inf to block)
    weights = torch.softmax(scores, dim=-1)  # (..., L, S): each row sums to 1 over the keys
    return weights @ value, weights  # (..., L, S) x (..., S, Ev) -> (..., L, Ev)


class AttentionOutput(NamedTuple):
    """What attention returns; unpacks as ``output, weights = ...`` like PyTorch."""

    output: Tensor  # (..., L, Ev)
    weights: Tensor | None  # (..., L, S), or None unless need_weights=True


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    *,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    need_weights: bool = False,
    enable_gqa: bool = False,
) -> AttentionOutput:
    r"""Attention of each query over the keys: ``softmax(Q Kᵀ · scale + mask) V``.

    Args:
        query: ``(..., L, E)``.
        key: ``(..., S, E)``; its last dim must equal the query's.
        value: ``(..., S, Ev)``; as many rows as ``key``.
        attn_mask: broadcastable to ``(..., L, S)``. Boolean: ``True`` = may attend (PyTorch's
            convention). Floating: added to the scaled scores (``-inf`` blocks).
        dropout_p: dropout on the weights, in ``[0, 1)``; pass 0 in evaluation.
        is_causal: query ``i`` attends only to keys ``j <= i``; combined with ``attn_mask``
            if both are given.
        scale: multiplies the scores; default ``1 / sqrt(E)``. ``scale=1`` means no scaling.
        need_weights: also return the ``(..., L, S)`` weights. This runs the explicit path,
            which costs memory ``O(L·S)`` per head and is slower than the fused kernel.
        enable_gqa: grouped-query attention: ``key`` ``(..., G, S, E)`` and ``value``
            ``(..., G, S, Ev)`` with ``G`` dividing the query's heads ``H`` (dim -3); query
            head ``h`` uses key/value head ``h // (H/G)``. Output and weights have ``H`` heads.

    Returns:
        :class:`AttentionOutput` ``(output (..., L, Ev), weights (..., L, S) or None)``. The
        weights are the softmax probabilities, before dropout; each row sums to 1, or to 0 when
        every key of that row is masked. Both are differentiable: a loss on the weights
        (supervised alignment, attention × gradient) back-propagates to ``query``, ``key`` and
        a floating ``attn_mask``, with or without dropout; fully masked rows get gradient 0.

    Example::

        >>> q, k, v = torch.randn(2, 4, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 3)
        >>> out, w = scaled_dot_product_attention(q, k, v, need_weights=True)
        >>> out.shape, w.shape
        (torch.Size([2, 4, 3]), torch.Size([2, 4, 6]))
    """
    check_attention_inputs(query, key, value, attn_mask, dropout_p, scale, enable_gqa=enable_gqa)
    if attn_mask is not None:
        if attn_mask.dim() == 1:  # (S,): the same keys for every query
            attn_mask = attn_mask.unsqueeze(0)  # (1, S)
        if attn_mask.is_floating_point():
            attn_mask = attn_mask.to(query.dtype)
    L, S = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    if is_causal and (attn_mask is not None or need_weights):
        attn_mask = combine_masks(attn_mask, causal_mask(L, S, device=query.device))
        is_causal = False

    if not need_weights:
        output = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
            is_causal=is_causal, scale=scale, enable_gqa=enable_gqa,
        )
        return AttentionOutput(output, None)
    if enable_gqa:  # (..., G, S, E|Ev) -> (..., H, S, E|Ev): one copy per query head
        groups = query.shape[-3] // key.shape[-3]
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)

    batch = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    query = query.expand(*batch, *query.shape[-2:])
    key = key.expand(*batch, *key.shape[-2:])
    value = value.expand(*batch, *value.shape[-2:])
    if dropout_p == 0.0:
        output, weights = ExplicitAttention.apply(query, key, value, attn_mask, scale)
        return AttentionOutput(output, weights)
    # Dropout is rare with weights (training while inspecting): plain autograd, no blocks.
    weights = attention_scores(query, key, attn_mask, scale=scale)
    weights = safe_softmax(weights)
    dropped = F.dropout(weights, p=dropout_p)
    output = dropped @ value  # (..., L, S) x (..., S, Ev) -> (..., L, Ev)
    return AttentionOutput(output, weights)


def repeat_kv(x: Tensor, groups: int) -> Tensor:
    """Each key/value head ``groups`` times in a row: ``(..., G, S, E)`` -> ``(..., G·groups, S,
    E)``, so that query head ``h`` meets head ``h // groups`` (Llama's ``repeat_kv``)."""
    return x if groups == 1 else x.repeat_interleave(groups, dim=-3)  # (..., H, S, E)


def attention_scores(
    query: Tensor, key: Tensor, attn_mask: Tensor | None = None, *, scale: float | None = None
) -> Tensor:
    """The pre-softmax scores ``Q Kᵀ · scale + mask`` ``(..., L, S)``, blocked keys at ``-inf``."""
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = (query @ key.transpose(-2, -1)) * scale  # (..., L, E) x (..., E, S) -> (..., L, S)
    if attn_mask is None:
        return scores
    if attn_mask.dtype == torch.bool:
        return scores.masked_fill(~attn_mask, float("-inf"))
    return scores + attn_mask


def check_attention_inputs(query, key, value, attn_mask=None, dropout_p=0.0,
                           scale=None, *, enable_gqa=False) -> None:
    """Fail early, naming the argument and both shapes, instead of deep inside torch."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dims (..., len, dim), got shape "
                             f"{tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got dtype {t.dtype}")
    for name, t in (("key", key), ("value", value)):
        if t.dtype != query.dtype:
            raise TypeError(f"{name} dtype {t.dtype} does not match query dtype {query.dtype}")
        if t.device != query.device:
            raise ValueError(f"{name} is on {t.device} but query is on {query.device}")
    if query.shape[-1] == 0 or key.shape[-2] == 0:
        raise ValueError(f"attention needs E >= 1 features and S >= 1 keys: query (..., L, E) = "
                         f"{tuple(query.shape)}, key (..., S, E) = {tuple(key.shape)}")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not math.isfinite(scale)):
        raise ValueError(f"scale must be a finite number (default 1/sqrt(E)), got {scale!r}")
    if key.shape[-1] != query.shape[-1]:
        hint = " (is key transposed?)" if key.shape[-2] == query.shape[-1] else ""
        raise ValueError(
            f"key's last dim must equal query's (E): query (..., L, E) = {tuple(query.shape)}, "
            f"key (..., S, E) = {tuple(key.shape)}{hint}"
        )
    if value.shape[-2] != key.shape[-2]:
        raise ValueError(
            f"value must have as many rows as key (S): key (..., S, E) = {tuple(key.shape)}, "
            f"value (..., S, Ev) = {tuple(value.shape)}"
        )
    key_batch, value_batch = key.shape[:-2], value.shape[:-2]
    if enable_gqa:  # compare batch dims as if each key/value head were repeated
        _check_groups(query, key, value)
        key_batch = value_batch = (*key.shape[:-3], query.shape[-3])
    try:
        batch = torch.broadcast_shapes(query.shape[:-2], key_batch, value_batch)
    except RuntimeError:
        raise ValueError(
            f"batch dims of query {tuple(query.shape)}, key {tuple(key.shape)} and value "
            f"{tuple(value.shape)} do not broadcast"
        ) from None
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    if attn_mask is None:
        return
    if not isinstance(attn_mask, Tensor):
        raise TypeError(f"attn_mask must be a torch.Tensor or None, got {type(attn_mask).__name__}")
    if not (attn_mask.dtype == torch.bool or attn_mask.is_floating_point()):
        raise TypeError(f"attn_mask must be boolean (True = attend) or floating (added to the "
                        f"scores), got dtype {attn_mask.dtype}")
    if attn_mask.device != query.device:
        raise ValueError(f"attn_mask is on {attn_mask.device} but query is on {query.device}")
    target = (*batch, query.shape[-2], key.shape[-2])
    try:
        fits = torch.broadcast_shapes(attn_mask.shape, target) == torch.Size(target)
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to the scores' "
            f"shape (..., L, S) = {target}"
        )


def _check_groups(query: Tensor, key: Tensor, value: Tensor) -> None:
    """With ``enable_gqa``: key and value have ``G`` heads at dim -3, dividing the query's."""
    if min(query.dim(), key.dim(), value.dim()) < 3:
        raise ValueError(f"enable_gqa needs a heads dim (..., heads, len, dim): query "
                         f"{tuple(query.shape)}, key {tuple(key.shape)}, value "
                         f"{tuple(value.shape)}")
    H, G = query.shape[-3], key.shape[-3]
    if value.shape[-3] != G or H % G != 0:
        raise ValueError(f"enable_gqa: key and value must have the same number of heads G "
                         f"(dim -3), dividing the query's H: query (..., H, L, E) = "
                         f"{tuple(query.shape)}, key (..., G, S, E) = {tuple(key.shape)}, value "
                         f"(..., G, S, Ev) = {tuple(value.shape)}")
