"""Marian (the opus-mt translation models, Hugging Face ``model_type: "marian"``) on attnlab's
own :class:`~attnlab.attention.MultiHeadAttention`.

Marian is the post-norm Transformer of Vaswani et al.: ``LayerNorm(x + sublayer(x))`` in every
encoder and decoder layer (:class:`~attnlab.models.transformer_encoder.EncoderLayer` and
:class:`~attnlab.models.transformer_decoder.DecoderLayer` with ``norm_first=False``), no final
layer norm, token embeddings times ``sqrt(d_model)`` (``scale_embedding``) plus fixed sinusoids
laid out as Marian lays them (every sine first, then every cosine: :func:`marian_sinusoids`),
and a ``final_logits_bias`` added to the output projection. The decoder starts from
``decoder_start_token_id``, which is the padding id.

:class:`MarianMTModel` has the interface :mod:`attnlab.models.generation` searches with
(``encode``, ``decode`` with a :class:`~attnlab.models.transformer_decoder.DecoderCache`,
``new_cache``, ``check_source``, ``config.bos_token_id`` ...), the one
:class:`~attnlab.models.seq2seq.Seq2SeqTransformer` has; weights load through
:mod:`attnlab.io.families`.

Legend: ``B`` batch, ``S`` source length, ``T`` target length, ``D`` ``d_model``, ``V``
target vocabulary, ``P`` positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.configs import DictConfig
from attnlab.errors import InputError
from attnlab.models.seq2seq import Seq2SeqOutput
from attnlab.models.transformer_decoder import DecoderCache, TransformerDecoder
from attnlab.models.transformer_encoder import ACTIVATIONS, TransformerEncoder

__all__ = ["MarianConfig", "MarianMTModel", "marian_sinusoids"]


@dataclass
class MarianConfig(DictConfig):
    """The fields of a Marian ``config.json`` that change what the model computes, with
    Hugging Face's ``MarianConfig`` names and defaults (a key left out means the same)."""

    vocab_size: int = 58101  # source vocabulary (and target, when embeddings are shared)
    decoder_vocab_size: int | None = None  # target vocabulary; None: vocab_size
    d_model: int = 1024  # model width D
    encoder_layers: int = 12  # encoder layers
    decoder_layers: int = 12  # decoder layers
    encoder_attention_heads: int = 16  # heads of each encoder self-attention
    decoder_attention_heads: int = 16  # heads of each decoder self- and cross-attention
    encoder_ffn_dim: int = 4096  # hidden size of the encoder's feed-forward networks
    decoder_ffn_dim: int = 4096  # hidden size of the decoder's feed-forward networks
    activation_function: str = "gelu"  # feed-forward non-linearity: gelu, swish (SiLU), relu
    max_position_embeddings: int = 1024  # positions of the sinusoid table: the longest input
    scale_embedding: bool = False  # token embeddings times sqrt(d_model) (opus-mt: true)
    share_encoder_decoder_embeddings: bool = True  # one embedding for source and target
    tie_word_embeddings: bool = True  # the output projection is the target embedding
    pad_token_id: int = 58100  # padding (Marian's last id)
    eos_token_id: int = 0  # "</s>": ends every source and every output
    decoder_start_token_id: int = 58100  # the decoder's first input (the padding id)
    forced_eos_token_id: int | None = 0  # forced as the last token at the length limit
    dropout: float = 0.1  # on embeddings and sub-layer outputs (training only)
    attention_dropout: float = 0.0  # on attention weights (training only)

    def __post_init__(self) -> None:
        if self.decoder_vocab_size is None:
            self.decoder_vocab_size = self.vocab_size
        if self.activation_function not in ACTIVATIONS:
            raise InputError(f"config.json: activation_function must be one of "
                             f"{', '.join(ACTIVATIONS)}, got {self.activation_function!r}")
        if self.d_model % 2:
            raise InputError(f"config.json: d_model must be even (half sines, half cosines), "
                             f"got {self.d_model}")

    @classmethod
    def from_hf(cls, data: dict[str, Any]) -> MarianConfig:
        """Our config from a Marian ``config.json``: its generation settings and other keys
        that change nothing computed are left out; a pre-norm or layer-normalised-embedding
        variant is refused."""
        for key in ("normalize_before", "normalize_embedding", "add_final_layer_norm"):
            if data.get(key):
                raise InputError(f"config.json: {key}=true is not supported (expected false, "
                                 f"as in every opus-mt model); got {data[key]!r}")
        if data.get("static_position_embeddings") is False:
            raise InputError("config.json: static_position_embeddings=false (learned "
                             "positions) is not supported; expected true (sinusoids)")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def bos_token_id(self) -> int:
        """The decoder's first input (generation's name for it)."""
        return self.decoder_start_token_id

    @property
    def max_len(self) -> int:
        """Longest source or target (generation's name for it)."""
        return self.max_position_embeddings

    @property
    def one_embedding(self) -> bool:
        """Whether the source and target sides share one embedding: with
        ``share_encoder_decoder_embeddings`` and ``tie_word_embeddings`` (transformers ties
        nothing when ``tie_word_embeddings`` is false: each side reads its own)."""
        return self.share_encoder_decoder_embeddings and self.tie_word_embeddings

    @property
    def n_decoder_layers(self) -> int:
        return self.decoder_layers


def marian_sinusoids(n_positions: int, d_model: int) -> Tensor:
    """Marian's position table ``(P, D)``: ``sin(p / 10000^(2i/D))`` in columns ``i < D/2``,
    the cosines of the same frequencies in columns ``D/2 + i`` (not interleaved). Computed in
    float64 and rounded to float32, as ``MarianSinusoidalPositionalEmbedding`` stores it."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (P, 1)
    frequency = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    angle = position * frequency[None, :]  # (P, D/2)
    return torch.cat([angle.sin(), angle.cos()], dim=1).float()  # (P, D)


class MarianMTModel(nn.Module):
    """Marian's encoder-decoder over token ids, batch first, without a loss.

    Shape:
        - input_ids ``(B, S)`` long; attention_mask ``(B, S)`` (1 = token, 0 = padding) or
          ``None``.
        - decoder_input_ids ``(B, T)``, starting with ``decoder_start_token_id``.
        - output: :class:`~attnlab.models.seq2seq.Seq2SeqOutput` ``(logits (B, T, V))``.

    Example::

        >>> config = MarianConfig(vocab_size=100, d_model=32, encoder_layers=2,
        ...                       decoder_layers=2, pad_token_id=99, decoder_start_token_id=99)
        >>> model = MarianMTModel(config).eval()
        >>> model(torch.tensor([[5, 6, 0]]), None, torch.tensor([[99, 7]])).logits.shape
        torch.Size([1, 2, 100])
    """

    def __init__(self, config: MarianConfig) -> None:
        super().__init__()
        self.config = c = config
        V = c.decoder_vocab_size
        self.embedding = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_token_id)
        self.target_embedding = (None if c.one_embedding
                                 else nn.Embedding(V, c.d_model, padding_idx=c.pad_token_id))
        self.output_projection = (None if c.tie_word_embeddings
                                  else nn.Linear(c.d_model, V, bias=False))
        self.register_buffer("final_logits_bias", torch.zeros(V))  # (V,)
        self.register_buffer("positions", marian_sinusoids(c.max_position_embeddings,
                                                           c.d_model), persistent=False)
        self.embed_dropout = nn.Dropout(c.dropout)
        layers = dict(dropout=c.dropout, attn_dropout=c.attention_dropout,
                      activation=c.activation_function, norm_first=False)
        self.encoder = TransformerEncoder(c.encoder_layers, c.d_model, c.encoder_attention_heads,
                                          c.encoder_ffn_dim, **layers)
        self.decoder = TransformerDecoder(c.decoder_layers, c.d_model, c.decoder_attention_heads,
                                          c.decoder_ffn_dim, **layers)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None,
                decoder_input_ids: Tensor, decoder_attention_mask: Tensor | None = None
                ) -> Seq2SeqOutput:
        memory = self.encode(input_ids, attention_mask)  # (B, S, D)
        return Seq2SeqOutput(self.decode(decoder_input_ids, memory, attention_mask,
                                         decoder_attention_mask=decoder_attention_mask))

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """The encoder output (the *memory*) ``(B, S, D)``."""
        self.check_source(input_ids, attention_mask, values=None)
        x = self._embed(self.embedding, input_ids, 0)  # (B, S, D)
        return self.encoder(x, attention_mask)  # (B, S, D)

    def decode(self, decoder_input_ids: Tensor, memory: Tensor,
               attention_mask: Tensor | None = None, cache: DecoderCache | None = None, *,
               decoder_attention_mask: Tensor | None = None) -> Tensor:
        """Next-token logits ``(B, T, V)`` after each of ``decoder_input_ids`` ``(B, T)``;
        with a ``cache`` (updated in place), only the new positions ``cache.length ..``."""
        past = 0 if cache is None else cache.length
        _check_ids("decoder_input_ids", decoder_input_ids, self.config.decoder_vocab_size,
                   self.config.max_len, past)
        embedding = self.embedding if self.target_embedding is None else self.target_embedding
        x = self._embed(embedding, decoder_input_ids, past)  # (B, T, D)
        x = self.decoder(x, memory, attention_mask, decoder_attention_mask, cache)  # (B, T, D)
        weight = (embedding.weight if self.output_projection is None
                  else self.output_projection.weight)  # (V, D)
        return F.linear(x, weight, self.final_logits_bias)  # (B, T, D) x (V, D)^T -> (B, T, V)

    def _embed(self, embedding: nn.Embedding, ids: Tensor, offset: int) -> Tensor:
        scale = math.sqrt(self.config.d_model) if self.config.scale_embedding else 1.0
        x = embedding(ids) * scale  # (B, T, D)
        x = x + self.positions[offset:offset + ids.shape[1]].to(x.dtype)  # (T, D) broadcast
        return self.embed_dropout(x)

    def new_cache(self) -> DecoderCache:
        """An empty :class:`DecoderCache` for incremental :meth:`decode` calls."""
        return DecoderCache.empty(self.config.decoder_layers)

    def get_input_embeddings(self) -> nn.Embedding:
        """The source word embedding (the target's is :attr:`target_embedding` unless
        shared)."""
        return self.embedding

    def check_source(self, input_ids: Tensor, attention_mask: Tensor | None = None, *,
                     values: bool | None = True) -> None:
        """Raise ``TypeError``/``ValueError``, naming the argument, unless ``input_ids`` is a
        long ``(B, S)`` tensor of ids in ``[0, vocab_size)`` with ``1 <= S <= max_len`` and
        ``attention_mask`` is ``None`` or ``(B, S)``. ``values=None``: read the ids back only
        on the CPU."""
        _check_ids("input_ids", input_ids, self.config.vocab_size, self.config.max_len, 0,
                   values)
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(input_ids.shape):
            raise ValueError(f"attention_mask must have the shape of input_ids (B, S) = "
                             f"{tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}")

    def num_parameters(self) -> int:
        """Number of trainable parameters (a tied matrix counts once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _check_ids(name: str, ids: Tensor, vocab_size: int, max_len: int, past: int,
               values: bool | None = None) -> None:
    """``ids`` is a long ``(B, L)`` tensor, ``L >= 1``, ending by position ``max_len - 1``,
    of ids in ``[0, vocab_size)`` (read back when ``values``, or on the CPU when ``None``)."""
    if not isinstance(ids, Tensor) or ids.dtype != torch.long:
        got = type(ids).__name__ if not isinstance(ids, Tensor) else str(ids.dtype)
        raise TypeError(f"{name} must be a long tensor (B, L), got {got}")
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(f"{name} must have shape (B, L) with L >= 1, got {tuple(ids.shape)}")
    if past + ids.shape[1] > max_len:
        raise ValueError(f"{name} reaches position {past + ids.shape[1] - 1}, beyond "
                         f"max_position_embeddings={max_len}")
    if (ids.device.type == "cpu" if values is None else values):
        low, high = (int(v) for v in torch.aminmax(ids))  # one read back
        if low < 0 or high >= vocab_size:
            raise ValueError(f"{name} must hold ids in [0, {vocab_size}), got "
                             f"{low if low < 0 else high}")
