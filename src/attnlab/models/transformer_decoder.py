"""A Transformer decoder layer and stack built on :class:`~attnlab.attention.MultiHeadAttention`.

Each layer is causal self-attention, cross-attention (queries from the decoder, keys and values
from the encoder output, the *memory*) and a position-wise feed-forward network, each wrapped in
dropout, a residual connection and layer normalisation, before (pre-norm) or after (post-norm)
the sub-layer, as in :mod:`attnlab.models.transformer_encoder`.

A :class:`DecoderCache` carries the keys and values of every layer between decoding steps
(fairseq's ``incremental_state``): one growing :class:`~attnlab.attention.multihead.KVCache` per
self-attention, one static cache per cross-attention, filled from the memory on the first step.

Legend: ``B`` batch, ``T`` target length, ``S`` source length, ``D`` ``d_model``,
``F`` ``d_ff``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from attnlab.attention.multihead import KVCache, MultiHeadAttention
from attnlab.models.transformer_encoder import FeedForward, LayerStack, check_torch_layer

__all__ = ["DecoderCache", "DecoderLayer", "TransformerDecoder"]


@dataclass
class DecoderCache:
    """Keys and values of every decoder layer, kept between incremental decoding steps.

    Attributes:
        self_attn: one growing cache per layer: the keys/values of the target positions so far.
        cross_attn: one static cache per layer: the keys/values of the memory, computed on the
            first step and reused.
    """

    self_attn: list[KVCache]
    cross_attn: list[KVCache]

    @classmethod
    def empty(cls, n_layers: int) -> DecoderCache:
        """A cache for ``n_layers`` layers with nothing decoded yet."""
        return cls([KVCache() for _ in range(n_layers)],
                   [KVCache(static=True) for _ in range(n_layers)])

    @property
    def length(self) -> int:
        """Target positions decoded so far: the position of the next token."""
        return self.self_attn[0].length if self.self_attn else 0

    def reorder(self, index: Tensor) -> None:
        """Keep the batch rows ``index`` ``(B',)`` in every layer (beam search: the rows of the
        beams kept; finished sentences: the rows left)."""
        for cache in (*self.self_attn, *self.cross_attn):
            cache.reorder(index)


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention and feed-forward sub-layers.

    Args:
        d_model: model size ``D``.
        n_heads: attention heads ``H``.
        d_ff: hidden size ``F`` of the feed-forward network.
        dropout: dropout on each sub-layer's output and inside the feed-forward network.
        attn_dropout: dropout on the attention weights.
        activation: the feed-forward non-linearity, ``"gelu"`` or ``"relu"``.
        norm_first: pre-norm (``x + f(norm(x))``) if ``True``, else post-norm
            (``norm(x + f(x))``).
        rotary: optional rotary embedding for the self-attention (cross-attention has none:
            source and target positions are not on one axis).

    Shape:
        - x ``(B, T, D)``; memory ``(B, S, D)``.
        - attention_mask ``(B, S)``: source padding, 1 = token, 0 = padding.
        - decoder_attention_mask ``(B, T_past + T)``: target padding, or ``None``.
        - cache: ``(self_attn, cross_attn)`` :class:`KVCache` s, or ``None``.
        - output ``(B, T, D)``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        *,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        activation: str = "gelu",
        norm_first: bool = True,
        rotary: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=attn_dropout, rotary=rotary)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=attn_dropout)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.self_attn_norm = nn.LayerNorm(d_model)
        self.cross_attn_norm = nn.LayerNorm(d_model)
        self.ff_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        attention_mask: Tensor | None = None,
        decoder_attention_mask: Tensor | None = None,
        cache: tuple[KVCache, KVCache] | None = None,
    ) -> Tensor:
        self_cache, cross_cache = (None, None) if cache is None else cache
        if self.norm_first:
            x = x + self._self_attend(self.self_attn_norm(x), decoder_attention_mask, self_cache)
            x = x + self._cross_attend(self.cross_attn_norm(x), memory, attention_mask,
                                       cross_cache)  # (B, T, D)
            return x + self.dropout(self.ff(self.ff_norm(x)))  # (B, T, D)
        x = self.self_attn_norm(x + self._self_attend(x, decoder_attention_mask, self_cache))
        x = self.cross_attn_norm(x + self._cross_attend(x, memory, attention_mask, cross_cache))
        return self.ff_norm(x + self.dropout(self.ff(x)))  # (B, T, D)

    def _self_attend(self, x: Tensor, mask: Tensor | None, cache: KVCache | None) -> Tensor:
        out = self.self_attn(x, attention_mask=mask, is_causal=True, cache=cache).output
        return self.dropout(out)  # (B, T, D)

    def _cross_attend(self, x: Tensor, memory: Tensor, mask: Tensor | None,
                      cache: KVCache | None) -> Tensor:
        return self.dropout(self.cross_attn(x, memory, attention_mask=mask,
                                            cache=cache).output)  # (B, T, D)

    @classmethod
    def from_torch(cls, layer: nn.TransformerDecoderLayer) -> DecoderLayer:
        """A copy of a ``torch.nn.TransformerDecoderLayer`` (ReLU or GELU, biases, eps 1e-5)."""
        activation = check_torch_layer(layer, (layer.norm1, layer.norm2, layer.norm3))
        d_model, d_ff = layer.linear1.in_features, layer.linear1.out_features
        new = cls(d_model, layer.self_attn.num_heads, d_ff, dropout=layer.dropout.p,
                  attn_dropout=layer.self_attn.dropout, activation=activation,
                  norm_first=layer.norm_first)
        new.self_attn = MultiHeadAttention.from_torch(layer.self_attn)
        new.cross_attn = MultiHeadAttention.from_torch(layer.multihead_attn)
        pairs = ((new.ff.up, layer.linear1), (new.ff.down, layer.linear2),
                 (new.self_attn_norm, layer.norm1), (new.cross_attn_norm, layer.norm2),
                 (new.ff_norm, layer.norm3))
        weight = layer.linear1.weight
        new = new.to(weight.device, weight.dtype)
        for ours, theirs in pairs:
            ours.load_state_dict(theirs.state_dict())
        return new


class TransformerDecoder(LayerStack):
    """``n_layers`` :class:`DecoderLayer` s, with a final layer norm when pre-norm
    (arguments: :class:`~attnlab.models.transformer_encoder.LayerStack`'s).

    Shape:
        x ``(B, T, D)``, memory ``(B, S, D)``, attention_mask ``(B, S)``,
        decoder_attention_mask ``(B, T_past + T)`` -> ``(B, T, D)``.
    """

    layer_type = DecoderLayer

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        attention_mask: Tensor | None = None,
        decoder_attention_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> Tensor:
        if cache is not None and len(cache.self_attn) != len(self.layers):
            raise ValueError(f"cache has {len(cache.self_attn)} layers, the decoder "
                             f"{len(self.layers)}; make it with DecoderCache.empty(n_layers)")
        for i, layer in enumerate(self.layers):
            layer_cache = None if cache is None else (cache.self_attn[i], cache.cross_attn[i])
            x = layer(x, memory, attention_mask, decoder_attention_mask, layer_cache)  # (B, T, D)
        return self.final_norm(x)
