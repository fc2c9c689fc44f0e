"""Attention masks: build them, combine them, check them.

Convention (as in ``torch.nn.functional.scaled_dot_product_attention``): a boolean mask is
``True`` where a query **may** attend to a key; a floating mask is **added** to the scores
(``0`` keeps, ``-inf`` blocks). Padding masks in the Hugging Face style (``attention_mask``,
``1`` = real token, ``0`` = padding) are turned into boolean key masks here.

Legend: ``B`` batch, ``H`` heads, ``L`` query length, ``S`` key length.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "causal_mask",
    "combine_masks",
    "lengths_to_mask",
    "padding_mask",
]


def lengths_to_mask(lengths: Tensor | list[int], max_len: int | None = None) -> Tensor:
    """Boolean ``(B, S)`` mask, ``True`` for the first ``lengths[b]`` positions of each row."""
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (B,), got shape {tuple(lengths.shape)}")
    if (lengths < 0).any():
        raise ValueError(f"lengths must be >= 0, got {lengths.tolist()}")
    longest = int(lengths.max()) if lengths.numel() else 0
    max_len = longest if max_len is None else max_len
    if max_len < longest:
        raise ValueError(f"max_len={max_len} is shorter than the longest length {longest}")
    return torch.arange(max_len, device=lengths.device) < lengths[:, None]  # (B, S)


def padding_mask(attention_mask: Tensor) -> Tensor:
    """Turn an ``attention_mask`` ``(B, S)`` (1 = attend, 0 = padding) into a boolean key mask
    ``(B, 1, 1, S)`` that broadcasts over heads and queries."""
    if attention_mask.dim() != 2:
        raise ValueError(
            f"attention_mask must have shape (B, S) with 1 = attend and 0 = padding, "
            f"got shape {tuple(attention_mask.shape)}"
        )
    return attention_mask.bool()[:, None, None, :]  # (B, 1, 1, S)


def causal_mask(
    query_len: int, key_len: int | None = None, device: torch.device | str | None = None
) -> Tensor:
    """Boolean ``(L, S)`` mask where query ``i`` sees keys ``j <= i`` (top-left aligned, as
    ``is_causal=True`` in PyTorch)."""
    key_len = query_len if key_len is None else key_len
    for name, size in (("query_len", query_len), ("key_len", key_len)):
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {size!r}")
    return torch.ones(query_len, key_len, dtype=torch.bool, device=device).tril()  # (L, S)


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Combine masks that broadcast together: boolean masks are AND-ed; if any mask is floating,
    the result is floating, with ``-inf`` wherever a boolean mask blocks. ``None`` is skipped."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    floats = [m for m in present if m.is_floating_point()]
    bools = [m for m in present if m.dtype == torch.bool]
    others = [m for m in present if not (m.is_floating_point() or m.dtype == torch.bool)]
    if others:
        raise TypeError(f"masks must be boolean or floating, got dtype {others[0].dtype}")
    allowed = None
    for m in bools:
        allowed = m if allowed is None else allowed & m
    if not floats:
        return allowed
    additive = floats[0]
    for m in floats[1:]:
        additive = additive + m
    if allowed is not None:
        additive = additive.masked_fill(~allowed, float("-inf"))
    return additive
