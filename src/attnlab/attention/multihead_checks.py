"""Checks of :class:`~attnlab.attention.multihead.MultiHeadAttention`'s inputs: each error names
the argument, the shape expected and the one given.

Legend: ``B`` batch, ``H`` heads, ``S`` key length (the cached keys included).
"""

from __future__ import annotations

from torch import Tensor, nn

from attnlab.attention.cache import KVCache

__all__ = ["check_cache", "check_inputs"]


def check_cache(mha: nn.Module, cache, query, key, value, attention_mask, head_mask,
                is_causal) -> int:
    """Check the inputs of a cached call; return the position of its first query."""
    if not isinstance(cache, KVCache):
        raise TypeError(f"cache must be a KVCache or None, got {type(cache).__name__}")
    if cache.static and (is_causal or mha.rotary is not None):
        raise ValueError("a static cache (cross-attention) supports neither is_causal nor "
                         "rotary positions: its keys are not positions of the queries' "
                         "sequence")
    reuse = cache.static and cache.key is not None
    if reuse:  # key and value are not read
        key = query.new_empty(query.shape[0], 0, mha.kdim)
        value = query.new_empty(query.shape[0], 0, mha.vdim)
    check_inputs(mha, query, key, value, None, head_mask)
    B = query.shape[0]
    if cache.key is not None and cache.key.shape[0] != B:
        raise ValueError(f"cache holds keys for batch size {cache.key.shape[0]} but query "
                         f"{tuple(query.shape)} has batch size {B}; reorder the cache "
                         f"(cache.reorder(index)) when the batch changes")
    if cache.key is not None and cache.key.shape[1] != mha.n_kv_heads:
        raise ValueError(f"cache holds {cache.key.shape[1]} key/value heads but the module has "
                         f"n_kv_heads={mha.n_kv_heads}; use one cache per module")
    past = 0 if cache.static else cache.length
    S = cache.length if reuse else past + key.shape[1]
    if attention_mask is not None and tuple(attention_mask.shape) != (B, S):
        raise ValueError(
            f"attention_mask must have shape (B, S) = {(B, S)} with a cache: S counts the "
            f"{cache.length} cached keys too (1 = attend, 0 = padding), got "
            f"{tuple(attention_mask.shape)}"
        )
    _check_padding_dtype(attention_mask)
    return past


def check_inputs(mha: nn.Module, query, key, value, attention_mask, head_mask
                 ) -> None:
    """Fail early on a call's inputs, naming the argument, the shape expected and the one given."""
    for name, t, dim in (("query", query, mha.d_model), ("key", key, mha.kdim),
                         ("value", value, mha.vdim)):
        if t.dim() != 3 or t.shape[-1] != dim:
            raise ValueError(f"{name} must have shape (B, len, {dim}), got {tuple(t.shape)}")
    if key.shape[:2] != value.shape[:2]:
        raise ValueError(f"key (B, S, kdim) = {tuple(key.shape)} and value (B, S, vdim) = "
                         f"{tuple(value.shape)} must share batch size and length")
    if key.shape[0] != query.shape[0]:
        raise ValueError(f"query {tuple(query.shape)} and key {tuple(key.shape)} must have "
                         f"the same batch size")
    if attention_mask is not None and tuple(attention_mask.shape) != tuple(key.shape[:2]):
        raise ValueError(
            f"attention_mask must have shape (B, S) = {tuple(key.shape[:2])} "
            f"(1 = attend, 0 = padding), got {tuple(attention_mask.shape)}"
        )
    _check_padding_dtype(attention_mask)
    if head_mask is not None and tuple(head_mask.shape) not in (
        (mha.n_heads,), (query.shape[0], mha.n_heads)
    ):
        raise ValueError(f"head_mask must have shape (H,) = ({mha.n_heads},) or (B, H) = "
                         f"({query.shape[0]}, {mha.n_heads}), got {tuple(head_mask.shape)}")


def _check_padding_dtype(attention_mask: Tensor | None) -> None:
    """A padding mask holds 0/1; a float mask of 0 / -inf here would be read inverted."""
    if attention_mask is not None and (attention_mask.is_floating_point()
                                       or attention_mask.is_complex()):
        raise ValueError(f"attention_mask must hold 0/1 (bool or integer: 1 = attend, "
                         f"0 = padding), got dtype {attention_mask.dtype}; pass an additive "
                         f"float mask (0 / -inf) as attn_mask instead")
