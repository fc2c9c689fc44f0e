"""The attention mechanism: functional attention, masks, multi-head, positional, hard attention.

Knows nothing of data, training or user interfaces.
"""

from attnlab.attention.explain import AttentionSteps, explain_attention
from attnlab.attention.functional import (
    AttentionOutput,
    attention,
    attention_scores,
    scaled_dot_product_attention,
)
from attnlab.attention.hard import GumbelAttention, gumbel_softmax_attention, hard_attention
from attnlab.attention.masks import causal_mask, combine_masks, lengths_to_mask, padding_mask
from attnlab.attention.multihead import MultiHeadAttention
from attnlab.attention.positional import (
    ALiBi,
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    alibi_bias,
    alibi_slopes,
)

__all__ = [
    "ALiBi",
    "AttentionOutput",
    "AttentionSteps",
    "GumbelAttention",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
    "alibi_bias",
    "alibi_slopes",
    "attention",
    "attention_scores",
    "causal_mask",
    "combine_masks",
    "explain_attention",
    "gumbel_softmax_attention",
    "hard_attention",
    "lengths_to_mask",
    "padding_mask",
    "scaled_dot_product_attention",
]
