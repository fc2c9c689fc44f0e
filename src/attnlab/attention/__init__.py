"""The attention mechanism: functional attention, masks, multi-head, positional, hard attention.

Knows nothing of data, training or user interfaces.
"""

from attnlab.attention.functional import (
    AttentionOutput,
    attention_scores,
    scaled_dot_product_attention,
)
from attnlab.attention.masks import causal_mask, combine_masks, lengths_to_mask, padding_mask
from attnlab.attention.multihead import MultiHeadAttention

__all__ = [
    "AttentionOutput",
    "MultiHeadAttention",
    "attention_scores",
    "causal_mask",
    "combine_masks",
    "lengths_to_mask",
    "padding_mask",
    "scaled_dot_product_attention",
]
