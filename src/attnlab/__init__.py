"""attnlab: self-attention and multi-head attention for NLP — exact, fast, trainable, visible."""

from attnlab.attention import (
    ALiBi,
    AttentionOutput,
    AttentionSteps,
    GumbelAttention,
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    alibi_bias,
    alibi_slopes,
    attention_scores,
    causal_mask,
    combine_masks,
    explain_attention,
    gumbel_softmax_attention,
    hard_attention,
    lengths_to_mask,
    padding_mask,
    scaled_dot_product_attention,
)
from attnlab.inspect import capture
from attnlab.io import load_pretrained
from attnlab.models import BertConfig, BertModel, SentenceEncoder

__version__ = "0.1.0"

__all__ = [
    "ALiBi",
    "AttentionOutput",
    "AttentionSteps",
    "BertConfig",
    "BertModel",
    "GumbelAttention",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "RotaryEmbedding",
    "SentenceEncoder",
    "SinusoidalPositionalEncoding",
    "alibi_bias",
    "alibi_slopes",
    "attention_scores",
    "capture",
    "causal_mask",
    "combine_masks",
    "explain_attention",
    "gumbel_softmax_attention",
    "hard_attention",
    "lengths_to_mask",
    "load_pretrained",
    "padding_mask",
    "scaled_dot_product_attention",
]
