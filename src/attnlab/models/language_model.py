"""A decoder-only Transformer language model trained from scratch (GPT-style), on attnlab's
:class:`~attnlab.attention.MultiHeadAttention`.

Token embeddings (plus learned or sinusoidal positions, or rotary positions inside attention),
then ``N`` pre-norm blocks::

    x = x + Dropout(CausalSelfAttention(LayerNorm(x)))
    x = x + Dropout(W_2 Dropout(GELU(W_1 LayerNorm(x))))      # left out when attention_only

a final LayerNorm and a head (tied to the token embedding by default). With
``attention_only`` the model is the attention-only Transformer of Elhage et al. (2021), whose
circuits (induction heads) are easiest to read.

It is a :class:`~attnlab.models.causal_lm.CausalLM`, called like GPT-2 and the Llama layout,
so :mod:`attnlab.models.causal_generation` decodes it and :mod:`attnlab.inspect` looks inside.

Legend: ``B`` batch, ``L`` new positions, ``S`` key positions (cached + new), ``D`` ``d_model``,
``H`` heads, ``F`` ``d_ff``, ``N`` layers, ``V`` vocabulary size, ``C`` context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import Tensor, nn

from attnlab.attention.multihead import KVCache, MultiHeadAttention
from attnlab.attention.positional import sinusoid_table
from attnlab.configs import DictConfig
from attnlab.errors import InputError
from attnlab.models.causal_lm import CausalLM
from attnlab.models.llama import LlamaRotary
from attnlab.models.transformer_encoder import FeedForward

__all__ = ["POSITIONS", "LMBlock", "LMConfig", "TransformerLM"]

POSITIONS = ("learned", "sinusoidal", "rotary")


@dataclass
class LMConfig(DictConfig):
    """The architecture of a :class:`TransformerLM`; the defaults are a small character model."""

    vocab_size: int = field(metadata={"help": "V, rows of the token embedding (and head)"})
    d_model: int = field(default=256, metadata={"help": "D, width of embeddings and layers"})
    n_heads: int = field(default=4, metadata={"help": "H, attention heads; D divisible by H"})
    n_layers: int = field(default=4, metadata={"help": "N, blocks"})
    d_ff: int | None = field(default=None, metadata={
        "help": "feed-forward inner size; None = 4 x d_model"})
    context: int = field(default=256, metadata={
        "help": "longest input, cached positions included"})
    positions: str = field(default="rotary", metadata={
        "help": '"learned" | "sinusoidal" (added to the embeddings) | "rotary" (in attention)'})
    attention_only: bool = field(default=False, metadata={
        "help": "no feed-forward blocks: the attention-only model of Elhage et al. (2021)"})
    dropout: float = field(default=0.1, metadata={
        "help": "on embeddings, sub-layer outputs and inside the feed-forward"})
    attn_dropout: float = field(default=0.0, metadata={"help": "on attention weights"})
    tie_embeddings: bool = field(default=True, metadata={
        "help": "the output head is the token embedding"})
    rope_theta: float = field(default=10000.0, metadata={
        "help": "rotary base (positions rotary only)"})
    eos_token_id: int | None = field(default=None, metadata={
        "help": "where generation stops (None: never)"})
    init_std: float = field(default=0.02, metadata={
        "help": "std of the initial weights and embeddings (GPT-2: 0.02)"})

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "context"):
            _check_int(name, getattr(self, name))
        if self.d_ff is not None:
            _check_int("d_ff", self.d_ff, "or None")
        if self.d_model % self.n_heads != 0:
            raise InputError(f"LMConfig.d_model must be divisible by n_heads: d_model="
                             f"{self.d_model}, n_heads={self.n_heads}")
        if self.positions not in POSITIONS:
            raise InputError(f"LMConfig.positions must be one of {POSITIONS}, got "
                             f"{self.positions!r}")
        if self.positions == "rotary" and self.d_k % 2 != 0:
            raise InputError(f"LMConfig.positions='rotary' needs an even head size d_model/"
                             f"n_heads, got {self.d_model}/{self.n_heads} = {self.d_k}")
        for name in ("dropout", "attn_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0.0 <= value < 1.0:
                raise InputError(f"LMConfig.{name} must be a number in [0, 1), got {value!r}")
        for name in ("attention_only", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"LMConfig.{name} must be a bool, got {getattr(self, name)!r}")
        std = self.init_std
        if isinstance(std, bool) or not isinstance(std, (int, float)) \
                or not math.isfinite(std) or not std > 0.0:
            raise InputError(f"LMConfig.init_std must be a finite number > 0, got {std!r}")
        theta = self.rope_theta
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) \
                or not math.isfinite(theta) or not theta > 1.0:
            raise InputError(f"LMConfig.rope_theta must be a finite number > 1, got {theta!r}")
        eos = self.eos_token_id
        if eos is not None and (isinstance(eos, bool) or not isinstance(eos, int)
                                or not 0 <= eos < self.vocab_size):
            raise InputError(f"LMConfig.eos_token_id must be None or an integer in "
                             f"[0, vocab_size={self.vocab_size}), got {eos!r}")

    @property
    def d_k(self) -> int:
        """Query/key size per head."""
        return self.d_model // self.n_heads

    @property
    def inner_size(self) -> int:
        """``F``: ``d_ff``, or ``4·D`` when unset."""
        return 4 * self.d_model if self.d_ff is None else self.d_ff


def _check_int(name: str, value: object, alternative: str = "") -> None:
    """An integer >= 1 (``alternative`` names what else is allowed, for the message)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        expected = f"an integer >= 1 {alternative}".strip()
        raise InputError(f"LMConfig.{name} must be {expected}, got {value!r}")


class LMBlock(nn.Module):
    """One pre-norm block: causal self-attention, then (unless attention-only) the GELU
    feed-forward, each dropped out and added back."""

    def __init__(self, config: LMConfig, rotary: nn.Module | None) -> None:
        super().__init__()
        D = config.d_model
        self.attn_norm = nn.LayerNorm(D)
        self.attn = MultiHeadAttention(D, config.n_heads, dropout=config.attn_dropout,
                                       rotary=rotary)
        self.ff_norm = None if config.attention_only else nn.LayerNorm(D)
        self.ff = (None if config.attention_only
                   else FeedForward(D, config.inner_size, config.dropout, "gelu"))
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, attention_mask: Tensor | None,
                cache: KVCache | None = None) -> Tensor:
        """``x`` ``(B, L, D)``; ``attention_mask`` ``(B, S)`` (1 = token) or None."""
        attended = self.attn(self.attn_norm(x), attention_mask=attention_mask, is_causal=True,
                             cache=cache).output  # (B, L, D)
        x = x + self.dropout(attended)
        if self.ff is None:
            return x
        return x + self.dropout(self.ff(self.ff_norm(x)))  # (B, L, D)


class TransformerLM(CausalLM):
    """A decoder-only Transformer: next-token logits at every position.

    Args:
        config: the architecture, see :class:`LMConfig`.

    Shape: as :class:`~attnlab.models.gpt2.GPT2LMHeadModel`: ``input_ids`` ``(B, L)``,
    ``attention_mask`` ``(B, S)`` over cached and new positions (1 = token, 0 = padding),
    ``position_ids`` ``(B|1, L)`` default ``past .. past+L-1``, ``cache`` from :meth:`new_cache`
    -> logits ``(B, L, V)``. ``S <= config.context``.

    Weights start as in GPT-2: ``N(0, init_std²)`` (0.02), the output projections of each
    residual branch scaled by ``1/sqrt(2N)``, biases zero.

    Example::

        >>> model = TransformerLM(LMConfig(vocab_size=65, d_model=32, n_heads=2, n_layers=2))
        >>> model(torch.tensor([[1, 2, 3]])).shape
        torch.Size([1, 3, 65])
    """

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        if not isinstance(config, LMConfig):
            raise TypeError(f"config must be an LMConfig, got {type(config).__name__}")
        self.config = c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.d_model)
        self.position_embedding = (nn.Embedding(c.context, c.d_model)
                                   if c.positions == "learned" else None)
        if c.positions == "sinusoidal":
            self.register_buffer("sinusoids", sinusoid_table(c.context, c.d_model),
                                 persistent=False)  # (C, D)
        self.rotary = LlamaRotary(c.d_k, c.rope_theta) if c.positions == "rotary" else None
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(LMBlock(c, self.rotary) for _ in range(c.n_layers))
        self.final_norm = nn.LayerNorm(c.d_model)
        self.lm_head = (None if c.tie_embeddings
                        else nn.Linear(c.d_model, c.vocab_size, bias=False))
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2's initialisation (Radford et al., 2019, §2.3), at ``config.init_std``."""
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        residual_std = std / math.sqrt(2 * self.config.n_layers)
        for layer in self.layers:
            nn.init.normal_(layer.attn.out_proj.weight, std=residual_std)
            if layer.ff is not None:
                nn.init.normal_(layer.ff.down.weight, std=residual_std)

    @property
    def max_positions(self) -> int:
        """The longest sequence, cached positions included."""
        return self.config.context

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding (the Hugging Face name): what attributions hook."""
        return self.token_embedding

    def embed(self, input_ids: Tensor, position_ids: Tensor) -> Tensor:
        """Token vectors plus learned or sinusoidal position vectors, dropped out
        ``(B, L, D)``; rotary positions enter inside attention instead."""
        x = self.token_embedding(input_ids)  # (B, L, D)
        if self.position_embedding is not None:
            x = x + self.position_embedding(position_ids)  # (B|1, L, D)
        elif self.rotary is None:
            x = x + self.sinusoids[position_ids].to(x.dtype)  # (B|1, L, D)
        return self.dropout(x)

    def num_parameters(self) -> int:
        """Trainable parameters, a tied head counted once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
