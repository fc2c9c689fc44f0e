"""The encoder-decoder Transformer for translation (Vaswani et al., 2017, "Attention Is All You
Need").

``input_ids -> embed -> N encoder layers -> memory``;
``decoder_input_ids -> embed -> M decoder layers (causal self-attention, cross-attention over
the memory) -> logits``. Token embeddings are scaled by ``sqrt(d_model)`` (§3.4) and, with
``tie_embeddings``, one matrix serves the source, the target and the output projection (a joint
vocabulary, as in the paper and fairseq's ``share_all_embeddings``). Positions are added to the
embeddings (sinusoidal, learned) or rotated into the self-attention queries and keys (rotary).

The model computes no loss (the task does) and does no search (:mod:`attnlab.models.generation`
does); :meth:`Seq2SeqTransformer.decode` with a :class:`DecoderCache` runs one step at a time.

Legend: ``B`` batch, ``S`` source length, ``T`` target length, ``D`` ``d_model``,
``V`` vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.attention.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)
from attnlab.configs import DictConfig
from attnlab.errors import InputError
from attnlab.models.transformer_decoder import DecoderCache, DecoderLayer, TransformerDecoder
from attnlab.models.transformer_encoder import (
    ACTIVATIONS,
    EncoderLayer,
    TransformerEncoder,
    check_torch_layer,
)

__all__ = ["Seq2SeqConfig", "Seq2SeqOutput", "Seq2SeqTransformer"]

POSITIONAL = ("sinusoidal", "learned", "rotary")


@dataclass
class Seq2SeqConfig(DictConfig):
    """Architecture of a :class:`Seq2SeqTransformer`; the defaults are a small base model."""

    vocab_size: int = field(metadata={
        "help": "V, the joint source/target vocabulary (rows of the embedding)"})
    d_model: int = field(default=256, metadata={
        "help": "D, width of embeddings and of every layer"})
    n_heads: int = field(default=4, metadata={
        "help": "H, attention heads; d_model must be divisible by n_heads"})
    n_encoder_layers: int = field(default=3, metadata={"help": "encoder layers"})
    n_decoder_layers: int = field(default=3, metadata={"help": "decoder layers"})
    d_ff: int = field(default=1024, metadata={"help": "feed-forward hidden size"})
    dropout: float = field(default=0.1, metadata={
        "help": "on embeddings, sub-layer outputs and inside the feed-forward nets"})
    attn_dropout: float = field(default=0.0, metadata={"help": "on the attention weights"})
    activation: str = field(default="gelu", metadata={
        "help": 'feed-forward non-linearity: "gelu" or "relu" (torch.nn.Transformer\'s)'})
    max_len: int = field(default=256, metadata={
        "help": "longest source or target accepted (positions 0 .. max_len-1)"})
    positional: str = field(default="sinusoidal", metadata={
        "help": '"sinusoidal" | "learned" (added to embeddings) | "rotary" (self-attention)'})
    tie_embeddings: bool = field(default=True, metadata={
        "help": "one matrix for source and target embeddings and the output projection"})
    norm_first: bool = field(default=True, metadata={
        "help": "pre-norm (True) or post-norm (False) layers"})
    pad_token_id: int = field(default=0, metadata={"help": "id of padding; never generated"})
    bos_token_id: int = field(default=2, metadata={"help": "id that starts every target"})
    eos_token_id: int = field(default=3, metadata={"help": "id that ends a target"})

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "n_encoder_layers", "n_decoder_layers",
                     "d_ff", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        if self.d_model % self.n_heads != 0:
            raise InputError(f"d_model must be divisible by n_heads: d_model={self.d_model}, "
                             f"n_heads={self.n_heads}")
        if self.positional not in POSITIONAL:
            raise InputError(f"positional must be one of {POSITIONAL}, got {self.positional!r}")
        if self.activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {tuple(ACTIVATIONS)}, got "
                             f"{self.activation!r}")
        if self.positional == "rotary" and self.d_k % 2 != 0:
            raise InputError(f"positional='rotary' needs an even head size d_model/n_heads, got "
                             f"{self.d_model}/{self.n_heads} = {self.d_k}")
        for name in ("dropout", "attn_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0.0 <= value < 1.0:
                raise InputError(f"{name} must be in [0, 1), got {value!r}")
        for name in ("tie_embeddings", "norm_first"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be a bool, got {getattr(self, name)!r}")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not 0 <= value < self.vocab_size:
                raise InputError(f"{name} must be an integer in [0, vocab_size="
                                 f"{self.vocab_size}), got {value!r}")
        if self.pad_token_id in (self.bos_token_id, self.eos_token_id):
            raise InputError(f"pad_token_id={self.pad_token_id} must differ from bos_token_id="
                             f"{self.bos_token_id} and eos_token_id={self.eos_token_id}")

    @property
    def d_k(self) -> int:
        """Query/key size per head."""
        return self.d_model // self.n_heads


class Seq2SeqOutput(NamedTuple):
    """What :class:`Seq2SeqTransformer` returns."""

    logits: Tensor  # (B, T, V): next-token scores after each target position


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer over token ids, batch first.

    Args:
        config: the architecture, a :class:`Seq2SeqConfig`.

    Shape:
        - input_ids ``(B, S)`` long; attention_mask ``(B, S)``: 1 = token, 0 = padding, or
          ``None`` (no padding). Padded source positions never change the logits.
        - decoder_input_ids ``(B, T)`` long, starting with ``bos_token_id`` (the targets shifted
          right); decoder_attention_mask ``(B, T)`` or ``None``. Position ``t`` sees target
          positions ``<= t`` only. ``S, T <= max_len``.
        - output: :class:`Seq2SeqOutput` ``(logits (B, T, V))``; no loss.

    Example::

        >>> model = Seq2SeqTransformer(Seq2SeqConfig(vocab_size=100, d_model=32, n_heads=2))
        >>> src, tgt = torch.randint(4, 100, (2, 7)), torch.randint(4, 100, (2, 5))
        >>> model(src, torch.ones(2, 7), tgt).logits.shape
        torch.Size([2, 5, 100])
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        if not isinstance(config, Seq2SeqConfig):
            raise TypeError(f"config must be a Seq2SeqConfig, got {type(config).__name__}")
        self.config = c = config
        self.embedding = self._embedding()  # source (and target and output, when tied)
        self.target_embedding = None if c.tie_embeddings else self._embedding()
        self.output_projection = (None if c.tie_embeddings
                                  else nn.Linear(c.d_model, c.vocab_size, bias=False))
        self.source_positions, self.target_positions = self._positions(), self._positions()
        rotary = RotaryEmbedding(c.d_k, max_len=c.max_len) if c.positional == "rotary" else None
        self.embed_dropout = nn.Dropout(c.dropout)
        layers = dict(dropout=c.dropout, attn_dropout=c.attn_dropout, activation=c.activation,
                      norm_first=c.norm_first, rotary=rotary)
        self.encoder = TransformerEncoder(c.n_encoder_layers, c.d_model, c.n_heads, c.d_ff,
                                          **layers)
        self.decoder = TransformerDecoder(c.n_decoder_layers, c.d_model, c.n_heads, c.d_ff,
                                          **layers)

    def _embedding(self) -> nn.Embedding:
        c = self.config
        embedding = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_token_id)
        # N(0, 1/D), times sqrt(D) in forward: unit-scale inputs (as fairseq's Transformer)
        nn.init.normal_(embedding.weight, std=c.d_model ** -0.5)
        with torch.no_grad():
            embedding.weight[c.pad_token_id].zero_()
        return embedding

    def _positions(self) -> nn.Module | None:
        c = self.config
        if c.positional == "sinusoidal":
            return SinusoidalPositionalEncoding(c.d_model, c.max_len)
        if c.positional == "learned":
            return LearnedPositionalEmbedding(c.max_len, c.d_model)
        return None  # rotary: positions live in the self-attention

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        decoder_input_ids: Tensor,
        decoder_attention_mask: Tensor | None = None,
    ) -> Seq2SeqOutput:
        self._check_ids("input_ids", input_ids)
        self._check_ids("decoder_input_ids", decoder_input_ids, dims="(B, T)")
        if decoder_input_ids.shape[0] != input_ids.shape[0]:
            raise ValueError(f"decoder_input_ids has batch size {decoder_input_ids.shape[0]} "
                             f"but input_ids has {input_ids.shape[0]}")
        memory = self.encode(input_ids, attention_mask)  # (B, S, D)
        logits = self.decode(decoder_input_ids, memory, attention_mask,
                             decoder_attention_mask=decoder_attention_mask)  # (B, T, V)
        return Seq2SeqOutput(logits)

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """The encoder output (the *memory*) ``(B, S, D)``."""
        self.check_source(input_ids, attention_mask, values=None)
        x = self._embed(self.embedding, self.source_positions, input_ids, 0)  # (B, S, D)
        return self.encoder(x, attention_mask)  # (B, S, D)

    def decode(
        self,
        decoder_input_ids: Tensor,
        memory: Tensor,
        attention_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
        *,
        decoder_attention_mask: Tensor | None = None,
    ) -> Tensor:
        """Next-token logits ``(B, T, V)`` after each of ``decoder_input_ids`` ``(B, T)``.

        Args:
            decoder_input_ids: the target positions to run; with a ``cache``, only the new
                ones (they sit at positions ``cache.length ..``).
            memory: :meth:`encode`'s output ``(B, S, D)``.
            attention_mask: the source padding mask ``(B, S)`` (1 = token), or ``None``.
            cache: a :meth:`new_cache` filled by earlier calls on the same sentences (or
                empty); updated in place.
            decoder_attention_mask: target padding ``(B, T_past + T)``, or ``None``.
        """
        past = 0 if cache is None else cache.length
        self._check_ids("decoder_input_ids", decoder_input_ids, past, dims="(B, T)")
        B, T = decoder_input_ids.shape
        self._check_memory(memory, B, decoder_input_ids)
        S = memory.shape[1]
        _check_mask("attention_mask", attention_mask, (B, S),
                    f"shape (B, S) = {(B, S)} to match memory")
        _check_mask("decoder_attention_mask", decoder_attention_mask, (B, past + T),
                    f"shape (B, T_past + T) = {(B, past + T)} to match decoder_input_ids "
                    f"after {past} cached positions")
        target = self.embedding if self.target_embedding is None else self.target_embedding
        x = self._embed(target, self.target_positions, decoder_input_ids, past)  # (B, T, D)
        x = self.decoder(x, memory, attention_mask, decoder_attention_mask, cache)  # (B, T, D)
        if self.output_projection is not None:
            return self.output_projection(x)  # (B, T, V)
        return F.linear(x, self.embedding.weight)  # (B, T, D) x (V, D)^T -> (B, T, V)

    def get_input_embeddings(self) -> nn.Embedding:
        """The source word embedding (the Hugging Face name); the target side's is
        :attr:`target_embedding` when the embeddings are not tied."""
        return self.embedding

    def new_cache(self) -> DecoderCache:
        """An empty :class:`DecoderCache` for incremental :meth:`decode` calls."""
        return DecoderCache.empty(self.config.n_decoder_layers)

    def _embed(self, embedding: nn.Embedding, positions: nn.Module | None, ids: Tensor,
               offset: int) -> Tensor:
        x = embedding(ids) * math.sqrt(self.config.d_model)  # (B, T, D)
        if positions is not None:
            x = positions(x, offset)  # (B, T, D): positions offset .. offset+T-1
        return self.embed_dropout(x)

    def check_source(self, input_ids: Tensor, attention_mask: Tensor | None = None, *,
                     values: bool | None = True) -> None:
        """Raise ``TypeError``/``ValueError``, naming the argument, unless ``input_ids`` is a
        long tensor ``(B, S)`` of ids in ``[0, vocab_size)`` with ``1 <= S <= max_len`` and
        ``attention_mask`` is ``None`` or ``(B, S)`` of 0s and 1s.

        ``values``: check the ids and mask values (one read back of two numbers); ``None``:
        only on the CPU, as :meth:`encode` and :meth:`decode` do, so that a training step on an
        accelerator never waits for one.
        """
        self._check_ids("input_ids", input_ids, values=values)
        B, S = input_ids.shape
        _check_mask("attention_mask", attention_mask, (B, S),
                    f"the shape of input_ids (B, S) = {(B, S)}", values)

    def _check_ids(self, name: str, ids: Tensor, past: int = 0, *, dims: str = "(B, S)",
                   values: bool | None = None) -> None:
        c = self.config
        if not isinstance(ids, Tensor):
            raise TypeError(f"{name} must be a long tensor {dims}, got a "
                            f"{type(ids).__name__} (make one with torch.tensor(ids))")
        if ids.dtype != torch.long:
            raise TypeError(f"{name} must be a long tensor, got {ids.dtype}")
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise ValueError(f"{name} must have shape {dims} with {dims[-2]} >= 1, got "
                             f"{tuple(ids.shape)}")
        if past + ids.shape[1] > c.max_len:
            after = f" after {past} cached positions" if past else ""
            raise ValueError(f"{name} has length {ids.shape[1]}{after}: positions {past}.."
                             f"{past + ids.shape[1] - 1} exceed max_len={c.max_len}")
        if _reads_values(ids, values) and ids.numel() > 0:
            low, high = (int(v) for v in torch.aminmax(ids))  # one read back
            if low < 0 or high >= c.vocab_size:
                bad = low if low < 0 else high
                row, position = (ids == bad).nonzero()[0].tolist()
                raise ValueError(f"{name} must hold token ids in [0, vocab_size="
                                 f"{c.vocab_size}), got {bad} (row {row}, position "
                                 f"{position})")

    def _check_memory(self, memory: Tensor, B: int, decoder_input_ids: Tensor) -> None:
        d_model, dtype = self.config.d_model, self.embedding.weight.dtype
        if not isinstance(memory, Tensor):
            raise TypeError(f"memory must be a tensor (B, S, D), encode's output; got a "
                            f"{type(memory).__name__}")
        if memory.dim() != 3 or memory.shape[0] != B or memory.shape[2] != d_model:
            raise ValueError(f"memory must have shape (B, S, D) = ({B}, S, {d_model}) to "
                             f"match decoder_input_ids {tuple(decoder_input_ids.shape)}, got "
                             f"{tuple(memory.shape)}")
        if memory.dtype != dtype and not torch.is_autocast_enabled(memory.device.type):
            raise ValueError(f"memory must have the model's dtype {dtype} (encode's output), "
                             f"got {memory.dtype}")

    def config_dict(self) -> dict[str, Any]:
        """The config as a plain dict (what a run folder saves)."""
        return self.config.to_dict()

    def num_parameters(self) -> int:
        """Number of trainable parameters (a tied matrix counts once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @classmethod
    def from_torch(
        cls,
        transformer: nn.Transformer,
        embedding: nn.Embedding,
        *,
        source_positions: nn.Embedding | None = None,
        target_positions: nn.Embedding | None = None,
        max_len: int | None = None,
        **token_ids: int,
    ) -> Seq2SeqTransformer:
        """A copy of a pre-norm ``torch.nn.Transformer`` (ReLU or GELU) with tied ``embedding``.

        The reference computes ``logits = transformer(E[src]·sqrt(D) + P_src, E[tgt]·sqrt(D) +
        P_tgt) @ Eᵀ`` with a causal ``tgt_mask``; ``P`` are the given learned position tables,
        or the sinusoids when both are ``None``. ``token_ids``: ``pad_token_id``,
        ``bos_token_id``, ``eos_token_id`` (defaults as :class:`Seq2SeqConfig`). The sinusoid
        table is computed in the default dtype: copy a float64 transformer under
        ``torch.set_default_dtype(torch.float64)`` to keep it exact.
        """
        enc, dec = transformer.encoder, transformer.decoder
        pre_norm = all(x.norm_first for x in (*enc.layers, *dec.layers))
        if not pre_norm or enc.norm is None or dec.norm is None:
            raise ValueError("from_torch: needs norm_first=True layers and final layer norms "
                             "(as nn.Transformer(..., norm_first=True) builds)")
        if (source_positions is None) != (target_positions is None):
            raise ValueError("from_torch: give both source_positions and target_positions "
                             "(learned) or neither (sinusoidal)")
        learned = source_positions is not None
        if max_len is None:
            max_len = source_positions.num_embeddings if learned else 256
        layer = enc.layers[0]
        config = Seq2SeqConfig(
            vocab_size=embedding.num_embeddings, d_model=transformer.d_model,
            n_heads=transformer.nhead, n_encoder_layers=len(enc.layers),
            n_decoder_layers=len(dec.layers), d_ff=layer.linear1.out_features,
            dropout=layer.dropout.p, attn_dropout=layer.self_attn.dropout,
            activation=check_torch_layer(layer, (layer.norm1, layer.norm2)), max_len=max_len,
            positional="learned" if learned else "sinusoidal", **token_ids)
        weight = embedding.weight
        model = cls(config).to(weight.device, weight.dtype)
        model.encoder.layers = nn.ModuleList(EncoderLayer.from_torch(x) for x in enc.layers)
        model.decoder.layers = nn.ModuleList(DecoderLayer.from_torch(x) for x in dec.layers)
        pairs = [(model.embedding, embedding), (model.encoder.final_norm, enc.norm),
                 (model.decoder.final_norm, dec.norm)]
        if learned:
            pairs += [(model.source_positions.embedding, source_positions),
                      (model.target_positions.embedding, target_positions)]
        for ours, theirs in pairs:
            ours.load_state_dict(theirs.state_dict())
        return model


def _reads_values(x: Tensor, values: bool | None) -> bool:
    """Whether to check the values of ``x``: ``values``, or when ``None``, on the CPU only."""
    return x.device.type == "cpu" if values is None else values


def _check_mask(name: str, mask: Tensor | None, shape: tuple[int, int], expected: str,
                values: bool | None = None) -> None:
    """``mask`` is ``None`` or a tensor of ``shape`` holding only 0 and 1."""
    if mask is None:
        return
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a tensor or None, got a {type(mask).__name__}")
    if tuple(mask.shape) != shape:
        raise ValueError(f"{name} must have {expected}, got {tuple(mask.shape)}")
    if _reads_values(mask, values) and mask.dtype != torch.bool \
            and not bool(((mask == 0) | (mask == 1)).all()):
        bad = mask[(mask != 0) & (mask != 1)][0].item()
        raise ValueError(f"{name} must hold only 1 (token) and 0 (padding), got {bad}")
