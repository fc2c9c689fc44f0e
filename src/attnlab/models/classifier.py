"""A Transformer text classifier trained from scratch: embeddings, encoder, pooling, linear head.

``input_ids -> token embedding (+ positions) -> N encoder layers -> pool -> Linear -> logits``.
The encoder layers use :class:`~attnlab.attention.MultiHeadAttention`; positions are added to
the embeddings (sinusoidal, learned), rotated into queries and keys (rotary), or absent.

Legend: ``B`` batch, ``T`` sequence length, ``D`` ``d_model``, ``C`` classes, ``V`` vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

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
from attnlab.models.bert import mean_pool
from attnlab.models.transformer_encoder import TransformerEncoder

__all__ = ["ClassifierConfig", "ClassifierOutput", "TextClassifier"]

POSITIONAL = ("none", "sinusoidal", "learned", "rotary")
POOLING = ("mean", "max", "attention", "cls")


@dataclass
class ClassifierConfig(DictConfig):
    """Architecture of a :class:`TextClassifier`.

    The defaults are the best of a search on SST-2 (word-level vocabulary of ~14k, AdamW lr
    1e-3, batch 128, one epoch, label smoothing 0.25, dev loss of a weight average with decay
    0.995): two layers with rotary positions gave dev loss 0.396 ± 0.004 over seeds 0..5
    (0.397 on seeds 3..5, which played no part in choosing it) and accuracy 82-84%. Three
    layers with rotary positions gave 0.400; three without positions (decay 0.998) 0.403;
    d_model 384 0.411. Within the spread over seeds or worse: 8 heads, post-norm, max pooling
    (much worse), attention pooling, a WordPiece vocabulary, words seen 3+ times only, a second
    epoch, weight decay on the embeddings. Small embedding init (``embed_init_std``) makes the
    model learn within one epoch; a second pass over the training phrases then only overfits.
    Rotary positions add no parameters and are relative, which suits dev sentences longer than
    most training phrases; over seeds 0..2 learned positions did about as well (0.397 ± 0.007,
    rotary 0.396 ± 0.005), none 0.401 and sinusoidal ones worse (0.415).
    """

    vocab_size: int = field(metadata={
        "help": "V, rows of the token embedding (the tokenizer's vocabulary size)"})
    n_classes: int = field(default=2, metadata={"help": "C, output classes"})
    d_model: int = field(default=256, metadata={
        "help": "D, width of embeddings and of every layer"})
    n_heads: int = field(default=4, metadata={
        "help": "H, attention heads; d_model must be divisible by n_heads"})
    n_layers: int = field(default=2, metadata={"help": "encoder layers"})
    d_ff: int = field(default=512, metadata={"help": "feed-forward hidden size"})
    dropout: float = field(default=0.4, metadata={
        "help": "on embeddings, sub-layer outputs and inside the feed-forward net"})
    attn_dropout: float = field(default=0.0, metadata={"help": "on the attention weights"})
    positional: str = field(default="rotary", metadata={
        "help": '"none" | "sinusoidal" | "learned" | "rotary"'})
    max_len: int = field(default=128, metadata={
        "help": "longest input accepted (positions 0 .. max_len-1)"})
    norm_first: bool = field(default=True, metadata={
        "help": "pre-norm (True) or post-norm (False) layers"})
    pooling: str = field(default="mean", metadata={
        "help": '"mean", "max" or "attention" over real tokens, or "cls" (first)'})
    word_dropout: float = field(default=0.1, metadata={
        "help": "training only: share of word tokens replaced by [UNK]"})
    embed_init_std: float = field(default=0.02, metadata={
        "help": "std of the normal init of token embeddings (torch's is 1.0)"})
    pad_token_id: int = field(default=0, metadata={"help": "id of [PAD]; its embedding stays zero"})
    unk_token_id: int = field(default=1, metadata={
        "help": "id of [UNK], what word dropout substitutes"})
    n_special_tokens: int = field(default=4, metadata={
        "help": "ids below this ([PAD], [UNK], [CLS], [SEP]) are never dropped"})

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_classes", "d_model", "n_heads", "n_layers", "d_ff",
                     "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        if self.n_classes < 2:
            raise InputError(f"n_classes must be >= 2, got {self.n_classes}")
        if self.d_model % self.n_heads != 0:
            raise InputError(f"d_model must be divisible by n_heads: d_model={self.d_model}, "
                             f"n_heads={self.n_heads}")
        if self.positional == "rotary" and (self.d_model // self.n_heads) % 2 != 0:
            raise InputError(f"rotary positions need an even head size d_model/n_heads, got "
                             f"{self.d_model}/{self.n_heads} = {self.d_model // self.n_heads}")
        std = self.embed_init_std
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not 0 < std < math.inf:
            raise InputError(f"embed_init_std must be a finite number > 0, got {std!r}")
        for name in ("dropout", "attn_dropout", "word_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0.0 <= value < 1.0:
                raise InputError(f"{name} must be in [0, 1), got {value!r}")
        if self.positional not in POSITIONAL:
            raise InputError(f"positional must be one of {POSITIONAL}, got {self.positional!r}")
        if self.pooling not in POOLING:
            raise InputError(f"pooling must be one of {POOLING}, got {self.pooling!r}")
        if not isinstance(self.norm_first, bool):
            raise InputError(f"norm_first must be a bool, got {self.norm_first!r}")
        for name in ("pad_token_id", "unk_token_id"):
            if not 0 <= getattr(self, name) < self.vocab_size:
                raise InputError(f"{name} must be in [0, vocab_size={self.vocab_size}), got "
                                 f"{getattr(self, name)}")
        if not 0 <= self.n_special_tokens <= self.vocab_size:
            raise InputError(f"n_special_tokens must be in [0, vocab_size={self.vocab_size}], "
                             f"got {self.n_special_tokens}")

    @property
    def d_k(self) -> int:
        """Query/key size per head."""
        return self.d_model // self.n_heads


class ClassifierOutput(NamedTuple):
    """What :class:`TextClassifier` returns."""

    logits: Tensor  # (B, C)
    loss: Tensor | None  # scalar cross-entropy when labels are given, else None


class TextClassifier(nn.Module):
    """Transformer encoder classifier over token ids.

    Args:
        config: the architecture, a :class:`ClassifierConfig`.

    Shape:
        - input_ids ``(B, T)`` long, ``T <= max_len``.
        - attention_mask ``(B, T)``: 1 = token, 0 = padding; ``None`` means no padding. Padding
          never changes the logits: padded keys are masked in attention and left out of the mean.
        - labels ``(B,)`` long in ``0 .. C-1``, optional.
        - output: :class:`ClassifierOutput` ``(logits (B, C), loss or None)``.

    Example::

        >>> model = TextClassifier(ClassifierConfig(vocab_size=100))
        >>> out = model(torch.randint(4, 100, (2, 7)), labels=torch.tensor([0, 1]))
        >>> out.logits.shape, out.loss.shape
        (torch.Size([2, 2]), torch.Size([]))
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        if not isinstance(config, ClassifierConfig):
            raise TypeError(f"config must be a ClassifierConfig, got {type(config).__name__}")
        self.config = c = config
        self.embedding = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_token_id)
        # Small embeddings let rare words start near neutral (as [PAD]/[UNK]) instead of as
        # unit-scale noise that the encoder cannot tell from signal; on SST-2 the model learns
        # several times faster than with torch's N(0, 1).
        nn.init.normal_(self.embedding.weight, std=c.embed_init_std)
        with torch.no_grad():
            self.embedding.weight[c.pad_token_id].zero_()
        self.positions: nn.Module | None = None
        if c.positional == "sinusoidal":
            # The table's RMS is 1/sqrt(2); bring it to the embeddings' size so that position
            # does not drown out the word (at scale 1, SST-2 dev accuracy fell to 69%).
            scale = c.embed_init_std * math.sqrt(2)
            self.positions = SinusoidalPositionalEncoding(c.d_model, c.max_len, scale=scale)
        elif c.positional == "learned":
            self.positions = LearnedPositionalEmbedding(c.max_len, c.d_model)
        rotary = RotaryEmbedding(c.d_k, max_len=c.max_len) if c.positional == "rotary" else None
        self.embed_dropout = nn.Dropout(c.dropout)
        self.encoder = TransformerEncoder(
            c.n_layers, c.d_model, c.n_heads, c.d_ff, dropout=c.dropout,
            attn_dropout=c.attn_dropout, norm_first=c.norm_first, rotary=rotary)
        # "attention" pooling: one learned score per token, softmax over the real tokens
        self.pool_scores = nn.Linear(c.d_model, 1) if c.pooling == "attention" else None
        self.head = nn.Linear(c.d_model, c.n_classes)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> ClassifierOutput:
        self._check_inputs(input_ids, attention_mask, labels)
        if self.training and self.config.word_dropout > 0:
            input_ids = self.drop_words(input_ids)
        x = self.embedding(input_ids)  # (B, T, D)
        if self.positions is not None:
            x = self.positions(x)  # (B, T, D)
        x = self.encoder(self.embed_dropout(x), attention_mask)  # (B, T, D)
        logits = self.head(self.pool(x, attention_mask))  # (B, D) -> (B, C)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float(), labels)
        return ClassifierOutput(logits, loss)

    def get_input_embeddings(self) -> nn.Embedding:
        """The word embedding (the Hugging Face name): what attributions hook."""
        return self.embedding

    def drop_words(self, input_ids: Tensor) -> Tensor:
        """Replace each word token (id >= ``n_special_tokens``) by ``[UNK]`` with probability
        ``word_dropout``: the model cannot lean on any single word, and learns ``[UNK]``."""
        c = self.config
        hit = torch.rand(input_ids.shape, device=input_ids.device) < c.word_dropout  # (B, T)
        return input_ids.masked_fill(hit & (input_ids >= c.n_special_tokens), c.unk_token_id)

    def pool(self, hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
        """``(B, T, D) -> (B, D)``: mean, max or attention-weighted sum over real tokens, or
        the first ([CLS]) token."""
        pooling = self.config.pooling
        if pooling == "cls":
            return hidden[:, 0]  # (B, D)
        if pooling == "mean":
            return mean_pool(hidden, attention_mask)  # (B, D)
        padding = None if attention_mask is None else (attention_mask == 0).unsqueeze(-1)
        if pooling == "max":
            if padding is not None:
                hidden = hidden.masked_fill(padding, float("-inf"))  # (B, T, D)
            return hidden.amax(dim=1)  # (B, D)
        scores = self.pool_scores(hidden)  # (B, T, 1)
        if padding is not None:
            scores = scores.masked_fill(padding, float("-inf"))
        weights = torch.softmax(scores.float(), dim=1).to(hidden.dtype)  # (B, T, 1)
        return (weights * hidden).sum(dim=1)  # (B, D)

    def _check_inputs(self, input_ids, attention_mask, labels) -> None:
        c = self.config
        if not isinstance(input_ids, Tensor) or input_ids.dtype != torch.long:
            raise TypeError(f"input_ids must be a long tensor, got "
                            f"{getattr(input_ids, 'dtype', type(input_ids).__name__)}")
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must have shape (B, T) with T >= 1, got "
                             f"{tuple(input_ids.shape)}")
        B, T = input_ids.shape
        if T > c.max_len:
            raise ValueError(f"sequence length T={T} exceeds max_len={c.max_len}")
        if attention_mask is not None:
            if tuple(attention_mask.shape) != (B, T):
                raise ValueError(f"attention_mask must have shape (B, T) = {(B, T)}, got "
                                 f"{tuple(attention_mask.shape)}")
            if not bool((attention_mask.sum(dim=1) > 0).all()):
                raise ValueError("attention_mask has a row without any token (all zeros)")
        if labels is not None:
            if tuple(labels.shape) != (B,) or labels.dtype != torch.long:
                raise ValueError(f"labels must be a long tensor of shape (B,) = ({B},), got "
                                 f"{labels.dtype} {tuple(labels.shape)}")
            if bool(((labels < 0) | (labels >= c.n_classes)).any()):
                raise ValueError(f"labels must be in [0, {c.n_classes}), got values "
                                 f"{labels.unique().tolist()}")

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
