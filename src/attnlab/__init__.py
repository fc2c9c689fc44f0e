"""attnlab: self-attention and multi-head attention for NLP — exact, fast, trainable, visible."""

from attnlab.attention import (
    AttentionOutput,
    MultiHeadAttention,
    attention_scores,
    causal_mask,
    combine_masks,
    lengths_to_mask,
    padding_mask,
    scaled_dot_product_attention,
)

__version__ = "0.1.0"

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
