"""BERT (Devlin et al., 2019) encoder whose self-attention is attnlab's :class:`MultiHeadAttention`.

Embeddings (word + position + token type, LayerNorm, dropout), then ``N`` post-norm layers::

    x = LayerNorm(x + Dropout(MultiHeadAttention(x)))
    x = LayerNorm(x + Dropout(W_2 GELU(W_1 x)))

and an optional pooler ``tanh(W_p x[:, 0])``. The numbers match Hugging Face's ``BertModel``;
the weights load from its checkpoints through :mod:`attnlab.models.pretrained`.

Legend: ``B`` batch, ``L`` sequence length, ``D`` hidden size, ``H`` heads, ``F`` feed-forward
(intermediate) size, ``N`` layers, ``V`` vocabulary size.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.attention.masks import padding_mask
from attnlab.attention.multihead import MultiHeadAttention
from attnlab.errors import InputError

__all__ = ["BertConfig", "BertLayer", "BertModel", "BertOutput", "mean_pool"]


@dataclass
class BertConfig:
    """The architecture of a BERT encoder; field names follow BERT's ``config.json``."""

    vocab_size: int = 30522  # V, rows of the word embedding
    hidden_size: int = 768  # D, the model width
    num_hidden_layers: int = 12  # N, encoder layers
    num_attention_heads: int = 12  # H; D must be divisible by H
    intermediate_size: int = 3072  # F, feed-forward inner size
    hidden_act: str = "gelu"  # only exact (erf) GELU, as BERT
    max_position_embeddings: int = 512  # longest input L
    type_vocab_size: int = 2  # token types (segments A/B); 0: none (DistilBERT)
    layer_norm_eps: float = 1e-12  # LayerNorm epsilon
    hidden_dropout_prob: float = 0.1  # dropout on embeddings and sub-layer outputs
    attention_probs_dropout_prob: float = 0.1  # dropout on attention weights
    pad_token_id: int = 0  # id of [PAD]
    initializer_range: float = 0.02  # std of the normal init of fresh weights
    # RoBERTa's positions: a real token's is pad_token_id + 1 + the real tokens before it,
    # padding's is pad_token_id (found from input_ids == pad_token_id); False: 0..L-1.
    positions_after_padding: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value, least = getattr(self, name), 0 if name == "type_vocab_size" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise InputError(f"BertConfig.{name} must be an integer >= {least}, "
                                 f"got {value!r}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise InputError(
                f"BertConfig.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.hidden_act != "gelu":
            raise InputError(f"BertConfig.hidden_act must be 'gelu' (exact erf GELU), "
                             f"got {self.hidden_act!r}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InputError(f"BertConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if not self.layer_norm_eps > 0:
            raise InputError(f"BertConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise InputError(f"BertConfig.pad_token_id must be in [0, vocab_size={self.vocab_size})"
                             f", got {self.pad_token_id}")
        if self.max_length < 1:
            raise InputError(f"BertConfig.max_position_embeddings ({self.max_position_embeddings})"
                             f" leaves no position after pad_token_id ({self.pad_token_id})")

    @property
    def max_length(self) -> int:
        """The longest input: ``max_position_embeddings``, less ``pad_token_id + 1`` when
        positions start after padding's (RoBERTa: 514 - 2 = 512)."""
        offset = self.pad_token_id + 1 if self.positions_after_padding else 0
        return self.max_position_embeddings - offset

    # Keys of a Hugging Face config.json that change the architecture, with the only value we
    # support; any other value is an error rather than a silently different model.
    _REQUIRED = {
        "position_embedding_type": "absolute",
        "is_decoder": False,
        "add_cross_attention": False,
        "model_type": "bert",
    }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BertConfig:
        """Read the fields above from a BERT ``config.json`` dict; other keys are ignored."""
        for key, supported in cls._REQUIRED.items():
            if key in data and data[key] != supported:
                raise InputError(f"unsupported BERT config: {key}={data[key]!r} (attnlab supports "
                                 f"only {key}={supported!r})")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_json(cls, path: str | Path) -> BertConfig:
        """Read a BERT ``config.json`` file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"BERT config not found: {path}")
        return cls.from_dict(json.loads(path.read_text()))

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": "bert", **asdict(self)}


@dataclass
class BertOutput:
    """What :class:`BertModel` returns. Tuples are ``None`` unless asked for."""

    last_hidden_state: Tensor  # (B, L, D)
    pooler_output: Tensor | None = None  # (B, D), None without a pooler
    hidden_states: tuple[Tensor, ...] | None = None  # N + 1 of (B, L, D): embeddings, each layer
    attentions: tuple[Tensor, ...] | None = None  # N of (B, H, L, L), softmax probabilities


class BertEmbeddings(nn.Module):
    """``LayerNorm(word[ids] + position[0..L) + token_type[types])``, then dropout; without
    token types when ``type_vocab_size == 0``, RoBERTa's positions when
    ``positions_after_padding``."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        D = config.hidden_size
        self.word = nn.Embedding(config.vocab_size, D, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, D)
        types = config.type_vocab_size
        self.token_type = nn.Embedding(types, D) if types else None  # DistilBERT has none
        self.pad_token_id = config.pad_token_id if config.positions_after_padding else None
        self.norm = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        L = input_ids.shape[1]
        if self.pad_token_id is None:
            positions = self.position.weight[:L]  # (L, D), broadcast over the batch
        else:
            real = input_ids.ne(self.pad_token_id).long()  # (B, L)
            positions = self.position(real.cumsum(1) * real + self.pad_token_id)  # (B, L, D)
        x = self.word(input_ids) + positions  # (B, L, D)
        if self.token_type is not None:
            x = x + self.token_type(token_type_ids)  # (B, L, D)
        return self.dropout(self.norm(x))


class BertLayer(nn.Module):
    """One post-norm encoder layer: self-attention, then a GELU feed-forward, each followed by
    dropout, a residual connection and LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        D, F_ = config.hidden_size, config.intermediate_size
        self.attn = MultiHeadAttention(D, config.num_attention_heads,
                                       dropout=config.attention_probs_dropout_prob)
        self.attn_norm = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(D, F_)
        self.ffn_out = nn.Linear(F_, D)
        self.ffn_norm = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, x: Tensor, attn_mask: Tensor | None, *, need_weights: bool = False,
        head_mask: Tensor | None = None, real: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``x`` ``(B, L, D)``, ``attn_mask`` boolean ``(B, 1, 1, L)`` (True = real key) or None.
        With ``real`` ``(n,)``, the flat indices in ``B·L`` of the real tokens, the token-wise
        sub-layers run on those tokens only and padded positions come out as zeros.
        Returns the new ``x`` ``(B, L, D)`` and the weights ``(B, H, L, L)`` or None."""
        attended, weights = self.attn(x, attn_mask=attn_mask, need_weights=need_weights,
                                      head_mask=head_mask)  # (B, L, D), (B, H, L, L) | None
        if real is None:
            return self._token_wise(x, attended), weights  # (B, L, D)
        flat = x.flatten(0, 1)  # (B·L, D)
        tokens = self._token_wise(flat.index_select(0, real),
                                  attended.flatten(0, 1).index_select(0, real))  # (n, D)
        return flat.new_zeros(flat.shape).index_copy(0, real, tokens).view_as(x), weights

    def _token_wise(self, x: Tensor, attended: Tensor) -> Tensor:
        """Residual + LayerNorm around attention, then the feed-forward block; ``(..., D)``."""
        x = self.attn_norm(x + self.dropout(attended))
        hidden = F.gelu(self.ffn_in(x))  # (..., F), exact erf GELU
        return self.ffn_norm(x + self.dropout(self.ffn_out(hidden)))  # (..., D)


class BertPooler(nn.Module):
    """``tanh(W_p h_[CLS] + b_p)``: BERT's sentence summary, trained by next-sentence prediction."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.dense(x[:, 0]))  # (B, L, D) -> (B, D)


class BertModel(nn.Module):
    """A BERT encoder.

    Args:
        config: the architecture, see :class:`BertConfig`.
        add_pooler: also build the ``[CLS]`` pooler (``pooler_output``).

    Shape:
        - input_ids ``(B, L)`` integer token ids, ``L <= max_position_embeddings``.
        - attention_mask ``(B, L)``: ``1`` = real token, ``0`` = padding (Hugging Face).
        - token_type_ids ``(B, L)``: segment ids; default all ``0``.
        - head_mask ``(H,)`` for every layer, or ``(N, H)`` per layer: multiplies each head's
          output (``1`` keeps, ``0`` removes the head).
        - output: see :class:`BertOutput`.

    Attention runs on the fused kernel unless ``output_attentions=True``, which runs the explicit
    path of :func:`attnlab.scaled_dot_product_attention` and returns ``N`` tensors of
    ``(B, H, L, L)`` probabilities. Padded positions still get hidden states (they attend to the
    real tokens), as in Hugging Face's model; no query attends to padding. With
    ``skip_padding=True`` the token-wise sub-layers (LayerNorms, feed-forward) run on the real
    tokens only and padded positions' hidden states are zeros: the real tokens' states are the
    same, and a padded batch costs less.

    Example::

        >>> model = BertModel(BertConfig(hidden_size=32, num_hidden_layers=2,
        ...                              num_attention_heads=4, intermediate_size=64))
        >>> out = model(torch.tensor([[101, 7592, 102]]), output_attentions=True)
        >>> out.last_hidden_state.shape, out.attentions[0].shape
        (torch.Size([1, 3, 32]), torch.Size([1, 4, 3, 3]))
    """

    def __init__(self, config: BertConfig, *, add_pooler: bool = True) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = BertPooler(config) if add_pooler else None
        self.init_weights()

    def get_input_embeddings(self) -> nn.Embedding:
        """The word embedding (the Hugging Face name): what attributions hook."""
        return self.embeddings.word

    def init_weights(self) -> None:
        """BERT's initialisation: normal(0, ``initializer_range``) weights, zero biases,
        LayerNorm to identity, a zero [PAD] embedding."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.embeddings.word.weight[self.config.pad_token_id].zero_()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        *,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        head_mask: Tensor | None = None,
        skip_padding: bool = False,
    ) -> BertOutput:
        """Encode a batch of token ids; see the class docstring for shapes."""
        self._check_inputs(input_ids, attention_mask, token_type_ids, head_mask)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        # One boolean key mask for all layers; a batch without padding runs unmasked.
        attn_mask = real = None
        if attention_mask is not None and not bool(attention_mask.all()):
            attn_mask = padding_mask(attention_mask)  # (B, 1, 1, L)
            if skip_padding:
                real = attention_mask.flatten().nonzero().squeeze(1)  # (n,) indices in B·L
        if head_mask is not None and head_mask.dim() == 1:
            head_mask = head_mask.expand(len(self.layers), -1)  # (N, H)

        x = self.embeddings(input_ids, token_type_ids)  # (B, L, D)
        hidden_states = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for i, layer in enumerate(self.layers):
            x, weights = layer(x, attn_mask, need_weights=output_attentions,
                               head_mask=None if head_mask is None else head_mask[i], real=real)
            if hidden_states is not None:
                hidden_states.append(x)
            if attentions is not None:
                attentions.append(weights)  # (B, H, L, L)
        return BertOutput(
            last_hidden_state=x,
            pooler_output=None if self.pooler is None else self.pooler(x),
            hidden_states=None if hidden_states is None else tuple(hidden_states),
            attentions=None if attentions is None else tuple(attentions),
        )

    def _check_inputs(self, input_ids, attention_mask, token_type_ids, head_mask) -> None:
        cfg = self.config
        if not isinstance(input_ids, Tensor) or input_ids.dim() != 2:
            shape = tuple(input_ids.shape) if isinstance(input_ids, Tensor) else type(input_ids)
            raise ValueError(f"input_ids must be a (B, L) tensor, got {shape}")
        if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
            raise TypeError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}")
        B, L = input_ids.shape
        if L > cfg.max_length:
            after_padding = (f" less pad_token_id + 1 = {cfg.max_length} positions"
                             if cfg.positions_after_padding else "")
            raise ValueError(f"input_ids has length L={L}, longer than max_position_embeddings="
                             f"{cfg.max_position_embeddings}{after_padding}; truncate the input")
        if input_ids.numel() and not (0 <= int(input_ids.min()) and
                                      int(input_ids.max()) < cfg.vocab_size):
            raise ValueError(f"input_ids must be in [0, vocab_size={cfg.vocab_size}), got values "
                             f"in [{int(input_ids.min())}, {int(input_ids.max())}]")
        for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if t is not None and tuple(t.shape) != (B, L):
                raise ValueError(f"{name} must have the shape of input_ids (B, L) = {(B, L)}, "
                                 f"got {tuple(t.shape)}")
        if token_type_ids is not None and token_type_ids.numel() and not (
            0 <= int(token_type_ids.min()) and int(token_type_ids.max()) < cfg.type_vocab_size
        ):
            raise ValueError(f"token_type_ids must be in [0, type_vocab_size="
                             f"{cfg.type_vocab_size}), got max {int(token_type_ids.max())}")
        H, N = cfg.num_attention_heads, cfg.num_hidden_layers
        if head_mask is not None and tuple(head_mask.shape) not in ((H,), (N, H)):
            raise ValueError(f"head_mask must have shape (H,) = ({H},) or (N, H) = ({N}, {H}), "
                             f"got {tuple(head_mask.shape)}")


def mean_pool(hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
    """Average of the hidden states over real tokens (``attention_mask == 1``).

    Shape: hidden ``(B, L, D)``, attention_mask ``(B, L)`` or None -> ``(B, D)``. A row without
    any real token gives zeros.
    """
    if attention_mask is None:
        return hidden.mean(dim=1)  # (B, D)
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
    total = (hidden * weights).sum(dim=1)  # (B, D)
    count = weights.sum(dim=1).clamp(min=1e-9)  # (B, 1)
    return total / count

