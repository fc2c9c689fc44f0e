"""attnlab: self-attention and multi-head attention for NLP — exact, fast, trainable, visible.

The names below load on first use (``attnlab.MultiHeadAttention`` imports torch then), so that
``import attnlab`` is quick and the ``attnlab`` command can answer Ctrl-C while torch loads.
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    **dict.fromkeys((
        "ALiBi", "AttentionOutput", "AttentionSteps", "GumbelAttention",
        "LearnedPositionalEmbedding", "MultiHeadAttention", "RotaryEmbedding",
        "SinusoidalPositionalEncoding", "alibi_bias", "alibi_slopes", "attention_scores",
        "causal_mask", "combine_masks", "explain_attention", "gumbel_softmax_attention",
        "hard_attention", "lengths_to_mask", "padding_mask", "scaled_dot_product_attention"),
        "attention"),
    "capture": "inspect",
    "load_pretrained": "io",
    "BertConfig": "models", "BertModel": "models", "SentenceEncoder": "models",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"attnlab.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'attnlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
