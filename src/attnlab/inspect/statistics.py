"""Per-head statistics of attention patterns: entropy, distance, attention on special tokens.

For each head, averaged over the real (non-padding) query positions of a batch:

* **entropy** ``−Σ_j w_ij log w_ij`` in nats: 0 = looks at one token, ``log n`` = uniform.
* **distance** ``Σ_j w_ij |i − j|``: how far, in tokens, the head looks on average.
* **special** ``Σ_{j special} w_ij``: share of attention on special tokens ([CLS], [SEP]).

Legend: ``B`` batch, ``H`` heads, ``L`` sequence length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["HeadStats", "head_statistics"]


@dataclass(frozen=True)
class HeadStats:
    """Per-head means over ``queries`` real query positions; merge batches with ``+``."""

    entropy: Tensor  # (H,) nats
    distance: Tensor  # (H,) tokens
    special: Tensor  # (H,) share in [0, 1]; 0 when no special mask was given
    queries: int  # real query positions the means are over

    def __add__(self, other: HeadStats) -> HeadStats:
        if self.entropy.shape != other.entropy.shape:
            raise ValueError(f"cannot merge statistics of {self.entropy.shape[0]} and "
                             f"{other.entropy.shape[0]} heads")
        n = self.queries + other.queries
        a, b = self.queries / max(n, 1), other.queries / max(n, 1)
        return HeadStats(a * self.entropy + b * other.entropy,
                         a * self.distance + b * other.distance,
                         a * self.special + b * other.special, n)


def head_statistics(
    weights: Tensor, attention_mask: Tensor | None = None, special_mask: Tensor | None = None
) -> HeadStats:
    """Entropy, mean attention distance and share on special tokens, per head.

    Args:
        weights: self-attention weights ``(B, H, L, L)``.
        attention_mask: ``(B, L)``, 1 = token, 0 = padding; padding queries are left out.
        special_mask: ``(B, L)``, 1 = special token ([CLS], [SEP], ...).

    Returns:
        :class:`HeadStats` with ``(H,)`` tensors.
    """
    if weights.dim() != 4 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"weights must be self-attention (B, H, L, L), got {tuple(weights.shape)}")
    B, H, L, _ = weights.shape
    for name, m in (("attention_mask", attention_mask), ("special_mask", special_mask)):
        if m is not None and tuple(m.shape) != (B, L):
            raise ValueError(f"{name} must have shape (B, L) = {(B, L)}, got {tuple(m.shape)}")
    w = weights.double()
    real = (torch.ones(B, L, dtype=torch.bool, device=w.device) if attention_mask is None
            else attention_mask.bool())
    rows = real[:, None, :].double()  # (B, 1, L): which queries count
    n = rows.sum()
    if n == 0:
        raise ValueError("attention_mask has no real token")

    def mean_over_queries(per_query: Tensor) -> Tensor:  # (B, H, L) -> (H,)
        return (per_query * rows).sum((0, 2)) / n

    entropy = -(w * torch.log(w.clamp_min(1e-30))).sum(-1)  # (B, H, L)
    pos = torch.arange(L, device=w.device, dtype=w.dtype)
    gap = (pos[:, None] - pos[None, :]).abs()  # (L, L): |i - j|
    distance = (w * gap).sum(-1)  # (B, H, L)
    if special_mask is None:
        special = torch.zeros(B, H, L, dtype=w.dtype, device=w.device)
    else:
        special = (w * special_mask.double()[:, None, None, :]).sum(-1)  # (B, H, L)
    dtype = weights.dtype
    return HeadStats(mean_over_queries(entropy).to(dtype), mean_over_queries(distance).to(dtype),
                     mean_over_queries(special).to(dtype), int(n))
